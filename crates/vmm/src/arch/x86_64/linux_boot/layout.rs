//! Where the boot data of a directly booted Linux goes in guest RAM, and where the
//! initramfs is placed. Everything below `LEGACY_HOLE_START` (640 KiB) is RAM the
//! e820 map reports as usable; Linux copies what it needs out of it early and then
//! reuses it, as with any boot loader.

use vnvdimm_machine::{MemoryMap, RegionKind};

/// GDT for the 64-bit boot protocol (selectors 0x10 code, 0x18 data) or PVH.
pub const GDT_ADDR: u64 = 0x500;
/// PVH `hvm_start_info`, its memory map (up to `MAX_MEMMAP` entries) and module list.
pub const PVH_INFO_ADDR: u64 = 0x6000;
pub const PVH_MEMMAP_ADDR: u64 = 0x6040;
pub const PVH_MODLIST_ADDR: u64 = 0x6c80;
pub const MAX_MEMMAP: usize = 128;
/// The "zero page": `struct boot_params`, 4 KiB.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Identity page tables for the 64-bit entry (PML4, one PDPT, four PDs: the low 4 GiB).
pub const PAGE_TABLES_ADDR: u64 = 0x9000;
pub const PAGE_TABLES_END: u64 = 0x1_0000;
/// The command line, NUL-terminated.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Linux x86's COMMAND_LINE_SIZE (2048) is what the kernel keeps; refuse longer lines.
pub const CMDLINE_MAX: usize = 2048;
/// Where bzImage's protected-mode code and the ELF's lowest segment load (CONFIG_PHYSICAL_START
/// is 16 MiB in Debian's kernel; bzImage loads at code32_start = 1 MiB and relocates itself).
pub const HIGH_MEMORY_START: u64 = 0x10_0000;
/// initrd_addr_max for kernels that do not state one (boot protocol < 2.03).
pub const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37FF_FFFF;
const PAGE: u64 = 4096;

/// Highest page-aligned address at which `size` bytes fit in one usable RAM region,
/// at or above `not_below` and ending at or below `max_end`. Linux wants the initrd
/// as high as possible below initrd_addr_max so it does not collide with the kernel's
/// own decompression and early allocations.
pub fn place_initramfs(map: &MemoryMap, size: u64, not_below: u64, max_end: u64) -> Option<u64> {
    map.regions
        .iter()
        .filter(|r| r.kind == RegionKind::Ram)
        .filter_map(|r| {
            let end = r.end().min(max_end);
            let start = end.checked_sub(size)? / PAGE * PAGE;
            (start >= r.start.max(not_below)).then_some(start)
        })
        .max()
}
