//! Guest physical memory layout for the TCG backend.
//!
//! The guest's memory is one QEMU memory backend per NUMA node, laid out back to back
//! in node order as QEMU's "RAM" (`numa_init_memdev_container`). QEMU's `pc` machine
//! maps the first `max-ram-below-4g` bytes of that RAM at guest physical 0 and the rest
//! at 4 GiB (`ram-above-4g`). We make node 0 exactly the below-4G part, so every DIMM
//! node lands above 4 GiB:
//!
//! ```text
//! node 0: one memfd, guest physical [0, below_4g)                       nodes 1..=N: the DIMM backing files
//! 0 .. 0x9fc00 | 1 MiB .. low_ram_end | (unused) | mailbox | high RAM | firmware    4 GiB: window 0 | window 1 | ...
//! Linux RAM    | Linux RAM            | hidden   | hidden  | Linux RAM| reserved    hidden
//! ```
//!
//! The windows are the users' backing files themselves (`memory-backend-file,share=on`),
//! so guest stores land in them with no copy. Linux only learns RAM from
//! `memmap=exactmap` + explicit ranges, so the windows, the mailbox and the unused gap
//! are absent from its memory map; its nfit driver then claims the windows from the
//! NFIT. QEMU loads the initramfs right below the top of the below-4G RAM and SeaBIOS
//! keeps its ACPI and SMBIOS tables there ([`FIRMWARE_TOP`], reserved), so Linux needs
//! RAM at the top of node 0: that is the "high RAM". The gap pads node 0 to a whole GiB:
//! QEMU warns about a `max-ram-below-4g` that is not a GiB multiple, and never maps more
//! than 3 GiB below 4 GiB once RAM continues above (`gigabyte_align`). Untouched, the gap
//! costs no host memory. Flush hint pages go in the PCI hole below 4 GiB where no QEMU
//! device lives (`-nodefaults`): TCG ignores stores there, and Linux's
//! request_mem_region on them succeeds.

use std::ops::Range;

use nvdimm_model::config::{PlatformConfig, GIB, MIB};
use nvdimm_model::layout::{DimmPlacement, LayoutError, PlatformLayout, PAGE_SIZE};
use nvdimm_model::mailbox::{DOORBELL_SLOT, MAILBOX_SIZE};
use thiserror::Error;

/// Conventional memory as SeaBIOS reports it (the EBDA starts at 0x9fc00).
pub const LEGACY_RAM_END: u64 = 0x9_fc00;
pub const HIGH_MEMORY_START: u64 = MIB;
/// Kept from Linux at the top of the RAM below 4 GiB: QEMU 7.2 places the initramfs
/// below this (`acpi_data_size` in `pc_memory_init`: 128 KiB of ACPI tables + 32 KiB),
/// and SeaBIOS allocates its high zone downward from the top: the 128 KiB ACPI blob,
/// then the SMBIOS tables, which grow with the RAM size (one memory device per 16 GiB,
/// the DIMM nodes included: with four 64 GiB DIMMs SeaBIOS kept 132 KiB and the DSDT
/// started below the last 128 KiB).
pub const FIRMWARE_TOP: u64 = 160 * 1024;
/// QEMU's `pc` machine maps at most this much RAM below 4 GiB when RAM continues above
/// (`pc_init1`: with `gigabyte_align` the split moves to 3 GiB).
pub const MAX_RAM_BELOW_4G: u64 = 3 * GIB;
/// Where QEMU's `pc` machine maps the RAM beyond `max-ram-below-4g` (Intel vendor: the
/// AMD 1 TiB relocation does not apply).
pub const ABOVE_4G_START: u64 = 4 * GIB;
/// TCG's guest physical address width (QEMU's `TCG_PHYS_ADDR_BITS`, the default
/// `phys-bits` of `qemu64`, reported to the guest in CPUID 0x80000008).
pub const PHYS_ADDR_BITS: u32 = 40;
/// QEMU's i440FX puts a 64-bit PCI hole of this size right after the RAM above 4 GiB (on a
/// GiB boundary) and refuses to start when its end exceeds `phys-bits`.
pub const PCI_HOLE64_SIZE: u64 = 2 * GIB;
/// The IO-APIC and the rest of the fixed platform MMIO start here.
pub const PLATFORM_MMIO_START: u64 = 0xFEC0_0000;
/// Space reserved for the mailbox: its own 2 MiB so nothing else shares its large page.
pub const MAILBOX_AREA: u64 = 2 * MIB;

/// The highest end of the DIMM windows QEMU accepts: the 64-bit PCI hole after them,
/// rounded as QEMU rounds it, must end within `phys-bits`.
pub const fn max_window_end() -> u64 {
    (1u64 << PHYS_ADDR_BITS) - PCI_HOLE64_SIZE
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TcgLayoutError {
    #[error("TCG layout: {what} {value:#x} must be a multiple of {align:#x}")]
    Misaligned { what: &'static str, value: u64, align: u64 },
    #[error(
        "TCG layout needs {needed:#x} bytes of guest RAM below 4 GiB (Linux RAM plus the 2 MiB DSM \
         mailbox, on a GiB boundary), but QEMU's pc machine maps at most {max:#x} there once the \
         DIMMs continue above 4 GiB: give less --memory (at most 3070M)"
    )]
    RamTooLarge { needed: u64, max: u64 },
    #[error(
        "TCG layout: the DIMM windows would end at {end:#x}, but QEMU's pc machine under TCG \
         addresses guest memory only up to {max:#x} ({PHYS_ADDR_BITS} physical address bits, less \
         its 2 GiB 64-bit PCI hole after RAM): use smaller or fewer DIMMs"
    )]
    AddressSpace { end: u64, max: u64 },
    #[error(
        "TCG layout: flush hint pages [{start:#x}, {end:#x}) must lie between the end of RAM below \
         4 GiB {ram_end:#x} and the platform MMIO at {PLATFORM_MMIO_START:#x}"
    )]
    HintsOutOfHole { start: u64, end: u64, ram_end: u64 },
    #[error("TCG layout: Linux needs at least {min:#x} bytes of high RAM for the initramfs, {got:#x} given")]
    HighRamTooSmall { got: u64, min: u64 },
    #[error("TCG layout rejected by the device model: {0}")]
    Model(#[from] LayoutError),
}

/// Choices for [`TcgLayout::new`]. The defaults suit a test guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcgLayoutOptions {
    /// End of the first Linux RAM range (which starts at 1 MiB).
    pub low_ram_end: u64,
    /// Linux RAM after the mailbox, at the top of the RAM below 4 GiB; QEMU puts the
    /// initramfs at its top.
    pub high_ram: u64,
    /// First flush hint page, in the PCI hole.
    pub hint_base: u64,
}

impl Default for TcgLayoutOptions {
    fn default() -> Self {
        TcgLayoutOptions {
            low_ram_end: 1024 * MIB,
            high_ram: 256 * MIB,
            hint_base: 0xF000_0000,
        }
    }
}

/// Everything placed in guest physical memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcgLayout {
    /// QEMU's `-m`: node 0 plus every DIMM.
    pub ram_size: u64,
    /// Node 0's size, the RAM file's size and QEMU's `max-ram-below-4g`: guest physical
    /// `[0, below_4g)`. A whole number of GiB, at most [`MAX_RAM_BELOW_4G`].
    pub below_4g: u64,
    /// The ranges Linux may use as RAM, ascending.
    pub linux_ram: Vec<Range<u64>>,
    /// Top of the RAM below 4 GiB kept for the firmware's ACPI tables; reserved in the
    /// kernel's map.
    pub firmware: Range<u64>,
    /// One persistent-memory window per DIMM, in configuration order, back to back from
    /// 4 GiB: NUMA node `i + 1` backed by DIMM `i`'s file.
    pub windows: Vec<Range<u64>>,
    /// Flush hint page addresses per DIMM.
    pub hints: Vec<Vec<u64>>,
    /// Base of the DSM mailbox (in node 0, hidden from Linux, right below high RAM).
    pub mailbox: u64,
}

/// One NUMA node's memory: what backs it and where it lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMemory {
    /// Node 0: all RAM below 4 GiB (Linux RAM, mailbox, firmware), its own sparse memfd.
    Ram,
    /// DIMM `index`'s backing file.
    Dimm(usize),
}

fn check_align(what: &'static str, value: u64, align: u64) -> Result<(), TcgLayoutError> {
    if align == 0 || !value.is_multiple_of(align) {
        return Err(TcgLayoutError::Misaligned { what, value, align });
    }
    Ok(())
}

impl TcgLayout {
    pub fn new(config: &PlatformConfig, opts: TcgLayoutOptions) -> Result<Self, TcgLayoutError> {
        check_align("low RAM end", opts.low_ram_end, 2 * MIB)?;
        check_align("high RAM size", opts.high_ram, 2 * MIB)?;
        check_align("flush hint base", opts.hint_base, PAGE_SIZE)?;
        if opts.high_ram < 64 * MIB {
            return Err(TcgLayoutError::HighRamTooSmall {
                got: opts.high_ram,
                min: 64 * MIB,
            });
        }
        let low_ram_end = opts.low_ram_end.max(HIGH_MEMORY_START);
        let needed = low_ram_end
            .checked_add(MAILBOX_AREA + opts.high_ram)
            .and_then(|n| n.checked_next_multiple_of(GIB))
            .unwrap_or(u64::MAX);
        if needed > MAX_RAM_BELOW_4G {
            return Err(TcgLayoutError::RamTooLarge { needed, max: MAX_RAM_BELOW_4G });
        }
        let below_4g = needed;
        let high_start = below_4g - opts.high_ram;
        let mailbox = high_start - MAILBOX_AREA;

        let too_far = |end| TcgLayoutError::AddressSpace { end, max: max_window_end() };
        let mut cursor = ABOVE_4G_START;
        let mut windows = Vec::with_capacity(config.dimms.len());
        for dimm in &config.dimms {
            // QEMU places node memories back to back, and each node's size must be
            // a whole number of pages; the config already requires 2 MiB multiples.
            check_align("DIMM size", dimm.size, 2 * MIB)?;
            let end = cursor.checked_add(dimm.size).ok_or(too_far(u64::MAX))?;
            windows.push(cursor..end);
            cursor = end;
        }
        // QEMU starts the 64-bit PCI hole on the next GiB after RAM.
        let rounded = cursor.checked_next_multiple_of(GIB).unwrap_or(u64::MAX);
        if rounded > max_window_end() {
            return Err(too_far(cursor));
        }

        let mut hint = opts.hint_base;
        let hints: Vec<Vec<u64>> = config
            .dimms
            .iter()
            .map(|d| {
                (0..d.flush_hints)
                    .map(|_| {
                        let at = hint;
                        hint += PAGE_SIZE;
                        at
                    })
                    .collect()
            })
            .collect();
        if opts.hint_base < below_4g || hint > PLATFORM_MMIO_START {
            return Err(TcgLayoutError::HintsOutOfHole {
                start: opts.hint_base,
                end: hint,
                ram_end: below_4g,
            });
        }

        let firmware = below_4g - FIRMWARE_TOP..below_4g;
        let linux_ram = vec![
            0..LEGACY_RAM_END,
            HIGH_MEMORY_START..low_ram_end,
            high_start..firmware.start,
        ];
        let layout = TcgLayout {
            ram_size: cursor - ABOVE_4G_START + below_4g,
            below_4g,
            linux_ram,
            firmware,
            windows,
            hints,
            mailbox,
        };
        layout.platform_layout().validate(config)?;
        Ok(layout)
    }

    /// The placement the device model (NFIT, SSDT, DSM) works with. Under TCG the
    /// doorbell is the mailbox's own doorbell slot, which the host polls.
    pub fn platform_layout(&self) -> PlatformLayout {
        let dimms = self
            .windows
            .iter()
            .zip(&self.hints)
            .map(|(w, h)| DimmPlacement {
                spa_base: w.start,
                flush_hints: h.clone(),
            })
            .collect();
        PlatformLayout {
            dimms,
            mailbox: self.mailbox,
            doorbell: self.mailbox + DOORBELL_SLOT as u64,
        }
    }

    /// The mailbox's guest physical range (in the RAM file, at file offset = address).
    pub fn mailbox_range(&self) -> Range<u64> {
        self.mailbox..self.mailbox + MAILBOX_SIZE
    }

    /// Node 0: guest physical `[0, below_4g)`, backed by the RAM file (file offset =
    /// guest physical address).
    pub fn ram_node(&self) -> Range<u64> {
        0..self.below_4g
    }

    /// The NUMA nodes in id order (node id = index), with their guest physical ranges.
    pub fn nodes(&self) -> Vec<(NodeMemory, Range<u64>)> {
        let mut nodes = vec![(NodeMemory::Ram, self.ram_node())];
        nodes.extend(self.windows.iter().enumerate().map(|(i, w)| (NodeMemory::Dimm(i), w.clone())));
        nodes
    }

    /// Linux RAM in bytes (what `--memory` asked for, give or take the legacy hole).
    pub fn linux_ram_bytes(&self) -> u64 {
        self.linux_ram.iter().map(|r| r.end - r.start).sum()
    }

    /// The kernel arguments that replace the firmware's memory map: only the Linux RAM
    /// ranges as usable; the firmware tables, the hidden part of node 0 (gap and
    /// mailbox) and the DIMM windows as reserved.
    ///
    /// Why the hidden ranges are listed as reserved rather than left out: a bzImage's
    /// decompressor picks the kernel's physical home (KASLR) from the firmware's e820,
    /// where all of QEMU's RAM, windows included, is RAM, and of `memmap=` it honours
    /// only the reserved kinds (`$`, at most four). Without these, Debian's 6.12 bzImage
    /// was sometimes decompressed into a DIMM window: into the user's backing file, with
    /// namespaces over it failing to enable (`could not reserve region`, -EBUSY). Linux
    /// does not mark reserved ranges above 1 MiB busy, so its nfit driver still claims
    /// the windows.
    pub fn exactmap(&self) -> String {
        let mut args = vec!["memmap=exactmap".to_string()];
        for r in &self.linux_ram {
            args.push(format!("memmap={:#x}@{:#x}", r.end - r.start, r.start));
        }
        for r in self.reserved() {
            args.push(format!("memmap={:#x}${:#x}", r.end - r.start, r.start));
        }
        args.join(" ")
    }

    /// What `exactmap()` lists as reserved: the firmware tables, node 0 between low and
    /// high RAM (gap and mailbox), and the span of the DIMM windows.
    pub fn reserved(&self) -> Vec<Range<u64>> {
        let mut reserved = vec![self.firmware.clone()];
        let low_ram_end = self.linux_ram[1].end;
        let high_ram_start = self.linux_ram[2].start;
        if low_ram_end < high_ram_start {
            reserved.push(low_ram_end..high_ram_start);
        }
        if let (Some(first), Some(last)) = (self.windows.first(), self.windows.last()) {
            reserved.push(first.start..last.end);
        }
        reserved
    }

    /// QEMU's `-m` in MiB.
    pub fn ram_mib(&self) -> u64 {
        self.ram_size / MIB
    }

    /// QEMU's `-machine` value: node 0 exactly below 4 GiB, the DIMMs above.
    pub fn machine_arg(&self) -> String {
        format!("pc,accel=tcg,max-ram-below-4g={}M", self.below_4g / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvdimm_model::config::{DimmConfig, PersistenceDomain};

    fn config(sizes: &[u64], hints: u16) -> PlatformConfig {
        let dimms = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let mut d = DimmConfig::with_defaults(i, format!("/nonexistent/{i}").into(), s);
                d.flush_hints = hints;
                d
            })
            .collect();
        PlatformConfig::new(dimms, PersistenceDomain::CpuCache).unwrap()
    }

    /// What `vnvdimm run` gives for `--memory` (crates/vnvdimm/src/run_tcg.rs).
    fn for_memory(memory: u64) -> TcgLayoutOptions {
        let high_ram = (memory / 4).clamp(64 * MIB, 256 * MIB);
        TcgLayoutOptions { low_ram_end: memory - high_ram, high_ram, ..Default::default() }
    }

    fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
        a.start < b.end && b.start < a.end
    }

    /// The ranges the kernel's memory map gets from `exactmap()`, parsed back from the
    /// string (so a wrong argument fails here, not only a wrong field).
    fn exactmap_ranges(map: &str) -> Vec<(char, Range<u64>)> {
        let mut words = map.split(' ');
        assert_eq!(words.next(), Some("memmap=exactmap"));
        words
            .map(|w| {
                let w = w.strip_prefix("memmap=").unwrap();
                let kind = if w.contains('@') { '@' } else { '$' };
                let (size, start) = w.split_once(kind).unwrap();
                let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
                (kind, hex(start)..hex(start) + hex(size))
            })
            .collect()
    }

    /// Everything the guest must never use as RAM: DIMM windows, the mailbox, the gap
    /// between low RAM and the mailbox, the PCI hole.
    fn check_layout(l: &TcgLayout, cfg: &PlatformConfig) {
        let mut hidden: Vec<Range<u64>> = l.windows.clone();
        hidden.push(l.mailbox..l.mailbox + MAILBOX_AREA);
        let hole = l.below_4g..ABOVE_4G_START;
        hidden.push(hole.clone());
        for w in &l.windows {
            assert!(w.start >= ABOVE_4G_START, "{w:x?} must be above 4 GiB");
            assert!(w.end <= max_window_end(), "{w:x?} beyond phys-bits");
        }
        for h in &hidden {
            assert!(!overlaps(h, &l.firmware), "{h:x?} overlaps firmware");
            for r in &l.linux_ram {
                assert!(!overlaps(h, r), "{h:x?} overlaps Linux RAM {r:x?}");
            }
        }
        for (i, a) in hidden.iter().enumerate() {
            for b in &hidden[i + 1..] {
                assert!(!overlaps(a, b), "{a:x?} overlaps {b:x?}");
            }
        }
        // The exact map lists exactly the Linux RAM as usable; the firmware, mailbox, gap
        // and windows as reserved, so a bzImage's KASLR never decompresses the kernel into
        // them; at most four reserved entries (the decompressor's limit).
        let map = exactmap_ranges(&l.exactmap());
        let usable: Vec<Range<u64>> = map.iter().filter(|(k, _)| *k == '@').map(|(_, r)| r.clone()).collect();
        assert_eq!(usable, l.linux_ram);
        let reserved: Vec<Range<u64>> = map.iter().filter(|(k, _)| *k == '$').map(|(_, r)| r.clone()).collect();
        assert!(reserved.len() <= 4, "{reserved:x?}");
        assert_eq!(reserved[0], l.firmware);
        let covered = |x: &Range<u64>| reserved.iter().any(|r| r.start <= x.start && x.end <= r.end);
        for w in &l.windows {
            assert!(covered(w), "window {w:x?} not reserved for the decompressor");
        }
        assert!(covered(&(l.mailbox..l.mailbox + MAILBOX_AREA)), "mailbox not reserved");
        for r in &usable {
            assert!(r.end <= l.below_4g, "{r:x?} usable beyond the RAM below 4 GiB");
            for h in &hidden {
                assert!(!overlaps(h, r), "exactmap shows {h:x?} to Linux as {r:x?}");
            }
            for x in &reserved {
                assert!(!overlaps(x, r), "{x:x?} both reserved and usable");
            }
        }
        // Everything QEMU has as RAM is either usable or reserved, but for the legacy
        // hole the firmware itself reserves.
        let mut listed: Vec<Range<u64>> = usable.iter().chain(&reserved).cloned().collect();
        listed.sort_by_key(|r| r.start);
        let mut at = 0;
        for r in &listed {
            assert!(r.start == at || (at == LEGACY_RAM_END && r.start == HIGH_MEMORY_START) || r.start == ABOVE_4G_START, "{at:#x}..{:#x} unlisted", r.start);
            at = r.end;
        }
        assert_eq!(at, l.windows.last().map_or(l.below_4g, |w| w.end));
        // Node 0 is exactly the RAM below 4 GiB, on a GiB boundary and within what the
        // pc machine maps there; QEMU's -m is every node.
        assert_eq!(l.below_4g % GIB, 0);
        assert!(l.below_4g <= MAX_RAM_BELOW_4G);
        assert!(l.linux_ram.iter().all(|r| r.end <= l.below_4g));
        let nodes = l.nodes();
        assert_eq!(nodes[0], (NodeMemory::Ram, 0..l.below_4g));
        assert_eq!(nodes.len(), 1 + l.windows.len());
        let total: u64 = nodes.iter().map(|(_, r)| r.end - r.start).sum();
        assert_eq!(total, l.ram_size);
        // QEMU packs the DIMM nodes from 4 GiB on, in node order.
        let mut at = ABOVE_4G_START;
        for (i, (what, r)) in nodes[1..].iter().enumerate() {
            assert_eq!(*what, NodeMemory::Dimm(i));
            assert_eq!(r.start, at, "{r:x?}");
            assert_eq!(r.end - r.start, cfg.dimms[i].size);
            at = r.end;
        }
        // QEMU puts the initramfs right below the firmware area: that must be Linux RAM.
        assert_eq!(l.linux_ram.last().unwrap().end, l.firmware.start);
        assert_eq!(l.firmware.end, l.below_4g);
        // Hint pages: distinct, in the PCI hole.
        let all: Vec<u64> = l.hints.iter().flatten().copied().collect();
        for (i, &h) in all.iter().enumerate() {
            assert!(h >= l.below_4g && h + PAGE_SIZE <= PLATFORM_MMIO_START);
            assert!(!all[i + 1..].contains(&h));
        }
        assert_eq!(l.platform_layout().doorbell, l.mailbox + 0x28);
        l.platform_layout().validate(cfg).unwrap();
    }

    #[test]
    fn two_2g_dimms_with_1g_of_memory_sit_above_4g() {
        // The command issue 9 found refused: --memory 1G, two 2 GiB DIMMs.
        let cfg = config(&[2 * GIB, 2 * GIB], 1);
        let l = TcgLayout::new(&cfg, for_memory(GIB)).unwrap();
        check_layout(&l, &cfg);
        assert_eq!(l.below_4g, 2 * GIB);
        assert_eq!(l.windows, vec![0x1_0000_0000..0x1_8000_0000, 0x1_8000_0000..0x2_0000_0000]);
        assert_eq!(l.mailbox, 2 * GIB - 256 * MIB - 2 * MIB);
        assert_eq!(l.ram_size, 6 * GIB);
        assert_eq!(l.machine_arg(), "pc,accel=tcg,max-ram-below-4g=2048M");
        assert_eq!(l.linux_ram_bytes(), GIB - MIB + LEGACY_RAM_END - FIRMWARE_TOP);
    }

    #[test]
    fn four_sparse_64g_dimms_are_gib_aligned_windows() {
        let cfg = config(&[64 * GIB; 4], 2);
        let l = TcgLayout::new(&cfg, for_memory(2 * GIB)).unwrap();
        check_layout(&l, &cfg);
        assert_eq!(l.below_4g, 3 * GIB);
        let starts: Vec<u64> = l.windows.iter().map(|w| w.start / GIB).collect();
        assert_eq!(starts, [4, 68, 132, 196]);
        assert_eq!(l.ram_mib(), (3 + 256) * 1024);
    }

    #[test]
    fn odd_sizes_pack_windows_at_2m() {
        let cfg = config(&[512 * MIB, 256 * MIB + 2 * MIB, 64 * MIB], 2);
        let l = TcgLayout::new(&cfg, TcgLayoutOptions::default()).unwrap();
        check_layout(&l, &cfg);
        assert_eq!(l.windows[1].start, ABOVE_4G_START + 512 * MIB);
        assert_eq!(l.windows[2].start, ABOVE_4G_START + 770 * MIB);
    }

    #[test]
    fn exactmap_lists_exactly_linux_ram_and_reserves_the_rest() {
        let cfg = config(&[256 * MIB, 256 * MIB], 1);
        let l = TcgLayout::new(&cfg, for_memory(512 * MIB)).unwrap();
        // low RAM to 384 MiB, gap, mailbox at 1 GiB - 130 MiB, high RAM to 1 GiB - 160 KiB
        assert_eq!(l.below_4g, GIB);
        assert_eq!(l.mailbox, 0x37e0_0000);
        let expected = "memmap=exactmap memmap=0x9fc00@0x0 memmap=0x17f00000@0x100000 \
                        memmap=0x7fd8000@0x38000000 memmap=0x28000$0x3ffd8000 \
                        memmap=0x20000000$0x18000000 memmap=0x20000000$0x100000000";
        assert_eq!(l.exactmap(), expected);
        assert_eq!(l.ram_size, GIB + 512 * MIB);
    }

    #[test]
    fn refuses_ram_the_pc_machine_cannot_map_below_4g() {
        let cfg = config(&[GIB], 1);
        // 3070 MiB of --memory + 2 MiB mailbox = 3 GiB: the most there is.
        assert_eq!(TcgLayout::new(&cfg, for_memory(3070 * MIB)).unwrap().below_4g, 3 * GIB);
        let err = TcgLayout::new(&cfg, for_memory(3072 * MIB)).unwrap_err();
        assert_eq!(err, TcgLayoutError::RamTooLarge { needed: 4 * GIB, max: 3 * GIB });
        assert!(err.to_string().contains("--memory"), "{err}");
    }

    #[test]
    fn refuses_windows_beyond_the_guest_physical_address_width() {
        // 4 GiB + 1018 GiB of windows + the 2 GiB PCI hole = 2^40: just fits.
        let mut sizes = vec![63 * GIB; 16];
        sizes.push(10 * GIB);
        let cfg = config(&sizes, 0);
        let l = TcgLayout::new(&cfg, TcgLayoutOptions::default()).unwrap();
        assert_eq!(l.windows.last().unwrap().end, (1 << 40) - 2 * GIB);
        *sizes.last_mut().unwrap() += 2 * MIB;
        let err = TcgLayout::new(&config(&sizes, 0), TcgLayoutOptions::default()).unwrap_err();
        assert!(matches!(err, TcgLayoutError::AddressSpace { end, .. } if end == (1 << 40) - 2 * GIB + 2 * MIB), "{err}");
        assert!(err.to_string().contains("smaller or fewer DIMMs"), "{err}");
    }

    #[test]
    fn refuses_hints_inside_ram_and_tiny_high_ram() {
        let cfg = config(&[256 * MIB], 1);
        let opts = TcgLayoutOptions {
            hint_base: 0x1000_0000,
            ..Default::default()
        };
        assert!(matches!(
            TcgLayout::new(&cfg, opts),
            Err(TcgLayoutError::HintsOutOfHole { .. })
        ));
        let opts = TcgLayoutOptions {
            high_ram: 16 * MIB,
            ..Default::default()
        };
        assert!(matches!(
            TcgLayout::new(&cfg, opts),
            Err(TcgLayoutError::HighRamTooSmall { .. })
        ));
        let opts = TcgLayoutOptions {
            low_ram_end: 4096 + 2 * MIB,
            ..Default::default()
        };
        assert!(matches!(
            TcgLayout::new(&cfg, opts),
            Err(TcgLayoutError::Misaligned { .. })
        ));
    }
}
