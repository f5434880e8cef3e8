//! CPUID for the vCPUs: what KVM supports, with each vCPU's APIC id, MCE and MCA
//! advertised (the poison path needs them) and the hypervisor bit set.

use kvm_bindings::CpuId;

const LEAF_FEATURES: u32 = 1;
const EDX_MCE: u32 = 1 << 7;
const EDX_MCA: u32 = 1 << 14;
const ECX_HYPERVISOR: u32 = 1 << 31;

pub fn patch(cpuid: &mut CpuId, apic_id: u8, cpus: u8) {
    for entry in cpuid.as_mut_slice() {
        if entry.function == LEAF_FEATURES {
            entry.edx |= EDX_MCE | EDX_MCA;
            entry.ecx |= ECX_HYPERVISOR;
            // EBX[31:24] initial APIC id, EBX[23:16] logical processors per package.
            entry.ebx =
                (entry.ebx & 0x0000_ffff) | (u32::from(apic_id) << 24) | (u32::from(cpus) << 16);
        }
    }
}
