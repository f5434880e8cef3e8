//! Where the platform puts things in guest physical memory. The caller (KVM VMM or
//! QEMU TCG backend) decides; the device model only checks the result is sane.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::PlatformConfig;
use crate::mailbox::MAILBOX_SIZE;

pub const PAGE_SIZE: u64 = 4096;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("layout has {layout} DIMM placements but the configuration has {config} DIMMs")]
    CountMismatch { layout: usize, config: usize },
    #[error("nvdimm #{index}: SPA base {base:#x} is not aligned to 2 MiB")]
    UnalignedSpa { index: usize, base: u64 },
    #[error("nvdimm #{index}: has {got} flush hint addresses, configuration asks for {want}")]
    HintCountMismatch { index: usize, got: usize, want: usize },
    #[error("{what} at {addr:#x} is not 4 KiB aligned")]
    Unaligned { what: String, addr: u64 },
    #[error(
        "interleave set #{set}: nvdimm #{dimm} is placed at {got:#x} but must follow the set's previous DIMM at {want:#x}; \
         a set's DIMMs are placed back to back in way order"
    )]
    SetNotContiguous { set: usize, dimm: usize, got: u64, want: u64 },
    #[error("{a} [{a_start:#x}, {a_end:#x}) overlaps {b} [{b_start:#x}, {b_end:#x})")]
    Overlap { a: String, a_start: u64, a_end: u64, b: String, b_start: u64, b_end: u64 },
}

/// Guest physical placement of one DIMM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimmPlacement {
    /// Base of the DIMM's persistent-memory window (NFIT SPA range base).
    pub spa_base: u64,
    /// One 4 KiB-aligned address per flush hint; each is the start of its own page.
    pub flush_hints: Vec<u64>,
}

/// Guest physical placement of the whole NVDIMM platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformLayout {
    pub dimms: Vec<DimmPlacement>,
    /// Base of the DSM mailbox (`MAILBOX_SIZE` bytes of guest RAM, reserved from the OS).
    pub mailbox: u64,
    /// Address of the 32-bit doorbell word. Under KVM a trapping MMIO page; under
    /// QEMU TCG the doorbell slot inside the mailbox, which the host polls.
    pub doorbell: u64,
}

impl PlatformLayout {
    /// Packs the DIMM windows one after another from `spa_start`, each aligned to
    /// `window_align`, and the flush hint pages one after another from `hint_start`.
    /// The members of an interleave set are placed back to back in way order (where
    /// its lowest-numbered DIMM would go), so the set's range is one stretch of storage.
    pub fn packed(
        config: &PlatformConfig,
        spa_start: u64,
        window_align: u64,
        hint_start: u64,
        mailbox: u64,
        doorbell: u64,
    ) -> Self {
        let mut bases: Vec<Option<u64>> = vec![None; config.dimms.len()];
        let mut spa = spa_start;
        for index in 0..config.dimms.len() {
            if bases[index].is_some() {
                continue;
            }
            let members = match config.set_of_dimm(index) {
                Some(set) => config.interleave_sets[set].dimms.clone(),
                None => vec![index],
            };
            spa = spa.next_multiple_of(window_align);
            for member in members {
                bases[member] = Some(spa);
                spa += config.dimms[member].size;
            }
        }
        let mut hint = hint_start;
        let dimms = config
            .dimms
            .iter()
            .zip(bases)
            .map(|(dimm, base)| {
                let flush_hints = (0..dimm.flush_hints)
                    .map(|_| {
                        let at = hint;
                        hint += PAGE_SIZE;
                        at
                    })
                    .collect();
                DimmPlacement { spa_base: base.expect("every DIMM placed"), flush_hints }
            })
            .collect();
        PlatformLayout { dimms, mailbox, doorbell }
    }

    /// A fixed layout for tests, benchmarks and examples: windows from 4 GiB, each on a
    /// 1 GiB boundary, hint pages from 0xFE00_0000, the mailbox at 0x3FF0_0000 with the
    /// doorbell in its RAM slot (the TCG arrangement).
    pub fn example(config: &PlatformConfig) -> Self {
        const MAILBOX: u64 = 0x3FF0_0000;
        let doorbell = MAILBOX + crate::mailbox::DOORBELL_SLOT as u64;
        Self::packed(config, 4 << 30, 1 << 30, 0xFE00_0000, MAILBOX, doorbell)
    }

    /// Checks alignment and that no two things overlap.
    pub fn validate(&self, config: &PlatformConfig) -> Result<(), LayoutError> {
        if self.dimms.len() != config.dimms.len() {
            return Err(LayoutError::CountMismatch { layout: self.dimms.len(), config: config.dimms.len() });
        }
        let mut ranges: Vec<(String, u64, u64)> = Vec::new();
        for (index, (place, dimm)) in self.dimms.iter().zip(&config.dimms).enumerate() {
            if place.spa_base % (2 << 20) != 0 {
                return Err(LayoutError::UnalignedSpa { index, base: place.spa_base });
            }
            if place.flush_hints.len() != usize::from(dimm.flush_hints) {
                return Err(LayoutError::HintCountMismatch {
                    index,
                    got: place.flush_hints.len(),
                    want: usize::from(dimm.flush_hints),
                });
            }
            ranges.push((format!("nvdimm #{index} window"), place.spa_base, place.spa_base + dimm.size));
            for (n, &hint) in place.flush_hints.iter().enumerate() {
                ranges.push((format!("nvdimm #{index} flush hint {n}"), hint, hint + PAGE_SIZE));
            }
        }
        for (set, members) in config.interleave_sets.iter().enumerate() {
            for pair in members.dimms.windows(2) {
                let want = self.dimms[pair[0]].spa_base + config.dimms[pair[0]].size;
                let got = self.dimms[pair[1]].spa_base;
                if got != want {
                    return Err(LayoutError::SetNotContiguous { set, dimm: pair[1], got, want });
                }
            }
        }
        ranges.push(("DSM mailbox".to_string(), self.mailbox, self.mailbox + MAILBOX_SIZE));
        let doorbell_in_mailbox = (self.mailbox..self.mailbox + MAILBOX_SIZE).contains(&self.doorbell);
        if !doorbell_in_mailbox {
            ranges.push(("DSM doorbell".to_string(), self.doorbell, self.doorbell + PAGE_SIZE));
        }
        for (what, start, _) in &ranges {
            if start % PAGE_SIZE != 0 {
                return Err(LayoutError::Unaligned { what: what.clone(), addr: *start });
            }
        }
        ranges.sort_by_key(|r| r.1);
        for pair in ranges.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.1 < a.2 {
                return Err(LayoutError::Overlap {
                    a: a.0.clone(),
                    a_start: a.1,
                    a_end: a.2,
                    b: b.0.clone(),
                    b_start: b.1,
                    b_end: b.2,
                });
            }
        }
        Ok(())
    }
}
