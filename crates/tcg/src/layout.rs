//! Guest physical memory layout for the TCG backend.
//!
//! QEMU's `pc` machine with less than 3.5 GiB of RAM maps all of it below 4 GiB, as
//! guest physical `[0, ram_size)`. The RAM is made of one QEMU memory backend per NUMA
//! node, laid out contiguously in node order, so every piece lands at a known address:
//!
//! ```text
//! node 0 (low RAM file)                          node 1..=N (DIMM backing files)     node N+1 (high RAM file)
//! 0         0x9fc00  1 MiB         low_end       window 0 | window 1 | ...          mailbox (2 MiB) | Linux RAM | firmware
//! | Linux RAM | legacy | Linux RAM | (unused) |  (hidden)                            (hidden)        |           |          |
//! ```
//!
//! The windows are the users' backing files themselves (`memory-backend-file,share=on`),
//! so guest stores land in them with no copy. Linux only learns RAM from
//! `memmap=exactmap` + explicit ranges, so the windows and the mailbox are absent from
//! its memory map; its nfit driver then claims the windows from the NFIT. QEMU loads
//! the initramfs right below the firmware area at the top (SeaBIOS keeps its ACPI
//! tables in the last 128 KiB and marks them reserved), so Linux needs RAM there: that
//! is the "high RAM" node, which must come after the DIMMs (a DIMM at the top would get
//! the initramfs and the ACPI tables written into the user's file). Flush hint pages go
//! in the PCI hole above RAM where no QEMU device lives (`-nodefaults`): TCG ignores
//! stores there, and Linux's request_mem_region on them succeeds.

use std::ops::Range;

use nvdimm_model::config::{PlatformConfig, MIB};
use nvdimm_model::layout::{DimmPlacement, LayoutError, PlatformLayout, PAGE_SIZE};
use nvdimm_model::mailbox::{DOORBELL_SLOT, MAILBOX_SIZE};
use thiserror::Error;

/// Conventional memory as SeaBIOS reports it (the EBDA starts at 0x9fc00).
pub const LEGACY_RAM_END: u64 = 0x9_fc00;
pub const HIGH_MEMORY_START: u64 = MIB;
/// SeaBIOS's high table zone (ACPI tables, reserved in its e820), measured with QEMU 7.2.
pub const FIRMWARE_TOP: u64 = 128 * 1024;
/// At or above this, QEMU's `pc` machine splits RAM around the PCI hole.
pub const MAX_RAM_BELOW_4G: u64 = 0xE000_0000;
/// The IO-APIC and the rest of the fixed platform MMIO start here.
pub const PLATFORM_MMIO_START: u64 = 0xFEC0_0000;
/// Space reserved for the mailbox: its own 2 MiB so nothing else shares its large page.
pub const MAILBOX_AREA: u64 = 2 * MIB;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TcgLayoutError {
    #[error("TCG layout: {what} {value:#x} must be a multiple of {align:#x}")]
    Misaligned { what: &'static str, value: u64, align: u64 },
    #[error(
        "TCG layout needs {needed:#x} bytes of guest RAM, but QEMU's pc machine keeps only \
         {max:#x} below 4 GiB: use smaller or fewer DIMMs, or less Linux RAM"
    )]
    TooLarge { needed: u64, max: u64 },
    #[error(
        "TCG layout: flush hint pages [{start:#x}, {end:#x}) must lie between the RAM file end \
         {ram_end:#x} and the platform MMIO at {PLATFORM_MMIO_START:#x}"
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
    /// End of the first Linux RAM range (which starts at 1 MiB); the windows follow it.
    pub low_ram_end: u64,
    /// Linux RAM after the mailbox; QEMU puts the initramfs at its top.
    pub high_ram: u64,
    /// Alignment of the first DIMM window (128 MiB = one memory section). Later windows
    /// follow their predecessor directly (QEMU packs NUMA node memories), so they are
    /// aligned to the DIMM sizes' 2 MiB granularity.
    pub window_align: u64,
    /// First flush hint page, in the PCI hole.
    pub hint_base: u64,
}

impl Default for TcgLayoutOptions {
    fn default() -> Self {
        TcgLayoutOptions {
            low_ram_end: 1024 * MIB,
            high_ram: 256 * MIB,
            window_align: 128 * MIB,
            hint_base: 0xF000_0000,
        }
    }
}

/// Everything placed in guest physical memory, plus the size of the RAM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcgLayout {
    /// Size of the RAM file and QEMU's `-m`; a multiple of 2 MiB.
    pub ram_size: u64,
    /// The ranges Linux may use as RAM, ascending.
    pub linux_ram: Vec<Range<u64>>,
    /// Top of RAM kept for the firmware's ACPI tables; reserved in the kernel's map.
    pub firmware: Range<u64>,
    /// One persistent-memory window per DIMM, in configuration order, back to back:
    /// NUMA node `i + 1` backed by DIMM `i`'s file.
    pub windows: Vec<Range<u64>>,
    /// Flush hint page addresses per DIMM.
    pub hints: Vec<Vec<u64>>,
    /// Base of the DSM mailbox: the start of the high RAM node (hidden from Linux).
    pub mailbox: u64,
}

/// One NUMA node's memory: what backs it and where it lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMemory {
    /// Low RAM (node 0): its own sparse file.
    LowRam,
    /// DIMM `index`'s backing file.
    Dimm(usize),
    /// Mailbox, high RAM and firmware (the last node): its own sparse file.
    HighRam,
}

fn check_align(what: &'static str, value: u64, align: u64) -> Result<(), TcgLayoutError> {
    if align == 0 || !value.is_multiple_of(align) {
        return Err(TcgLayoutError::Misaligned { what, value, align });
    }
    Ok(())
}

impl TcgLayout {
    pub fn new(config: &PlatformConfig, opts: TcgLayoutOptions) -> Result<Self, TcgLayoutError> {
        check_align("window alignment", opts.window_align, 2 * MIB)?;
        check_align("low RAM end", opts.low_ram_end, 2 * MIB)?;
        check_align("high RAM size", opts.high_ram, 2 * MIB)?;
        check_align("flush hint base", opts.hint_base, PAGE_SIZE)?;
        if opts.high_ram < 64 * MIB {
            return Err(TcgLayoutError::HighRamTooSmall {
                got: opts.high_ram,
                min: 64 * MIB,
            });
        }
        let too_large = |needed| TcgLayoutError::TooLarge {
            needed,
            max: MAX_RAM_BELOW_4G - 1,
        };

        let mut cursor = opts
            .low_ram_end
            .max(HIGH_MEMORY_START)
            .checked_next_multiple_of(opts.window_align)
            .ok_or(too_large(u64::MAX))?;
        let mut windows = Vec::with_capacity(config.dimms.len());
        for dimm in &config.dimms {
            // QEMU places node memories back to back, and each node's size must be
            // a whole number of pages; the config already requires 2 MiB multiples.
            check_align("DIMM size", dimm.size, 2 * MIB)?;
            let start = cursor;
            let end = start.checked_add(dimm.size).ok_or(too_large(u64::MAX))?;
            windows.push(start..end);
            cursor = end;
        }
        let mailbox = cursor;
        let high_start = mailbox + MAILBOX_AREA;
        let ram_size = high_start.checked_add(opts.high_ram).ok_or(too_large(u64::MAX))?;
        if ram_size >= MAX_RAM_BELOW_4G {
            return Err(too_large(ram_size));
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
        if opts.hint_base < ram_size || hint > PLATFORM_MMIO_START {
            return Err(TcgLayoutError::HintsOutOfHole {
                start: opts.hint_base,
                end: hint,
                ram_end: ram_size,
            });
        }

        let firmware = ram_size - FIRMWARE_TOP..ram_size;
        let linux_ram = vec![
            0..LEGACY_RAM_END,
            HIGH_MEMORY_START..opts.low_ram_end,
            high_start..firmware.start,
        ];
        let layout = TcgLayout {
            ram_size,
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

    /// The mailbox's guest physical range (it starts the high RAM file, at offset 0).
    pub fn mailbox_range(&self) -> Range<u64> {
        self.mailbox..self.mailbox + MAILBOX_SIZE
    }

    /// Node 0: guest physical `[0, first window)`, backed by the low RAM file.
    pub fn low_node(&self) -> Range<u64> {
        0..self.windows.first().map_or(self.mailbox, |w| w.start)
    }

    /// The last node: mailbox, high RAM and firmware, backed by the high RAM file
    /// (file offset = guest physical address - `mailbox`).
    pub fn high_node(&self) -> Range<u64> {
        self.mailbox..self.ram_size
    }

    /// The NUMA nodes in id order (node id = index), with their guest physical ranges.
    pub fn nodes(&self) -> Vec<(NodeMemory, Range<u64>)> {
        let mut nodes = vec![(NodeMemory::LowRam, self.low_node())];
        nodes.extend(self.windows.iter().enumerate().map(|(i, w)| (NodeMemory::Dimm(i), w.clone())));
        nodes.push((NodeMemory::HighRam, self.high_node()));
        nodes
    }

    /// Linux RAM in bytes (what `--memory` asked for, give or take the legacy hole).
    pub fn linux_ram_bytes(&self) -> u64 {
        self.linux_ram.iter().map(|r| r.end - r.start).sum()
    }

    /// The kernel arguments that replace the firmware's memory map: only the Linux RAM
    /// ranges as usable, the firmware tables as reserved; windows and mailbox are absent.
    pub fn exactmap(&self) -> String {
        let mut args = vec!["memmap=exactmap".to_string()];
        for r in &self.linux_ram {
            args.push(format!("memmap={:#x}@{:#x}", r.end - r.start, r.start));
        }
        args.push(format!(
            "memmap={:#x}${:#x}",
            self.firmware.end - self.firmware.start,
            self.firmware.start
        ));
        args.join(" ")
    }

    /// QEMU's `-m` / memory backend size in MiB.
    pub fn ram_mib(&self) -> u64 {
        self.ram_size / MIB
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

    fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
        a.start < b.end && b.start < a.end
    }

    #[test]
    fn windows_and_mailbox_stay_out_of_linux_ram_and_firmware() {
        let cfg = config(&[512 * MIB, 256 * MIB + 2 * MIB], 2);
        let l = TcgLayout::new(&cfg, TcgLayoutOptions::default()).unwrap();
        let mut hidden: Vec<Range<u64>> = l.windows.clone();
        hidden.push(l.mailbox..l.mailbox + MAILBOX_AREA);
        for h in &hidden {
            assert!(h.end <= l.ram_size, "{h:x?} must be inside the RAM file");
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
        assert_eq!(l.windows[0].start % (128 * MIB), 0);
        // QEMU packs node memories: the nodes must tile [0, ram_size) exactly, in order.
        let nodes = l.nodes();
        assert_eq!(nodes.len(), 2 + l.windows.len());
        assert_eq!(nodes[0].1.start, 0);
        assert_eq!(nodes.last().unwrap().1.end, l.ram_size);
        for pair in nodes.windows(2) {
            assert_eq!(pair[0].1.end, pair[1].1.start, "{pair:x?}");
        }
        assert_eq!(nodes[2], (NodeMemory::Dimm(1), l.windows[1].clone()));
        assert_eq!(l.high_node().start, l.mailbox);
        // Windows keep their configured size and order.
        assert_eq!(l.windows[0].end - l.windows[0].start, 512 * MIB);
        assert_eq!(l.windows[1].end - l.windows[1].start, 258 * MIB);
        assert!(l.windows[0].end <= l.windows[1].start);
        // QEMU puts the initramfs right below the firmware area: that must be Linux RAM.
        let top_ram = l.linux_ram.last().unwrap();
        assert_eq!(top_ram.end, l.firmware.start);
        assert_eq!(l.firmware.end, l.ram_size);
        assert!(l.ram_size < MAX_RAM_BELOW_4G);
        // Hint pages: distinct, in the PCI hole, not in the RAM file.
        let all: Vec<u64> = l.hints.iter().flatten().copied().collect();
        assert_eq!(all.len(), 4);
        for (i, &h) in all.iter().enumerate() {
            assert!(h >= l.ram_size && h + PAGE_SIZE <= PLATFORM_MMIO_START);
            assert!(!all[i + 1..].contains(&h));
        }
        assert_eq!(l.platform_layout().doorbell, l.mailbox + 0x28);
        l.platform_layout().validate(&cfg).unwrap();
    }

    #[test]
    fn exactmap_lists_exactly_linux_ram_and_reserves_firmware() {
        let cfg = config(&[256 * MIB, 256 * MIB], 1);
        let l = TcgLayout::new(&cfg, TcgLayoutOptions::default()).unwrap();
        // windows at 1 GiB and 1.25 GiB, mailbox at 1.5 GiB, high RAM 1.5 GiB + 2 MiB .. + 256 MiB
        assert_eq!(l.windows, vec![0x4000_0000..0x5000_0000, 0x5000_0000..0x6000_0000]);
        assert_eq!(l.mailbox, 0x6000_0000);
        assert_eq!(l.ram_size, 0x6000_0000 + 2 * MIB + 256 * MIB);
        let top = l.ram_size - FIRMWARE_TOP;
        let expected = format!(
            "memmap=exactmap memmap=0x9fc00@0x0 memmap=0x3ff00000@0x100000 memmap={:#x}@0x60200000 memmap=0x20000${:#x}",
            top - 0x6020_0000,
            top
        );
        assert_eq!(l.exactmap(), expected);
        assert_eq!(l.ram_mib() * MIB, l.ram_size);
    }

    #[test]
    fn refuses_what_qemu_pc_cannot_map_below_4g() {
        let cfg = config(&[1536 * MIB, 1024 * MIB], 1);
        let err = TcgLayout::new(&cfg, TcgLayoutOptions::default()).unwrap_err();
        assert!(matches!(err, TcgLayoutError::TooLarge { .. }), "{err}");
        let err = TcgLayout::new(
            &cfg,
            TcgLayoutOptions {
                low_ram_end: 64 * MIB,
                ..Default::default()
            },
        );
        assert!(err.is_ok(), "{err:?}");
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
            window_align: 4096,
            ..Default::default()
        };
        assert!(matches!(
            TcgLayout::new(&cfg, opts),
            Err(TcgLayoutError::Misaligned { .. })
        ));
    }
}
