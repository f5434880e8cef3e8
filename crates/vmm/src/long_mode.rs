//! Register state for entering a guest directly in 64-bit long mode (no firmware):
//! paging on with identity tables, a flat 64-bit code segment, interrupts off.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_MCE: u64 = 1 << 6;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

pub const CODE_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;
pub const TSS_SELECTOR: u16 = 0x18;
/// The TSS sits right after the GDT (which ends with its two-slot descriptor).
const TSS_OFFSET: u64 = 0x40;
const TSS_LIMIT: u32 = 0x67;

/// GDT entries matching the segments below (null, code64, data, TSS low/high), for
/// guests that reload them. The TSS descriptor is filled in by `gdt_bytes`.
pub const GDT: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

fn segment(selector: u16, type_: u8, long: bool) -> kvm_segment {
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

/// Long-mode system registers on top of what KVM returned for a fresh vCPU.
pub fn sregs(mut sregs: kvm_sregs, cr3: u64, gdt_addr: u64) -> kvm_sregs {
    sregs.cs = segment(CODE_SELECTOR, 0xb, true);
    let data = segment(DATA_SELECTOR, 0x3, false);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    // VM entry checks TR even though nothing here switches stacks: a busy 64-bit TSS.
    sregs.tr = kvm_segment {
        base: gdt_addr + TSS_OFFSET,
        limit: TSS_LIMIT,
        selector: TSS_SELECTOR,
        type_: 0xb,
        present: 1,
        ..Default::default()
    };
    sregs.gdt.base = gdt_addr;
    sregs.gdt.limit = ((GDT.len() + 2) * 8 - 1) as u16;
    sregs.cr3 = cr3;
    sregs.cr4 = CR4_PAE | CR4_MCE;
    sregs.cr0 = CR0_PE | CR0_PG | CR0_ET | CR0_NE;
    sregs.efer = EFER_LME | EFER_LMA;
    sregs
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
    let tss = gdt_addr + TSS_OFFSET;
    let lo = u64::from(TSS_LIMIT) | ((tss & 0xff_ffff) << 16) | (0x8b << 40) | (((tss >> 24) & 0xff) << 56);
    let hi = tss >> 32;
    let mut bytes: Vec<u8> = GDT.iter().chain(&[lo, hi]).flat_map(|e| e.to_le_bytes()).collect();
    bytes.resize(TSS_OFFSET as usize + TSS_LIMIT as usize + 1, 0);
    bytes
}
