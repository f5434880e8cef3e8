//! The NVDIMM windows' memslots of a running VM, shared between the vCPU thread (which
//! serves window MMIO exits) and the control API (which changes poison): a
//! `memslots::PoisonSlots` behind a lock, kept equal to the device model's poison.
//!
//! `sync` is called after anything that may have changed poison: every `_DSM` doorbell
//! ring (Clear Uncorrectable Error, ARS error injection) and every host change
//! (`Backend::poison_changed`). It compares the DIMMs' poison sets with the ones last
//! planned, so a doorbell ring that changed nothing costs one comparison per DIMM.
//!
//! KVM_SET_USER_MEMORY_REGION may be called from any thread while a vCPU is inside
//! KVM_RUN: KVM publishes the new memslot array with SRCU and waits for every vCPU to
//! leave the old one, so a vCPU sees either the old or the new layout, never a torn one.
//! An access that exits on a page whose slot is being re-added is served from the
//! backing file (`WindowAccess::Served`), so it is not lost either.
//!
//! Windows are registered lazily by default (`Registration::Lazy`): nothing at start,
//! then the 1 GiB piece around each first-touched address (`on_read`/`on_write` serve the
//! access from the backing file, then register the piece minus its poisoned holes).
//! If the piece cannot be registered (slot limit, KVM error) the access is still served
//! and later accesses keep exiting; the first such failure is reported on stderr.
//!
//! An instruction fetch cannot be served that way: KVM has no MMIO exit for it and stops
//! with an emulation failure (KVM_EXIT_INTERNAL_ERROR) instead. The run loop then hands
//! the guest physical addresses of the instruction's first and last possible byte to
//! `on_fetch_failure`, which registers their pieces (the instruction restarts) or names
//! the poisoned page the fetch consumed.

use nvdimm_model::sync::LockUnpoisoned;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvm_ioctls::VmFd;
use nvdimm_model::poison::PoisonSet;
use nvdimm_model::NvdimmPlatform;

use crate::memory::guest_memory::GuestMemory;
use crate::memory::memslots::{ApplyStats, DimmWindow, KvmSlots, MemslotError, PoisonSlots, WindowAccess, LAZY_PIECE};

/// When the windows' memslots are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Whole windows by the first `sync` (start-up pays for every GiB).
    Eager,
    /// Pieces of this many bytes, on first touch.
    Lazy { piece: u64 },
}

impl Default for Registration {
    fn default() -> Self {
        Registration::Lazy { piece: LAZY_PIECE }
    }
}

/// What an emulation failure at an instruction had to do with the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchFault {
    /// The instruction lies (partly) in a piece that has just been registered: run it again.
    Registered,
    /// The instruction lies (partly) in this poisoned page: the fetch consumed poison.
    Poisoned { gpa: u64 },
    /// Not the windows' doing (or its piece could not be registered): a real failure.
    NotWindows,
}

/// Pieces registered on first touch so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActivationStats {
    pub pieces: u64,
    /// Window bytes registered by them.
    pub bytes: u64,
    /// Wall time of their KVM calls.
    pub took: Duration,
    /// Activations refused (slot limit) or failed (KVM).
    pub failures: u64,
}

/// Result of one `sync` that changed the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub apply: ApplyStats,
    /// Wall time of planning and the KVM calls.
    pub took: Duration,
}

struct Inner {
    slots: PoisonSlots,
    kvm: KvmSlots,
    /// The poison the installed slots were planned for, one set per DIMM.
    planned: Option<Vec<PoisonSet>>,
    last: Option<SyncStats>,
    activations: ActivationStats,
}

pub struct PmemSlots {
    vm_fd: Arc<VmFd>,
    // Keeps the windows' mappings alive as long as the slots point into them.
    _memory: Arc<GuestMemory>,
    inner: Mutex<Inner>,
}

impl PmemSlots {
    /// Slots `first_slot..nr_memslots` are the windows'; nothing is installed before the
    /// first `sync`, and with the default lazy registration not then either.
    pub fn new(vm_fd: Arc<VmFd>, memory: Arc<GuestMemory>, first_slot: u32, nr_memslots: u32) -> Self {
        Self::with_registration(vm_fd, memory, first_slot, nr_memslots, Registration::default())
    }

    pub fn with_registration(
        vm_fd: Arc<VmFd>,
        memory: Arc<GuestMemory>,
        first_slot: u32,
        nr_memslots: u32,
        registration: Registration,
    ) -> Self {
        let windows = memory
            .pmem
            .iter()
            .map(|w| {
                // SAFETY: the mapping is owned by `memory`, which this value keeps alive.
                unsafe { DimmWindow::new(w.gpa, w.size(), w.host_addr(), w.readonly) }
            })
            .collect();
        let max = nr_memslots.saturating_sub(first_slot) as usize;
        let slots = match registration {
            Registration::Eager => PoisonSlots::new(windows, max),
            Registration::Lazy { piece } => PoisonSlots::lazy(windows, max, piece),
        };
        PmemSlots {
            vm_fd,
            _memory: memory,
            inner: Mutex::new(Inner {
                slots,
                kvm: KvmSlots::new(first_slot, nr_memslots),
                planned: None,
                last: None,
                activations: ActivationStats::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock_unpoisoned()
    }

    /// Re-plans if the platform's poison differs from what the slots were planned for.
    /// `Ok(None)`: nothing changed. Locks the platform briefly, never together with the slots.
    pub fn sync(&self, platform: &Mutex<NvdimmPlatform>) -> Result<Option<SyncStats>, MemslotError> {
        let current: Vec<PoisonSet> = {
            // Where the poisoned bytes are stored: each DIMM's own poison, except that an
            // interleave set's bytes are stored across its members' files in address order.
            let stored = platform.lock_unpoisoned().storage_poison();
            let mut inner = self.lock();
            if inner.planned.as_ref() == Some(&stored) {
                return Ok(None);
            }
            // Cleared so a failed update is retried next time.
            inner.planned = None;
            stored
        };
        self.apply(current).map(Some)
    }

    /// Installs the slots for exactly `poison` (one set per DIMM).
    pub fn apply(&self, poison: Vec<PoisonSet>) -> Result<SyncStats, MemslotError> {
        let start = Instant::now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let refs: Vec<&PoisonSet> = poison.iter().collect();
        let apply = inner.slots.update(&refs, &mut inner.kvm.bind(&self.vm_fd))?;
        let stats = SyncStats { apply, took: start.elapsed() };
        inner.planned = Some(poison);
        inner.last = Some(stats);
        Ok(stats)
    }

    /// The last change `sync`/`apply` made.
    pub fn last_sync(&self) -> Option<SyncStats> {
        self.lock().last
    }

    /// Whether `gpa` lies in a poisoned page (out of the memslots, registered piece or not).
    pub fn is_hole(&self, gpa: u64) -> bool {
        self.lock().slots.classify(gpa).is_some()
    }

    /// Memslots the windows use now.
    pub fn slot_count(&self) -> usize {
        self.lock().kvm.len()
    }

    /// Whether `gpa` is in a window piece that has no memslots yet.
    pub fn is_unregistered(&self, gpa: u64) -> bool {
        self.lock().slots.is_unregistered(gpa)
    }

    /// Pieces registered on first touch so far.
    pub fn activation_stats(&self) -> ActivationStats {
        self.lock().activations
    }

    /// Registers the piece around `gpa` now, as a first touch would. `Ok(None)`: nothing to
    /// do (not in a lazily registered window, or registered already).
    pub fn activate(&self, gpa: u64) -> Result<Option<SyncStats>, MemslotError> {
        let mut inner = self.lock();
        self.activate_locked(&mut inner, gpa)
    }

    fn activate_locked(&self, inner: &mut Inner, gpa: u64) -> Result<Option<SyncStats>, MemslotError> {
        let start = Instant::now();
        let before = inner.slots.active_bytes();
        let result = inner.slots.activate(gpa, &mut inner.kvm.bind(&self.vm_fd));
        let took = start.elapsed();
        let a = &mut inner.activations;
        match result {
            Ok(Some(apply)) => {
                a.pieces += 1;
                a.bytes += inner.slots.active_bytes() - before;
                a.took += took;
                Ok(Some(SyncStats { apply, took }))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                a.failures += 1;
                if a.failures == 1 {
                    log::warn!(
                        "registering the NVDIMM window piece at {gpa:#x} failed: {e}; \
                         accesses there are served by the VMM (slowly) from now on"
                    );
                }
                Err(e)
            }
        }
    }

    /// After an exit in a window was served: registers the piece(s) it touched.
    fn after_access(&self, inner: &mut Inner, gpa: u64, len: usize) {
        let last = gpa + len.max(1) as u64 - 1;
        for at in [gpa, last] {
            if inner.slots.is_unregistered(at) {
                // Failures are counted and reported once in activate_locked; the access
                // itself was served, so the guest goes on either way.
                let _ = self.activate_locked(inner, at);
            }
        }
    }

    /// A guest load that exited: `None` if `gpa` is in no window. A load in a piece
    /// without slots is served from the backing file and the piece registered.
    pub fn on_read(&self, gpa: u64, data: &mut [u8]) -> Option<WindowAccess> {
        let mut inner = self.lock();
        let access = inner.slots.on_mmio_read(gpa, data)?;
        self.after_access(&mut inner, gpa, data.len());
        Some(access)
    }

    /// A guest store that exited: written through to the backing file. `None` if `gpa`
    /// is in no window. A store in a piece without slots registers the piece afterwards.
    pub fn on_write(&self, gpa: u64, data: &[u8]) -> Option<WindowAccess> {
        let mut inner = self.lock();
        let access = inner.slots.on_mmio_write(gpa, data)?;
        self.after_access(&mut inner, gpa, data.len());
        Some(access)
    }

    /// KVM could not emulate the instruction whose bytes lie at `gpas` (its first and its
    /// last possible byte, translated from RIP). A piece without slots among them is
    /// registered first (`Registered`, even if a later byte is poisoned: the instruction
    /// may not reach it, and the retry tells); only with every piece registered does a
    /// poisoned page count as consumed.
    pub fn on_fetch_failure(&self, gpas: &[u64]) -> FetchFault {
        let mut inner = self.lock();
        let mut registered = false;
        for &gpa in gpas {
            if inner.slots.is_unregistered(gpa) {
                // A failure is counted and reported once in activate_locked; the caller
                // then sees `NotWindows` (unless another byte's piece got registered).
                registered |= matches!(self.activate_locked(&mut inner, gpa), Ok(Some(_)));
            }
        }
        if registered {
            return FetchFault::Registered;
        }
        match gpas.iter().find(|&&gpa| inner.slots.classify(gpa).is_some()) {
            Some(&gpa) => FetchFault::Poisoned { gpa },
            None => FetchFault::NotWindows,
        }
    }
}
