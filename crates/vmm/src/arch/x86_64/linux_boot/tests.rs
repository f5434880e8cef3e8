use std::path::{Path, PathBuf};

use nvdimm_model::config::{DimmConfig, GIB, MIB};
use nvdimm_model::{PersistenceDomain, PlatformConfig};
use vnvdimm_machine::memory_map::{ACPI_AREA_END, LEGACY_HOLE_START, MAILBOX_ADDR};
use vnvdimm_machine::{Machine, MachineConfig, RegionKind};

use super::*;
use crate::arch::x86_64::e820::{E820_RAM, E820_RESERVED};

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A machine with two sparse DIMMs in `dir` and `memory` bytes of RAM, its guest memory mapped.
fn machine(dir: &Path, memory: u64) -> (Machine, GuestMemory) {
    let dimms = (0..2)
        .map(|i| {
            let path = dir.join(format!("d{i}.img"));
            std::fs::File::create(&path).unwrap().set_len(GIB).unwrap();
            DimmConfig::with_defaults(i, path, GIB)
        })
        .collect();
    let platform = PlatformConfig::new(dimms, PersistenceDomain::CpuCache).unwrap();
    let machine = Machine::new(MachineConfig { memory, cpus: 1 }, platform).unwrap();
    let memory = GuestMemory::new(&machine.memory_map, &machine.platform).unwrap();
    (machine, memory)
}

fn read(memory: &GuestMemory, gpa: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    memory.read_ram(gpa, &mut buf).unwrap();
    buf
}

/// Byte offsets from Documentation/arch/x86/zero-page.rst and boot.rst.
#[test]
fn zero_page_bytes_are_where_linux_reads_them() {
    let e820 = [
        E820Entry { addr: 0, size: 0xA0000, kind: E820_RAM },
        E820Entry { addr: 0xA0000, size: 0x60000, kind: E820_RESERVED },
        E820Entry { addr: 0x10_0000, size: 0x1000_0000, kind: E820_RAM },
    ];
    let spec = zero_page::ZeroPageSpec {
        cmdline_addr: 0x2_0000,
        cmdline_len: 17,
        initramfs: Some(Initramfs { addr: 0x0800_0000, size: 0x12_3456 }),
        e820: &e820,
        rsdp_addr: 0xE0000,
    };
    let params = zero_page::build(zero_page::elf_setup_header(), &spec).unwrap();
    let b = zero_page::bytes(&params);
    assert_eq!(b.len(), 4096);
    assert_eq!(u64_at(b, 0x070), 0xE0000, "acpi_rsdp_addr");
    assert_eq!(b[0x1E8], 3, "e820_entries");
    assert_eq!(u16_at(b, 0x1FE), 0xAA55, "boot_flag");
    assert_eq!(&b[0x202..0x206], b"HdrS");
    assert!(u16_at(b, 0x206) >= 0x020C, "protocol version");
    assert_eq!(b[0x210], 0xFF, "type_of_loader");
    assert_eq!(u32_at(b, 0x218), 0x0800_0000, "ramdisk_image");
    assert_eq!(u32_at(b, 0x21C), 0x12_3456, "ramdisk_size");
    assert_eq!(u32_at(b, 0x228), 0x2_0000, "cmd_line_ptr");
    assert_eq!(u32_at(b, 0x238), 17, "cmdline_size");
    for (i, e) in e820.iter().enumerate() {
        let at = 0x2D0 + 20 * i;
        assert_eq!((u64_at(b, at), u64_at(b, at + 8), u32_at(b, at + 16)), (e.addr, e.size, e.kind), "e820[{i}]");
    }
    assert!(b[0x2D0 + 20 * 3..0x2D0 + 20 * 4].iter().all(|&x| x == 0));
}

#[test]
fn zero_page_refuses_what_it_cannot_express() {
    let spec = |initramfs| zero_page::ZeroPageSpec {
        cmdline_addr: 0x2_0000,
        cmdline_len: 0,
        initramfs,
        e820: &[],
        rsdp_addr: 0,
    };
    let high = Some(Initramfs { addr: 5 * GIB, size: 10 });
    assert!(matches!(zero_page::build(Default::default(), &spec(high)), Err(ZeroPageError::Above4G { .. })));
    let many = vec![E820Entry { addr: 0, size: 1, kind: 1 }; 129];
    let s = zero_page::ZeroPageSpec { e820: &many, ..spec(None) };
    assert_eq!(zero_page::build(Default::default(), &s).unwrap_err(), ZeroPageError::TooManyE820(129));
}

#[test]
fn pvh_start_info_bytes() {
    let e820 =
        [E820Entry { addr: 0, size: 0xA0000, kind: 1 }, E820Entry { addr: 0x10_0000, size: 0x100_0000, kind: 1 }];
    let info = pvh::StartInfo {
        info_addr: PVH_INFO_ADDR,
        cmdline_addr: CMDLINE_ADDR,
        rsdp_addr: 0xE0000,
        memmap_addr: PVH_MEMMAP_ADDR,
        memmap: &e820,
        module: Some((PVH_MODLIST_ADDR, 0x400_0000, 0x1234)),
    };
    // Written by linux-loader's configurator, read back as Linux reads them.
    let ram = vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(vm_memory::GuestAddress(0), 0x10_0000)]).unwrap();
    pvh::write(&info, &ram).unwrap();
    let read = |addr: u64, len: usize| {
        let mut b = vec![0; len];
        vm_memory::Bytes::read_slice(&ram, &mut b, vm_memory::GuestAddress(addr)).unwrap();
        b
    };
    let start = read(PVH_INFO_ADDR, pvh::START_INFO_LEN);
    let memmap = read(PVH_MEMMAP_ADDR, 2 * pvh::MEMMAP_ENTRY_LEN);
    let modlist = read(PVH_MODLIST_ADDR, pvh::MODLIST_ENTRY_LEN);
    assert_eq!(pvh::START_INFO_LEN, 56);
    assert_eq!((pvh::MEMMAP_ENTRY_LEN, pvh::MODLIST_ENTRY_LEN), (24, 32));
    assert_eq!(u32_at(&start, 0), START_INFO_MAGIC);
    assert_eq!(u32_at(&start, 4), 1, "version");
    assert_eq!(u32_at(&start, 12), 1, "nr_modules");
    assert_eq!(u64_at(&start, 16), PVH_MODLIST_ADDR);
    assert_eq!(u64_at(&start, 24), CMDLINE_ADDR);
    assert_eq!(u64_at(&start, 32), 0xE0000, "rsdp_paddr");
    assert_eq!(u64_at(&start, 40), PVH_MEMMAP_ADDR);
    assert_eq!(u32_at(&start, 48), 2, "memmap_entries");
    assert_eq!(memmap.len(), 2 * pvh::MEMMAP_ENTRY_LEN);
    assert_eq!((u64_at(&memmap, 24), u64_at(&memmap, 32), u32_at(&memmap, 40)), (0x10_0000, 0x100_0000, 1));
    assert_eq!((u64_at(&modlist, 0), u64_at(&modlist, 8)), (0x400_0000, 0x1234));
    // The areas do not overlap each other or the zero page.
    assert!(PVH_INFO_ADDR + pvh::START_INFO_LEN as u64 <= PVH_MEMMAP_ADDR);
    assert!(PVH_MEMMAP_ADDR + (MAX_MEMMAP * pvh::MEMMAP_ENTRY_LEN) as u64 <= PVH_MODLIST_ADDR);
    assert!(PVH_MODLIST_ADDR + pvh::MODLIST_ENTRY_LEN as u64 <= ZERO_PAGE_ADDR);
    const { assert!(ZERO_PAGE_ADDR + 4096 <= PAGE_TABLES_ADDR && PAGE_TABLES_END <= CMDLINE_ADDR) };
    assert!(CMDLINE_ADDR + CMDLINE_MAX as u64 <= LEGACY_HOLE_START);
}

#[test]
fn segments_decode_from_the_gdt() {
    let long = VcpuEntry {
        mode: EntryMode::Long64 { cr3: 0x9000 },
        rip: 0x100_0200,
        boot_info: ZERO_PAGE_ADDR,
        gdt_addr: GDT_ADDR,
    };
    let s = long.sregs(Default::default());
    assert_eq!((s.cs.selector, s.cs.l, s.cs.db, s.cs.type_, s.cs.present), (0x10, 1, 0, 0xb, 1));
    assert_eq!((s.ds.selector, s.ss.selector, s.ds.type_, s.ds.limit), (0x18, 0x18, 0x3, 0xffff_ffff));
    assert_eq!((s.cr3, s.efer & 0x500, s.cr0 >> 31, s.cr4 & 0x20), (0x9000, 0x500, 1, 0x20));
    assert_eq!((s.gdt.base, s.gdt.limit), (GDT_ADDR, 31));
    let r = long.regs();
    assert_eq!((r.rip, r.rsi, r.rflags & 0x200), (0x100_0200, ZERO_PAGE_ADDR, 0), "interrupts off");

    let pvh = VcpuEntry { mode: EntryMode::Pvh, rip: 0x100_0000, boot_info: PVH_INFO_ADDR, gdt_addr: GDT_ADDR };
    let s = pvh.sregs(Default::default());
    assert_eq!((s.cs.selector, s.cs.l, s.cs.db, s.cs.limit, s.cs.g), (0x08, 0, 1, 0xffff_ffff, 1));
    assert_eq!((s.cr0 & 1, s.cr0 >> 31, s.efer, s.cr4), (1, 0, 0, 0), "protected mode, no paging");
    assert_eq!((s.tr.selector, s.tr.type_, s.tr.limit), (0x18, 0xb, 0x67));
    assert_eq!(pvh.regs().rbx, PVH_INFO_ADDR);
}

#[test]
fn e820_for_linux_has_no_pmem_and_reserves_acpi_and_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = machine(dir.path(), 3 * GIB + 512 * MIB);
    let e820 = e820::from_memory_map(&m.memory_map);
    assert!(e820.iter().all(|e| e.kind == E820_RAM || e.kind == E820_RESERVED), "no type 12 (persistent) entries");
    for place in &m.memory_map.layout.dimms {
        assert!(e820.iter().all(|e| e.addr + e.size <= place.spa_base || e.addr >= place.spa_base + GIB));
    }
    let kind_at = |a: u64| e820.iter().find(|e| (e.addr..e.addr + e.size).contains(&a)).map(|e| e.kind);
    assert_eq!(kind_at(MAILBOX_ADDR), Some(E820_RESERVED));
    assert_eq!(kind_at(RSDP_ADDR), Some(E820_RESERVED));
    assert_eq!(kind_at(ACPI_AREA_END), Some(E820_RAM));
    assert_eq!(kind_at(0xC000_0000), None, "MMIO hole absent");
    assert_eq!(kind_at(4 * GIB), Some(E820_RAM));
}

#[test]
fn initramfs_goes_high_in_plain_ram() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = machine(dir.path(), 256 * MIB);
    let map = &m.memory_map;
    let addr = place_initramfs(map, 10 * MIB + 5, 16 * MIB, DEFAULT_INITRD_ADDR_MAX + 1).unwrap();
    assert_eq!(addr % 4096, 0);
    assert!(addr + 10 * MIB + 5 <= 256 * MIB);
    assert!(256 * MIB - (addr + 10 * MIB) < 8192, "as high as possible: {addr:#x}");
    assert_eq!(map.region_at(addr).unwrap().kind, RegionKind::Ram);
    assert_eq!(place_initramfs(map, 300 * MIB, 16 * MIB, 4 * GIB), None);
    assert_eq!(place_initramfs(map, 10 * MIB, 250 * MIB, 4 * GIB), None, "not below the kernel's end");
    let capped = place_initramfs(map, MIB, 0, 64 * MIB).unwrap();
    assert!(capped + MIB <= 64 * MIB);
}

#[test]
fn bad_inputs_name_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let (m, mem) = machine(dir.path(), 128 * MIB);
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0x5au8; 4096]).unwrap();
    let spec = |kernel: PathBuf, cmdline: &str| BootSpec { kernel, initramfs: None, cmdline: cmdline.into() };
    let err = load(&mem, &m.memory_map, &spec(junk.clone(), "")).unwrap_err().to_string();
    assert!(err.contains("--kernel") && err.contains("neither"), "{err}");
    let err = load(&mem, &m.memory_map, &spec(dir.path().join("missing"), "")).unwrap_err().to_string();
    assert!(err.contains("--kernel") && err.contains("missing"), "{err}");
    let err = load(&mem, &m.memory_map, &spec(junk.clone(), &"x".repeat(CMDLINE_MAX))).unwrap_err().to_string();
    assert!(err.contains("--cmdline"), "{err}");
    let err = load(&mem, &m.memory_map, &spec(junk, "a\0b")).unwrap_err().to_string();
    assert!(err.contains("NUL"), "{err}");
}

// ---------------------------------------------------------------------------
// The real Debian kernel of the default guest image (images/build-guest.sh).

/// The guest image directory: images/cache/current, or whatever the recipe prints.
fn guest_image() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let current = repo.join("images/cache/current");
    if current.join("done").is_file() {
        return current;
    }
    let out = std::process::Command::new("sh")
        .arg(repo.join("images/build-guest.sh"))
        .output()
        .expect("run images/build-guest.sh");
    assert!(out.status.success(), "images/build-guest.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn boot_spec(kernel: &str) -> BootSpec {
    let image = guest_image();
    BootSpec {
        kernel: image.join(kernel),
        initramfs: Some(image.join("initramfs.cpio.gz")),
        cmdline: "console=ttyS0 panic=-1 reboot=acpi".into(),
    }
}

fn check_initramfs_and_cmdline(mem: &GuestMemory, m: &Machine, loaded: &LoadedKernel, spec: &BootSpec) {
    let bytes = std::fs::read(spec.initramfs.as_ref().unwrap()).unwrap();
    let initramfs = loaded.initramfs.expect("initramfs placed");
    assert_eq!(initramfs.size, bytes.len() as u64);
    assert!(initramfs.addr >= loaded.kernel_end, "initramfs above the kernel");
    assert_eq!(m.memory_map.region_at(initramfs.addr).unwrap().kind, RegionKind::Ram);
    assert_eq!(read(mem, initramfs.addr, bytes.len()), bytes);
    let cmdline = read(mem, CMDLINE_ADDR, spec.cmdline.len() + 1);
    assert_eq!(&cmdline[..spec.cmdline.len()], spec.cmdline.as_bytes());
    assert_eq!(cmdline[spec.cmdline.len()], 0);
}

#[test]
fn debian_bzimage_loads_for_the_64_bit_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (m, mem) = machine(dir.path(), 512 * MIB);
    let spec = boot_spec("bzImage");
    let loaded = load(&mem, &m.memory_map, &spec).unwrap();
    assert_eq!(loaded.format, KernelFormat::BzImage);
    assert_eq!(loaded.kernel_load, HIGH_MEMORY_START, "code32_start");
    assert_eq!(loaded.entry.mode, EntryMode::Long64 { cr3: PAGE_TABLES_ADDR });
    assert_eq!(loaded.entry.rip, HIGH_MEMORY_START + 0x200, "startup_64");

    let image = std::fs::read(&spec.kernel).unwrap();
    let setup_sects = usize::from(image[0x1F1]);
    let setup_len = (setup_sects + 1) * 512;
    assert_eq!(loaded.kernel_end - loaded.kernel_load, (image.len() - setup_len) as u64);
    assert_eq!(read(&mem, HIGH_MEMORY_START, 4096), image[setup_len..setup_len + 4096], "protected-mode code at 1 MiB");

    let zp = read(&mem, ZERO_PAGE_ADDR, 4096);
    // The setup header is the image's own (0x1F1..), with the loader's fields filled in.
    assert_eq!(&zp[0x202..0x206], b"HdrS");
    assert_eq!(zp[0x1F1], image[0x1F1], "setup_sects");
    assert_eq!(u16_at(&zp, 0x206), u16_at(&image, 0x206), "protocol version");
    assert_eq!(u32_at(&zp, 0x260), u32_at(&image, 0x260), "init_size");
    assert_eq!(zp[0x210], 0xFF, "type_of_loader");
    assert_eq!(u32_at(&zp, 0x228) as u64, CMDLINE_ADDR);
    let initramfs = loaded.initramfs.unwrap();
    assert_eq!(u32_at(&zp, 0x218) as u64, initramfs.addr);
    assert!(initramfs.addr >= HIGH_MEMORY_START + u64::from(u32_at(&image, 0x260)), "above init_size");
    assert_eq!(u64_at(&zp, 0x070), RSDP_ADDR);
    assert_eq!(usize::from(zp[0x1E8]), loaded.e820.len());
    assert_eq!(u64_at(&zp, 0x2D0 + 20 * (loaded.e820.len() - 1) + 8), loaded.e820.last().unwrap().size);
    check_initramfs_and_cmdline(&mem, &m, &loaded, &spec);

    // The identity map covers the kernel, the zero page and the command line.
    let pml4 = read(&mem, PAGE_TABLES_ADDR, 8);
    assert_eq!(u64_at(&pml4, 0) & !0xfff, PAGE_TABLES_ADDR + 0x1000);
    let gdt = read(&mem, GDT_ADDR, 32);
    assert_eq!(u64_at(&gdt, 0x10), cpu::GDT_64[2]);
}

#[test]
fn debian_vmlinux_loads_for_pvh() {
    let dir = tempfile::tempdir().unwrap();
    let (m, mem) = machine(dir.path(), 512 * MIB);
    let spec = boot_spec("vmlinux");
    let loaded = load(&mem, &m.memory_map, &spec).unwrap();
    assert_eq!(loaded.format, KernelFormat::Elf);
    assert_eq!(loaded.entry.mode, EntryMode::Pvh, "Debian's kernel has CONFIG_PVH=y, so a PVH note");
    assert_eq!(loaded.entry.boot_info, PVH_INFO_ADDR);
    assert!(loaded.entry.rip >= HIGH_MEMORY_START && loaded.entry.rip < loaded.kernel_end, "{:#x}", loaded.entry.rip);
    // The entry is the PVH note's address, not the ELF entry (startup_64).
    assert_ne!(loaded.entry.rip, loaded.kernel_load);
    let info = read(&mem, PVH_INFO_ADDR, pvh::START_INFO_LEN);
    assert_eq!(u32_at(&info, 0), START_INFO_MAGIC);
    assert_eq!(u32_at(&info, 48) as usize, loaded.e820.len());
    assert_eq!(u64_at(&info, 32), RSDP_ADDR);
    let module = read(&mem, PVH_MODLIST_ADDR, 16);
    assert_eq!(u64_at(&module, 0), loaded.initramfs.unwrap().addr);
    check_initramfs_and_cmdline(&mem, &m, &loaded, &spec);
    let gdt = read(&mem, GDT_ADDR, 32);
    assert_eq!(u64_at(&gdt, 8), cpu::GDT_PVH[1]);
}
