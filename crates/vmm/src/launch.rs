//! One whole KVM run as `vnvdimm run --backend kvm` makes it: open the DIMMs, then the
//! steps every backend shares (`vnvdimm_control::lifecycle`): build the VM and let a
//! loader place the guest (Linux: `linux_boot`), serve the control API, run the vCPUs
//! until the guest stops, close the DIMMs cleanly.

use nvdimm_model::sync::LockUnpoisoned;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nvdimm_model::clock::SystemClock;
use nvdimm_model::platform_open::PlatformOpenError;
use nvdimm_model::NvdimmPlatform;
use thiserror::Error;
use vnvdimm_control::lifecycle::{self, LifecycleError, StartedGuest};
use vnvdimm_control::Backend;
use vnvdimm_machine::Machine;

use crate::backend::KvmBackend;
use crate::outcome::GuestOutcome;
use crate::vm::{Vm, VmBuilder, VmError};

#[derive(Debug, Error)]
pub enum LaunchError {
    #[error(transparent)]
    Open(#[from] PlatformOpenError),
    #[error(transparent)]
    Steps(#[from] LifecycleError<KvmStepError>),
}

/// Why a loader could not place the guest (its own error, kept for `Error::source`).
pub type LoadError = Box<dyn std::error::Error + Send + Sync>;

/// What can fail in the KVM backend's own steps of a run.
#[derive(Debug, Error)]
pub enum KvmStepError {
    #[error("{0}")]
    Vm(VmError),
    #[error("loading the guest: {0}")]
    Load(#[source] LoadError),
    #[error("{error}{diagnosis}")]
    Run { error: VmError, diagnosis: String },
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
            LaunchError::Open(_) => FailureKind::StartHost,
            LaunchError::Steps(LifecycleError::Api(_)) => FailureKind::Usage,
            LaunchError::Steps(LifecycleError::Close { .. }) => FailureKind::Run,
            LaunchError::Steps(steps) => match steps.backend_error() {
                Some(KvmStepError::Vm(_)) => FailureKind::StartHost,
                Some(KvmStepError::Load(_)) => FailureKind::Usage,
                Some(KvmStepError::Run { .. }) | None => FailureKind::Run,
            },
        }
    }
}

/// The VM once built and loaded, with the backend the API and the stop paths use.
struct StartedVm {
    vm: Vm,
    backend: Arc<KvmBackend>,
}

impl StartedGuest for StartedVm {
    fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    fn host_io(&self) -> &crate::host_io::HostIo {
        &self.vm.host_io
    }
}

/// Runs `machine` until the guest stops; `load` sets up guest memory and vCPU 0;
/// `running` sees the backend and the VM's host I/O loop once the guest can be served.
pub fn run(
    machine: Machine,
    console: Box<dyn Write + Send>,
    api_socket: Option<&Path>,
    load: impl FnOnce(&mut Vm) -> Result<(), LoadError>,
    running: impl FnOnce(Arc<KvmBackend>, &crate::host_io::HostIo),
) -> Result<GuestOutcome, LaunchError> {
    // Opening is all-or-nothing on its own: every DIMM is locked and read before any
    // state file is written.
    let platform = Arc::new(Mutex::new(NvdimmPlatform::open(
        machine.platform.clone(),
        machine.memory_map.layout.clone(),
        Arc::new(SystemClock::new()),
    )?));
    let outcome = lifecycle::run(
        &platform,
        api_socket,
        || {
            // A Linux guest starts its other vCPUs with INIT/SIPI through the in-kernel APIC.
            let mut vm = VmBuilder::new(machine, platform.clone())
                .console(console)
                .run_aps(true)
                .build()
                .map_err(KvmStepError::Vm)?;
            load(&mut vm).map_err(KvmStepError::Load)?;
            let backend = Arc::new(KvmBackend::new(&vm));
            Ok(StartedVm { vm, backend })
        },
        |started| {
            running(started.backend.clone(), &started.vm.host_io);
            Ok(())
        },
        |StartedVm { mut vm, .. }| {
            let outcome = crate::vcpu::run_loop::run(&mut vm);
            // A guest command still waiting on the agent sees the line close (409, not a timeout).
            vm.agent.hang_up();
            outcome.map_err(|error| KvmStepError::Run {
                diagnosis: diagnose_run_failure(&error, &platform.lock_unpoisoned()),
                error,
            })
        },
    )?;
    Ok(outcome)
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
        .filter(|d| d.backing_file().is_some_and(no_room_left))
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
