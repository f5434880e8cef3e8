//! What QEMU needs before it starts: the ACPI tables from the device model, and the
//! guest RAM below 4 GiB as a memfd QEMU inherits.

use nvdimm_model::sync::LockUnpoisoned;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nvdimm_model::NvdimmPlatform;
use thiserror::Error;

use crate::event_zone::build_event_ssdt;
use crate::layout::TcgLayout;
use crate::poller::PollerError;
use crate::ram::{RamError, RamFile};

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("{what} is empty: the device model produced no bytes (is nvdimm_model::{what} still a stub?)")]
    EmptyTable { what: &'static str },
    #[error("the platform's layout differs from the TCG layout; build the platform from TcgLayout::platform_layout()")]
    LayoutMismatch,
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot start QEMU ({qemu}): {source}. The TCG backend needs qemu-system-x86_64 \
         (Debian: apt-get install qemu-system-x86) or VNV_QEMU=/path/to/qemu-system-x86_64"
    )]
    QemuMissing { qemu: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Ram(#[from] RamError),
    #[error(transparent)]
    Poller(#[from] PollerError),
}

pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SetupError {
    let path = path.to_path_buf();
    move |source| SetupError::Io { what, path, source }
}

/// Writes the NFIT, our NVDIMM SSDT and the event SSDT ([`crate::event_zone`]) into
/// `dir` and returns their paths, in the order QEMU should add them.
pub fn write_tables(
    platform: &Mutex<NvdimmPlatform>,
    layout: &TcgLayout,
    dir: &Path,
) -> Result<Vec<PathBuf>, SetupError> {
    let (nfit, ssdt) = {
        let platform = platform.lock_unpoisoned();
        if *platform.layout() != layout.platform_layout() {
            return Err(SetupError::LayoutMismatch);
        }
        let pl = platform.layout();
        (
            nvdimm_model::nfit::build(platform.config(), pl),
            nvdimm_model::aml::build_ssdt_with(
                platform.config(),
                pl,
                &nvdimm_model::aml::SsdtOptions {
                    kick_port: Some(crate::qemu::DSM_KICK_PORT),
                    ..Default::default()
                },
            ),
        )
    };
    if nfit.is_empty() {
        return Err(SetupError::EmptyTable { what: "nfit::build" });
    }
    if ssdt.is_empty() {
        return Err(SetupError::EmptyTable { what: "aml::build_ssdt" });
    }
    let mut paths = Vec::new();
    for (name, bytes) in [("NFIT.dat", nfit), ("SSDT.dat", ssdt), ("SSDT-event.dat", build_event_ssdt())] {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).map_err(io("writing ACPI table", &path))?;
        paths.push(path);
    }
    Ok(paths)
}

/// Creates the guest RAM of `layout` (node 0, everything below 4 GiB) as a memfd (see
/// `ram.rs`), and returns it with the descriptors QEMU must inherit.
pub fn create_ram_file(layout: &TcgLayout) -> Result<(RamFile, Vec<RawFd>), SetupError> {
    let ram = RamFile::create_memfd("vnvdimm-guest-ram", layout.below_4g)?;
    let fds = ram.inherited_fd().into_iter().collect();
    Ok((ram, fds))
}
