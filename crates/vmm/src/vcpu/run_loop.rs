//! The vCPU exit loop: port and MMIO exits go to the buses; a device that stops
//! the machine (power off, reset, debug exit) ends the run with its outcome.
//! vCPU 0 runs on the caller's thread. With `VmBuilder::run_aps` (Linux boots) and an
//! in-kernel interrupt controller, every other vCPU runs in a thread of its own: KVM
//! keeps it inside KVM_RUN until the guest starts it with INIT/SIPI. The first vCPU
//! whose loop ends (power off, reset, crash, VMM error) stops all the others
//! (`VcpuControl::stop_all`); the run's outcome is vCPU 0's, else the first AP's.
//! Bare-metal programs run on vCPU 0 alone (see docs/running.md).
//!
//! MMIO exits inside an NVDIMM window are pages out of the memslots (`PmemSlots`),
//! either poisoned — a load is answered with all ones and an action-required machine
//! check for its guest physical address, a store is written through to the backing
//! file — or in a piece not registered yet (lazy registration): the access is served
//! from the backing file and `PmemSlots` registers the piece, so the next access to it
//! runs without an exit. An instruction fetch from such a piece has no MMIO exit: KVM
//! stops with an internal (emulation) error, and the loop looks up where RIP points
//! (`fetch_gpas`) — an unregistered piece is registered and the instruction restarts, a
//! poisoned page is an action-required machine check as for a load, anything else ends
//! the run as before. After every `_DSM` doorbell ring the windows' slots are re-synced with
//! the device model's poison (the guest may have cleared or injected some).
//! Before every KVM_RUN the loop serves `VcpuControl` requests (machine checks and
//! power-off from the control API).

use nvdimm_model::sync::LockUnpoisoned;
use kvm_ioctls::{VcpuExit, VcpuFd};
use nvdimm_model::event_log::{EventKind, MachineCheckKind};

use crate::devices::bus::Action;
use crate::arch::x86_64::mce;
use crate::memory::memslots::WindowAccess;
use crate::outcome::GuestOutcome;
use crate::memory::pmem_slots::FetchFault;
use crate::vcpu::vcpu_control::{Request, RunState};
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
    // The vCPUs are taken out while they run so exits can borrow the rest of the VM.
    let mut vcpus = std::mem::take(&mut vm.vcpus);
    let run_aps = vm.run_aps && vm.irqchip.is_ok();
    let result = match vcpus.split_first_mut() {
        None => Err(VmError::NoVcpus),
        Some((bsp, aps)) => run_all(vm, bsp, aps, run_aps, &mut pmem_faults),
    };
    vm.vcpus = vcpus;
    result
}

fn run_all(
    vm: &Vm,
    bsp: &mut VcpuFd,
    aps: &mut [VcpuFd],
    run_aps: bool,
    pmem_faults: &mut Option<&mut dyn PmemFaultHandler>,
) -> Result<GuestOutcome, VmError> {
    // SAFETY: the kvm_run mapping belongs to `bsp`, which outlives the `leave` below.
    unsafe { vm.control.enter(bsp.get_kvm_run()) };
    let result = std::thread::scope(|scope| {
        let threads: Vec<_> = if run_aps {
            aps.iter_mut()
                .enumerate()
                .map(|(i, vcpu)| {
                    std::thread::Builder::new()
                        .name(format!("vcpu{}", i + 1))
                        .spawn_scoped(scope, move || run_ap(vm, vcpu))
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut result = run_vcpu(vm, bsp, pmem_faults, true);
        vm.control.stop_all();
        for thread in threads {
            let ap = match thread {
                Ok(handle) => handle.join().unwrap_or_else(|_| {
                    Ok(Some(GuestOutcome::Crashed("a vCPU thread panicked (a vnvdimm bug)".into())))
                }),
                Err(e) => Err(VmError::Thread(e.to_string())),
            };
            result = match (result, ap) {
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                (Ok(None), Ok(outcome)) => Ok(outcome),
                (Ok(outcome), Ok(_)) => Ok(outcome),
            };
        }
        result
    });
    vm.control.leave();
    result.map(|outcome| {
        outcome.unwrap_or_else(|| GuestOutcome::Crashed("every vCPU stopped without a reason (a vnvdimm bug)".into()))
    })
}

/// An application processor's thread: no requests, no fault handler; its end stops all.
fn run_ap(vm: &Vm, vcpu: &mut VcpuFd) -> Result<Option<GuestOutcome>, VmError> {
    // SAFETY: the kvm_run mapping belongs to `vcpu`, which outlives the `leave_ap` below.
    unsafe { vm.control.enter_ap(vcpu.get_kvm_run()) };
    let result = run_vcpu(vm, vcpu, &mut None, false);
    vm.control.leave_ap();
    vm.control.stop_all();
    result
}

/// Runs `vcpu` until it stops the machine (`Some`) or `stop_all` was called (`None`).
/// Only the boot vCPU (`serves_requests`) serves `VcpuControl` requests.
fn run_vcpu(
    vm: &Vm,
    vcpu: &mut VcpuFd,
    pmem_faults: &mut Option<&mut dyn PmemFaultHandler>,
    serves_requests: bool,
) -> Result<Option<GuestOutcome>, VmError> {
    loop {
        if serves_requests {
            if let Some(outcome) = serve_requests(vm, vcpu) {
                return Ok(Some(outcome));
            }
        }
        if vm.control.stopping() {
            return Ok(None);
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
                    None => match vm.mmio_bus.write(gpa, data) {
                        Action::DsmServed => {
                            resync_poison(vm);
                            deliver_notifications(vm);
                            Action::Continue
                        }
                        action => action,
                    },
                },
            },
            // Only without an in-kernel irqchip: with one, KVM keeps a halted vCPU
            // inside KVM_RUN until an interrupt wakes it.
            Ok(VcpuExit::Hlt) => Action::Stop(GuestOutcome::Crashed(
                "the guest executed hlt and nothing can wake it (this VM has no in-kernel interrupt controller)".into(),
            )),
            Ok(VcpuExit::Shutdown) => Action::Stop(GuestOutcome::Crashed(
                "KVM_EXIT_SHUTDOWN: triple fault, or an exception this host's KVM cannot deliver".into(),
            )),
            Ok(VcpuExit::InternalError) => on_internal_error(vm, vcpu),
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
            return Ok(Some(outcome));
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
    vm.platform.lock_unpoisoned()
}

/// Injects (if this KVM can) and logs a machine check; `delivered` says whether KVM took it.
fn deliver(vm: &Vm, vcpu: &VcpuFd, gpa: u64, kind: MachineCheckKind) {
    let result = if vm.mce.is_ok() {
        mce::deliver_and_log(vcpu, gpa, kind, vm.mca_vendor, &mut lock(vm))
    } else {
        lock(vm).log_event(EventKind::MachineCheck { gpa, kind, delivered: false });
        Ok(())
    };
    if let Err(e) = result {
        log::debug!("machine check for {gpa:#x} not delivered: {e}");
    }
}

/// A guest load hit a poisoned page: SRAR for that address, raised at the next KVM_RUN.
fn consume_poison(vm: &Vm, vcpu: &VcpuFd, gpa: u64) {
    deliver(vm, vcpu, gpa, MachineCheckKind::ActionRequired);
}

/// A `_DSM` call may have queued notifications (an error injection with its notify
/// flag): the guest gets them now, as the host's own do.
fn deliver_notifications(vm: &Vm) {
    if let Err(e) = crate::devices::notifications::NotificationPath::of(vm).deliver(&vm.platform) {
        log::debug!("{e}");
    }
}

fn resync_poison(vm: &Vm) {
    // The poison stays recorded in the device model; only the trapping of the changed
    // pages lags until a later sync succeeds (each doorbell ring retries).
    if let Err(e) = vm.pmem.sync(&vm.platform) {
        vnvdimm_host_log::warn_limited!("re-planning the NVDIMM memslots after a _DSM call failed: {e}");
    }
}

/// The longest x86 instruction: its last byte may lie on the page after its first.
const MAX_INSTRUCTION_LEN: u64 = 15;

/// Guest physical addresses of the first and last possible byte of the instruction at
/// CS:RIP, as far as the guest's page tables map them (empty if the registers cannot be read).
fn fetch_gpas(vcpu: &VcpuFd) -> Vec<u64> {
    let (Ok(regs), Ok(sregs)) = (vcpu.get_regs(), vcpu.get_sregs()) else {
        return Vec::new();
    };
    // 64-bit code ignores the CS base; outside it linear addresses are 32 bits wide.
    let linear = if sregs.cs.l != 0 { regs.rip } else { sregs.cs.base.wrapping_add(regs.rip) & 0xffff_ffff };
    [linear, linear.wrapping_add(MAX_INSTRUCTION_LEN - 1)]
        .into_iter()
        .filter_map(|gva| vcpu.translate_gva(gva).ok())
        .filter(|t| t.valid != 0)
        .map(|t| t.physical_address)
        .collect()
}

/// KVM_EXIT_INTERNAL_ERROR: an emulation failure, which is how an instruction fetch from
/// an NVDIMM page without a memslot (piece not registered yet, or poisoned) ends.
fn on_internal_error(vm: &Vm, vcpu: &VcpuFd) -> Action {
    let gpas = fetch_gpas(vcpu);
    match vm.pmem.on_fetch_failure(&gpas) {
        FetchFault::Registered => Action::Continue,
        // Without machine checks the fetch would fail again at once: no way to go on.
        FetchFault::Poisoned { gpa } if vm.mce.is_err() => {
            consume_poison(vm, vcpu, gpa);
            Action::Stop(GuestOutcome::Crashed(format!(
                "the guest executed code from poisoned NVDIMM page {gpa:#x} and this KVM cannot inject a machine check"
            )))
        }
        FetchFault::Poisoned { gpa } => {
            consume_poison(vm, vcpu, gpa);
            Action::Continue
        }
        FetchFault::NotWindows => Action::Stop(GuestOutcome::Crashed(
            "KVM internal error (emulation failure: an instruction this host's KVM cannot run)".into(),
        )),
    }
}
