//! `struct boot_params` (the "zero page") for the 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst): the setup header (from the bzImage, or made up
//! for an ELF vmlinux), the command line, the initramfs and the e820 map.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header, E820_MAX_ENTRIES_ZEROPAGE};
use vm_memory::ByteValued;

use crate::arch::x86_64::e820::E820Entry;

/// "HdrS": a setup header is present.
pub const HDR_MAGIC: u32 = 0x5372_6448;
pub const BOOT_FLAG: u16 = 0xAA55;
/// type_of_loader 0xFF: "undefined" boot loader (no assigned id).
pub const LOADER_UNDEFINED: u8 = 0xFF;
/// Boot protocol version we claim for an ELF kernel's synthesized header (2.15).
const ELF_PROTOCOL_VERSION: u16 = 0x020F;
/// kernel_alignment of an ELF kernel's synthesized header (CONFIG_PHYSICAL_ALIGN, 2 MiB).
const ELF_KERNEL_ALIGNMENT: u32 = 0x20_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initramfs {
    pub addr: u64,
    pub size: u64,
}

/// What goes in the zero page besides the setup header.
pub struct ZeroPageSpec<'a> {
    pub cmdline_addr: u64,
    /// Length without the terminating NUL.
    pub cmdline_len: usize,
    pub initramfs: Option<Initramfs>,
    pub e820: &'a [E820Entry],
    pub rsdp_addr: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZeroPageError {
    #[error("the e820 map has {0} entries; the zero page holds {E820_MAX_ENTRIES_ZEROPAGE}")]
    TooManyE820(usize),
    #[error("{what} at {addr:#x} is above 4 GiB; the boot protocol's 32-bit fields cannot point at it")]
    Above4G { what: &'static str, addr: u64 },
}

/// The setup header an ELF vmlinux gets: the fields Linux's 64-bit entry reads.
pub fn elf_setup_header() -> setup_header {
    setup_header {
        boot_flag: BOOT_FLAG,
        header: HDR_MAGIC,
        version: ELF_PROTOCOL_VERSION,
        kernel_alignment: ELF_KERNEL_ALIGNMENT,
        initrd_addr_max: super::layout::DEFAULT_INITRD_ADDR_MAX as u32,
        cmdline_size: super::layout::CMDLINE_MAX as u32 - 1,
        ..Default::default()
    }
}

fn low32(what: &'static str, addr: u64) -> Result<u32, ZeroPageError> {
    u32::try_from(addr).map_err(|_| ZeroPageError::Above4G { what, addr })
}

pub fn build(mut hdr: setup_header, spec: &ZeroPageSpec) -> Result<boot_params, ZeroPageError> {
    if spec.e820.len() > E820_MAX_ENTRIES_ZEROPAGE {
        return Err(ZeroPageError::TooManyE820(spec.e820.len()));
    }
    hdr.type_of_loader = LOADER_UNDEFINED;
    hdr.cmd_line_ptr = low32("the command line", spec.cmdline_addr)?;
    hdr.cmdline_size = spec.cmdline_len as u32;
    if let Some(initramfs) = spec.initramfs {
        hdr.ramdisk_image = low32("the initramfs", initramfs.addr)?;
        hdr.ramdisk_size = low32("the initramfs size", initramfs.size)?;
    }
    let mut params = boot_params { hdr, acpi_rsdp_addr: spec.rsdp_addr, ..Default::default() };
    for (slot, entry) in params.e820_table.iter_mut().zip(spec.e820) {
        *slot = boot_e820_entry { addr: entry.addr, size: entry.size, r#type: entry.kind };
    }
    params.e820_entries = spec.e820.len() as u8;
    Ok(params)
}

/// The 4 KiB the guest reads at the zero page's address.
pub fn bytes(params: &boot_params) -> &[u8] {
    params.as_slice()
}
