//! Which scenarios one `vnvdimm test` runs: name filters, then a deterministic shard, so
//! N machines of a CI matrix given `--shard 1/N` .. `--shard N/N` run each scenario once.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("--shard {0:?}: expected I/N with 1 <= I <= N (e.g. 2/4)")]
    BadShard(String),
    #[error("no scenario matches {0} (see `vnvdimm test --list`)")]
    NothingSelected(String),
}

/// `--shard I/N`, 1-based as CI matrices count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = SelectError;
    fn from_str(s: &str) -> Result<Self, SelectError> {
        let bad = || SelectError::BadShard(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse::<usize>().map_err(|_| bad())?, n.trim().parse::<usize>().map_err(|_| bad())?);
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// The names among `all` (in their order) that contain any of `filters` (all when there
/// is none), then every `count`-th of those starting at the shard's own.
pub fn select<'a>(all: &[&'a str], filters: &[String], shard: Option<Shard>) -> Result<Vec<&'a str>, SelectError> {
    let matching: Vec<&str> =
        all.iter().copied().filter(|name| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))).collect();
    if matching.is_empty() {
        return Err(SelectError::NothingSelected(if filters.is_empty() { "the empty filter".into() } else { format!("{filters:?}") }));
    }
    Ok(match shard {
        Some(Shard { index, count }) => matching.into_iter().enumerate().filter(|(i, _)| i % count == index - 1).map(|(_, n)| n).collect(),
        None => matching,
    })
}

/// Scenarios at once by default: one per core, and no more than the memory available
/// holds (each VM is counted at `per_vm` bytes: its RAM plus QEMU's or the VMM's own).
pub fn default_jobs(cores: usize, available_memory: u64, per_vm: u64) -> usize {
    let by_memory = usize::try_from(available_memory / per_vm.max(1)).unwrap_or(usize::MAX);
    cores.min(by_memory).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = &["s1_a", "s1_b", "s2_c", "s3_d", "s3_e"];

    #[test]
    fn filters_keep_order_and_match_substrings() {
        assert_eq!(select(ALL, &[], None).unwrap(), ALL);
        assert_eq!(select(ALL, &["s3".into(), "s1_b".into()], None).unwrap(), ["s1_b", "s3_d", "s3_e"]);
        assert!(matches!(select(ALL, &["s9".into()], None), Err(SelectError::NothingSelected(_))));
    }

    #[test]
    fn shards_cover_the_selection_once() {
        let mut seen = Vec::new();
        for index in 1..=3 {
            let part = select(ALL, &[], Some(Shard { index, count: 3 })).unwrap();
            assert!(!part.is_empty());
            seen.extend(part);
        }
        seen.sort();
        let mut all = ALL.to_vec();
        all.sort();
        assert_eq!(seen, all);
        assert_eq!(select(ALL, &[], Some(Shard { index: 2, count: 3 })).unwrap(), ["s1_b", "s3_e"]);
    }

    #[test]
    fn shard_syntax_is_checked() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "2", "a/b", "1/-2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn jobs_follow_cores_and_memory() {
        const GIB: u64 = 1 << 30;
        assert_eq!(default_jobs(8, 24 * GIB, 2 * GIB), 8);
        assert_eq!(default_jobs(8, 5 * GIB, 2 * GIB), 2);
        assert_eq!(default_jobs(2, GIB, 2 * GIB), 1, "always at least one");
    }
}
