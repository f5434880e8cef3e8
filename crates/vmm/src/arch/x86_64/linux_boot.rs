//! Direct boot of a Linux kernel (no firmware): load a bzImage or an ELF vmlinux
//! with linux-loader, place the command line, the initramfs and the boot information
//! (zero page for the 64-bit boot protocol, `hvm_start_info` for PVH), and say how the
//! boot vCPU must enter the kernel.
//!
//! How the VMM uses it (after `VmBuilder::build`, before the first KVM_RUN):
//! ```ignore
//! let spec = BootSpec { kernel, initramfs, cmdline };
//! let loaded = linux_boot::load(&vm.memory, &vm.machine.memory_map, &spec)?;
//! linux_boot::configure_vcpu(&vm.vcpus[0], &loaded.entry)?;   // registers + segments
//! // vCPUs 1.. stay in their reset state: Linux starts them with INIT/SIPI.
//! ```
//!
//! Choices: an ELF vmlinux with a PVH note (Debian's has one, CONFIG_PVH=y) enters
//! through PVH in 32-bit protected mode; an ELF without one, and every bzImage, enter
//! through the 64-bit boot protocol (bzImage at `startup_64` = load address + 0x200).
//! The e820 map lists RAM and the reserved low areas only: the NVDIMM windows are not
//! in it at all (neither as RAM nor as type 12), so Linux learns about them from the
//! NFIT alone. The RSDP address is passed explicitly (zero page `acpi_rsdp_addr`, PVH
//! `rsdp_paddr`), though it also sits where Linux's 0xE0000 scan finds it.

pub(crate) mod cpu;
pub mod layout;
mod pvh;
mod zero_page;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use kvm_ioctls::VcpuFd;
use linux_loader::loader::{self, BzImage, Elf, KernelLoader, PvhBootCapability};
use thiserror::Error;
use vm_memory::GuestAddress;
use vnvdimm_machine::memory_map::RSDP_ADDR;
use vnvdimm_machine::MemoryMap;

pub use cpu::{EntryMode, VcpuEntry};
pub use pvh::START_INFO_MAGIC;
pub use zero_page::{Initramfs, ZeroPageError};

use crate::arch::x86_64::e820::{self, E820Entry};
use crate::memory::guest_memory::{GuestMemory, GuestMemoryError};
use crate::arch::x86_64::page_tables::{self, PageTableError};
use layout::*;

/// Offset of `startup_64` in a bzImage's protected-mode code (boot.rst, 64-bit protocol).
const STARTUP_64_OFFSET: u64 = 0x200;
/// xloadflags bit 0: the kernel has the 64-bit entry point at +0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
const FOUR_GIB: u64 = 1 << 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSpec {
    pub kernel: PathBuf,
    pub initramfs: Option<PathBuf>,
    pub cmdline: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    BzImage,
    Elf,
}

/// Where everything went, and how to enter the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedKernel {
    pub format: KernelFormat,
    pub entry: VcpuEntry,
    pub kernel_load: u64,
    pub kernel_end: u64,
    pub initramfs: Option<Initramfs>,
    pub e820: Vec<E820Entry>,
}

#[derive(Debug, Error)]
pub enum LinuxBootError {
    #[error("--kernel {path}: cannot read it: {source}")]
    KernelFile { path: PathBuf, source: std::io::Error },
    #[error("--kernel {path}: neither an ELF vmlinux nor a bzImage (no ELF magic, no \"HdrS\" at 0x202)")]
    UnknownFormat { path: PathBuf },
    #[error("--kernel {path}: linux-loader refused it: {source}")]
    Loader { path: PathBuf, source: loader::Error },
    #[error("--kernel {path}: this bzImage has no 64-bit entry point (xloadflags bit 0 clear); use a 64-bit kernel")]
    No64BitEntry { path: PathBuf },
    #[error("--initramfs {path}: cannot read it: {source}")]
    InitramfsFile { path: PathBuf, source: std::io::Error },
    #[error("--initramfs {path}: {size} bytes do not fit in guest RAM between the kernel's end {not_below:#x} and {max_end:#x}; raise --memory")]
    InitramfsTooLarge { path: PathBuf, size: u64, not_below: u64, max_end: u64 },
    #[error("--cmdline is {len} bytes; Linux keeps at most {max} (COMMAND_LINE_SIZE - 1)")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("--cmdline contains a NUL byte")]
    CmdlineNul,
    #[error("zero page: {0}")]
    ZeroPage(#[from] ZeroPageError),
    #[error("the e820 map has {0} entries, more than PVH's memory map here holds ({MAX_MEMMAP})")]
    TooManyMemmap(usize),
    #[error("page tables for the 64-bit entry: {0}")]
    PageTables(#[from] PageTableError),
    #[error("guest RAM: {0}")]
    Memory(#[from] GuestMemoryError),
    #[error("writing the PVH start info: {0}")]
    Pvh(linux_loader::configurator::Error),
    #[error("KVM refused {what} for the boot vCPU: {source}")]
    Vcpu { what: &'static str, source: kvm_ioctls::Error },
}

/// Loads the kernel, initramfs and boot information into `memory` (the VM's guest RAM,
/// laid out as `map`). Touches no NVDIMM window.
pub fn load(memory: &GuestMemory, map: &MemoryMap, spec: &BootSpec) -> Result<LoadedKernel, LinuxBootError> {
    let cmdline = spec.cmdline.as_bytes();
    if cmdline.len() >= CMDLINE_MAX {
        return Err(LinuxBootError::CmdlineTooLong { len: cmdline.len(), max: CMDLINE_MAX - 1 });
    }
    if cmdline.contains(&0) {
        return Err(LinuxBootError::CmdlineNul);
    }
    let kernel_err = |source| LinuxBootError::KernelFile { path: spec.kernel.clone(), source };
    let mut file = File::open(&spec.kernel).map_err(kernel_err)?;
    let format = detect(&mut file)
        .map_err(kernel_err)?
        .ok_or_else(|| LinuxBootError::UnknownFormat { path: spec.kernel.clone() })?;

    // linux-loader writes the kernel straight into guest RAM.
    let vmem = &memory.ram;
    let loader_err = |source| LinuxBootError::Loader { path: spec.kernel.clone(), source };
    let high = Some(GuestAddress(HIGH_MEMORY_START));
    let result = match format {
        KernelFormat::Elf => Elf::load(vmem, None, &mut file, high),
        KernelFormat::BzImage => BzImage::load(vmem, None, &mut file, high),
    }
    .map_err(loader_err)?;
    let kernel_load = result.kernel_load.0;
    let kernel_end = result.kernel_end;

    // bzImage decompresses in place up to load + init_size: keep the initramfs above that.
    let (not_below, initrd_max) = match result.setup_header {
        Some(hdr) => {
            let max = if hdr.version >= 0x0203 { u64::from(hdr.initrd_addr_max) } else { DEFAULT_INITRD_ADDR_MAX };
            (kernel_end.max(kernel_load + u64::from(hdr.init_size)), max)
        }
        None => (kernel_end, DEFAULT_INITRD_ADDR_MAX),
    };
    let initramfs = match &spec.initramfs {
        None => None,
        Some(path) => Some(load_initramfs(memory, map, path, not_below, (initrd_max + 1).min(FOUR_GIB))?),
    };

    let mut cmdline_z = cmdline.to_vec();
    cmdline_z.push(0);
    memory.write_ram(CMDLINE_ADDR, &cmdline_z)?;
    let e820 = e820::from_memory_map(map);

    let entry = match (format, result.pvh_boot_cap) {
        (KernelFormat::Elf, PvhBootCapability::PvhEntryPresent(pvh_entry)) => {
            write_pvh(memory, &e820, initramfs)?;
            VcpuEntry { mode: EntryMode::Pvh, rip: pvh_entry.0, boot_info: PVH_INFO_ADDR, gdt_addr: GDT_ADDR }
        }
        _ => {
            let (hdr, rip) = match result.setup_header {
                Some(hdr) => {
                    if hdr.xloadflags & XLF_KERNEL_64 == 0 {
                        return Err(LinuxBootError::No64BitEntry { path: spec.kernel.clone() });
                    }
                    (hdr, kernel_load + STARTUP_64_OFFSET)
                }
                None => (zero_page::elf_setup_header(), kernel_load),
            };
            let zp = zero_page::ZeroPageSpec {
                cmdline_addr: CMDLINE_ADDR,
                cmdline_len: cmdline.len(),
                initramfs,
                e820: &e820,
                rsdp_addr: RSDP_ADDR,
            };
            let params = zero_page::build(hdr, &zp)?;
            memory.write_ram(ZERO_PAGE_ADDR, zero_page::bytes(&params))?;
            let tables =
                page_tables::identity_map(PAGE_TABLES_ADDR, &[(0, FOUR_GIB)], PAGE_TABLES_END - PAGE_TABLES_ADDR)?;
            memory.write_ram(PAGE_TABLES_ADDR, &tables)?;
            VcpuEntry {
                mode: EntryMode::Long64 { cr3: PAGE_TABLES_ADDR },
                rip,
                boot_info: ZERO_PAGE_ADDR,
                gdt_addr: GDT_ADDR,
            }
        }
    };
    let gdt: Vec<u8> = entry.gdt().iter().flat_map(|d| d.to_le_bytes()).collect();
    memory.write_ram(GDT_ADDR, &gdt)?;
    Ok(LoadedKernel { format, entry, kernel_load, kernel_end, initramfs, e820 })
}

/// Puts the boot vCPU at the kernel's entry: KVM_SET_SREGS then KVM_SET_REGS.
pub fn configure_vcpu(vcpu: &VcpuFd, entry: &VcpuEntry) -> Result<(), LinuxBootError> {
    let vcpu_err = |what| move |source| LinuxBootError::Vcpu { what, source };
    let sregs = vcpu.get_sregs().map_err(vcpu_err("KVM_GET_SREGS"))?;
    vcpu.set_sregs(&entry.sregs(sregs)).map_err(vcpu_err("KVM_SET_SREGS"))?;
    vcpu.set_regs(&entry.regs()).map_err(vcpu_err("KVM_SET_REGS"))
}

/// ELF magic, or "HdrS" at 0x202 for a bzImage; Ok(None) for anything else.
pub fn detect(file: &mut (impl Read + Seek)) -> std::io::Result<Option<KernelFormat>> {
    let mut head = [0u8; 0x206];
    file.seek(SeekFrom::Start(0))?;
    let n = read_up_to(file, &mut head)?;
    file.seek(SeekFrom::Start(0))?;
    if n >= 4 && head[..4] == *b"\x7fELF" {
        return Ok(Some(KernelFormat::Elf));
    }
    if n >= 0x206 && head[0x202..0x206] == *b"HdrS" {
        return Ok(Some(KernelFormat::BzImage));
    }
    Ok(None)
}

fn read_up_to(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            got => n += got,
        }
    }
    Ok(n)
}

fn load_initramfs(
    memory: &GuestMemory,
    map: &MemoryMap,
    path: &PathBuf,
    not_below: u64,
    max_end: u64,
) -> Result<Initramfs, LinuxBootError> {
    let bytes = std::fs::read(path).map_err(|source| LinuxBootError::InitramfsFile { path: path.clone(), source })?;
    let size = bytes.len() as u64;
    let addr = place_initramfs(map, size, not_below, max_end).ok_or(LinuxBootError::InitramfsTooLarge {
        path: path.clone(),
        size,
        not_below,
        max_end,
    })?;
    memory.write_ram(addr, &bytes)?;
    Ok(Initramfs { addr, size })
}

// The three PVH areas (sized by linux-loader's types) fit their slots in the layout.
const _: () = assert!(
    PVH_INFO_ADDR + pvh::START_INFO_LEN as u64 <= PVH_MEMMAP_ADDR
        && PVH_MEMMAP_ADDR + (MAX_MEMMAP * pvh::MEMMAP_ENTRY_LEN) as u64 <= PVH_MODLIST_ADDR
        && PVH_MODLIST_ADDR + pvh::MODLIST_ENTRY_LEN as u64 <= ZERO_PAGE_ADDR
);

fn write_pvh(memory: &GuestMemory, e820: &[E820Entry], initramfs: Option<Initramfs>) -> Result<(), LinuxBootError> {
    if e820.len() > MAX_MEMMAP {
        return Err(LinuxBootError::TooManyMemmap(e820.len()));
    }
    let info = pvh::StartInfo {
        info_addr: PVH_INFO_ADDR,
        cmdline_addr: CMDLINE_ADDR,
        rsdp_addr: RSDP_ADDR,
        memmap_addr: PVH_MEMMAP_ADDR,
        memmap: e820,
        module: initramfs.map(|i| (PVH_MODLIST_ADDR, i.addr, i.size)),
    };
    pvh::write(&info, &memory.ram).map_err(LinuxBootError::Pvh)
}

#[cfg(test)]
mod tests;
