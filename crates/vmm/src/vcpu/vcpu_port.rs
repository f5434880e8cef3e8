//! What the run loop asks of one vCPU. KVM's `VcpuFd` is the real one; the hermetic
//! tests of the loop (`run_loop/tests.rs`) give it a script of exits instead, so the
//! loop's decisions are checked without /dev/kvm.

use kvm_bindings::kvm_run;
use kvm_ioctls::{VcpuExit, VcpuFd};
use nvdimm_model::event_log::MachineCheckKind;

use crate::arch::x86_64::mce::{self, McaVendor, MceError};

pub trait VcpuPort: Send {
    /// Runs the vCPU until its next exit (KVM_RUN).
    fn run(&mut self) -> Result<VcpuExit<'_>, kvm_ioctls::Error>;
    /// A kick made KVM_RUN return early; the next run enters the guest again.
    fn clear_immediate_exit(&mut self);
    /// The `kvm_run` area a kick sets `immediate_exit` in (`VcpuControl::enter`).
    fn kvm_run(&mut self) -> *mut kvm_run;
    /// Queues a machine check for `gpa`, raised at the next entry.
    fn inject_machine_check(&self, gpa: u64, kind: MachineCheckKind, vendor: McaVendor) -> Result<(), MceError>;
    /// Guest physical addresses of the first and last possible byte of the instruction
    /// at CS:RIP, as far as the guest's page tables map them (empty when unknown).
    fn fetch_gpas(&self) -> Vec<u64>;
}

/// The longest x86 instruction: its last byte may lie on the page after its first.
const MAX_INSTRUCTION_LEN: u64 = 15;

impl VcpuPort for VcpuFd {
    fn run(&mut self) -> Result<VcpuExit<'_>, kvm_ioctls::Error> {
        VcpuFd::run(self)
    }

    fn clear_immediate_exit(&mut self) {
        self.set_kvm_immediate_exit(0);
    }

    fn kvm_run(&mut self) -> *mut kvm_run {
        self.get_kvm_run()
    }

    fn inject_machine_check(&self, gpa: u64, kind: MachineCheckKind, vendor: McaVendor) -> Result<(), MceError> {
        mce::inject(self, gpa, kind, vendor)
    }

    fn fetch_gpas(&self) -> Vec<u64> {
        let (Ok(regs), Ok(sregs)) = (self.get_regs(), self.get_sregs()) else {
            return Vec::new();
        };
        // 64-bit code ignores the CS base; outside it linear addresses are 32 bits wide.
        let linear = if sregs.cs.l != 0 { regs.rip } else { sregs.cs.base.wrapping_add(regs.rip) & 0xffff_ffff };
        [linear, linear.wrapping_add(MAX_INSTRUCTION_LEN - 1)]
            .into_iter()
            .filter_map(|gva| self.translate_gva(gva).ok())
            .filter(|t| t.valid != 0)
            .map(|t| t.physical_address)
            .collect()
    }
}
