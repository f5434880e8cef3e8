//! The TCG runner's work directory (RAM files, tables, QMP and agent sockets). It is
//! removed when the run ends, but not when vnvdimm is killed; such leftovers piled up in
//! /tmp (issue 10, point 11). The directory's name carries the owner's pid
//! (`vnvdimm-tcg-<pid>-XXXXXX`), so each start removes those whose owner is gone.

use std::path::Path;

const PREFIX: &str = "vnvdimm-tcg-";

/// Removes stale work directories, then creates this run's.
pub fn create() -> std::io::Result<tempfile::TempDir> {
    let base = std::env::temp_dir();
    remove_stale(&base);
    tempfile::Builder::new().prefix(&format!("{PREFIX}{}-", std::process::id())).tempdir_in(base)
}

/// Removes `vnvdimm-tcg-<pid>-*` directories in `base` whose pid is not running.
/// Best effort: a directory that cannot be removed is left for the next start.
pub fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner(&name.to_string_lossy()) else {
            continue;
        };
        if !alive(pid) && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid in `vnvdimm-tcg-<pid>-<random>`; `None` for any other name (including the
/// pid-less names of older versions, which cannot be told from a running one).
fn owner(name: &str) -> Option<u32> {
    let (pid, random) = name.strip_prefix(PREFIX)?.split_once('-')?;
    (!random.is_empty()).then_some(())?;
    pid.parse().ok()
}

fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    // EPERM: it exists, owned by someone else.
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_owner() {
        assert_eq!(owner("vnvdimm-tcg-4242-abc123"), Some(4242));
        for other in ["vnvdimm-tcg-abc123", "vnvdimm-tcg-42-", "something-else", "vnvdimm-tcg-x-y"] {
            assert_eq!(owner(other), None, "{other}");
        }
    }

    #[test]
    fn only_directories_of_dead_owners_are_removed() {
        let base = tempfile::tempdir().unwrap();
        // A pid that cannot be running: above the kernel's pid_max limit (2^22).
        let dead = base.path().join("vnvdimm-tcg-99999999-aaaaaa");
        let ours = base.path().join(format!("vnvdimm-tcg-{}-bbbbbb", std::process::id()));
        let old_style = base.path().join("vnvdimm-tcg-cccccc");
        for d in [&dead, &ours, &old_style] {
            std::fs::create_dir_all(d.join("inside")).unwrap();
        }
        remove_stale(base.path());
        assert!(!dead.exists());
        assert!(ours.exists() && old_style.exists());
    }
}
