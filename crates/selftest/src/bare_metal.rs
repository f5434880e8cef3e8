//! Loading a flat bare-metal program (firmware/) and entering it in long mode.
//!
//! Low memory used (below the legacy hole, so away from everything the machine
//! reserves): GDT at `GDT_ADDR`, identity page tables from `PAGE_TABLES_ADDR`, the
//! stack growing down from `STACK_TOP`, the program at `LOAD_ADDR` (1 MiB).

use thiserror::Error;

use vnvdimm_vmm::memory::guest_memory::GuestMemoryError;
use vnvdimm_vmm::arch::x86_64::long_mode;
use vnvdimm_vmm::arch::x86_64::page_tables::{self, PageTableError};
use vnvdimm_vmm::vm::{ioctl, Vm, VmError};

pub const GDT_ADDR: u64 = 0x500;
pub const PAGE_TABLES_ADDR: u64 = 0x1000;
pub const PAGE_TABLES_END: u64 = 0x8_0000;
pub const STACK_TOP: u64 = 0x9_f000;
pub const LOAD_ADDR: u64 = 0x10_0000;

#[derive(Debug, Error)]
pub enum BareMetalError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    PageTables(#[from] PageTableError),
    #[error("the program ({len} bytes) does not fit in guest RAM at {LOAD_ADDR:#x}: {source}")]
    TooLarge {
        len: usize,
        source: GuestMemoryError,
    },
    #[error("guest RAM: {0}")]
    Memory(#[from] GuestMemoryError),
}

/// What the identity map covers: the low 4 GiB, RAM above it, and the start of each window.
fn mapped_ranges(vm: &Vm) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = vec![(0, 4 << 30)];
    ranges.extend(vm.machine().memory_map.ram_blocks.iter().copied());
    ranges.extend(vm.memory().pmem.iter().map(|w| (w.gpa, w.size().min(page_tables::WINDOW_MAP_LIMIT))));
    ranges
}

/// Copies `program` to `LOAD_ADDR` and points vCPU 0 at its first byte in long mode.
/// `rsi` is passed through (bare-metal programs take no arguments; tests may use it).
pub fn load(vm: &mut Vm, program: &[u8]) -> Result<(), BareMetalError> {
    vm.memory()
        .write_ram(LOAD_ADDR, program)
        .map_err(|source| BareMetalError::TooLarge {
            len: program.len(),
            source,
        })?;
    let tables = page_tables::identity_map(
        PAGE_TABLES_ADDR,
        &mapped_ranges(vm),
        PAGE_TABLES_END - PAGE_TABLES_ADDR,
    )?;
    vm.memory().write_ram(PAGE_TABLES_ADDR, &tables)?;
    vm.memory().write_ram(GDT_ADDR, &long_mode::gdt_bytes(GDT_ADDR))?;
    let vcpu = &vm.vcpus()[0];
    let sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    vcpu.set_sregs(&long_mode::sregs(sregs, PAGE_TABLES_ADDR, GDT_ADDR))
        .map_err(ioctl("KVM_SET_SREGS"))?;
    vcpu.set_regs(&long_mode::regs(LOAD_ADDR, STACK_TOP, 0))
        .map_err(ioctl("KVM_SET_REGS"))?;
    Ok(())
}
