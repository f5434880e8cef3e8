//! One whole KVM run as `vnvdimm run --backend kvm` makes it: open the DIMMs, build the
//! VM, let a loader place the guest (Linux: `linux_boot`), serve the control API while
//! the vCPU runs, and close the DIMMs cleanly when the guest stopped.
//!
//! A start that fails after the DIMMs were opened puts their state files back as they
//! were (no `running` marker, no shutdown counted: issue 10, point 6), and while the guest
//! runs, a watch asks the backing files for failed write-back, so guest stores that the
//! host cannot keep end the run with the file named instead of being lost (point 7).

use nvdimm_model::sync::LockUnpoisoned;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nvdimm_model::clock::SystemClock;
use nvdimm_model::platform_open::PlatformOpenError;
use nvdimm_model::{writeback_watch, NvdimmPlatform};
use thiserror::Error;
use vnvdimm_control::{ApiServer, ApiServerHandle, Backend as _};
use vnvdimm_machine::Machine;

use crate::backend::KvmBackend;
use crate::outcome::GuestOutcome;
use crate::vm::{Vm, VmError};

#[derive(Debug, Error)]
pub enum LaunchError {
    #[error(transparent)]
    Open(#[from] PlatformOpenError),
    #[error("{0}")]
    Vm(VmError),
    #[error("loading the guest: {0}")]
    Load(String),
    #[error(transparent)]
    Api(vnvdimm_control::ApiError),
    #[error("{error}{diagnosis}")]
    Run { error: VmError, diagnosis: String },
    #[error("the guest stopped ({outcome}), but closing the DIMMs cleanly failed: {message}")]
    Close { outcome: GuestOutcome, message: String },
    /// A start failed and putting the DIMMs' state back failed too.
    #[error("{start}; {undo}")]
    Undo { start: Box<LaunchError>, undo: PlatformOpenError },
}

/// Which part of the user's request a [`LaunchError`] is about, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The options cannot work (a bad backing file, a guest that does not fit, an API
    /// socket path in use): nothing ran.
    Usage,
    /// The host could not start what the options asked for (KVM refused, I/O failed).
    StartHost,
    /// The guest ran and something failed during or after the run.
    Run,
}

impl LaunchError {
    pub fn kind(&self) -> FailureKind {
        match self {
            LaunchError::Open(e) if e.is_usage() => FailureKind::Usage,
            LaunchError::Open(_) | LaunchError::Vm(_) => FailureKind::StartHost,
            LaunchError::Load(_) | LaunchError::Api(_) => FailureKind::Usage,
            LaunchError::Run { .. } | LaunchError::Close { .. } => FailureKind::Run,
            LaunchError::Undo { start, .. } => start.kind(),
        }
    }
}

/// Runs `machine` until the guest stops; `load` sets up guest memory and vCPU 0.
pub fn run(
    machine: Machine,
    console: Box<dyn Write + Send>,
    api_socket: Option<&Path>,
    load: impl FnOnce(&mut Vm) -> Result<(), String>,
    running: impl FnOnce(Arc<KvmBackend>, &crate::host_io::HostIo),
) -> Result<GuestOutcome, LaunchError> {
    // Opening is all-or-nothing on its own: every DIMM is locked and read before any
    // state file is written.
    let platform = Arc::new(Mutex::new(NvdimmPlatform::open(
        machine.platform.clone(),
        machine.memory_map.layout.clone(),
        Arc::new(SystemClock::new()),
    )?));
    let (mut vm, backend, api) = match start(machine, &platform, console, api_socket, load) {
        Ok(started) => started,
        Err(e) => return Err(undo_start(&platform, e)),
    };
    running(backend.clone(), &vm.host_io);
    let watch = writeback_watch::power_off_on_loss(&platform, move || {
        let _ = backend.power_off();
    });
    let outcome = crate::vcpu::run_loop::run(&mut vm, None);
    // A guest command still waiting on the agent sees the line close (409, not a timeout).
    vm.agent.hang_up();
    // Before closing: a check racing the final one could take the error away from it.
    drop(watch);
    drop(api);
    let mut platform = platform.lock_unpoisoned();
    let outcome = outcome.map_err(|error| LaunchError::Run { diagnosis: diagnose_run_failure(&error, &platform), error })?;
    // The VMM survived, so every guest store is in the backing files' page cache: a
    // clean shutdown from the DIMMs' point of view, unless write-back failed. Every DIMM
    // is closed even when one fails.
    let failures: Vec<String> = (0..platform.dimms().len())
        .filter_map(|index| {
            let dimm = platform.dimm_mut(index)?;
            dimm.close_clean().err().map(|e| format!("DIMM {index}: {e}"))
        })
        .collect();
    match failures.is_empty() {
        true => Ok(outcome),
        false => Err(LaunchError::Close { outcome, message: failures.join("; ") }),
    }
}

/// Everything between opening the DIMMs and running the guest.
fn start(
    machine: Machine,
    platform: &Arc<Mutex<NvdimmPlatform>>,
    console: Box<dyn Write + Send>,
    api_socket: Option<&Path>,
    load: impl FnOnce(&mut Vm) -> Result<(), String>,
) -> Result<(Vm, Arc<KvmBackend>, Option<ApiServerHandle>), LaunchError> {
    let mut vm = Vm::with_shared_platform(machine, platform.clone(), console).map_err(LaunchError::Vm)?;
    load(&mut vm).map_err(LaunchError::Load)?;
    // A Linux guest starts its other vCPUs with INIT/SIPI through the in-kernel APIC.
    vm.run_aps = true;
    // One backend for the API and for the caller (e.g. power-off on a stop signal).
    let backend = Arc::new(KvmBackend::new(&vm));
    let api = match api_socket {
        Some(path) => Some(ApiServer::start(path, backend.clone()).map_err(LaunchError::Api)?),
        None => None,
    };
    Ok((vm, backend, api))
}

fn undo_start(platform: &Arc<Mutex<NvdimmPlatform>>, start: LaunchError) -> LaunchError {
    let mut platform = platform.lock_unpoisoned();
    match platform.undo_open() {
        Ok(()) => start,
        Err(undo) => LaunchError::Undo { start: Box::new(start), undo },
    }
}


/// KVM_RUN fails with EFAULT when the host cannot give the guest a page of a backing
/// file (a sparse file on a full file system: the page cannot be allocated). KVM does
/// not say which address, so every writable DIMM's file system is asked for room.
fn diagnose_run_failure(error: &VmError, platform: &NvdimmPlatform) -> String {
    let VmError::Ioctl { source, .. } = error else {
        return String::new();
    };
    if source.errno() != libc::EFAULT {
        return String::new();
    }
    let full: Vec<String> = platform
        .dimms()
        .iter()
        .filter(|d| !d.config.readonly)
        .filter(|d| d.backing_file().is_some_and(|f| no_room_left(f)))
        .map(|d| d.config.path.display().to_string())
        .collect();
    match full.is_empty() {
        true => String::new(),
        false => format!(
            " (the file system of backing file {} has no room left, so a guest store to a part of the sparse file \
             not yet allocated could not be kept; free space, or use prealloc=on to allocate the file at start)",
            full.join(", ")
        ),
    }
}

fn no_room_left(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: fstatvfs writes only into the zeroed struct we pass, for a valid fd.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatvfs(file.as_raw_fd(), &mut stats) };
    rc == 0 && stats.f_bavail == 0
}
