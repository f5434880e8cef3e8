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
        let mut dimms = Vec::with_capacity(config.dimms.len());
        for (index, (c, p)) in config.dimms.iter().zip(&layout.dimms).enumerate() {
            let dimm = Dimm::open(c.clone(), p.clone()).map_err(|source| PlatformOpenError::Dimm {
                index,
                path: c.path.display().to_string(),
                source,
            })?;
            dimms.push(dimm);
        }
        Ok(NvdimmPlatform::assemble(config, layout, dimms, clock))
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
        let err = open(platform_config(dir.path(), [other, alias])).err().unwrap();
        assert!(err.to_string().contains("is in use by"), "{err}");
        drop(first);
    }
}
