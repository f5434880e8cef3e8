//! The vCPU exit loop: port and MMIO exits go to the buses; a device that stops
//! the machine (power off, reset, debug exit) ends the run with its outcome.
//! Only vCPU 0 runs: this machine has no interrupt controller to start the others
//! (see docs/running.md).
//!
//! MMIO exits inside an NVDIMM window are pages out of the memslots (`PmemSlots`),
//! either poisoned — a load is answered with all ones and an action-required machine
//! check for its guest physical address, a store is written through to the backing
//! file — or in a piece not registered yet (lazy registration): the access is served
//! from the backing file and `PmemSlots` registers the piece, so the next access to it
//! runs without an exit. After every `_DSM` doorbell ring the windows' slots are re-synced with
//! the device model's poison (the guest may have cleared or injected some).
//! Before every KVM_RUN the loop serves `VcpuControl` requests (machine checks and
//! power-off from the control API).

use kvm_ioctls::{VcpuExit, VcpuFd};
use nvdimm_model::event_log::{EventKind, MachineCheckKind};

use crate::bus::Action;
use crate::mce;
use crate::memslots::WindowAccess;
use crate::outcome::GuestOutcome;
use crate::vcpu_control::{Request, RunState};
use crate::vm::{Vm, VmError};

/// Overrides the built-in handling of an access inside an NVDIMM window that exited
/// (tests that want to see the raw accesses).
pub trait PmemFaultHandler: Send {
    /// `dimm`/`offset` locate the access. Reads must fill `data`.
    fn access(&mut self, vm: &Vm, gpa: u64, dimm: usize, offset: u64, data: PmemAccess<'_>) -> Action;
}

pub enum PmemAccess<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

/// Why the control API's power-off ended the run (`GuestOutcome::PowerOff`, exit status 0).
pub const API_POWER_OFF_REASON: &str = "control API";

pub fn run(vm: &mut Vm, mut pmem_faults: Option<&mut dyn PmemFaultHandler>) -> Result<GuestOutcome, VmError> {
    // The vCPU is taken out while it runs so exits can borrow the rest of the VM.
    let mut vcpu = vm.vcpus.remove(0);
    let control = vm.control.clone();
    // SAFETY: the kvm_run mapping belongs to `vcpu`, which outlives the `leave` below.
    unsafe { control.enter(vcpu.get_kvm_run()) };
    let result = run_vcpu(vm, &mut vcpu, &mut pmem_faults);
    control.leave();
    vm.vcpus.insert(0, vcpu);
    result
}

fn run_vcpu(
    vm: &mut Vm,
    vcpu: &mut VcpuFd,
    pmem_faults: &mut Option<&mut dyn PmemFaultHandler>,
) -> Result<GuestOutcome, VmError> {
    loop {
        if let Some(outcome) = serve_requests(vm, vcpu) {
            return Ok(outcome);
        }
        let action = match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                vm.io_bus.read(u64::from(port), data);
                Action::Continue
            }
            Ok(VcpuExit::IoOut(port, data)) => vm.io_bus.write(u64::from(port), data),
            Ok(VcpuExit::MmioRead(gpa, data)) => match (vm.pmem_at(gpa), pmem_faults.as_deref_mut()) {
                (Some((dimm, offset)), Some(handler)) => handler.access(vm, gpa, dimm, offset, PmemAccess::Read(data)),
                _ => match vm.pmem.on_read(gpa, data) {
                    Some(WindowAccess::Poisoned { .. }) => {
                        consume_poison(vm, vcpu, gpa);
                        Action::Continue
                    }
                    Some(_) => Action::Continue,
                    None => {
                        vm.mmio_bus.read(gpa, data);
                        Action::Continue
                    }
                },
            },
            Ok(VcpuExit::MmioWrite(gpa, data)) => match (vm.pmem_at(gpa), pmem_faults.as_deref_mut()) {
                (Some((dimm, offset)), Some(handler)) => handler.access(vm, gpa, dimm, offset, PmemAccess::Write(data)),
                _ => match vm.pmem.on_write(gpa, data) {
                    Some(_) => Action::Continue,
                    None => {
                        let action = vm.mmio_bus.write(gpa, data);
                        if gpa == vm.machine.memory_map.layout.doorbell {
                            resync_poison(vm);
                        }
                        action
                    }
                },
            },
            Ok(VcpuExit::Hlt) => Action::Stop(GuestOutcome::Crashed(
                "the guest executed hlt and nothing can wake it (no interrupts on this machine)".into(),
            )),
            Ok(VcpuExit::Shutdown) => Action::Stop(GuestOutcome::Crashed(
                "KVM_EXIT_SHUTDOWN: triple fault, or an exception this host's KVM cannot deliver".into(),
            )),
            Ok(VcpuExit::InternalError) => Action::Stop(GuestOutcome::Crashed(
                "KVM internal error (emulation failure: an instruction this host's KVM cannot run)".into(),
            )),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Action::Stop(GuestOutcome::Crashed(format!(
                "KVM could not enter the guest (hardware entry failure {reason:#x} on CPU {cpu})"
            ))),
            Ok(other) => Action::Stop(GuestOutcome::Crashed(format!("unexpected vCPU exit {other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // A kick (vcpu_control): the requests are served at the top of the loop.
                vcpu.set_kvm_immediate_exit(0);
                Action::Continue
            }
            Err(e) => return Err(VmError::Ioctl { what: "KVM_RUN".into(), source: e }),
        };
        if let Action::Stop(outcome) = action {
            return Ok(outcome);
        }
    }
}

/// Machine checks and power-off queued by the control API. `Some` ends the run.
fn serve_requests(vm: &Vm, vcpu: &VcpuFd) -> Option<GuestOutcome> {
    let mut outcome = None;
    let requests = vm.control.drain();
    let count = requests.len();
    for request in requests {
        match request {
            Request::MachineCheck { gpa, kind } => deliver(vm, vcpu, gpa, kind),
            Request::PowerOff => {
                vm.control.set_state(RunState::ShuttingDown);
                lock(vm).log_event(EventKind::PowerOff { reason: API_POWER_OFF_REASON.to_string() });
                outcome = Some(GuestOutcome::PowerOff);
            }
        }
    }
    vm.control.mark_served(count);
    outcome
}

fn lock(vm: &Vm) -> std::sync::MutexGuard<'_, nvdimm_model::NvdimmPlatform> {
    vm.platform.lock().unwrap_or_else(|p| p.into_inner())
}

/// Injects (if this KVM can) and logs a machine check; `delivered` says whether KVM took it.
fn deliver(vm: &Vm, vcpu: &VcpuFd, gpa: u64, kind: MachineCheckKind) {
    let result = if vm.mce.is_ok() {
        mce::deliver_and_log(vcpu, gpa, kind, &mut lock(vm))
    } else {
        lock(vm).log_event(EventKind::MachineCheck { gpa, kind, delivered: false });
        Ok(())
    };
    if let Err(e) = result {
        crate::debug_log!("machine check for {gpa:#x} not delivered: {e}");
    }
}

/// A guest load hit a poisoned page: SRAR for that address, raised at the next KVM_RUN.
fn consume_poison(vm: &Vm, vcpu: &VcpuFd, gpa: u64) {
    deliver(vm, vcpu, gpa, MachineCheckKind::ActionRequired);
}

fn resync_poison(vm: &Vm) {
    // The poison stays recorded in the device model; only the trapping of the changed
    // pages lags until a later sync succeeds (each doorbell ring retries).
    if let Err(e) = vm.pmem.sync(&vm.platform) {
        eprintln!("vnvdimm: re-planning the NVDIMM memslots after a _DSM call failed: {e}");
    }
}
