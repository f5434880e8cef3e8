//! Guest machine checks: MCE/MCA in CPUID, the vCPU's MCG_CAP, and the two machine
//! checks the poison path raises (spec notes section 7, the values QEMU uses).
//!
//! How the VMM uses it:
//! ```ignore
//! // Once, at VM creation:
//! let mcg_cap = mce::guest_mcg_cap(mce::supported_mcg_cap(&kvm)?, mce::supported_banks(&kvm))?;
//! // Per vCPU, before its first KVM_RUN (after KVM_SET_CPUID2 with mce::advertise_mce applied):
//! mce::setup_vcpu(&vcpu, mcg_cap)?;
//! // A guest load consumed poison at `gpa` (memslots::PoisonSlots::on_mmio_read said Poisoned):
//! mce::deliver_and_log(&vcpu, gpa, MachineCheckKind::ActionRequired, &mut platform);
//! // The control API's "patrol scrub" option:
//! mce::inject_action_optional(&vcpu, gpa)?;
//! ```
//! The injection only queues the #MC; KVM raises it at the vCPU's next KVM_RUN.

use std::io;

use kvm_bindings::{kvm_x86_mce, CpuId, KVMIO};
use kvm_ioctls::{Cap, Kvm, VcpuFd};
use nvdimm_model::event_log::{EventKind, MachineCheckKind};
use nvdimm_model::NvdimmPlatform;
use thiserror::Error;
use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref};
use vmm_sys_util::{ioctl_ior_nr, ioctl_iow_nr};

// kvm-ioctls does not wrap the MCE ioctls; numbers from linux/kvm.h.
ioctl_ior_nr!(KVM_X86_GET_MCE_CAP_SUPPORTED, KVMIO, 0x9d, u64);
ioctl_iow_nr!(KVM_X86_SETUP_MCE, KVMIO, 0x9c, u64);
ioctl_iow_nr!(KVM_X86_SET_MCE, KVMIO, 0x9e, kvm_x86_mce);

/// CPUID leaf 1 EDX: machine check exception, machine check architecture.
pub const CPUID_EDX_MCE: u32 = 1 << 7;
pub const CPUID_EDX_MCA: u32 = 1 << 14;

/// IA32_MCG_CAP: bank count in bits 7:0, MCG_CTL present, software error recovery.
pub const MCG_BANKCNT_MASK: u64 = 0xFF;
pub const MCG_CTL_P: u64 = 1 << 8;
pub const MCG_SER_P: u64 = 1 << 24;
/// Banks the guest sees: QEMU's default, and enough for bank 9.
pub const GUEST_BANKS: u64 = 10;
/// The bank QEMU reports memory errors in.
pub const POISON_BANK: u8 = 9;

/// IA32_MCi_STATUS bits.
pub const MCI_STATUS_VAL: u64 = 1 << 63;
pub const MCI_STATUS_OVER: u64 = 1 << 62;
pub const MCI_STATUS_UC: u64 = 1 << 61;
pub const MCI_STATUS_EN: u64 = 1 << 60;
pub const MCI_STATUS_MISCV: u64 = 1 << 59;
pub const MCI_STATUS_ADDRV: u64 = 1 << 58;
pub const MCI_STATUS_PCC: u64 = 1 << 57;
pub const MCI_STATUS_S: u64 = 1 << 56;
pub const MCI_STATUS_AR: u64 = 1 << 55;
/// MCA error codes: data load (SRAR) and memory scrubbing (SRAO).
pub const MCACOD_DATA_LOAD: u64 = 0x134;
pub const MCACOD_SCRUB: u64 = 0xC0;

/// IA32_MCG_STATUS bits.
pub const MCG_STATUS_RIPV: u64 = 1 << 0;
pub const MCG_STATUS_EIPV: u64 = 1 << 1;
pub const MCG_STATUS_MCIP: u64 = 1 << 2;

/// MCi_MISC: address mode 2 (physical) in bits 8:6, least significant valid address bit 12.
pub const MCI_MISC_PHYS_4K: u64 = (2 << 6) | 12;

/// Status of an action-required data load: 0xBD80_0000_0000_0134.
pub const SRAR_STATUS: u64 = MCI_STATUS_VAL
    | MCI_STATUS_UC
    | MCI_STATUS_EN
    | MCI_STATUS_MISCV
    | MCI_STATUS_ADDRV
    | MCI_STATUS_S
    | MCI_STATUS_AR
    | MCACOD_DATA_LOAD;
/// RIPV with EIPV: Linux grades RIPV without EIPV as "no recovery" for SRAR.
pub const SRAR_MCG_STATUS: u64 = MCG_STATUS_MCIP | MCG_STATUS_RIPV | MCG_STATUS_EIPV;
/// Status of an action-optional patrol-scrub error: 0xBD00_0000_0000_00C0.
pub const SRAO_STATUS: u64 = MCI_STATUS_VAL
    | MCI_STATUS_UC
    | MCI_STATUS_EN
    | MCI_STATUS_MISCV
    | MCI_STATUS_ADDRV
    | MCI_STATUS_S
    | MCACOD_SCRUB;
pub const SRAO_MCG_STATUS: u64 = MCG_STATUS_MCIP | MCG_STATUS_RIPV;

#[derive(Debug, Error)]
pub enum MceError {
    #[error("KVM_X86_GET_MCE_CAP_SUPPORTED failed ({0}); this KVM cannot emulate machine checks, use --backend tcg")]
    CapSupported(#[source] io::Error),
    #[error(
        "KVM supports MCG_CAP bits {supported:#x} with {banks} banks, but poison delivery needs MCG_CTL_P, software \
         error recovery (MCG_SER_P) and at least {GUEST_BANKS} banks; use a newer host kernel or --backend tcg"
    )]
    Unsupported { supported: u64, banks: u32 },
    #[error("KVM_X86_SETUP_MCE with MCG_CAP {mcg_cap:#x} failed ({source})")]
    Setup { mcg_cap: u64, source: io::Error },
    #[error(
        "KVM_X86_SET_MCE for guest address {gpa:#x} failed ({source}); was KVM_X86_SETUP_MCE called on this vCPU \
         with at least {GUEST_BANKS} banks?"
    )]
    Inject { gpa: u64, source: io::Error },
}

/// CPUID leaf 0x8000_0007 EBX ("RAS capabilities") on AMD: MCA overflow recovery and
/// SUCCOR (software uncorrectable error containment and recovery: the CPU reports
/// consumed poison precisely enough for the OS to recover).
pub const CPUID_AMD_RAS_LEAF: u32 = 0x8000_0007;
pub const CPUID_AMD_EBX_OVERFLOW_RECOV: u32 = 1 << 0;
pub const CPUID_AMD_EBX_SUCCOR: u32 = 1 << 1;

/// Forces CPUID.1:EDX MCE and MCA on, so the guest enables its machine check handler,
/// and makes the uncorrected memory errors the poison path raises recoverable for the
/// guest's vendor:
/// - Intel: through MCG_CAP's software error recovery bit (`guest_mcg_cap`);
/// - AMD (and Hygon): Linux grades any uncorrected error as fatal ("Uncorrected error
///   without MCA Recovery") unless CPUID advertises SUCCOR, and an overflowed one unless
///   it advertises overflow recovery. KVM reports neither, as it emulates no SMCA banks;
///   our banks are the legacy layout Linux then reads, so both bits are set here and
///   SMCA (bit 3) stays clear.
pub fn advertise_mce(cpuid: &mut CpuId) {
    let amd = McaVendor::of(cpuid) == McaVendor::Amd;
    for entry in cpuid.as_mut_slice().iter_mut() {
        match entry.function {
            1 => entry.edx |= CPUID_EDX_MCE | CPUID_EDX_MCA,
            CPUID_AMD_RAS_LEAF if amd => entry.ebx |= CPUID_AMD_EBX_OVERFLOW_RECOV | CPUID_AMD_EBX_SUCCOR,
            _ => {}
        }
    }
}

/// Whose machine-check conventions the guest follows: the guest CPU's vendor (KVM's
/// CPUID is the host's, so an AMD host gives an AMD guest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McaVendor {
    /// Intel (and anything not AMD): Linux grades by MCG_CAP.SER_P and the S/AR bits;
    /// a memory error is MCACOD 0x1xx in any bank (QEMU uses bank 9).
    Intel,
    /// AMD and Hygon: Linux grades by CPUID SUCCOR, has no action-optional #MC, and
    /// counts as a memory error (which the nfit driver adds to the badblocks list) only
    /// a northbridge bank 4 error with extended error code 8 (DRAM ECC).
    Amd,
}

impl McaVendor {
    pub fn of(cpuid: &CpuId) -> McaVendor {
        match cpuid.as_slice().iter().find(|e| e.function == 0).map(vendor) {
            Some(v) if &v == b"AuthenticAMD" || &v == b"HygonGenuine" => McaVendor::Amd,
            _ => McaVendor::Intel,
        }
    }

    /// The bank memory errors are reported in.
    pub fn poison_bank(self) -> u8 {
        match self {
            McaVendor::Intel => POISON_BANK,
            McaVendor::Amd => AMD_NB_BANK,
        }
    }
}

/// AMD's northbridge bank and the extended error code (MCi_STATUS[20:16]) of a DRAM ECC
/// error: what Linux's `amd_mce_is_memory_error` looks for on CPUs without SMCA.
pub const AMD_NB_BANK: u8 = 4;
pub const AMD_XEC_DRAM_ECC: u64 = 0x8 << 16;

/// The vendor string of CPUID leaf 0 (EBX, EDX, ECX).
fn vendor(leaf0: &kvm_bindings::kvm_cpuid_entry2) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..4].copy_from_slice(&leaf0.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&leaf0.edx.to_le_bytes());
    v[8..].copy_from_slice(&leaf0.ecx.to_le_bytes());
    v
}

/// The MCG_CAP flag bits KVM can emulate (KVM leaves the bank count field 0: see
/// `supported_banks`).
pub fn supported_mcg_cap(kvm: &Kvm) -> Result<u64, MceError> {
    let mut cap = 0u64;
    // SAFETY: a system ioctl writing one u64 into `cap`; the result is checked.
    let ret = unsafe { ioctl_with_mut_ref(kvm, KVM_X86_GET_MCE_CAP_SUPPORTED(), &mut cap) };
    if ret < 0 {
        return Err(MceError::CapSupported(io::Error::last_os_error()));
    }
    Ok(cap)
}

/// KVM_CAP_MCE: how many banks KVM emulates per vCPU (0 when it has no MCE support).
pub fn supported_banks(kvm: &Kvm) -> u32 {
    kvm.check_extension_int(Cap::Mce).max(0) as u32
}

/// The guest's MCG_CAP: MCG_CTL_P | MCG_SER_P | 10 banks (QEMU's 0x0100_010A), refused
/// if KVM cannot do that.
pub fn guest_mcg_cap(supported: u64, banks: u32) -> Result<u64, MceError> {
    let wanted = MCG_CTL_P | MCG_SER_P;
    if supported & wanted != wanted || u64::from(banks) < GUEST_BANKS {
        return Err(MceError::Unsupported { supported, banks });
    }
    Ok(wanted | GUEST_BANKS)
}

/// KVM_X86_SETUP_MCE on one vCPU. KVM also sets MCG_CTL and every MCi_CTL to all ones.
pub fn setup_vcpu(vcpu: &VcpuFd, mcg_cap: u64) -> Result<(), MceError> {
    // SAFETY: the ioctl reads one u64; the result is checked.
    let ret = unsafe { ioctl_with_ref(vcpu, KVM_X86_SETUP_MCE(), &mcg_cap) };
    if ret < 0 {
        return Err(MceError::Setup {
            mcg_cap,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The machine check for poison at guest physical address `gpa`, as a CPU of `vendor`
/// reports it. The Intel values are QEMU's; on AMD the same status is reported in the
/// northbridge bank with the DRAM ECC extended code, so Linux's nfit driver (which only
/// listens for memory errors) adds the address to the region's badblocks, as on Intel.
pub fn machine_check(gpa: u64, kind: MachineCheckKind, vendor: McaVendor) -> kvm_x86_mce {
    let (status, mcg_status) = match kind {
        MachineCheckKind::ActionRequired => (SRAR_STATUS, SRAR_MCG_STATUS),
        MachineCheckKind::ActionOptional => (SRAO_STATUS, SRAO_MCG_STATUS),
    };
    let status = match vendor {
        McaVendor::Intel => status,
        McaVendor::Amd => status | AMD_XEC_DRAM_ECC,
    };
    kvm_x86_mce {
        status,
        addr: gpa,
        misc: MCI_MISC_PHYS_4K,
        mcg_status,
        bank: vendor.poison_bank(),
        ..Default::default()
    }
}

/// SRAR (Intel layout): a load consumed poison at `gpa`.
pub fn action_required(gpa: u64) -> kvm_x86_mce {
    machine_check(gpa, MachineCheckKind::ActionRequired, McaVendor::Intel)
}

/// SRAO (Intel layout): a patrol scrub found poison at `gpa`.
pub fn action_optional(gpa: u64) -> kvm_x86_mce {
    machine_check(gpa, MachineCheckKind::ActionOptional, McaVendor::Intel)
}

/// Why `kind` cannot be given to a guest of `vendor`, if it cannot: AMD has no
/// action-optional machine check. Linux on AMD grades every uncorrected #MC as action
/// required for the task it interrupts (or fatal in the kernel), so an "optional" one
/// raised at whatever instruction the vCPU is at would panic an idle guest.
pub fn unsupported_for(vendor: McaVendor, kind: MachineCheckKind) -> Option<&'static str> {
    match (vendor, kind) {
        (McaVendor::Amd, MachineCheckKind::ActionOptional) => Some(
            "the guest CPU is AMD, which has no action-optional machine check (Linux would grade it as fatal \
             in kernel context); poison the range without `machine_check` and let the guest consume it, or run \
             on an Intel host",
        ),
        _ => None,
    }
}

/// KVM_X86_SET_MCE: queues the machine check; it is raised at the next KVM_RUN.
pub fn inject(vcpu: &VcpuFd, gpa: u64, kind: MachineCheckKind, vendor: McaVendor) -> Result<(), MceError> {
    let mce = machine_check(gpa, kind, vendor);
    // SAFETY: the ioctl reads one kvm_x86_mce; the result is checked.
    let ret = unsafe { ioctl_with_ref(vcpu, KVM_X86_SET_MCE(), &mce) };
    if ret < 0 {
        return Err(MceError::Inject {
            gpa,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The control API's "patrol scrub" option.
pub fn inject_action_optional(vcpu: &VcpuFd, gpa: u64) -> Result<(), MceError> {
    inject(vcpu, gpa, MachineCheckKind::ActionOptional, McaVendor::Intel)
}

/// Injects and records `MachineCheck { gpa, kind, delivered }` in the platform event log,
/// `delivered` being whether KVM accepted it. The error is returned for the VMM's log too.
pub fn deliver_and_log(
    vcpu: &impl crate::vcpu::vcpu_port::VcpuPort,
    gpa: u64,
    kind: MachineCheckKind,
    vendor: McaVendor,
    platform: &mut NvdimmPlatform,
) -> Result<(), MceError> {
    let result = vcpu.inject_machine_check(gpa, kind, vendor);
    platform.log_event(EventKind::MachineCheck {
        gpa,
        kind,
        delivered: result.is_ok(),
    });
    result
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod tests_support {
    use std::path::Path;

    use nvdimm_model::{NvdimmPlatform, PlatformConfig, PlatformLayout};

    /// The default platform, never written to disk, for tests that need an event log.
    pub fn platform() -> NvdimmPlatform {
        let config = PlatformConfig::default_in(Path::new("/nonexistent"));
        let layout =
            PlatformLayout::packed(&config, 4 << 30, 1 << 30, 0xC010_0000, 0xD0000, 0xC000_0000);
        NvdimmPlatform::ephemeral(config, layout).expect("default platform")
    }
}
