use kvm_bindings::kvm_cpuid_entry2;
use nvdimm_model::event_log::{EventKind, MachineCheckKind};

use super::*;
use crate::kvm_check::longmode::{self, asm, Exit, LongModeSetup, LongModeVm};

#[test]
fn srar_matches_the_spec_notes() {
    let mce = action_required(0x1_4000_2040);
    assert_eq!(mce.status, 0xBD80_0000_0000_0134);
    assert_eq!(mce.mcg_status, 0x7, "MCIP | EIPV | RIPV");
    assert_eq!(mce.addr, 0x1_4000_2040);
    assert_eq!(mce.misc, 0x8C);
    assert_eq!(mce.bank, 9);
    assert_eq!(mce.pad1, [0; 7]);
    assert_eq!(mce.pad2, [0; 3]);
}

#[test]
fn srao_matches_the_spec_notes() {
    let mce = action_optional(0x2000);
    assert_eq!(mce.status, 0xBD00_0000_0000_00C0);
    assert_eq!(
        mce.status & MCI_STATUS_AR,
        0,
        "action optional has AR clear"
    );
    assert_eq!(
        mce.status & (MCI_STATUS_PCC | MCI_STATUS_OVER),
        0,
        "recoverable, no overflow"
    );
    assert_eq!(mce.mcg_status, 0x5, "MCIP | RIPV");
    assert_eq!((mce.addr, mce.misc, mce.bank), (0x2000, 0x8C, 9));
}

#[test]
fn guest_mcg_cap_is_qemus_default_and_refuses_weak_hosts() {
    // What this host's KVM reports: CTL_P | SER_P (| LMCE_P with VMX), 32 banks.
    assert_eq!(guest_mcg_cap(0x0100_0100, 32).unwrap(), 0x0100_010A);
    assert_eq!(
        guest_mcg_cap(0x0900_0D00, 32).unwrap(),
        0x0100_010A,
        "extra KVM bits are not passed on"
    );
    assert!(
        matches!(
            guest_mcg_cap(MCG_CTL_P, 32),
            Err(MceError::Unsupported { .. })
        ),
        "no SER_P"
    );
    assert!(
        matches!(
            guest_mcg_cap(MCG_CTL_P | MCG_SER_P, 9),
            Err(MceError::Unsupported { .. })
        ),
        "9 banks"
    );
    let msg = guest_mcg_cap(0, 0).unwrap_err().to_string();
    assert!(
        msg.contains("MCG_SER_P") && msg.contains("--backend tcg"),
        "{msg}"
    );
}

#[test]
fn advertise_mce_sets_leaf_1_edx_only() {
    let leaf = |function, edx| kvm_cpuid_entry2 {
        function,
        edx,
        ..Default::default()
    };
    let mut cpuid = CpuId::from_entries(&[leaf(0, 0), leaf(1, 0x1), leaf(7, 0)]).unwrap();
    advertise_mce(&mut cpuid);
    let edx: Vec<u32> = cpuid.as_slice().iter().map(|e| e.edx).collect();
    assert_eq!(edx, vec![0, 0x1 | 0x80 | 0x4000, 0]);
}

fn vendor_leaf(vendor: &[u8; 12]) -> kvm_cpuid_entry2 {
    let word = |i: usize| u32::from_le_bytes(vendor[i..i + 4].try_into().unwrap());
    kvm_cpuid_entry2 {
        function: 0,
        ebx: word(0),
        edx: word(4),
        ecx: word(8),
        ..Default::default()
    }
}

fn ras_ebx_after_advertise(vendor: &[u8; 12]) -> u32 {
    let ras = kvm_cpuid_entry2 {
        function: CPUID_AMD_RAS_LEAF,
        ebx: 0,
        edx: 1 << 8,
        ..Default::default()
    };
    let mut cpuid = CpuId::from_entries(&[vendor_leaf(vendor), ras]).unwrap();
    advertise_mce(&mut cpuid);
    let leaf = cpuid.as_slice().iter().find(|e| e.function == CPUID_AMD_RAS_LEAF).unwrap();
    assert_eq!(leaf.edx, 1 << 8, "invariant TSC and the rest of the leaf stay");
    leaf.ebx
}

#[test]
fn amd_guests_see_succor_and_overflow_recovery_intel_guests_do_not() {
    assert_eq!(ras_ebx_after_advertise(b"AuthenticAMD"), 0b11);
    assert_eq!(ras_ebx_after_advertise(b"HygonGenuine"), 0b11);
    assert_eq!(ras_ebx_after_advertise(b"GenuineIntel"), 0);
}

fn kvm() -> Kvm {
    Kvm::new().expect("/dev/kvm must open on the project's machines (test-machines.md)")
}

fn halting_vm(kvm: &Kvm) -> LongModeVm {
    LongModeVm::new(
        kvm,
        &LongModeSetup {
            code: &asm::HLT,
            handlers: &[],
            cr4_mce: true,
        },
    )
    .unwrap()
}

#[test]
fn kvm_supports_the_guest_mcg_cap_and_accepts_setup_and_set_mce() {
    let kvm = kvm();
    let supported = supported_mcg_cap(&kvm).unwrap();
    eprintln!("KVM_X86_GET_MCE_CAP_SUPPORTED = {supported:#x}");
    let banks = supported_banks(&kvm);
    eprintln!("KVM_CAP_MCE banks = {banks}");
    let cap = guest_mcg_cap(supported, banks).unwrap();
    let vm = halting_vm(&kvm);
    setup_vcpu(&vm.vcpu, cap).unwrap();
    inject(&vm.vcpu, 0x5000, MachineCheckKind::ActionRequired, McaVendor::Intel).unwrap();
}

/// A vCPU set up with fewer banks than the poison bank refuses the injection.
fn vm_with_one_bank(kvm: &Kvm) -> LongModeVm {
    let vm = halting_vm(kvm);
    setup_vcpu(&vm.vcpu, MCG_CTL_P | MCG_SER_P | 1).unwrap();
    vm
}

#[test]
fn set_mce_beyond_the_vcpus_banks_fails_with_a_hint() {
    let kvm = kvm();
    let vm = vm_with_one_bank(&kvm);
    let err = inject_action_optional(&vm.vcpu, 0x5000).unwrap_err();
    assert!(err.to_string().contains("KVM_X86_SETUP_MCE"), "{err}");
}

const MCG_STATUS_MSR: u32 = 0x17A;
const MC9_STATUS_MSR: u32 = 0x400 + 4 * 9 + 1;
const MC9_ADDR_MSR: u32 = MC9_STATUS_MSR + 1;
const MC9_MISC_MSR: u32 = MC9_STATUS_MSR + 2;
const MC_PORT: u16 = 0x520;

/// Runs a bare-metal guest whose #MC handler reads MCG_STATUS and bank 9 back with RDMSR
/// and reports them on ports, injects `kind` at `gpa`, and returns the four MSRs.
fn deliver_to_bare_metal(kind: MachineCheckKind, gpa: u64) -> [u64; 4] {
    let kvm = kvm();
    let mut handler = Vec::new();
    for (i, msr) in [MCG_STATUS_MSR, MC9_STATUS_MSR, MC9_ADDR_MSR, MC9_MISC_MSR]
        .into_iter()
        .enumerate()
    {
        handler.extend(asm::rdmsr_out(msr, MC_PORT + 2 * i as u16));
    }
    handler.extend_from_slice(&asm::HLT);
    let mut code = asm::out8(0x510, 1);
    code.extend(asm::out8(0x511, 1)); // reached only if no #MC arrives
    code.extend_from_slice(&asm::HLT);
    let handlers: [(u8, &[u8]); 1] = [(longmode::VECTOR_MC, &handler)];
    let mut vm = LongModeVm::new(
        &kvm,
        &LongModeSetup {
            code: &code,
            handlers: &handlers,
            cr4_mce: true,
        },
    )
    .unwrap();
    assert!(matches!(
        longmode::run_once(&mut vm.vcpu).unwrap(),
        Exit::IoOut { port: 0x510, .. }
    ));
    setup_vcpu(
        &vm.vcpu,
        guest_mcg_cap(supported_mcg_cap(&kvm).unwrap(), supported_banks(&kvm)).unwrap(),
    )
    .unwrap();
    inject(&vm.vcpu, gpa, kind, McaVendor::Intel).unwrap();
    let exits = longmode::run_until_final(&mut vm.vcpu, 16).unwrap();
    eprintln!("exits after SET_MCE ({kind:?}): {exits:?}");
    assert_eq!(
        exits.last(),
        Some(&Exit::Hlt),
        "the #MC handler did not run to its hlt"
    );
    let mut words = [0u32; 8];
    for exit in &exits {
        if let Exit::IoOut { port, data } = exit {
            let i = usize::from(port.wrapping_sub(MC_PORT));
            assert!(
                i < 8 && data.len() == 4,
                "unexpected out {port:#x} {data:?}: the main program went on"
            );
            words[i] = u32::from_le_bytes(data[..4].try_into().unwrap());
        }
    }
    std::array::from_fn(|i| u64::from(words[2 * i]) | u64::from(words[2 * i + 1]) << 32)
}

/// The whole delivery on a bare-metal long-mode guest. This machine's emulator-backed KVM
/// delivers #MC (measured), so the values a guest OS would read are checked here.
#[test]
fn injected_srar_reaches_the_guest_handler_with_the_exact_values() {
    let gpa = 0x1_2345_6000;
    let [mcg_status, status, addr, misc] =
        deliver_to_bare_metal(MachineCheckKind::ActionRequired, gpa);
    assert_eq!(mcg_status, SRAR_MCG_STATUS);
    assert_eq!(status, SRAR_STATUS);
    assert_eq!(addr, gpa);
    assert_eq!(misc, MCI_MISC_PHYS_4K);
}

#[test]
fn injected_srao_reaches_the_guest_handler_with_the_exact_values() {
    let gpa = 0x2_0000_1000;
    let [mcg_status, status, addr, misc] =
        deliver_to_bare_metal(MachineCheckKind::ActionOptional, gpa);
    assert_eq!(
        (mcg_status, status, addr, misc),
        (SRAO_MCG_STATUS, SRAO_STATUS, gpa, MCI_MISC_PHYS_4K)
    );
}

fn test_platform() -> NvdimmPlatform {
    super::tests_support::platform()
}

#[test]
fn deliver_and_log_records_the_outcome() {
    let kvm = kvm();
    let mut platform = test_platform();
    let before = platform.events_since(0).len();
    // Bank 9 missing: refused, and logged as not delivered.
    let refusing = vm_with_one_bank(&kvm);
    assert!(deliver_and_log(
        &refusing.vcpu,
        0x7000,
        MachineCheckKind::ActionRequired,
        McaVendor::Intel,
        &mut platform
    )
    .is_err());
    let vm = halting_vm(&kvm);
    setup_vcpu(&vm.vcpu, MCG_CTL_P | MCG_SER_P | GUEST_BANKS).unwrap();
    deliver_and_log(
        &vm.vcpu,
        0x8000,
        MachineCheckKind::ActionOptional,
        McaVendor::Intel,
        &mut platform,
    )
    .unwrap();
    let kinds: Vec<EventKind> = platform
        .events_since(0)
        .into_iter()
        .skip(before)
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::MachineCheck {
                gpa: 0x7000,
                kind: MachineCheckKind::ActionRequired,
                delivered: false
            },
            EventKind::MachineCheck {
                gpa: 0x8000,
                kind: MachineCheckKind::ActionOptional,
                delivered: true
            },
        ]
    );
}

#[test]
fn amd_guests_get_memory_errors_in_the_northbridge_bank_with_the_dram_ecc_code() {
    let intel = machine_check(0x1234_5000, MachineCheckKind::ActionRequired, McaVendor::Intel);
    assert_eq!((intel.bank, intel.status), (9, SRAR_STATUS));
    let amd = machine_check(0x1234_5000, MachineCheckKind::ActionRequired, McaVendor::Amd);
    assert_eq!(amd.bank, 4);
    assert_eq!((amd.status >> 16) & 0x1f, 0x8, "extended error code: DRAM ECC");
    assert_eq!(amd.status & !(0x1f << 16), SRAR_STATUS, "the rest as on Intel");
    assert_eq!(amd.addr, 0x1234_5000);
    assert!(unsupported_for(McaVendor::Amd, MachineCheckKind::ActionOptional).is_some());
    assert!(unsupported_for(McaVendor::Amd, MachineCheckKind::ActionRequired).is_none());
    assert!(unsupported_for(McaVendor::Intel, MachineCheckKind::ActionOptional).is_none());
}

#[test]
fn the_vendor_is_read_from_cpuid_leaf_0() {
    let cpuid = |v: &[u8; 12]| CpuId::from_entries(&[vendor_leaf(v)]).unwrap();
    assert_eq!(McaVendor::of(&cpuid(b"AuthenticAMD")), McaVendor::Amd);
    assert_eq!(McaVendor::of(&cpuid(b"HygonGenuine")), McaVendor::Amd);
    assert_eq!(McaVendor::of(&cpuid(b"GenuineIntel")), McaVendor::Intel);
}
