//! One whole KVM run as `vnvdimm run --backend kvm` makes it: open the DIMMs, build the
//! VM, let a loader place the guest (Linux: `linux_boot`), serve the control API while
//! the vCPU runs, and close the DIMMs cleanly when the guest stopped.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use nvdimm_model::clock::SystemClock;
use nvdimm_model::NvdimmPlatform;
use thiserror::Error;
use vnvdimm_control::ApiServer;
use vnvdimm_machine::Machine;

use crate::backend::KvmBackend;
use crate::outcome::GuestOutcome;
use crate::vm::{Vm, VmError};

#[derive(Debug, Error)]
pub enum LaunchError {
    #[error(transparent)]
    Open(#[from] nvdimm_model::platform_open::PlatformOpenError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("loading the guest: {0}")]
    Load(String),
    #[error(transparent)]
    Api(#[from] vnvdimm_control::ApiError),
    #[error("the guest stopped ({outcome}), but closing DIMM {dimm} cleanly failed: {message}")]
    Close { outcome: GuestOutcome, dimm: usize, message: String },
}

/// Runs `machine` until the guest stops; `load` sets up guest memory and vCPU 0.
pub fn run(
    machine: Machine,
    console: Box<dyn Write + Send>,
    api_socket: Option<&Path>,
    load: impl FnOnce(&mut Vm) -> Result<(), String>,
    running: impl FnOnce(Arc<KvmBackend>),
) -> Result<GuestOutcome, LaunchError> {
    let platform =
        NvdimmPlatform::open(machine.platform.clone(), machine.memory_map.layout.clone(), Arc::new(SystemClock::new()))?;
    let mut vm = Vm::new(machine, platform, console)?;
    load(&mut vm).map_err(LaunchError::Load)?;
    // A Linux guest starts its other vCPUs with INIT/SIPI through the in-kernel APIC.
    vm.run_aps = true;
    // One backend for the API and for the caller (e.g. power-off on a stop signal).
    let backend = Arc::new(KvmBackend::new(&vm));
    let api = match api_socket {
        Some(path) => Some(ApiServer::start(path, backend.clone())?),
        None => None,
    };
    running(backend);
    let outcome = crate::run_loop::run(&mut vm, None);
    // A guest command still waiting on the agent sees the line close (409, not a timeout).
    vm.agent.hang_up();
    let outcome = outcome?;
    drop(api);
    // The VMM survived, so every guest store is in the backing files' page cache: a
    // clean shutdown from the DIMMs' point of view.
    let mut platform = vm.platform.lock().unwrap_or_else(|p| p.into_inner());
    for dimm in 0..platform.dimms().len() {
        if let Some(d) = platform.dimm_mut(dimm) {
            d.close_clean().map_err(|e| LaunchError::Close {
                outcome: outcome.clone(),
                dimm,
                message: e.to_string(),
            })?;
        }
    }
    Ok(outcome)
}
