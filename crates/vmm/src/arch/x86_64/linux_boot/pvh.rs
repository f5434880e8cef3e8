//! PVH boot information: linux-loader's `hvm_start_info`, memory map and module list
//! types (xen/include/public/arch-x86/hvm/start_info.h, as Linux's
//! arch/x86/platform/pvh reads them), written by its `PvhBootConfigurator`.

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::arch::x86_64::e820::E820Entry;

pub const START_INFO_MAGIC: u32 = 0x336E_C578;
/// Version 1: the memory map fields are valid.
const START_INFO_VERSION: u32 = 1;
pub const START_INFO_LEN: usize = std::mem::size_of::<hvm_start_info>();
pub const MEMMAP_ENTRY_LEN: usize = std::mem::size_of::<hvm_memmap_table_entry>();
pub const MODLIST_ENTRY_LEN: usize = std::mem::size_of::<hvm_modlist_entry>();

/// Where the three parts go and what they say.
pub struct StartInfo<'a> {
    pub info_addr: u64,
    pub cmdline_addr: u64,
    pub rsdp_addr: u64,
    pub memmap_addr: u64,
    pub memmap: &'a [E820Entry],
    /// (modlist address, initramfs address, size)
    pub module: Option<(u64, u64, u64)>,
}

/// The boot parameters as linux-loader's configurator takes them.
pub fn boot_params(info: &StartInfo) -> BootParams {
    let start = hvm_start_info {
        magic: START_INFO_MAGIC,
        version: START_INFO_VERSION,
        nr_modules: u32::from(info.module.is_some()),
        modlist_paddr: info.module.map_or(0, |m| m.0),
        cmdline_paddr: info.cmdline_addr,
        rsdp_paddr: info.rsdp_addr,
        memmap_paddr: info.memmap_addr,
        memmap_entries: info.memmap.len() as u32,
        ..Default::default()
    };
    let memmap: Vec<hvm_memmap_table_entry> = info
        .memmap
        .iter()
        .map(|e| hvm_memmap_table_entry { addr: e.addr, size: e.size, type_: e.kind, reserved: 0 })
        .collect();
    let mut params = BootParams::new::<hvm_start_info>(&start, GuestAddress(info.info_addr));
    params.set_sections::<hvm_memmap_table_entry>(&memmap, GuestAddress(info.memmap_addr));
    if let Some((modlist_addr, addr, size)) = info.module {
        // No module command line.
        let module = hvm_modlist_entry { paddr: addr, size, ..Default::default() };
        params.set_modules::<hvm_modlist_entry>(&[module], GuestAddress(modlist_addr));
    }
    params
}

/// Writes the start info, memory map and module list into guest RAM.
pub fn write(info: &StartInfo, ram: &GuestMemoryMmap) -> Result<(), linux_loader::configurator::Error> {
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&boot_params(info), ram)
}
