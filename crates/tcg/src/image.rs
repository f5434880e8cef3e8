//! The guest kernel and initramfs built by `images/build-guest.sh` (Debian packages only).

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("cannot run {script}: {source}")]
    Spawn { script: PathBuf, source: std::io::Error },
    #[error("{script} failed ({status}); its messages:\n{stderr}")]
    Failed {
        script: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("guest image directory {dir} lacks {file}; rebuild it with images/build-guest.sh")]
    Missing { dir: PathBuf, file: &'static str },
}

/// A built guest: files in one cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    pub dir: PathBuf,
    /// ELF kernel, booted through its PVH entry (faster than the bzImage under TCG).
    pub vmlinux: PathBuf,
    pub bz_image: PathBuf,
    /// gzip'd newc initramfs with busybox, kmod, ndctl, daxctl and the NVDIMM modules.
    pub initramfs: PathBuf,
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub kernel_release: String,
}

impl GuestImage {
    /// The recipe directory in this source tree.
    pub fn recipe_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images")
    }

    /// Uses an already built image directory.
    pub fn from_dir(dir: &Path) -> Result<Self, ImageError> {
        let need = |file: &'static str| {
            let p = dir.join(file);
            if p.is_file() {
                Ok(p)
            } else {
                Err(ImageError::Missing {
                    dir: dir.to_path_buf(),
                    file,
                })
            }
        };
        let release = need("kernel-release")?;
        let kernel_release = std::fs::read_to_string(&release)
            .map_err(|_| ImageError::Missing {
                dir: dir.to_path_buf(),
                file: "kernel-release",
            })?
            .trim()
            .to_string();
        Ok(GuestImage {
            dir: dir.to_path_buf(),
            vmlinux: need("vmlinux")?,
            bz_image: need("bzImage")?,
            initramfs: need("initramfs.cpio.gz")?,
            kernel_release,
        })
    }

    /// `$VNV_GUEST_IMAGE` if set, else runs the recipe (instant when cached).
    pub fn locate_or_build() -> Result<Self, ImageError> {
        if let Some(dir) = std::env::var_os("VNV_GUEST_IMAGE") {
            return Self::from_dir(Path::new(&dir));
        }
        Self::build(&Self::recipe_dir().join("build-guest.sh"), None)
    }

    /// The modules the image's userspace loads, by name, as the recipe lists them
    /// (`wanted-modules`, one a line; their dependencies are not listed): what
    /// `vnvdimm run --modules` takes from another kernel's modules.
    pub fn wanted_modules(&self) -> Result<Vec<String>, ImageError> {
        let text = std::fs::read_to_string(self.dir.join("wanted-modules"))
            .map_err(|_| ImageError::Missing { dir: self.dir.clone(), file: "wanted-modules" })?;
        Ok(text.split_whitespace().map(str::to_string).collect())
    }

    /// Runs `script [cache_dir]` and uses the directory it prints last.
    pub fn build(script: &Path, cache_dir: Option<&Path>) -> Result<Self, ImageError> {
        let mut cmd = Command::new("sh");
        cmd.arg(script);
        if let Some(cache) = cache_dir {
            cmd.arg(cache);
        }
        let out = cmd.output().map_err(|source| ImageError::Spawn {
            script: script.to_path_buf(),
            source,
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| PathBuf::from(l.trim()));
        match dir {
            Some(dir) if out.status.success() => Self::from_dir(&dir),
            _ => Err(ImageError::Failed {
                script: script.to_path_buf(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }),
        }
    }
}
