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
//!
//! The loop sees the machine only through [`ExitTargets`] and each vCPU only through
//! [`VcpuPort`], so its decisions are tested with fabricated exits and no /dev/kvm
//! (`run_loop/tests.rs`).

use std::sync::Mutex;

use kvm_ioctls::VcpuExit;
use nvdimm_model::event_log::{EventKind, MachineCheckKind};
use nvdimm_model::sync::LockUnpoisoned;
use nvdimm_model::NvdimmPlatform;

use crate::arch::x86_64::mce::{self, McaVendor};
use crate::devices::bus::{Action, Bus};
use crate::devices::notifications::NotificationPath;
use crate::memory::memslots::WindowAccess;
use crate::memory::pmem_slots::{FetchFault, PmemSlots};
use crate::outcome::GuestOutcome;
use crate::vcpu::vcpu_control::{Request, RunState, VcpuControl};
use crate::vcpu::vcpu_port::VcpuPort;
use crate::vm::{Vm, VmError};

/// Why the control API's power-off ended the run (`GuestOutcome::PowerOff`, exit status 0).
pub const API_POWER_OFF_REASON: &str = "control API";

/// The NVDIMM windows as the loop meets them: pages left out of the memslots (poisoned,
/// or in a piece not registered yet) exit, and are served here (`PmemSlots`).
pub trait WindowExits: Sync {
    /// A load that exited; `None` when `gpa` is in no window.
    fn on_read(&self, gpa: u64, data: &mut [u8]) -> Option<WindowAccess>;
    /// A store that exited; `None` when `gpa` is in no window.
    fn on_write(&self, gpa: u64, data: &[u8]) -> Option<WindowAccess>;
    /// KVM could not emulate the instruction whose bytes lie at `gpas`.
    fn on_fetch_failure(&self, gpas: &[u64]) -> FetchFault;
}

impl WindowExits for PmemSlots {
    fn on_read(&self, gpa: u64, data: &mut [u8]) -> Option<WindowAccess> {
        PmemSlots::on_read(self, gpa, data)
    }

    fn on_write(&self, gpa: u64, data: &[u8]) -> Option<WindowAccess> {
        PmemSlots::on_write(self, gpa, data)
    }

    fn on_fetch_failure(&self, gpas: &[u64]) -> FetchFault {
        PmemSlots::on_fetch_failure(self, gpas)
    }
}

/// The machine side of the loop: where exits go and whom the loop tells.
pub struct ExitTargets<'a> {
    pub io_bus: &'a Bus,
    pub mmio_bus: &'a Bus,
    pub windows: &'a dyn WindowExits,
    pub control: &'a VcpuControl,
    pub platform: &'a Mutex<NvdimmPlatform>,
    /// The layout the guest's machine checks take, or `None` where this KVM cannot give
    /// the guest machine checks.
    pub machine_checks: Option<McaVendor>,
    /// After a `_DSM` call: the windows' slots follow the device model's poison again
    /// (the guest may have cleared or injected some), and queued notifications go out.
    pub after_dsm: &'a (dyn Fn() + Sync),
}

/// Runs `vm` until the guest stops the machine; its outcome.
pub fn run(vm: &mut Vm) -> Result<GuestOutcome, VmError> {
    // The vCPUs are taken out while they run so exits can borrow the rest of the VM.
    let mut vcpus = std::mem::take(&mut vm.vcpus);
    let result = {
        let vm = &*vm;
        let notifications = NotificationPath::of(vm);
        let after_dsm = || {
            resync_poison(&vm.pmem, &vm.platform);
            if let Err(e) = notifications.deliver(&vm.platform) {
                log::debug!("{e}");
            }
        };
        let targets = ExitTargets {
            io_bus: &vm.io_bus,
            mmio_bus: &vm.mmio_bus,
            windows: &*vm.pmem,
            control: &vm.control,
            platform: &vm.platform,
            machine_checks: vm.mce.is_ok().then_some(vm.mca_vendor),
            after_dsm: &after_dsm,
        };
        let run_aps = vm.run_aps && vm.irqchip.is_ok();
        run_vcpus(&targets, &mut vcpus, run_aps)
    };
    vm.vcpus = vcpus;
    result
}

/// vCPU 0 on this thread, the others (with `run_aps`) in threads of their own, until
/// one of them stops the machine.
pub fn run_vcpus<V: VcpuPort>(
    targets: &ExitTargets<'_>,
    vcpus: &mut [V],
    run_aps: bool,
) -> Result<GuestOutcome, VmError> {
    match vcpus.split_first_mut() {
        None => Err(VmError::NoVcpus),
        Some((bsp, aps)) => run_all(targets, bsp, aps, run_aps),
    }
}

fn run_all<V: VcpuPort>(
    targets: &ExitTargets<'_>,
    bsp: &mut V,
    aps: &mut [V],
    run_aps: bool,
) -> Result<GuestOutcome, VmError> {
    // SAFETY: the kvm_run mapping belongs to `bsp`, which outlives the `leave` below.
    unsafe { targets.control.enter(bsp.kvm_run()) };
    let result = std::thread::scope(|scope| {
        let threads: Vec<_> = if run_aps {
            aps.iter_mut()
                .enumerate()
                .map(|(i, vcpu)| {
                    std::thread::Builder::new()
                        .name(format!("vcpu{}", i + 1))
                        .spawn_scoped(scope, move || run_ap(targets, vcpu))
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut result = run_vcpu(targets, bsp, true);
        targets.control.stop_all();
        for thread in threads {
            let ap = match thread {
                Ok(handle) => handle.join().unwrap_or_else(|_| {
                    Ok(Some(GuestOutcome::Crashed("a vCPU thread panicked (a vnvdimm bug)".into())))
                }),
                Err(e) => Err(VmError::Thread(e)),
            };
            result = match (result, ap) {
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                (Ok(None), Ok(outcome)) => Ok(outcome),
                (Ok(outcome), Ok(_)) => Ok(outcome),
            };
        }
        result
    });
    targets.control.leave();
    result.map(|outcome| {
        outcome.unwrap_or_else(|| GuestOutcome::Crashed("every vCPU stopped without a reason (a vnvdimm bug)".into()))
    })
}

/// An application processor's thread: no requests; its end stops all.
fn run_ap<V: VcpuPort>(targets: &ExitTargets<'_>, vcpu: &mut V) -> Result<Option<GuestOutcome>, VmError> {
    // SAFETY: the kvm_run mapping belongs to `vcpu`, which outlives the `leave_ap` below.
    unsafe { targets.control.enter_ap(vcpu.kvm_run()) };
    let result = run_vcpu(targets, vcpu, false);
    targets.control.leave_ap();
    targets.control.stop_all();
    result
}

/// Runs `vcpu` until it stops the machine (`Some`) or `stop_all` was called (`None`).
/// Only the boot vCPU (`serves_requests`) serves `VcpuControl` requests.
fn run_vcpu<V: VcpuPort>(
    targets: &ExitTargets<'_>,
    vcpu: &mut V,
    serves_requests: bool,
) -> Result<Option<GuestOutcome>, VmError> {
    loop {
        if serves_requests {
            if let Some(outcome) = serve_requests(targets, vcpu) {
                return Ok(Some(outcome));
            }
        }
        if targets.control.stopping() {
            return Ok(None);
        }
        let action = match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                targets.io_bus.read(u64::from(port), data);
                Action::Continue
            }
            Ok(VcpuExit::IoOut(port, data)) => targets.io_bus.write(u64::from(port), data),
            Ok(VcpuExit::MmioRead(gpa, data)) => match targets.windows.on_read(gpa, data) {
                Some(WindowAccess::Poisoned { .. }) => {
                    deliver(targets, vcpu, gpa, MachineCheckKind::ActionRequired);
                    Action::Continue
                }
                Some(_) => Action::Continue,
                None => {
                    targets.mmio_bus.read(gpa, data);
                    Action::Continue
                }
            },
            Ok(VcpuExit::MmioWrite(gpa, data)) => match targets.windows.on_write(gpa, data) {
                Some(_) => Action::Continue,
                None => match targets.mmio_bus.write(gpa, data) {
                    Action::DsmServed => {
                        (targets.after_dsm)();
                        Action::Continue
                    }
                    action => action,
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
            Ok(VcpuExit::InternalError) => on_internal_error(targets, vcpu),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Action::Stop(GuestOutcome::Crashed(format!(
                "KVM could not enter the guest (hardware entry failure {reason:#x} on CPU {cpu})"
            ))),
            Ok(other) => Action::Stop(GuestOutcome::Crashed(format!("unexpected vCPU exit {other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // A kick (vcpu_control): the requests are served at the top of the loop.
                vcpu.clear_immediate_exit();
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
fn serve_requests<V: VcpuPort>(targets: &ExitTargets<'_>, vcpu: &V) -> Option<GuestOutcome> {
    let mut outcome = None;
    let requests = targets.control.drain();
    let count = requests.len();
    for request in requests {
        match request {
            Request::MachineCheck { gpa, kind } => deliver(targets, vcpu, gpa, kind),
            Request::PowerOff => {
                targets.control.set_state(RunState::ShuttingDown);
                targets
                    .platform
                    .lock_unpoisoned()
                    .log_event(EventKind::PowerOff { reason: API_POWER_OFF_REASON.to_string() });
                outcome = Some(GuestOutcome::PowerOff);
            }
        }
    }
    targets.control.mark_served(count);
    outcome
}

/// Injects (if this KVM can) and logs a machine check, `delivered` saying whether KVM
/// took it.
fn deliver<V: VcpuPort>(targets: &ExitTargets<'_>, vcpu: &V, gpa: u64, kind: MachineCheckKind) {
    let mut platform = targets.platform.lock_unpoisoned();
    let result = match targets.machine_checks {
        Some(vendor) => mce::deliver_and_log(vcpu, gpa, kind, vendor, &mut platform),
        None => {
            platform.log_event(EventKind::MachineCheck { gpa, kind, delivered: false });
            Ok(())
        }
    };
    if let Err(e) = result {
        log::debug!("machine check for {gpa:#x} not delivered: {e}");
    }
}

fn resync_poison(pmem: &PmemSlots, platform: &Mutex<NvdimmPlatform>) {
    // The poison stays recorded in the device model; only the trapping of the changed
    // pages lags until a later sync succeeds (each doorbell ring retries).
    if let Err(e) = pmem.sync(platform) {
        vnvdimm_host_log::warn_limited!("re-planning the NVDIMM memslots after a _DSM call failed: {e}");
    }
}

/// KVM_EXIT_INTERNAL_ERROR: an emulation failure, which is how an instruction fetch from
/// an NVDIMM page without a memslot (piece not registered yet, or poisoned) ends.
fn on_internal_error<V: VcpuPort>(targets: &ExitTargets<'_>, vcpu: &V) -> Action {
    match targets.windows.on_fetch_failure(&vcpu.fetch_gpas()) {
        FetchFault::Registered => Action::Continue,
        // Without machine checks the fetch would fail again at once: no way to go on.
        FetchFault::Poisoned { gpa } if targets.machine_checks.is_none() => {
            deliver(targets, vcpu, gpa, MachineCheckKind::ActionRequired);
            Action::Stop(GuestOutcome::Crashed(format!(
                "the guest executed code from poisoned NVDIMM page {gpa:#x} and this KVM cannot inject a machine check"
            )))
        }
        FetchFault::Poisoned { gpa } => {
            deliver(targets, vcpu, gpa, MachineCheckKind::ActionRequired);
            Action::Continue
        }
        FetchFault::NotWindows => Action::Stop(GuestOutcome::Crashed(
            "KVM internal error (emulation failure: an instruction this host's KVM cannot run)".into(),
        )),
    }
}

#[cfg(test)]
mod tests;
