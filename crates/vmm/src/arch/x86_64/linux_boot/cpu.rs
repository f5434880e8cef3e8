//! vCPU state at the kernel's entry point, for the two protocols:
//!
//! - 64-bit boot protocol (boot.rst, "64-bit Boot Protocol"): long mode, paging on
//!   with an identity map of the kernel, zero page and command line; a GDT with flat
//!   `__BOOT_CS` (0x10, 64-bit code) and `__BOOT_DS` (0x18, data); CS = 0x10,
//!   DS/ES/SS = 0x18; interrupts off; RSI = the zero page.
//! - PVH (xen pvh.rst / Linux `pvh_start_xen`): 32-bit protected mode, paging off,
//!   flat CS (0x08) and data (0x10) segments, a TSS, interrupts off; EBX = the
//!   `hvm_start_info` address.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

use crate::arch::x86_64::long_mode::{self, CODE64_DESCRIPTOR, CR0_ET, CR0_PE, DATA_DESCRIPTOR};

pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;
pub const PVH_CS: u16 = 0x08;
pub const PVH_DS: u16 = 0x10;
pub const PVH_TSS: u16 = 0x18;

/// RFLAGS bit 1 is always set; IF (bit 9) clear.
const RFLAGS_RESERVED: u64 = 0x2;

/// GDT of the 64-bit protocol: null, null, __BOOT_CS, __BOOT_DS.
pub const GDT_64: [u64; 4] = [0, 0, CODE64_DESCRIPTOR, DATA_DESCRIPTOR];
/// GDT of PVH: null, 32-bit code, data, 32-bit TSS (base 0, limit 0x67).
pub const GDT_PVH: [u64; 4] = [0, 0x00cf_9b00_0000_ffff, DATA_DESCRIPTOR, 0x0000_8b00_0000_0067];

/// How the boot vCPU enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// 64-bit boot protocol: long mode with CR3 = `cr3`, RSI = zero page.
    Long64 { cr3: u64 },
    /// PVH: 32-bit protected mode, EBX = start info.
    Pvh,
}

/// Everything the VMM must put into the boot vCPU before the first KVM_RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuEntry {
    pub mode: EntryMode,
    pub rip: u64,
    /// RSI (64-bit protocol) or RBX (PVH).
    pub boot_info: u64,
    pub gdt_addr: u64,
}

impl VcpuEntry {
    pub fn gdt(&self) -> &'static [u64; 4] {
        match self.mode {
            EntryMode::Long64 { .. } => &GDT_64,
            EntryMode::Pvh => &GDT_PVH,
        }
    }

    pub fn regs(&self) -> kvm_regs {
        let mut regs = kvm_regs { rip: self.rip, rflags: RFLAGS_RESERVED, ..Default::default() };
        match self.mode {
            EntryMode::Long64 { .. } => regs.rsi = self.boot_info,
            EntryMode::Pvh => regs.rbx = self.boot_info,
        }
        regs
    }

    /// System registers on top of those of a freshly created vCPU.
    pub fn sregs(&self, mut sregs: kvm_sregs) -> kvm_sregs {
        let gdt = self.gdt();
        let gdt_limit = (gdt.len() * 8 - 1) as u16;
        sregs.idt.base = 0;
        sregs.idt.limit = 0;
        match self.mode {
            // Linux only needs TR to pass VM entry, so the TSS is a null selector at base 0.
            EntryMode::Long64 { cr3 } => long_mode::Entry {
                cr3,
                gdt_base: self.gdt_addr,
                gdt_limit,
                code_selector: BOOT_CS,
                data_selector: BOOT_DS,
                tss_selector: 0,
                tss_base: 0,
                cr0_ne: false,
                cr4_mce: false,
            }
            .sregs(sregs),
            EntryMode::Pvh => {
                sregs.cs = segment(gdt[usize::from(PVH_CS / 8)], PVH_CS);
                let data = segment(gdt[usize::from(PVH_DS / 8)], PVH_DS);
                sregs.ds = data;
                sregs.es = data;
                sregs.fs = data;
                sregs.gs = data;
                sregs.ss = data;
                sregs.gdt.base = self.gdt_addr;
                sregs.gdt.limit = gdt_limit;
                sregs.cr0 = CR0_PE | CR0_ET;
                sregs.cr4 = 0;
                sregs.efer = 0;
                sregs.tr = segment(gdt[usize::from(PVH_TSS / 8)], PVH_TSS);
                sregs
            }
        }
    }
}

/// The hidden part of a segment register, decoded from its GDT descriptor.
pub fn segment(desc: u64, selector: u16) -> kvm_segment {
    let base = ((desc >> 16) & 0xff_ffff) | (((desc >> 56) & 0xff) << 24);
    let limit_raw = (desc & 0xffff) | (((desc >> 48) & 0xf) << 16);
    let g = ((desc >> 55) & 1) as u8;
    let limit = if g == 1 { (limit_raw << 12) | 0xfff } else { limit_raw };
    kvm_segment {
        base,
        limit: limit as u32,
        selector,
        type_: ((desc >> 40) & 0xf) as u8,
        present: ((desc >> 47) & 1) as u8,
        dpl: ((desc >> 45) & 3) as u8,
        db: ((desc >> 54) & 1) as u8,
        s: ((desc >> 44) & 1) as u8,
        l: ((desc >> 53) & 1) as u8,
        g,
        avl: ((desc >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}
