//! Host-side poison and scrub controls (control API, test harness). Host-added poison
//! models latent media errors: the guest learns of it through ARS or by consuming it,
//! not through a notification, unless the host asks with `notify_new_errors`.

use thiserror::Error;

use crate::dimm::Dimm;
use crate::events::{Notification, NotifyTarget, NOTIFY_ROOT_NEW_ERRORS};
use crate::poison::{PoisonError, PoisonSet};
use crate::poison_journal::PoisonOp;
use crate::spa_map::DimmSpan;
use crate::NvdimmPlatform;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HostPoisonError {
    #[error("no nvdimm #{index}: the platform has {count} nvdimms, numbered from 0")]
    NoSuchDimm { index: usize, count: usize },
    #[error("range {offset:#x}+{len:#x} is outside nvdimm #{index}, whose media is {size:#x} bytes")]
    OutsideDimm { index: usize, offset: u64, len: u64, size: u64 },
    #[error("guest physical range {spa:#x}+{len:#x} is not inside one nvdimm window or interleave set")]
    OutsideWindows { spa: u64, len: u64 },
    #[error("nvdimm #{index}: {source}")]
    Poison {
        index: usize,
        #[source]
        source: PoisonError,
    },
    #[error("nvdimm #{index}: the poison change was undone because the DIMM state could not be saved: {message}")]
    Persist { index: usize, message: String },
    #[error("ARS scrub rate must be at least 1 byte per second")]
    ZeroRate,
}

/// What undoes one op: its range and the ranges it could have changed, as they were.
type Undo = (u64, u64, Vec<(u64, u64)>);

/// Applies `ops` in order to the poison of `dimm` (DIMM number `index`), all or none,
/// and makes the changes durable with one journal append (`poison_journal.rs`) before
/// returning. If an op fails or the append fails, the set is put back exactly as it
/// was, so memory and disk agree. Returns the poisoned bytes the clears removed. Cost:
/// O(log n + k) per op (k = ranges it merges or splits), no copy of the set. Used by
/// host commands and guest `_DSM` calls.
pub(crate) fn change_poison(dimm: &mut Dimm, index: usize, ops: &[PoisonOp]) -> Result<u64, HostPoisonError> {
    let mut undo: Vec<Undo> = Vec::new();
    let mut changed: Vec<PoisonOp> = Vec::new();
    let mut cleared = 0;
    let rollback = |set: &mut PoisonSet, undo: &[Undo]| {
        for (offset, end, saved) in undo.iter().rev() {
            set.restore(*offset, *end, saved);
        }
    };
    for op in ops {
        let (PoisonOp::Add { offset, len } | PoisonOp::Clear { offset, len }) = *op;
        let end = offset.saturating_add(len);
        let saved = dimm.state.poison.touching(offset, end);
        let shape = |p: &PoisonSet| (p.len(), p.total_bytes());
        let before = shape(&dimm.state.poison);
        match op.apply(&mut dimm.state.poison) {
            Ok(n) => cleared += n,
            Err(source) => {
                rollback(&mut dimm.state.poison, &undo);
                return Err(HostPoisonError::Poison { index, source });
            }
        }
        // Every insert adds bytes unless already covered and every remove takes some
        // away unless none were there, so an unchanged shape means an unchanged set.
        if shape(&dimm.state.poison) != before {
            undo.push((offset, end, saved));
            changed.push(*op);
        }
    }
    if let Err(e) = dimm.journal_poison(&changed) {
        rollback(&mut dimm.state.poison, &undo);
        return Err(HostPoisonError::Persist { index, message: e.to_string() });
    }
    Ok(cleared)
}

impl NvdimmPlatform {
    /// Checks that `[offset, offset + len)` is a non-empty range inside DIMM `index`.
    fn check_dimm_range(&self, index: usize, offset: u64, len: u64) -> Result<(), HostPoisonError> {
        let dimm = self.dimms.get(index).ok_or(HostPoisonError::NoSuchDimm { index, count: self.dimms.len() })?;
        if len == 0 {
            return Err(HostPoisonError::Poison { index, source: PoisonError::ZeroLength { offset } });
        }
        let size = dimm.config.size;
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(HostPoisonError::OutsideDimm { index, offset, len, size }),
        }
    }

    /// Marks `[offset, offset + len)` of DIMM `dimm_index` (offsets into its media) bad.
    pub fn add_poison(&mut self, dimm_index: usize, offset: u64, len: u64) -> Result<(), HostPoisonError> {
        self.add_poison_ranges(dimm_index, &[(offset, len)])
    }

    /// Marks every `(offset, len)` of DIMM `dimm_index` bad, all or none, with one
    /// journal append for the lot (the control API's batch `POST /poison`).
    pub fn add_poison_ranges(&mut self, dimm_index: usize, ranges: &[(u64, u64)]) -> Result<(), HostPoisonError> {
        for &(offset, len) in ranges {
            self.check_dimm_range(dimm_index, offset, len)?;
        }
        let ops: Vec<PoisonOp> = ranges.iter().map(|&(offset, len)| PoisonOp::Add { offset, len }).collect();
        change_poison(&mut self.dimms[dimm_index], dimm_index, &ops).map(drop)
    }

    /// Clears `[offset, offset + len)` of DIMM `dimm_index`; returns the poisoned bytes removed.
    pub fn clear_poison(&mut self, dimm_index: usize, offset: u64, len: u64) -> Result<u64, HostPoisonError> {
        self.check_dimm_range(dimm_index, offset, len)?;
        let removed = change_poison(&mut self.dimms[dimm_index], dimm_index, &[PoisonOp::Clear { offset, len }])?;
        self.ars.forget_injected(dimm_index, offset, len);
        Ok(removed)
    }

    /// The poisoned ranges of DIMM `dimm_index` as `(offset, length)`, ascending.
    pub fn poison_ranges(&self, dimm_index: usize) -> Result<Vec<(u64, u64)>, HostPoisonError> {
        let dimm = self
            .dimms
            .get(dimm_index)
            .ok_or(HostPoisonError::NoSuchDimm { index: dimm_index, count: self.dimms.len() })?;
        Ok(dimm.state.poison.iter().collect())
    }

    /// Marks the guest-physical range `[spa, spa + len)` bad. It must lie inside one
    /// system-address range (a DIMM's, or an interleave set's). Returns the DIMM ranges
    /// it landed on: one, or one per member of a set it touches, each recorded all or
    /// none (a later member failing leaves the earlier ones recorded, and says so).
    pub fn add_poison_spa(&mut self, spa: u64, len: u64) -> Result<Vec<DimmSpan>, HostPoisonError> {
        let spans = self.map.dimm_spans(spa, len).ok_or(HostPoisonError::OutsideWindows { spa, len })?;
        for span in &spans {
            self.add_poison(span.dimm, span.offset, span.len)?;
        }
        Ok(spans)
    }

    /// The poison of every DIMM's backing file, in offsets into that file: where the
    /// poisoned bytes are stored (what a backend keeps the guest from mapping). The DIMMs'
    /// own poison lists unless interleave sets store a DIMM's bytes in its set's files.
    pub fn storage_poison(&self) -> Vec<PoisonSet> {
        if self.map.is_identity() {
            return self.dimms.iter().map(|d| d.state.poison.clone()).collect();
        }
        let mut stored = vec![PoisonSet::new(); self.dimms.len()];
        for (index, dimm) in self.dimms.iter().enumerate() {
            for (offset, len) in dimm.state.poison.iter() {
                for (spa, piece) in self.map.spa_pieces(index, offset, len) {
                    if let Some((file, at)) = self.map.storage_of(spa) {
                        // Only fails past MAX_RANGES, more holes than any VM has memory slots for.
                        let _ = stored[file].insert(at, piece);
                    }
                }
            }
        }
        stored
    }

    pub fn set_ars_rate(&mut self, bytes_per_sec: u64) -> Result<(), HostPoisonError> {
        if bytes_per_sec == 0 {
            return Err(HostPoisonError::ZeroRate);
        }
        self.config.ars.scrub_rate = bytes_per_sec;
        Ok(())
    }

    /// Queues Notify(root, 0x81) so the guest rescans (Linux starts an ARS).
    pub fn notify_new_errors(&mut self) {
        self.notifications.push(Notification { target: NotifyTarget::Root, code: NOTIFY_ROOT_NEW_ERRORS });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GIB;
    use crate::{PlatformConfig, PlatformLayout};

    fn platform() -> NvdimmPlatform {
        NvdimmPlatform::example()
    }

    #[test]
    fn add_clear_and_list() {
        let mut p = platform();
        p.add_poison(1, 4096, 512).unwrap();
        p.add_poison(1, 4096 + 512, 512).unwrap();
        assert_eq!(p.poison_ranges(1).unwrap(), vec![(4096, 1024)]);
        assert_eq!(p.clear_poison(1, 4096, 256).unwrap(), 256);
        assert_eq!(p.clear_poison(1, 0, 4096).unwrap(), 0);
        assert_eq!(p.poison_ranges(1).unwrap(), vec![(4096 + 256, 768)]);
        assert!(p.poison_ranges(0).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_problem_and_change_nothing() {
        let mut p = platform();
        p.add_poison(0, 0, 256).unwrap();
        let err = p.add_poison(2, 0, 1).unwrap_err();
        assert_eq!(err, HostPoisonError::NoSuchDimm { index: 2, count: 2 });
        assert!(err.to_string().contains("2 nvdimms"));
        assert_eq!(
            p.add_poison(0, GIB - 1, 2),
            Err(HostPoisonError::OutsideDimm { index: 0, offset: GIB - 1, len: 2, size: GIB })
        );
        assert!(matches!(p.add_poison(0, u64::MAX, 2), Err(HostPoisonError::OutsideDimm { .. })));
        assert!(matches!(
            p.clear_poison(0, 0, 0),
            Err(HostPoisonError::Poison { index: 0, source: PoisonError::ZeroLength { .. } })
        ));
        assert!(p.poison_ranges(5).is_err());
        assert_eq!(p.add_poison_spa(5 << 30, 0), Err(HostPoisonError::OutsideWindows { spa: 5 << 30, len: 0 }));
        assert!(p.add_poison_spa((5 << 30) - 1, 2).is_err());
        assert_eq!(p.set_ars_rate(0), Err(HostPoisonError::ZeroRate));
        assert_eq!(p.poison_ranges(0).unwrap(), vec![(0, 256)]);
        assert!(p.poison_ranges(1).unwrap().is_empty());
        assert_eq!(p.config().ars.scrub_rate, crate::config::ArsConfig::default().scrub_rate);
    }

    #[test]
    fn changes_are_saved_and_undone_when_saving_fails() {
        let dir = tempfile::tempdir().unwrap();
        let config = PlatformConfig::default_in(dir.path());
        let layout = PlatformLayout::example(&config);
        let dimm_config = crate::DimmConfig { size: 16 << 20, ..config.dimms[0].clone() };
        std::fs::File::create(&dimm_config.path).unwrap().set_len(16 << 20).unwrap();
        let mut dimm = Dimm::open(dimm_config.clone(), layout.dimms[0].clone()).unwrap();
        change_poison(&mut dimm, 0, &[PoisonOp::Add { offset: 4096, len: 512 }]).unwrap();
        drop(dimm);
        let mut dimm = Dimm::open(dimm_config.clone(), layout.dimms[0].clone()).unwrap();
        assert_eq!(dimm.state.poison.iter().collect::<Vec<_>>(), vec![(4096, 512)]);
        // A directory where the journal goes makes the append fail, even as root.
        let journal = crate::persist::SidecarPaths::for_backing_file(&dimm_config.path).poison_journal;
        let _ = std::fs::remove_file(&journal);
        std::fs::create_dir_all(journal.join("blocker")).unwrap();
        let batch = [
            PoisonOp::Add { offset: 0, len: 256 },
            PoisonOp::Clear { offset: 4096, len: 100 },
            PoisonOp::Add { offset: 4000, len: 4000 },
        ];
        let err = change_poison(&mut dimm, 0, &batch).unwrap_err();
        assert!(matches!(err, HostPoisonError::Persist { index: 0, .. }), "{err}");
        assert_eq!(dimm.state.poison.iter().collect::<Vec<_>>(), vec![(4096, 512)]);
        assert_eq!(dimm.state.poison.total_bytes(), 512);
        // An unchanged set is not saved, so it cannot fail.
        assert_eq!(change_poison(&mut dimm, 0, &[PoisonOp::Clear { offset: 0, len: 256 }]), Ok(0));
    }

    #[test]
    fn a_batch_with_a_bad_op_changes_nothing() {
        let mut p = platform();
        p.add_poison(0, 1 << 20, 4096).unwrap();
        let before = p.poison_ranges(0).unwrap();
        let err = p.add_poison_ranges(0, &[(0, 512), (8192, 0)]).unwrap_err();
        assert!(matches!(err, HostPoisonError::Poison { .. }), "{err}");
        let ops = [
            PoisonOp::Add { offset: 0, len: 512 },
            PoisonOp::Clear { offset: (1 << 20) + 1024, len: 1024 },
            PoisonOp::Add { offset: u64::MAX, len: 2 },
        ];
        assert!(change_poison(&mut p.dimms[0], 0, &ops).is_err());
        assert_eq!(p.poison_ranges(0).unwrap(), before);
        assert_eq!(p.dimms[0].state.poison.total_bytes(), 4096);
    }

    /// Thousands of single adds (several journal compactions), then a crash (no clean
    /// close): reopening gives exactly the set that was acknowledged, and the journal
    /// never held much more than the poison list.
    #[test]
    fn journalled_adds_survive_a_crash_across_compactions() {
        let dir = tempfile::tempdir().unwrap();
        let config = PlatformConfig::default_in(dir.path());
        let layout = PlatformLayout::example(&config);
        let dimm_config = crate::DimmConfig { size: 64 << 20, ..config.dimms[0].clone() };
        std::fs::File::create(&dimm_config.path).unwrap().set_len(64 << 20).unwrap();
        let paths = crate::persist::SidecarPaths::for_backing_file(&dimm_config.path);
        let mut dimm = Dimm::open(dimm_config.clone(), layout.dimms[0].clone()).unwrap();
        let mut model = PoisonSet::new();
        for i in 0..5000u64 {
            let op = match i % 7 {
                3 => PoisonOp::Clear { offset: (i - 2) * 1024 + 100, len: 50 },
                _ => PoisonOp::Add { offset: i * 1024, len: 512 },
            };
            change_poison(&mut dimm, 0, &[op]).unwrap();
            op.apply(&mut model).unwrap();
            let journal_records = std::fs::metadata(&paths.poison_journal).map_or(0, |m| m.len() / 32) / 2;
            assert!(journal_records <= 1025.max(model.len() as u64 + 1), "journal of {journal_records} at {i}");
        }
        drop(dimm); // a crash: no close_clean
        let dimm = Dimm::open(dimm_config, layout.dimms[0].clone()).unwrap();
        assert_eq!(dimm.state.poison, model);
    }

    #[test]
    fn spa_poison_lands_on_the_right_dimm() {
        let mut p = platform();
        assert_eq!(p.add_poison_spa((5 << 30) + 0x2000, 100), Ok(vec![DimmSpan { dimm: 1, offset: 0x2000, len: 100 }]));
        assert_eq!(p.poison_ranges(1).unwrap(), vec![(0x2000, 100)]);
        assert!(p.take_notifications().is_empty());
        p.notify_new_errors();
        assert_eq!(p.take_notifications().len(), 1);
    }
}
