//! Booting a bare-metal program on a given machine and collecting what it
//! reported: used by `vnvdimm selftest`, the tests and the benchmarks.

use nvdimm_model::sync::LockUnpoisoned;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use nvdimm_model::clock::SystemClock;
use nvdimm_model::config::{DimmConfig, MIB};
use nvdimm_model::platform_open::PlatformOpenError;
use nvdimm_model::{NvdimmPlatform, PersistenceDomain, PlatformConfig};
use thiserror::Error;
use vnvdimm_machine::{Machine, MachineConfig, MachineError};

use vnvdimm_control::{ApiServer, ApiServerHandle};

use vnvdimm_vmm::backend::KvmBackend;
use crate::bare_metal::{self, BareMetalError};
use crate::command_port::{CommandPort, GuestCommands, CMD_PORT, CMD_PORT_LEN};
use crate::debug_port::{DebugPorts, Report, DEBUG_PORTS_LEN, REPORT_PORT};
use vnvdimm_vmm::outcome::GuestOutcome;
use vnvdimm_vmm::vcpu::run_loop;
use vnvdimm_vmm::vm::{Vm, VmBuilder, VmError};

#[derive(Debug, Error)]
pub enum HarnessError {
    #[error("cannot create backing file {path}: {source}")]
    Backing { path: String, source: std::io::Error },
    #[error("platform: {0}")]
    Config(#[from] nvdimm_model::config::ConfigError),
    #[error("machine: {0}")]
    Machine(#[from] MachineError),
    #[error(transparent)]
    Open(#[from] PlatformOpenError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Load(#[from] BareMetalError),
    #[error(transparent)]
    Api(#[from] vnvdimm_control::ApiError),
    #[error("the command port: {0}")]
    Bus(#[from] vnvdimm_vmm::devices::bus::BusError),
}

/// A machine of `dimms` DIMMs of `size` bytes each on sparse files in `dir`
/// (created if missing), 64 MiB of RAM, one vCPU.
pub fn sparse_machine(dir: &Path, dimms: usize, size: u64) -> Result<Machine, HarnessError> {
    let configs = (0..dimms)
        .map(|i| {
            let path = dir.join(format!("nvdimm{i}.img"));
            let file = std::fs::File::options().create(true).truncate(false).write(true).open(&path);
            file.and_then(|f| f.set_len(size))
                .map_err(|source| HarnessError::Backing { path: path.display().to_string(), source })?;
            Ok(DimmConfig::with_defaults(i, path, size))
        })
        .collect::<Result<Vec<_>, HarnessError>>()?;
    let platform = PlatformConfig::new(configs, PersistenceDomain::CpuCache)?;
    Ok(Machine::new(MachineConfig { memory: 64 * MIB, cpus: 1 }, platform)?)
}

/// A VM running a bare-metal program: the VMM's own `Vm` (which it derefs to) plus
/// the debug ports' report, which only such VMs have.
pub struct BareMetalVm {
    pub vm: Vm,
    /// Words the program reported on the debug port, in order.
    pub report: Report,
    /// The command port firmware/idle.S polls.
    pub commands: Arc<GuestCommands>,
}

impl std::ops::Deref for BareMetalVm {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        &self.vm
    }
}

impl std::ops::DerefMut for BareMetalVm {
    fn deref_mut(&mut self) -> &mut Vm {
        &mut self.vm
    }
}

/// Opens the platform (file-backed DIMM state) and builds the VM with `program` loaded.
pub fn boot(machine: Machine, program: &[u8], console: Box<dyn Write + Send>) -> Result<BareMetalVm, HarnessError> {
    boot_with(machine, program, console, |builder| builder)
}

/// As [`boot`], with `configure` adding to the VM's recipe (e.g. running vCPUs 1..).
pub fn boot_with(
    machine: Machine,
    program: &[u8],
    console: Box<dyn Write + Send>,
    configure: impl FnOnce(VmBuilder) -> VmBuilder,
) -> Result<BareMetalVm, HarnessError> {
    let platform =
        NvdimmPlatform::open(machine.platform.clone(), machine.memory_map.layout.clone(), Arc::new(SystemClock::new()))?;
    // The debug ports let a program end the run with any exit code it likes, and the
    // command port feeds firmware/idle.S: test machinery for bare-metal programs, never
    // on a Linux guest's bus (`vnvdimm_vmm::launch`).
    let report = Report::default();
    let commands = GuestCommands::new();
    let builder = VmBuilder::new(machine, Arc::new(std::sync::Mutex::new(platform)))
        .console(console)
        .io_device(
            u64::from(REPORT_PORT),
            DEBUG_PORTS_LEN,
            Arc::new(std::sync::Mutex::new(DebugPorts::new(report.clone()))),
        )
        .io_device(u64::from(CMD_PORT), CMD_PORT_LEN, Arc::new(std::sync::Mutex::new(CommandPort(commands.clone()))))
        // The bare-metal programs read machine checks where QEMU reports them on any
        // host (bank 9, Intel's layout); the vendor layouts are for what Linux expects.
        .mca_vendor(vnvdimm_vmm::arch::x86_64::mce::McaVendor::Intel);
    let mut vm = configure(builder).build()?;
    bare_metal::load(&mut vm, program)?;
    Ok(BareMetalVm { vm, report, commands })
}

/// What a bare-metal run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    pub outcome: GuestOutcome,
    pub report: Vec<u32>,
}

impl RunResult {
    /// Report word pair `index` (low, high) as a u64.
    pub fn u64_at(&self, word: usize) -> Option<u64> {
        let lo = *self.report.get(word)?;
        let hi = *self.report.get(word + 1)?;
        Some(u64::from(lo) | (u64::from(hi) << 32))
    }
}

/// Serves the control API for `vm` on `socket` until the handle is dropped. Call before
/// `run`; the API then works while the guest runs (and answers 409 after it stopped).
pub fn serve_api(vm: &Vm, socket: &Path) -> Result<ApiServerHandle, HarnessError> {
    Ok(ApiServer::start(socket, Arc::new(KvmBackend::new(vm)))?)
}

pub fn run(vm: &mut BareMetalVm) -> Result<RunResult, HarnessError> {
    let outcome = run_loop::run(vm)?;
    let report = vm.report.lock_unpoisoned().clone();
    Ok(RunResult { outcome, report })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnvdimm_vmm::devices::bus::Action;
    use crate::debug_port::EXIT_PORT;

    #[test]
    fn debug_exit_port_is_on_bare_metal_buses_only() {
        let dir = tempfile::tempdir().unwrap();
        let machine = sparse_machine(dir.path(), 1, 64 * MIB).unwrap();
        let platform = NvdimmPlatform::open(
            machine.platform.clone(),
            machine.memory_map.layout.clone(),
            Arc::new(SystemClock::new()),
        )
        .unwrap();
        // What `vnvdimm run` builds for a Linux guest: a guest must not be able to end the
        // VMM with an exit code of its choosing (e.g. 2, "bad options").
        let product = VmBuilder::new(machine.clone(), Arc::new(std::sync::Mutex::new(platform))).build().unwrap();
        assert_eq!(product.io_bus().write(u64::from(EXIT_PORT), &[2]), Action::Continue);
        drop(product);
        let bare_metal = boot(machine, &[0xf4], Box::new(std::io::sink())).unwrap();
        assert_eq!(
            bare_metal.io_bus().write(u64::from(EXIT_PORT), &[2]),
            Action::Stop(GuestOutcome::DebugExit(2))
        );
    }
}
