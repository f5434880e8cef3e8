//! A throw-away VM whose single vCPU starts directly in 64-bit long mode, for programs of
//! a few hand-assembled instructions (the capability check, and tests of the poison path).
//!
//! KVM_SET_SREGS puts the vCPU in long mode without any boot code: paging on with an
//! identity map of the low 4 GiB (2 MiB pages), a flat 64-bit code segment, a 64-bit TSS
//! (VMX requires a usable busy TSS even though nothing reads it) and an IDT whose #DE and
//! each gate the caller asks for points at the handler code it supplies.
//!
//! Guest-physical layout of the 64 KiB low memory slot:
//!
//! | address | what |
//! |---|---|
//! | `0x1000` | PML4 |
//! | `0x2000` | PDPT |
//! | `0x3000..0x7000` | four page directories, 2 MiB pages, identity map of 0..4 GiB |
//! | `0x7000` | GDT (null, code 0x08, data 0x10, TSS 0x18) |
//! | `0x7100` | TSS |
//! | `0x8000` | IDT, 256 gates |
//! | `0x9000..0xA000` | exception handlers, 256 bytes each |
//! | `0xA000` | main code (entry point) |
//! | `0x10000` | top of the stack |

use std::io;
use vm_memory::{MmapRegion, VolatileMemory};

use kvm_bindings::{kvm_regs, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

use crate::arch::x86_64::long_mode::{
    self, tss_descriptor, CODE64_DESCRIPTOR, CODE_SELECTOR, DATA_DESCRIPTOR, DATA_SELECTOR, TSS_LIMIT,
    TSS_SELECTOR,
};
pub use crate::arch::x86_64::long_mode::EFER_LMA;

pub const LOW_MEM_SIZE: u64 = 0x1_0000;
const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
const GDT: u64 = 0x7000;
const TSS: u64 = 0x7100;
const IDT: u64 = 0x8000;
pub const HANDLER_AREA: u64 = 0x9000;
const HANDLER_SLOT: u64 = 0x100;
const MAX_HANDLERS: usize = 16;
pub const CODE_ADDR: u64 = 0xA000;
const STACK_TOP: u64 = LOW_MEM_SIZE;
const MAX_CODE: usize = 0x1000;

/// Page table entry bits: present, writable, page size (2 MiB).
const PTE_P: u64 = 1;
const PTE_W: u64 = 1 << 1;
const PTE_PS: u64 = 1 << 7;
const MIB2: u64 = 2 << 20;

pub const VECTOR_DE: u8 = 0;
pub const VECTOR_BP: u8 = 3;
pub const VECTOR_UD: u8 = 6;
pub const VECTOR_MC: u8 = 18;

/// What one KVM_RUN returned, owned so it can cross threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    IoOut { port: u16, data: Vec<u8> },
    IoIn { port: u16 },
    MmioRead { addr: u64, len: usize },
    MmioWrite { addr: u64, data: Vec<u8> },
    Hlt,
    Shutdown,
    InternalError,
    FailEntry { reason: u64 },
    Other(String),
}

impl Exit {
    /// Whether the vCPU cannot continue after this exit.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Exit::IoOut { .. } | Exit::IoIn { .. } | Exit::MmioRead { .. } | Exit::MmioWrite { .. }
        )
    }
}

/// One KVM_RUN. Port and MMIO reads return all ones, like an unclaimed bus.
pub fn run_once(vcpu: &mut VcpuFd) -> io::Result<Exit> {
    let exit = match vcpu.run().map_err(io::Error::from)? {
        VcpuExit::IoOut(port, data) => Exit::IoOut {
            port,
            data: data.to_vec(),
        },
        VcpuExit::IoIn(port, data) => {
            data.fill(0xFF);
            Exit::IoIn { port }
        }
        VcpuExit::MmioRead(addr, data) => {
            data.fill(0xFF);
            Exit::MmioRead {
                addr,
                len: data.len(),
            }
        }
        VcpuExit::MmioWrite(addr, data) => Exit::MmioWrite {
            addr,
            data: data.to_vec(),
        },
        VcpuExit::Hlt => Exit::Hlt,
        VcpuExit::Shutdown => Exit::Shutdown,
        VcpuExit::InternalError => Exit::InternalError,
        VcpuExit::FailEntry(reason, _) => Exit::FailEntry { reason },
        other => Exit::Other(format!("{other:?}")),
    };
    Ok(exit)
}

/// Runs until a final exit or `max_exits` exits, whichever comes first.
pub fn run_until_final(vcpu: &mut VcpuFd, max_exits: usize) -> io::Result<Vec<Exit>> {
    let mut exits = Vec::new();
    while exits.len() < max_exits {
        let exit = run_once(vcpu)?;
        let last = exit.is_final();
        exits.push(exit);
        if last {
            break;
        }
    }
    Ok(exits)
}

/// The VM, its vCPU and its low memory. Drop order: vCPU and VM fds close before the
/// memory is unmapped (fields drop in declaration order).
pub struct LongModeVm {
    pub vcpu: VcpuFd,
    pub vm: VmFd,
    /// Private anonymous memory (vm-memory's), unmapped on drop.
    pub low: MmapRegion,
}

pub struct LongModeSetup<'a> {
    pub code: &'a [u8],
    /// (vector, handler code): an interrupt gate per entry, each handler in its own 256-byte slot.
    pub handlers: &'a [(u8, &'a [u8])],
    /// Set CR4.MCE (a guest that takes machine checks).
    pub cr4_mce: bool,
}

impl LongModeVm {
    pub fn new(kvm: &Kvm, setup: &LongModeSetup<'_>) -> io::Result<Self> {
        let handler_too_big = setup
            .handlers
            .iter()
            .any(|(_, h)| h.len() > HANDLER_SLOT as usize);
        if setup.code.len() > MAX_CODE || handler_too_big || setup.handlers.len() > MAX_HANDLERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bare-metal program larger than 4 KiB, a handler above 256 bytes or more than 16 handlers",
            ));
        }
        let vm = kvm.create_vm().map_err(io::Error::from)?;
        let low = MmapRegion::new(LOW_MEM_SIZE as usize).map_err(|e| io::Error::other(e.to_string()))?;
        write_tables(&low);
        for (i, (vector, handler)) in setup.handlers.iter().enumerate() {
            let addr = HANDLER_AREA + i as u64 * HANDLER_SLOT;
            put(&low, addr, handler);
            let (lo, hi) = interrupt_gate(addr, CODE_SELECTOR);
            put_u64(&low, IDT + u64::from(*vector) * 16, lo);
            put_u64(&low, IDT + u64::from(*vector) * 16 + 8, hi);
        }
        put(&low, CODE_ADDR, setup.code);
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: LOW_MEM_SIZE,
            userspace_addr: low.as_ptr() as u64,
        };
        // SAFETY: `low` outlives the VM (see the struct's drop order) and is LOW_MEM_SIZE long.
        unsafe { vm.set_user_memory_region(region) }.map_err(io::Error::from)?;
        let vcpu = vm.create_vcpu(0).map_err(io::Error::from)?;
        set_long_mode(&vcpu, setup.cr4_mce)?;
        Ok(LongModeVm { vcpu, vm, low })
    }
}

/// Writes the probe's fixed layout; every address is a constant inside the slot.
fn put(mem: &MmapRegion, addr: u64, bytes: &[u8]) {
    mem.get_slice(addr as usize, bytes.len())
        .expect("the long-mode layout fits in its 64 KiB slot")
        .copy_from(bytes);
}

fn put_u64(mem: &MmapRegion, addr: u64, value: u64) {
    put(mem, addr, &value.to_le_bytes());
}

fn write_tables(mem: &MmapRegion) {
    put_u64(mem, PML4, PDPT | PTE_P | PTE_W);
    for gib in 0..4u64 {
        let pd = PD + gib * 0x1000;
        put_u64(mem, PDPT + gib * 8, pd | PTE_P | PTE_W);
        for i in 0..512u64 {
            put_u64(
                mem,
                pd + i * 8,
                ((gib << 30) + i * MIB2) | PTE_P | PTE_W | PTE_PS,
            );
        }
    }
    put_u64(mem, GDT + 8, CODE64_DESCRIPTOR);
    put_u64(mem, GDT + 16, DATA_DESCRIPTOR);
    let (tss_lo, tss_hi) = tss_descriptor(TSS, u64::from(TSS_LIMIT));
    put_u64(mem, GDT + 24, tss_lo);
    put_u64(mem, GDT + 32, tss_hi);
}

/// 16-byte 64-bit interrupt gate, DPL 0, no IST.
fn interrupt_gate(offset: u64, selector: u16) -> (u64, u64) {
    let lo = (offset & 0xFFFF)
        | (selector as u64) << 16
        | 0xEu64 << 40
        | 1u64 << 47
        | ((offset >> 16) & 0xFFFF) << 48;
    (lo, offset >> 32)
}

fn set_long_mode(vcpu: &VcpuFd, cr4_mce: bool) -> io::Result<()> {
    let entry = long_mode::Entry {
        cr3: PML4,
        gdt_base: GDT,
        gdt_limit: 40 - 1,
        code_selector: CODE_SELECTOR,
        data_selector: DATA_SELECTOR,
        tss_selector: TSS_SELECTOR,
        tss_base: TSS,
        cr0_ne: true,
        cr4_mce,
    };
    let mut sregs = entry.sregs(vcpu.get_sregs().map_err(io::Error::from)?);
    sregs.idt.base = IDT;
    sregs.idt.limit = 256 * 16 - 1;
    vcpu.set_sregs(&sregs).map_err(io::Error::from)?;
    let regs = kvm_regs {
        rip: CODE_ADDR,
        rsp: STACK_TOP,
        rflags: 0x2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(io::Error::from)
}

/// Tiny x86-64 encoder for the few instructions the bare-metal programs use.
pub mod asm {
    /// `mov dx, port; mov al, value; out dx, al`
    pub fn out8(port: u16, value: u8) -> Vec<u8> {
        let [lo, hi] = port.to_le_bytes();
        vec![0x66, 0xBA, lo, hi, 0xB0, value, 0xEE]
    }

    /// `hlt`
    pub const HLT: [u8; 1] = [0xF4];

    /// `ud2` (raises #UD; the saved RIP points at it)
    pub const UD2: [u8; 2] = [0x0F, 0x0B];

    /// `int3` (raises #BP; the saved RIP points after it)
    pub const INT3: [u8; 1] = [0xCC];

    /// `add qword [rsp], n` — skip `n` bytes of the faulting instruction on return.
    pub fn skip_on_return(n: u8) -> Vec<u8> {
        vec![0x48, 0x83, 0x04, 0x24, n]
    }

    /// Reads MSR `msr` and writes its low dword to `port`, its high dword to `port + 1`:
    /// `mov ecx, msr; rdmsr; mov ebx, edx; mov dx, port; out dx, eax; mov eax, ebx;
    /// mov dx, port + 1; out dx, eax`.
    pub fn rdmsr_out(msr: u32, port: u16) -> Vec<u8> {
        let mut code = vec![0xB9];
        code.extend_from_slice(&msr.to_le_bytes());
        code.extend_from_slice(&[0x0F, 0x32, 0x89, 0xD3]);
        let [lo, hi] = port.to_le_bytes();
        code.extend_from_slice(&[0x66, 0xBA, lo, hi, 0xEF, 0x89, 0xD8]);
        let [lo, hi] = (port + 1).to_le_bytes();
        code.extend_from_slice(&[0x66, 0xBA, lo, hi, 0xEF]);
        code
    }

    /// `iretq`
    pub const IRETQ: [u8; 2] = [0x48, 0xCF];

    /// `xor eax, eax; xor edx, edx; xor ecx, ecx; div ecx` (raises #DE)
    pub const DIVIDE_BY_ZERO: [u8; 8] = [0x31, 0xC0, 0x31, 0xD2, 0x31, 0xC9, 0xF7, 0xF1];

    /// `mov rax, imm64; mov rax, [rax]` — a 64-bit load from `addr`.
    pub fn load64(addr: u64) -> Vec<u8> {
        let mut code = vec![0x48, 0xB8];
        code.extend_from_slice(&addr.to_le_bytes());
        code.extend_from_slice(&[0x48, 0x8B, 0x00]);
        code
    }

    /// `mov rax, imm64; mov rcx, value(imm64); mov [rax], rcx` — a 64-bit store to `addr`.
    pub fn store64(addr: u64, value: u64) -> Vec<u8> {
        let mut code = vec![0x48, 0xB8];
        code.extend_from_slice(&addr.to_le_bytes());
        code.extend_from_slice(&[0x48, 0xB9]);
        code.extend_from_slice(&value.to_le_bytes());
        code.extend_from_slice(&[0x48, 0x89, 0x08]);
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_and_tss_descriptors_encode_the_offsets() {
        let (lo, hi) = interrupt_gate(0x1234_5678_9ABC_DEF0, 0x08);
        assert_eq!(lo & 0xFFFF, 0xDEF0);
        assert_eq!(lo >> 48, 0x9ABC);
        assert_eq!((lo >> 16) & 0xFFFF, 0x08);
        assert_eq!(
            (lo >> 40) & 0xFF,
            0x8E,
            "present, DPL 0, 64-bit interrupt gate"
        );
        assert_eq!(hi, 0x1234_5678);
        let (lo, hi) = tss_descriptor(0x7100, 0x67);
        assert_eq!(lo & 0xFFFF, 0x67);
        assert_eq!((lo >> 16) & 0xFF_FFFF, 0x7100);
        assert_eq!((lo >> 40) & 0xFF, 0x8B, "present busy 64-bit TSS");
        assert_eq!(hi, 0);
    }

    #[test]
    fn page_tables_identity_map_four_gib() {
        let mem = MmapRegion::new(LOW_MEM_SIZE as usize).unwrap();
        write_tables(&mem);
        let read = |addr: u64| {
            let mut word = [0u8; 8];
            mem.get_slice(addr as usize, 8).unwrap().copy_to(&mut word);
            u64::from_le_bytes(word)
        };
        // Walk 0xC000_1000 by hand.
        let va: u64 = 0xC000_1000;
        let pdpt = read(PML4 + ((va >> 39) & 511) * 8) & !0xFFF;
        let pd = read(pdpt + ((va >> 30) & 511) * 8) & !0xFFF;
        let pde = read(pd + ((va >> 21) & 511) * 8);
        assert_ne!(pde & PTE_PS, 0);
        assert_eq!((pde & !0x1F_FFFF) + (va & 0x1F_FFFF), va);
    }
}
