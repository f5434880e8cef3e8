//! Opening a platform whose DIMMs keep their state on disk (labels and SMART
//! sidecars next to each backing file), as the VMM runs it.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::clock::Clock;
use crate::config::{ConfigError, PlatformConfig};
use crate::dimm::{Dimm, DimmError};
use crate::layout::{LayoutError, PlatformLayout};
use crate::platform::NvdimmPlatform;

#[derive(Debug, Error)]
pub enum PlatformOpenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("memory layout: {0}")]
    Layout(#[from] LayoutError),
    #[error("--nvdimm #{index} ({path}): {source}")]
    Dimm { index: usize, path: String, source: DimmError },
    #[error("--nvdimm #{index}: backing file {path} is the same file as nvdimm #{other}'s ({other_path}); give each DIMM its own file")]
    SameFile { index: usize, path: PathBuf, other: usize, other_path: PathBuf },
    #[error("putting the DIMMs' state back after a failed start: {failures}")]
    Undo { failures: String },
}

/// Closing cleanly failed for one DIMM or more (each named); the others were closed.
#[derive(Debug, Error)]
#[error("closing the DIMMs cleanly failed: {failures}")]
pub struct PlatformCloseError {
    pub failures: String,
}

impl NvdimmPlatform {
    /// Opens every DIMM with [`Dimm::open`]: backing file sizes are checked without
    /// reading them, sidecars are loaded, and an unclean previous run is counted.
    pub fn open(
        config: PlatformConfig,
        layout: PlatformLayout,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PlatformOpenError> {
        config.validate()?;
        layout.validate(&config)?;
        same_files(&config)?;
        let failed = |index: usize, source| PlatformOpenError::Dimm {
            index,
            path: config.dimms[index].path.display().to_string(),
            source,
        };
        // Every DIMM locked and read before any is written: a start refused because of
        // DIMM 3 leaves DIMMs 0..3 exactly as they were.
        let mut dimms = Vec::with_capacity(config.dimms.len());
        for (index, (c, p)) in config.dimms.iter().zip(&layout.dimms).enumerate() {
            dimms.push(Dimm::load(c.clone(), p.clone()).map_err(|e| failed(index, e))?);
        }
        for index in 0..dimms.len() {
            if let Err(e) = dimms[index].save_state() {
                for done in &mut dimms[..index] {
                    // Best effort: the error reported is the one that stopped the start.
                    let _ = done.undo_open();
                }
                return Err(failed(index, e));
            }
        }
        Ok(NvdimmPlatform::assemble(config, layout, dimms, clock))
    }

    /// Puts every DIMM's state sidecar back as it was before [`NvdimmPlatform::open`],
    /// for a VM that failed to start (QEMU refused to run, the API socket could not be
    /// served): no `running` marker left behind, no shutdown counted. Tries every DIMM.
    pub fn undo_open(&mut self) -> Result<(), PlatformOpenError> {
        let mut failures = Vec::new();
        for index in 0..self.dimms().len() {
            if let Some(dimm) = self.dimm_mut(index) {
                if let Err(e) = dimm.undo_open() {
                    failures.push(format!("nvdimm #{index}: {e}"));
                }
            }
        }
        match failures.is_empty() {
            true => Ok(()),
            false => Err(PlatformOpenError::Undo { failures: failures.join("; ") }),
        }
    }
}

impl NvdimmPlatform {
    /// Records a clean stop on every DIMM ([`Dimm::close_clean`]) once the guest has
    /// stopped and its memory is unmapped. Every DIMM is closed even when one fails, so
    /// a healthy one is not left marked running; the failures are named together.
    pub fn close_clean_all(&mut self) -> Result<(), PlatformCloseError> {
        let failures: Vec<String> = (0..self.dimms().len())
            .filter_map(|index| {
                let dimm = self.dimm_mut(index)?;
                dimm.close_clean().err().map(|e| format!("nvdimm #{index}: {e}"))
            })
            .collect();
        match failures.is_empty() {
            true => Ok(()),
            false => Err(PlatformCloseError { failures: failures.join("; ") }),
        }
    }
}

impl PlatformOpenError {
    /// Whether the options are at fault (a missing, short or unwritable backing file, a
    /// bad label sidecar size, a file given twice) rather than the host (an I/O error,
    /// a full disk, a file another VM is using): `vnvdimm run` exits 2 for the first
    /// and 4 for the second (docs/running.md).
    pub fn is_usage(&self) -> bool {
        use crate::backing_lock::LockError;
        match self {
            PlatformOpenError::Config(_) | PlatformOpenError::Layout(_) | PlatformOpenError::SameFile { .. } => true,
            PlatformOpenError::Undo { .. } => false,
            PlatformOpenError::Dimm { source, .. } => match source {
                DimmError::BackingFile { source, .. } | DimmError::Lock(LockError::Open { source, .. }) => {
                    matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied)
                }
                DimmError::BackingTooSmall { .. }
                | DimmError::BackingNotFile { .. }
                | DimmError::LabelSidecarSize { .. }
                | DimmError::Lock(LockError::NotWritable { .. }) => true,
                _ => false,
            },
        }
    }
}

/// Refuses one file given as two DIMMs under different names (`d.img` and `./d.img`, a
/// symlink, a hard link): the config's check compares the text only. Files that cannot
/// be examined are left to `Dimm::open`, which says what is wrong with them.
fn same_files(config: &PlatformConfig) -> Result<(), PlatformOpenError> {
    let mut seen: Vec<((u64, u64), usize)> = Vec::new();
    for (index, dimm) in config.dimms.iter().enumerate() {
        let Ok(meta) = std::fs::metadata(&dimm.path) else {
            continue;
        };
        let id = (meta.dev(), meta.ino());
        if let Some(&(_, other)) = seen.iter().find(|(seen_id, _)| *seen_id == id) {
            return Err(PlatformOpenError::SameFile {
                index,
                path: dimm.path.clone(),
                other,
                other_path: config.dimms[other].path.clone(),
            });
        }
        seen.push((id, index));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn platform_config(dir: &std::path::Path, paths: [PathBuf; 2]) -> PlatformConfig {
        let mut config = PlatformConfig::default_in(dir);
        for (dimm, path) in config.dimms.iter_mut().zip(paths) {
            dimm.path = path;
            dimm.size = 16 << 20;
        }
        config
    }

    fn open(config: PlatformConfig) -> Result<NvdimmPlatform, PlatformOpenError> {
        let layout = PlatformLayout::example(&config);
        NvdimmPlatform::open(config, layout, Arc::new(SystemClock::new()))
    }

    #[test]
    fn one_file_under_two_names_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.img");
        std::fs::File::create(&file).unwrap().set_len(16 << 20).unwrap();
        let link = dir.path().join("link.img");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let hard = dir.path().join("hard.img");
        std::fs::hard_link(&file, &hard).unwrap();
        // `d.img` and `./d.img`: the config's own check already sees these as one path.
        let dotted = dir.path().join(".").join("d.img");
        let err = open(platform_config(dir.path(), [file.clone(), dotted])).err().unwrap();
        assert!(err.to_string().contains("used twice"), "{err}");
        for other in [link, hard] {
            let err = open(platform_config(dir.path(), [file.clone(), other.clone()])).err().unwrap();
            assert!(matches!(err, PlatformOpenError::SameFile { index: 1, other: 0, .. }), "{err}");
            assert!(err.to_string().contains(&other.display().to_string()), "{err}");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().contains(".state")), "a sidecar was written: {names:?}");
    }

    #[test]
    fn a_file_another_platform_has_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = [dir.path().join("a.img"), dir.path().join("b.img")];
        for f in &files {
            std::fs::File::create(f).unwrap().set_len(16 << 20).unwrap();
        }
        let first = open(platform_config(dir.path(), files.clone())).unwrap();
        let alias = dir.path().join("alias.img");
        std::fs::hard_link(&files[1], &alias).unwrap();
        let other = dir.path().join("c.img");
        std::fs::File::create(&other).unwrap().set_len(16 << 20).unwrap();
        let err = open(platform_config(dir.path(), [other.clone(), alias])).err().unwrap();
        assert!(err.to_string().contains("is in use by"), "{err}");
        assert!(!err.is_usage(), "a busy file is the host's problem, not the options'");
        // DIMM 0 of the refused platform opened fine, but nothing was written for it.
        assert!(!state_path(&other).exists(), "the refused start wrote DIMM 0's state");
        drop(first);
    }

    fn state_path(backing: &std::path::Path) -> PathBuf {
        crate::persist::SidecarPaths::for_backing_file(backing).state
    }

    #[test]
    fn undo_open_leaves_the_files_as_before_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let files = [dir.path().join("a.img"), dir.path().join("b.img")];
        for f in &files {
            std::fs::File::create(f).unwrap().set_len(16 << 20).unwrap();
        }
        // A fresh pair: undo removes the state files the open created.
        let mut p = open(platform_config(dir.path(), files.clone())).unwrap();
        assert!(state_path(&files[0]).exists());
        p.undo_open().unwrap();
        drop(p);
        assert!(files.iter().all(|f| !state_path(f).exists()));
        // A pair whose last run crashed (left running): the open counts it, the undo
        // puts the bytes back, so the next real start counts it once.
        drop(open(platform_config(dir.path(), files.clone())).unwrap()); // no close_clean: a crash
        let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(state_path(f)).unwrap()).collect();
        let mut p = open(platform_config(dir.path(), files.clone())).unwrap();
        assert_eq!(p.dimms()[0].state.health.unsafe_shutdown_count, 1);
        p.undo_open().unwrap();
        drop(p);
        let after: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(state_path(f)).unwrap()).collect();
        assert_eq!(after, before);
        let p = open(platform_config(dir.path(), files.clone())).unwrap();
        assert_eq!(p.dimms()[0].state.health.unsafe_shutdown_count, 1);
    }

    #[test]
    fn close_clean_all_counts_no_unsafe_shutdown_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let files = [dir.path().join("a.img"), dir.path().join("b.img")];
        for f in &files {
            std::fs::File::create(f).unwrap().set_len(16 << 20).unwrap();
        }
        let mut p = open(platform_config(dir.path(), files.clone())).unwrap();
        p.close_clean_all().unwrap();
        drop(p);
        let p = open(platform_config(dir.path(), files.clone())).unwrap();
        for dimm in p.dimms() {
            assert_eq!(dimm.state.health.unsafe_shutdown_count, 0);
        }
        drop(p); // not closed: a crash, counted by the next start on every DIMM
        let p = open(platform_config(dir.path(), files.clone())).unwrap();
        for dimm in p.dimms() {
            assert_eq!(dimm.state.health.unsafe_shutdown_count, 1);
        }
    }

    #[test]
    fn missing_short_and_unwritable_files_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.img");
        std::fs::File::create(&short).unwrap().set_len(4096).unwrap();
        for path in [dir.path().join("missing.img"), short] {
            let err = open(platform_config(dir.path(), [path, dir.path().join("other.img")])).err().unwrap();
            assert!(err.is_usage(), "{err}");
        }
    }
}
