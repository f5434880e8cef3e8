//! PVH boot (xen/include/public/arch-x86/hvm/start_info.h, as Linux's
//! arch/x86/platform/pvh reads it): `hvm_start_info`, its memory map and the module
//! list (the initramfs), byte for byte.

use crate::arch::x86_64::e820::E820Entry;

pub const START_INFO_MAGIC: u32 = 0x336E_C578;
/// Version 1: the memory map fields are valid.
const START_INFO_VERSION: u32 = 1;
pub const START_INFO_LEN: usize = 56;
pub const MEMMAP_ENTRY_LEN: usize = 24;
pub const MODLIST_ENTRY_LEN: usize = 32;

pub struct StartInfo<'a> {
    pub cmdline_addr: u64,
    pub rsdp_addr: u64,
    pub memmap_addr: u64,
    pub memmap: &'a [E820Entry],
    /// (modlist address, initramfs address, size)
    pub module: Option<(u64, u64, u64)>,
}

/// (start_info bytes, memmap bytes, modlist bytes)
pub fn build(info: &StartInfo) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut start = Vec::with_capacity(START_INFO_LEN);
    start.extend(START_INFO_MAGIC.to_le_bytes());
    start.extend(START_INFO_VERSION.to_le_bytes());
    start.extend(0u32.to_le_bytes()); // flags
    start.extend(u32::from(info.module.is_some()).to_le_bytes());
    start.extend(info.module.map_or(0, |m| m.0).to_le_bytes());
    start.extend(info.cmdline_addr.to_le_bytes());
    start.extend(info.rsdp_addr.to_le_bytes());
    start.extend(info.memmap_addr.to_le_bytes());
    start.extend((info.memmap.len() as u32).to_le_bytes());
    start.extend(0u32.to_le_bytes());
    let mut memmap = Vec::with_capacity(info.memmap.len() * MEMMAP_ENTRY_LEN);
    for e in info.memmap {
        memmap.extend(e.addr.to_le_bytes());
        memmap.extend(e.size.to_le_bytes());
        memmap.extend(e.kind.to_le_bytes());
        memmap.extend(0u32.to_le_bytes());
    }
    let mut modlist = Vec::with_capacity(MODLIST_ENTRY_LEN);
    if let Some((_, addr, size)) = info.module {
        modlist.extend(addr.to_le_bytes());
        modlist.extend(size.to_le_bytes());
        modlist.extend(0u64.to_le_bytes()); // no module command line
        modlist.extend(0u64.to_le_bytes());
    }
    (start, memmap, modlist)
}
