//! The vCPU exit loop: port and MMIO exits go to the buses; a device that stops
//! the machine (power off, reset, debug exit) ends the run with its outcome.
//! Only vCPU 0 runs: this machine has no interrupt controller to start the others
//! (see docs/running.md).

use kvm_ioctls::VcpuExit;

use crate::bus::Action;
use crate::outcome::GuestOutcome;
use crate::vm::{Vm, VmError};

/// Called for an access to a guest physical address inside an NVDIMM window that
/// exited (a page taken out of the memslots because it is poisoned).
pub trait PmemFaultHandler: Send {
    /// `dimm`/`offset` locate the access. Reads must fill `data`.
    fn access(
        &mut self,
        vm: &Vm,
        gpa: u64,
        dimm: usize,
        offset: u64,
        data: PmemAccess<'_>,
    ) -> Action;
}

pub enum PmemAccess<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

pub fn run(
    vm: &mut Vm,
    mut pmem_faults: Option<&mut dyn PmemFaultHandler>,
) -> Result<GuestOutcome, VmError> {
    // The vCPU is taken out while it runs so exits can borrow the rest of the VM.
    let mut vcpu = vm.vcpus.remove(0);
    let result = loop {
        let action = match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                vm.io_bus.read(u64::from(port), data);
                Action::Continue
            }
            Ok(VcpuExit::IoOut(port, data)) => vm.io_bus.write(u64::from(port), data),
            Ok(VcpuExit::MmioRead(gpa, data)) => {
                match (vm.pmem_at(gpa), pmem_faults.as_deref_mut()) {
                    (Some((dimm, offset)), Some(handler)) => {
                        handler.access(vm, gpa, dimm, offset, PmemAccess::Read(data))
                    }
                    _ => {
                        vm.mmio_bus.read(gpa, data);
                        Action::Continue
                    }
                }
            }
            Ok(VcpuExit::MmioWrite(gpa, data)) => {
                match (vm.pmem_at(gpa), pmem_faults.as_deref_mut()) {
                    (Some((dimm, offset)), Some(handler)) => {
                        handler.access(vm, gpa, dimm, offset, PmemAccess::Write(data))
                    }
                    _ => vm.mmio_bus.write(gpa, data),
                }
            }
            Ok(VcpuExit::Hlt) => Action::Stop(GuestOutcome::Crashed(
                "the guest executed hlt and nothing can wake it (no interrupts on this machine)"
                    .into(),
            )),
            Ok(VcpuExit::Shutdown) => Action::Stop(GuestOutcome::Crashed(
                "KVM_EXIT_SHUTDOWN: triple fault, or an exception this host's KVM cannot deliver"
                    .into(),
            )),
            Ok(VcpuExit::InternalError) => Action::Stop(GuestOutcome::Crashed(
                "KVM internal error (emulation failure: an instruction this host's KVM cannot run)"
                    .into(),
            )),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Action::Stop(GuestOutcome::Crashed(format!(
                "KVM could not enter the guest (hardware entry failure {reason:#x} on CPU {cpu})"
            ))),
            Ok(other) => Action::Stop(GuestOutcome::Crashed(format!(
                "unexpected vCPU exit {other:?}"
            ))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Action::Continue,
            Err(e) => {
                break Err(VmError::Ioctl {
                    what: "KVM_RUN".into(),
                    source: e,
                })
            }
        };
        if let Action::Stop(outcome) = action {
            break Ok(outcome);
        }
    };
    vm.vcpus.insert(0, vcpu);
    result
}
