//! Register state for entering a guest directly in 64-bit long mode (no firmware):
//! paging on with identity tables, a flat 64-bit code segment, interrupts off.
//!
//! The one place that writes long-mode segments, control registers and the TSS
//! descriptor: the bare-metal loader (`sregs`, `gdt_bytes`), the KVM capability probe
//! (`kvm_check::longmode`) and the Linux 64-bit boot protocol (`linux_boot::cpu`) all
//! build on `Entry`, differing only in where their GDT/TSS sit and which selectors
//! and optional CR bits they want.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

pub const CR0_PE: u64 = 1;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.MCE: without it a machine check shuts the CPU down instead of raising #MC.
pub const CR4_MCE: u64 = 1 << 6;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;

pub const CODE_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;
pub const TSS_SELECTOR: u16 = 0x18;
/// The TSS sits right after the GDT (which ends with its two-slot descriptor).
const TSS_OFFSET: u64 = 0x40;
pub const TSS_LIMIT: u32 = 0x67;

/// Flat 64-bit code: L=1, P, S, type execute/read accessed, G.
pub const CODE64_DESCRIPTOR: u64 = 0x00af_9b00_0000_ffff;
/// Flat data: P, S, type read/write accessed, D/B, G.
pub const DATA_DESCRIPTOR: u64 = 0x00cf_9300_0000_ffff;

/// GDT entries matching the segments below (null, code64, data, TSS low/high), for
/// guests that reload them. The TSS descriptor is filled in by `gdt_bytes`.
pub const GDT: [u64; 3] = [0, CODE64_DESCRIPTOR, DATA_DESCRIPTOR];

/// A flat 4 GiB segment as KVM wants it in a segment register (matches
/// `CODE64_DESCRIPTOR` for `(0xb, true)` and `DATA_DESCRIPTOR` for `(0x3, false)`).
pub fn flat_segment(selector: u16, type_: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// 16-byte system descriptor of a busy 64-bit TSS.
pub fn tss_descriptor(base: u64, limit: u64) -> (u64, u64) {
    let lo = (limit & 0xFFFF)
        | (base & 0xFF_FFFF) << 16
        | 0xBu64 << 40
        | 1u64 << 47
        | ((limit >> 16) & 0xF) << 48
        | ((base >> 24) & 0xFF) << 56;
    (lo, base >> 32)
}

/// Where one guest keeps its long-mode tables and which optional CR bits it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub cr3: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
    pub code_selector: u16,
    pub data_selector: u16,
    pub tss_selector: u16,
    pub tss_base: u64,
    /// CR0.NE (native x87 error reporting).
    pub cr0_ne: bool,
    /// CR4.MCE (a guest that takes machine checks).
    pub cr4_mce: bool,
}

impl Entry {
    /// Long-mode system registers on top of what KVM returned for a fresh vCPU. The IDT
    /// is left as it was; callers that need one set it afterwards.
    pub fn sregs(&self, mut sregs: kvm_sregs) -> kvm_sregs {
        sregs.cs = flat_segment(self.code_selector, 0xb, true);
        let data = flat_segment(self.data_selector, 0x3, false);
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        // VM entry checks TR even though nothing here switches stacks: a busy 64-bit TSS.
        sregs.tr = kvm_segment {
            base: self.tss_base,
            limit: TSS_LIMIT,
            selector: self.tss_selector,
            type_: 0xb,
            present: 1,
            ..Default::default()
        };
        sregs.gdt.base = self.gdt_base;
        sregs.gdt.limit = self.gdt_limit;
        sregs.cr3 = self.cr3;
        sregs.cr4 = CR4_PAE | if self.cr4_mce { CR4_MCE } else { 0 };
        sregs.cr0 = CR0_PE | CR0_PG | CR0_ET | if self.cr0_ne { CR0_NE } else { 0 };
        sregs.efer = EFER_LME | EFER_LMA;
        sregs
    }
}

/// Long-mode system registers for the GDT `gdt_bytes(gdt_addr)` writes.
pub fn sregs(sregs: kvm_sregs, cr3: u64, gdt_addr: u64) -> kvm_sregs {
    Entry {
        cr3,
        gdt_base: gdt_addr,
        gdt_limit: ((GDT.len() + 2) * 8 - 1) as u16,
        code_selector: CODE_SELECTOR,
        data_selector: DATA_SELECTOR,
        tss_selector: TSS_SELECTOR,
        tss_base: gdt_addr + TSS_OFFSET,
        cr0_ne: true,
        cr4_mce: true,
    }
    .sregs(sregs)
}

pub fn regs(entry: u64, stack_top: u64, rsi: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsp: stack_top,
        rbp: stack_top,
        rsi,
        rflags: 0x2,
        ..Default::default()
    }
}

/// GDT (with the TSS descriptor for a TSS at `gdt_addr + TSS_OFFSET`) followed by the zeroed TSS.
pub fn gdt_bytes(gdt_addr: u64) -> Vec<u8> {
    let (lo, hi) = tss_descriptor(gdt_addr + TSS_OFFSET, u64::from(TSS_LIMIT));
    let mut bytes: Vec<u8> = GDT
        .iter()
        .chain(&[lo, hi])
        .flat_map(|e| e.to_le_bytes())
        .collect();
    bytes.resize(TSS_OFFSET as usize + TSS_LIMIT as usize + 1, 0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::linux_boot::cpu::segment;

    #[test]
    fn flat_segments_are_what_the_gdt_descriptors_decode_to() {
        assert_eq!(
            flat_segment(0x10, 0xb, true),
            segment(CODE64_DESCRIPTOR, 0x10)
        );
        assert_eq!(
            flat_segment(0x18, 0x3, false),
            segment(DATA_DESCRIPTOR, 0x18)
        );
    }

    #[test]
    fn tr_points_at_the_tss_the_gdt_describes() {
        let gdt_addr = 0x1_2345_6500;
        let s = sregs(kvm_sregs::default(), 0x1000, gdt_addr);
        let bytes = gdt_bytes(gdt_addr);
        let at = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        let lo = at(usize::from(TSS_SELECTOR / 8));
        let base = ((lo >> 16) & 0xff_ffff)
            | (((lo >> 56) & 0xff) << 24)
            | (at(usize::from(TSS_SELECTOR / 8) + 1) << 32);
        assert_eq!((s.tr.base, u64::from(s.tr.limit)), (base, lo & 0xffff));
        assert_eq!(u64::from(s.gdt.limit) + 1, (GDT.len() as u64 + 2) * 8);
        assert!(
            bytes.len() as u64 > s.tr.base - gdt_addr + u64::from(TSS_LIMIT),
            "the TSS is inside the bytes"
        );
    }
}
