//! Poisoned NVDIMM pages are taken out of the guest's memory slots, so a guest access to
//! one exits to the VMM (KVM_EXIT_MMIO: the address is outside every memslot), where a
//! load becomes an action-required machine check (see docs/poison-consumption.md).
//!
//! `plan` is pure: DIMM windows + poisoned byte ranges -> the memslots that cover every
//! page except the poisoned ones (adjacent poisoned pages form one hole, contiguous
//! mapped pages one slot). `PoisonSlots` keeps what is installed and applies the
//! difference to a new plan through `SlotSink` (KVM: `KvmSlots`), so a single new poisoned
//! page costs one delete and two creates.
//!
//! Registration is eager (`PoisonSlots::new`: whole windows) or lazy (`PoisonSlots::lazy`:
//! pieces of `LAZY_PIECE` bytes, registered by `activate` when the guest first touches
//! them). Creating a slot costs time and kernel memory per GiB on a shadow-paging KVM
//! (8 bytes of rmap per 4 KiB page), so terabyte windows are only paid for where used.
//! Holes are planned over whole windows either way, so a page is "poisoned" (hole),
//! "not registered yet" (in no hole and no activated piece) or mapped; an access that
//! exits on a not-registered page is served from the backing file like a poisoned
//! store, and the caller activates its piece (see docs/poison-consumption.md).
//!
//! How the VMM uses it (instead of registering the NVDIMM windows itself):
//! ```ignore
//! // At start: one DimmWindow per mapped backing file; the slot range is the VMM's to give.
//! let windows = pmem.iter().map(|w| unsafe { DimmWindow::new(w.gpa, w.size(), w.host_addr(), w.readonly) });
//! let mut slots = PoisonSlots::new(windows.collect(), caps.nr_memslots - FIRST_PMEM_SLOT as usize);
//! let mut kvm_slots = KvmSlots::new(FIRST_PMEM_SLOT, caps.nr_memslots as u32);
//! slots.update(&platform.poison_sets(), &mut kvm_slots.bind(&vm_fd))?;    // installs the windows
//! // After poison is added or cleared (host API, guest ARS/Clear Uncorrectable Error): the same update call.
//! // On KVM_EXIT_MMIO inside a window:
//! match slots.on_mmio_read(gpa, data) {
//!     Some(WindowAccess::Poisoned { .. }) => { mce::deliver_and_log(&vcpu, gpa, ActionRequired, &mut platform); }
//!     Some(_) => {}            // served from the backing file (a slot being replaced)
//!     None => bus.read(gpa, data), // not an NVDIMM window
//! }
//! if slots.on_mmio_write(gpa, data).is_none() { bus.write(gpa, data) }
//! ```
//! `platform.poison_sets()` stands for `platform.dimms().iter().map(|d| &d.state.poison).collect::<Vec<_>>()`.

mod kvm;

use std::collections::BTreeMap;
use std::io;

use nvdimm_model::poison::PoisonSet;
use thiserror::Error;

pub use kvm::{KvmSink, KvmSlots};

pub const PAGE_SIZE: u64 = 4096;

#[derive(Debug, Error)]
pub enum MemslotError {
    #[error(
        "NVDIMM window #{dimm} at {gpa:#x} (size {size:#x}, host address {host_addr:#x}) is not 4 KiB aligned; \
         memory slots need page-aligned windows"
    )]
    Unaligned {
        dimm: usize,
        gpa: u64,
        size: u64,
        host_addr: u64,
    },
    #[error("poison was given for {given} DIMMs but there are {windows} NVDIMM windows")]
    DimmCount { given: usize, windows: usize },
    #[error(
        "the poisoned pages split the NVDIMM windows into {needed} memory slots, but only {limit} are available \
         to them (KVM_CAP_NR_MEMSLOTS minus the VMM's own); clear poison, or poison fewer non-adjacent pages"
    )]
    TooManySlots { needed: usize, limit: usize },
    #[error("KVM_SET_USER_MEMORY_REGION failed while {action} the slot at {gpa:#x} (size {size:#x}): {source}")]
    Apply {
        action: &'static str,
        gpa: u64,
        size: u64,
        source: io::Error,
    },
}

/// One DIMM's window: where the guest sees it and where its backing file is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimmWindow {
    pub gpa: u64,
    pub size: u64,
    pub host_addr: u64,
    pub readonly: bool,
}

impl DimmWindow {
    /// # Safety
    /// `host_addr..host_addr + size` must stay a readable (and, unless `readonly`, writable)
    /// mapping for as long as any `PoisonSlots` built from this window exists: MMIO exits
    /// are served by reading and writing it.
    pub unsafe fn new(gpa: u64, size: u64, host_addr: u64, readonly: bool) -> Self {
        DimmWindow {
            gpa,
            size,
            host_addr,
            readonly,
        }
    }

    fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa && gpa - self.gpa < self.size
    }

    /// `len` bytes of the mapping at `offset`, accessed volatile: vCPUs may write the
    /// same bytes through their memslots meanwhile. The caller keeps the range inside.
    fn bytes(&self, offset: u64, len: usize) -> vm_memory::VolatileSlice<'_> {
        debug_assert!(offset + len as u64 <= self.size);
        // SAFETY: the range is inside the window (callers clip to it), and the
        // DimmWindow::new contract keeps the mapping alive while `self` is borrowed.
        unsafe { vm_memory::VolatileSlice::new((self.host_addr + offset) as *mut u8, len) }
    }
}

/// A memslot to install: part of DIMM `dimm`'s window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlotRegion {
    pub gpa: u64,
    pub size: u64,
    pub host_addr: u64,
    pub dimm: usize,
    pub readonly: bool,
}

/// Poisoned pages taken out of DIMM `dimm`'s window: `[gpa, gpa + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hole {
    pub dimm: usize,
    pub gpa: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemslotPlan {
    /// Sorted by guest address.
    pub regions: Vec<SlotRegion>,
    /// Sorted by guest address.
    pub holes: Vec<Hole>,
}

impl MemslotPlan {
    /// The hole containing `gpa`, if any.
    pub fn hole_at(&self, gpa: u64) -> Option<&Hole> {
        let i = self.holes.partition_point(|h| h.gpa <= gpa);
        self.holes[..i].last().filter(|h| gpa - h.gpa < h.size)
    }
}

/// The parts of one window that have memslots (eager: the whole window; lazy: the pieces
/// touched so far): byte offset into the window -> length. Pieces never merge into one
/// slot, so activating a piece never re-creates a neighbour's (large) slot.
pub type Active = BTreeMap<u64, u64>;

/// Plans the memslots of `windows` (same order as the DIMMs) with the pages touched by
/// `poison[i]` (byte offsets into DIMM i, rounded out to 4 KiB pages) left out.
/// Every window is registered whole (eager registration).
pub fn plan(
    windows: &[DimmWindow],
    poison: &[&PoisonSet],
    max_slots: usize,
) -> Result<MemslotPlan, MemslotError> {
    plan_active(windows, poison, &whole(windows), max_slots)
}

/// Like `plan`, but slots only cover the `active` parts of each window. Holes are
/// planned over whole windows, so a poisoned page is known as poisoned whether or not its
/// piece is registered: "not registered yet" is "in a window, in no hole, in no active part".
pub fn plan_active(
    windows: &[DimmWindow],
    poison: &[&PoisonSet],
    active: &[Active],
    max_slots: usize,
) -> Result<MemslotPlan, MemslotError> {
    if poison.len() != windows.len() || active.len() != windows.len() {
        return Err(MemslotError::DimmCount {
            given: poison.len().min(active.len()),
            windows: windows.len(),
        });
    }
    let mut result = MemslotPlan::default();
    for (dimm, (w, set)) in windows.iter().zip(poison).enumerate() {
        check_aligned(dimm, w)?;
        let holes = holes_of(dimm, w, set);
        for (&offset, &len) in &active[dimm] {
            result
                .regions
                .extend(cover(dimm, w, offset, offset + len, &holes));
        }
        result.holes.extend(holes);
        if result.regions.len() > max_slots {
            return Err(MemslotError::TooManySlots {
                needed: result.regions.len(),
                limit: max_slots,
            });
        }
    }
    result.regions.sort_unstable();
    result.holes.sort_unstable_by_key(|h| h.gpa);
    Ok(result)
}

fn whole(windows: &[DimmWindow]) -> Vec<Active> {
    windows
        .iter()
        .map(|w| {
            let mut a = Active::new();
            if w.size > 0 {
                a.insert(0, w.size);
            }
            a
        })
        .collect()
}

fn check_aligned(dimm: usize, w: &DimmWindow) -> Result<(), MemslotError> {
    if !(w.gpa | w.size | w.host_addr).is_multiple_of(PAGE_SIZE) {
        return Err(MemslotError::Unaligned {
            dimm,
            gpa: w.gpa,
            size: w.size,
            host_addr: w.host_addr,
        });
    }
    Ok(())
}

/// The poisoned pages of one window, adjacent ones merged, sorted.
fn holes_of(dimm: usize, w: &DimmWindow, set: &PoisonSet) -> Vec<Hole> {
    let pages = w.size / PAGE_SIZE;
    let mut holes = Vec::new();
    let mut hole: Option<(u64, u64)> = None;
    let mut push = |(s, e): (u64, u64)| {
        holes.push(Hole {
            dimm,
            gpa: w.gpa + s * PAGE_SIZE,
            size: (e - s) * PAGE_SIZE,
        })
    };
    for (offset, len) in set.within(0, w.size) {
        let first = offset / PAGE_SIZE;
        let end = offset.saturating_add(len).div_ceil(PAGE_SIZE).min(pages);
        hole = match hole {
            Some((s, e)) if first <= e => Some((s, e.max(end))),
            Some(done) => {
                push(done);
                Some((first, end))
            }
            None => Some((first, end)),
        };
    }
    if let Some(done) = hole {
        push(done);
    }
    holes
}

/// The slots covering window bytes `from..to` minus `holes` (this window's, sorted).
fn cover(dimm: usize, w: &DimmWindow, from: u64, to: u64, holes: &[Hole]) -> Vec<SlotRegion> {
    let mut regions = Vec::new();
    let mut push = |a: u64, b: u64| {
        if b > a {
            regions.push(SlotRegion {
                gpa: w.gpa + a,
                size: b - a,
                host_addr: w.host_addr + a,
                dimm,
                readonly: w.readonly,
            });
        }
    };
    let mut at = from;
    let first = holes.partition_point(|h| h.gpa + h.size <= w.gpa + from);
    for h in &holes[first..] {
        let (hs, he) = (h.gpa - w.gpa, h.gpa - w.gpa + h.size);
        if hs >= to {
            break;
        }
        push(at, hs.max(at));
        at = at.max(he);
    }
    push(at.min(to), to);
    regions
}

/// Where KVM_SET_USER_MEMORY_REGION calls go. `remove` gets exactly a region `add` got before.
pub trait SlotSink {
    fn add(&mut self, region: &SlotRegion) -> io::Result<()>;
    fn remove(&mut self, region: &SlotRegion) -> io::Result<()>;
}

/// The installed regions missing from `new` (to remove) and the new ones (to add).
pub fn diff<'a>(
    installed: impl Iterator<Item = &'a SlotRegion>,
    new: &'a [SlotRegion],
) -> (Vec<SlotRegion>, Vec<SlotRegion>) {
    // Both sides are sorted by (gpa, ...): one merge walk.
    let mut remove = Vec::new();
    let mut add = Vec::new();
    let mut old = installed.peekable();
    let mut new = new.iter().peekable();
    loop {
        match (old.peek(), new.peek()) {
            (Some(o), Some(n)) if o == n => {
                old.next();
                new.next();
            }
            (Some(o), Some(n)) if *o < *n => remove.push(*old.next().expect("peeked")),
            (Some(_), Some(_)) => add.push(*new.next().expect("peeked")),
            (Some(_), None) => remove.push(*old.next().expect("peeked")),
            (None, Some(_)) => add.push(*new.next().expect("peeked")),
            (None, None) => break,
        }
    }
    (remove, add)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStats {
    pub removed: usize,
    pub added: usize,
    /// Slots installed afterwards.
    pub slots: usize,
    pub holes: usize,
}

/// What a guest access inside an NVDIMM window hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAccess {
    /// A poisoned page: a read gets all ones and must be answered with an SRAR machine
    /// check; a write went to the backing file (pmem stores do not consume poison).
    Poisoned { dimm: usize, offset: u64 },
    /// A page whose slot is being replaced; served from the backing file.
    Served { dimm: usize, offset: u64 },
    /// A page of a piece that is not registered yet (lazy registration); served from
    /// the backing file. The caller should `activate` the piece next.
    Unregistered { dimm: usize, offset: u64 },
    /// A write to a read-only DIMM: dropped.
    ReadOnly { dimm: usize, offset: u64 },
}

/// The size of the pieces lazily registered windows are registered in: small enough that
/// a first touch costs ~0.4 ms on a shadow-paging KVM (rmap allocation), large enough
/// that 4 TiB of windows stay far below KVM's 32764 memslots (4096 pieces).
pub const LAZY_PIECE: u64 = 1 << 30;

/// The NVDIMM windows' memslots, kept in step with the DIMMs' poison.
pub struct PoisonSlots {
    windows: Vec<DimmWindow>,
    max_slots: usize,
    /// `Some(size)`: lazy registration in pieces of `size` bytes aligned to the window.
    piece: Option<u64>,
    /// Per window, the parts that have memslots (planned over).
    active: Vec<Active>,
    plan: MemslotPlan,
    /// What the sink holds, keyed by guest address; only changed by successful calls.
    installed: BTreeMap<u64, SlotRegion>,
}

impl PoisonSlots {
    /// Eager registration: every window is installed whole by the first `update`.
    pub fn new(windows: Vec<DimmWindow>, max_slots: usize) -> Self {
        let active = whole(&windows);
        PoisonSlots {
            windows,
            max_slots,
            piece: None,
            active,
            plan: MemslotPlan::default(),
            installed: BTreeMap::new(),
        }
    }

    /// Lazy registration: nothing has a slot until `activate` registers the piece (of
    /// `piece` bytes, rounded up to whole pages, aligned to the window) around a touched
    /// address. `update` only re-plans pieces activated so far.
    pub fn lazy(windows: Vec<DimmWindow>, max_slots: usize, piece: u64) -> Self {
        let active = vec![Active::new(); windows.len()];
        PoisonSlots {
            windows,
            max_slots,
            piece: Some(piece.max(1).div_ceil(PAGE_SIZE) * PAGE_SIZE),
            active,
            plan: MemslotPlan::default(),
            installed: BTreeMap::new(),
        }
    }

    /// The piece containing `gpa` as (dimm, offset into the window, length), if `gpa`
    /// is in a lazily registered window.
    fn piece_at(&self, gpa: u64) -> Option<(usize, u64, u64)> {
        let piece = self.piece?;
        let (dimm, w) = self.locate(gpa)?;
        let offset = (gpa - w.gpa) / piece * piece;
        Some((dimm, offset, piece.min(w.size - offset)))
    }

    /// Whether `gpa` lies in a window part that has no memslots yet (eager: never).
    pub fn is_unregistered(&self, gpa: u64) -> bool {
        self.piece_at(gpa)
            .is_some_and(|(dimm, offset, _)| !self.active[dimm].contains_key(&offset))
    }

    /// Window bytes registered (activated) so far, over all windows.
    pub fn active_bytes(&self) -> u64 {
        self.active.iter().flat_map(|a| a.values()).sum()
    }

    /// Registers the piece around `gpa` minus its poisoned holes. `Ok(None)`: `gpa` is in
    /// no lazily registered window, or its piece is registered already. The slot limit is
    /// checked first (nothing changes if it would be exceeded; the piece stays served
    /// through MMIO exits). If the sink fails, the piece counts as activated and what
    /// is missing is added by the next `update`.
    pub fn activate(
        &mut self,
        gpa: u64,
        sink: &mut dyn SlotSink,
    ) -> Result<Option<ApplyStats>, MemslotError> {
        let Some((dimm, offset, len)) = self.piece_at(gpa) else {
            return Ok(None);
        };
        if self.active[dimm].contains_key(&offset) {
            return Ok(None);
        }
        let w = self.windows[dimm];
        let holes: Vec<Hole> = self
            .plan
            .holes
            .iter()
            .filter(|h| h.dimm == dimm)
            .copied()
            .collect();
        let regions = cover(dimm, &w, offset, offset + len, &holes);
        let needed = self.plan.regions.len() + regions.len();
        if needed > self.max_slots {
            return Err(MemslotError::TooManySlots {
                needed,
                limit: self.max_slots,
            });
        }
        self.active[dimm].insert(offset, len);
        self.plan.regions.extend(&regions);
        self.plan.regions.sort_unstable();
        for region in &regions {
            sink.add(region)
                .map_err(|source| apply_error("adding", region, source))?;
            self.installed.insert(region.gpa, *region);
        }
        Ok(Some(ApplyStats {
            removed: 0,
            added: regions.len(),
            slots: self.installed.len(),
            holes: self.plan.holes.len(),
        }))
    }

    pub fn windows(&self) -> &[DimmWindow] {
        &self.windows
    }

    pub fn plan(&self) -> &MemslotPlan {
        &self.plan
    }

    pub fn installed(&self) -> impl Iterator<Item = &SlotRegion> {
        self.installed.values()
    }

    /// Re-plans for `poison` (one set per DIMM) and applies the difference: removals
    /// first (KVM refuses overlapping slots), then additions. If planning fails nothing
    /// changes; if the sink fails, what did succeed is remembered for the next update.
    pub fn update(
        &mut self,
        poison: &[&PoisonSet],
        sink: &mut dyn SlotSink,
    ) -> Result<ApplyStats, MemslotError> {
        let new = plan_active(&self.windows, poison, &self.active, self.max_slots)?;
        let (remove, add) = diff(self.installed.values(), &new.regions);
        // Holes are known from here on, so an exit on a page already out is classified.
        self.plan = new;
        for region in &remove {
            sink.remove(region)
                .map_err(|source| apply_error("removing", region, source))?;
            self.installed.remove(&region.gpa);
        }
        for region in &add {
            sink.add(region)
                .map_err(|source| apply_error("adding", region, source))?;
            self.installed.insert(region.gpa, *region);
        }
        Ok(ApplyStats {
            removed: remove.len(),
            added: add.len(),
            slots: self.installed.len(),
            holes: self.plan.holes.len(),
        })
    }

    /// `(dimm, offset)` if `gpa` lies in a poisoned page.
    pub fn classify(&self, gpa: u64) -> Option<(usize, u64)> {
        let hole = self.plan.hole_at(gpa)?;
        Some((hole.dimm, gpa - self.windows[hole.dimm].gpa))
    }

    fn locate(&self, gpa: u64) -> Option<(usize, &DimmWindow)> {
        self.windows
            .iter()
            .enumerate()
            .find(|(_, w)| w.contains(gpa))
    }

    /// Serves a guest load that exited inside an NVDIMM window; `None` if `gpa` is in none.
    pub fn on_mmio_read(&self, gpa: u64, data: &mut [u8]) -> Option<WindowAccess> {
        let (dimm, w) = self.locate(gpa)?;
        let offset = gpa - w.gpa;
        let len = clip(w, offset, data.len());
        if self.touches_hole(gpa, len) {
            // What a master-aborted read returns; the machine check says the data is bad.
            data.fill(0xFF);
            return Some(WindowAccess::Poisoned { dimm, offset });
        }
        let served = self.served(gpa, len, dimm, offset);
        w.bytes(offset, len).copy_to(&mut data[..len]);
        data[len..].fill(0xFF);
        Some(served)
    }

    /// `Unregistered` if any byte of the access lies in a piece without slots.
    fn served(&self, gpa: u64, len: usize, dimm: usize, offset: u64) -> WindowAccess {
        let last = gpa + len.max(1) as u64 - 1;
        if self.is_unregistered(gpa) || self.is_unregistered(last) {
            WindowAccess::Unregistered { dimm, offset }
        } else {
            WindowAccess::Served { dimm, offset }
        }
    }

    /// Serves a guest store that exited inside an NVDIMM window: the data goes to the
    /// backing file, poisoned page or not. `None` if `gpa` is in no window.
    pub fn on_mmio_write(&self, gpa: u64, data: &[u8]) -> Option<WindowAccess> {
        let (dimm, w) = self.locate(gpa)?;
        let offset = gpa - w.gpa;
        if w.readonly {
            return Some(WindowAccess::ReadOnly { dimm, offset });
        }
        let len = clip(w, offset, data.len());
        // Writable: the window is not read-only (checked above).
        w.bytes(offset, len).copy_from(&data[..len]);
        if self.touches_hole(gpa, len) {
            Some(WindowAccess::Poisoned { dimm, offset })
        } else {
            Some(self.served(gpa, len, dimm, offset))
        }
    }

    fn touches_hole(&self, gpa: u64, len: usize) -> bool {
        let last = gpa + len.max(1) as u64 - 1;
        self.plan.hole_at(gpa).is_some() || self.plan.hole_at(last).is_some()
    }
}

/// Bytes of an access at `offset` that lie inside the window.
fn clip(w: &DimmWindow, offset: u64, len: usize) -> usize {
    (w.size - offset).min(len as u64) as usize
}

fn apply_error(action: &'static str, region: &SlotRegion, source: io::Error) -> MemslotError {
    MemslotError::Apply {
        action,
        gpa: region.gpa,
        size: region.size,
        source,
    }
}

#[cfg(test)]
mod test_memory;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_kvm;
