//! One emulated DIMM: its configuration, placement, live state and storage.
//!
//! The backing file is the DIMM's media and nothing else: it is never read or written
//! here (it may be a multi-terabyte sparse file the VMM maps). Labels and state live in
//! sidecar files next to it (see `persist.rs` and docs/labels-and-persistence.md).

use crate::sync::LockUnpoisoned;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::backing_lock::{BackingLock, LockError};
use crate::config::DimmConfig;
use crate::events::{Notification, NotifyTarget, NOTIFY_DIMM_HEALTH};
use crate::health::{HealthError, InjectRequest, SmartHealth, SmartInjection, SmartThresholds};
use crate::layout::DimmPlacement;
use crate::persist::{self, PersistError, SidecarPaths};
use crate::poison::PoisonSet;
use crate::poison_journal::{PoisonJournal, PoisonOp};
use crate::firmware::{FirmwareSession, FirmwareVersions};
use crate::security::{SecurityKeys, SecuritySession};
use crate::writeback::WritebackProbe;

#[derive(Debug, Error)]
pub enum DimmError {
    #[error("backing file {path}: {source}; create it first (e.g. `truncate -s SIZE FILE`)")]
    BackingFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("backing file {path} is {actual} bytes but the DIMM is configured as {required} bytes; grow it (e.g. `truncate -s {required} FILE`) or lower size=")]
    BackingTooSmall { path: PathBuf, actual: u64, required: u64 },
    #[error("backing file {path} is neither a regular file nor a block device")]
    BackingNotFile { path: PathBuf },
    #[error("label sidecar {path} is {actual} bytes but label-size is {expected}; restore the matching label-size= or move the file away to start with blank labels")]
    LabelSidecarSize { path: PathBuf, actual: u64, expected: u64 },
    #[error("label access [{offset:#x}, +{len:#x}) is outside the {area:#x}-byte label area")]
    LabelRange { offset: u64, len: u64, area: u64 },
    #[error("nvdimm {handle:#x} is read-only; its labels cannot be written")]
    ReadOnly { handle: u32 },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(
        "backing file {path}: cannot allocate its {size} bytes (prealloc=on): {source}; free space or drop prealloc=on"
    )]
    Prealloc {
        path: PathBuf,
        size: u64,
        #[source]
        source: io::Error,
    },
    #[error("backing file {path}: the guest's writes could not all be stored ({source}); what it wrote since the last successful flush may be lost")]
    BackingWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error(transparent)]
    Health(#[from] HealthError),
}

/// State that survives VMM restarts (everything but the label bytes, which have their own file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DimmState {
    pub poison: PoisonSet,
    /// SMART values as the host set them (injection and threshold alarms are applied on read).
    pub health: SmartHealth,
    pub thresholds: SmartThresholds,
    pub injection: SmartInjection,
    /// Intel function 10 latch: whether an unclean stop of this run is counted at the next
    /// open. Re-armed at every open, like a platform BIOS does at power-on.
    pub latch_shutdown_status: bool,
    /// True while a VMM has the DIMM open; still true at open = the last stop was unclean.
    pub running: bool,
    /// Passphrases (security.rs); the lock they put on the DIMM is per power cycle.
    pub security: SecurityKeys,
    /// Running and staged firmware versions (firmware.rs).
    pub firmware: FirmwareVersions,
}

impl Default for DimmState {
    fn default() -> Self {
        DimmState {
            poison: PoisonSet::default(),
            health: SmartHealth::default(),
            thresholds: SmartThresholds::default(),
            injection: SmartInjection::default(),
            latch_shutdown_status: true,
            running: false,
            security: SecurityKeys::default(),
            firmware: FirmwareVersions::default(),
        }
    }
}

impl DimmState {
    /// The SMART payload the guest reads.
    pub fn smart(&self) -> SmartHealth {
        self.health.effective(&self.thresholds, &self.injection)
    }
}

pub struct Dimm {
    pub config: DimmConfig,
    pub placement: DimmPlacement,
    pub state: DimmState,
    /// This power cycle's security: locked, frozen, attempts, a running overwrite.
    pub security_session: SecuritySession,
    /// This power cycle's firmware update and activation state.
    pub firmware_session: FirmwareSession,
    /// Label storage area (`config.label_size` bytes).
    pub labels: Vec<u8>,
    /// Sidecar files; `None` for an ephemeral DIMM.
    storage: Option<SidecarPaths>,
    /// The backing file, locked for this DIMM alone while it is open; `None` for an
    /// ephemeral DIMM.
    lock: Option<BackingLock>,
    /// The state sidecar's bytes before this open (`None`: there was none), so a VM
    /// that never started can put it back ([`Dimm::undo_open`]).
    state_before_open: Option<Vec<u8>>,
    /// Poison changes since the state file was last written; `None` for an ephemeral DIMM.
    journal: Option<PoisonJournal>,
    /// A write-back failure a [`WritebackProbe`] saw (`writeback.rs`).
    writeback_failure: Arc<Mutex<Option<String>>>,
}

/// The journal is folded into the state file once it holds more records than this or
/// than the poison list has ranges, whichever is more: rewriting n ranges after at least
/// n changes keeps each change O(1) amortised in I/O.
const COMPACT_AFTER_RECORDS: u64 = 1024;

impl Dimm {
    /// A DIMM with fresh state that is never written to disk (table generation, tests).
    pub fn ephemeral(config: DimmConfig, placement: DimmPlacement) -> Self {
        let labels = vec![0; config.label_size as usize];
        let state = DimmState { health: SmartHealth::with_state(config.health), ..DimmState::default() };
        Dimm {
            config,
            placement,
            security_session: SecuritySession::power_on(&state.security),
            firmware_session: FirmwareSession::default(),
            state,
            labels,
            storage: None,
            lock: None,
            state_before_open: None,
            journal: None,
            writeback_failure: Arc::default(),
        }
    }

    /// Opens a persistent DIMM: checks the backing file's size (without touching its
    /// contents), opens and locks it for this VM alone (`backing_lock.rs`; writable
    /// unless `readonly`), loads the label and state sidecars (fresh ones when missing),
    /// counts an unsafe shutdown if the previous run did not call [`Dimm::close_clean`],
    /// and marks the DIMM running on disk. Nothing is written unless all of that worked.
    pub fn open(config: DimmConfig, placement: DimmPlacement) -> Result<Dimm, DimmError> {
        let dimm = Self::load(config, placement)?;
        dimm.save_state()?;
        Ok(dimm)
    }

    /// [`Dimm::open`] without the write: the DIMM is locked and its new power cycle
    /// computed, but nothing on disk has changed yet. [`Dimm::save_state`] commits it;
    /// `NvdimmPlatform::open` loads every DIMM before it commits any, so a DIMM that
    /// cannot be opened leaves the others' files untouched.
    pub fn load(config: DimmConfig, placement: DimmPlacement) -> Result<Dimm, DimmError> {
        let actual = backing_size(&config.path)?;
        if actual < config.size {
            return Err(DimmError::BackingTooSmall { path: config.path.clone(), actual, required: config.size });
        }
        // Before the sidecars are read: they belong to whoever holds the lock.
        let lock = BackingLock::acquire(&config.path, config.readonly)?;
        if config.prealloc && !config.readonly {
            preallocate(lock.file(), config.size).map_err(|source| DimmError::Prealloc {
                path: config.path.clone(),
                size: config.size,
                source,
            })?;
        }
        let paths = SidecarPaths::for_backing_file(&config.path);
        let labels = if config.label_size == 0 {
            Vec::new()
        } else {
            match persist::read_optional(&paths.labels)? {
                None => vec![0; config.label_size as usize],
                Some(bytes) if bytes.len() as u64 == config.label_size => bytes,
                Some(bytes) => {
                    return Err(DimmError::LabelSidecarSize {
                        path: paths.labels.clone(),
                        actual: bytes.len() as u64,
                        expected: config.label_size,
                    })
                }
            }
        };
        let state_before_open = persist::read_optional(&paths.state)?;
        let mut state = match &state_before_open {
            Some(bytes) => serde_json::from_slice::<DimmState>(bytes)
                .map_err(|source| PersistError::Corrupt { path: paths.state.clone(), source })?,
            None => DimmState { health: SmartHealth::with_state(config.health), ..DimmState::default() },
        };
        // Poison changes acknowledged after the state file was last written.
        let journal = PoisonJournal::replay(&paths.poison_journal, &mut state.poison)?;
        state.health.validate()?;
        state.thresholds.validate()?;
        // A new power cycle: the shutdown state is recomputed; the counter only grows.
        if state.running {
            if state.latch_shutdown_status {
                state.health.unsafe_shutdown_count = state.health.unsafe_shutdown_count.saturating_add(1);
                state.health.last_shutdown_state = 1;
            }
        } else {
            state.health.last_shutdown_state = 0;
        }
        state.running = true;
        state.latch_shutdown_status = true;
        // A staged firmware image runs from this power-on (activation at reset).
        state.firmware.power_on();
        Ok(Dimm {
            config,
            placement,
            security_session: SecuritySession::power_on(&state.security),
            firmware_session: FirmwareSession::default(),
            state,
            labels,
            storage: Some(paths),
            lock: Some(lock),
            state_before_open,
            journal: Some(journal),
            writeback_failure: Arc::default(),
        })
    }

    /// Puts the state sidecar back as it was before this DIMM was opened (removes it if
    /// there was none), for a VM that failed to start: a start that never ran the guest
    /// must not count as a run, clean or dirty. Labels are not touched (only a running
    /// guest writes them). The in-memory state is left as it is; drop the DIMM after.
    pub fn undo_open(&mut self) -> Result<(), DimmError> {
        let Some(paths) = &self.storage else {
            return Ok(());
        };
        match &self.state_before_open {
            Some(bytes) => persist::write_atomic(&paths.state, bytes)?,
            None => persist::remove(&paths.state)?,
        }
        Ok(())
    }

    pub fn handle(&self) -> u32 {
        self.config.handle
    }

    /// The DIMM's window in system physical address space.
    pub fn spa_range(&self) -> Range<u64> {
        self.placement.spa_base..self.placement.spa_base + self.config.size
    }

    /// The backing file this DIMM holds open and locked; `None` for an ephemeral DIMM.
    pub fn backing_file(&self) -> Option<&File> {
        self.lock.as_ref().map(BackingLock::file)
    }

    /// A probe for failed write-back of the guest's stores (`writeback.rs`), for a
    /// writable persistent DIMM; it shares this DIMM's open file description, so an
    /// error it sees is the one `close_clean` would see, and is remembered for it. (It
    /// also shares the backing-file lock: drop it with the DIMM.)
    pub fn writeback_probe(&self) -> Option<WritebackProbe> {
        if self.config.readonly {
            return None;
        }
        let file = self.backing_file()?.try_clone().ok()?;
        Some(WritebackProbe::new(self.config.path.clone(), file, self.writeback_failure.clone()))
    }

    /// Whether state and label changes reach disk.
    pub fn is_persistent(&self) -> bool {
        self.storage.is_some()
    }

    pub fn sidecars(&self) -> Option<&SidecarPaths> {
        self.storage.as_ref()
    }

    /// Writes [`DimmState`] to its sidecar (atomically); a no-op for ephemeral DIMMs.
    pub fn save_state(&self) -> Result<(), DimmError> {
        if let Some(paths) = &self.storage {
            persist::write_json(&paths.state, &self.state)?;
        }
        Ok(())
    }

    /// Records a clean stop: the next open will not count an unsafe shutdown. Call it
    /// last, after the guest memory mapping has been flushed.
    pub fn close_clean(&mut self) -> Result<(), DimmError> {
        // The guest's stores reached the backing file through the page cache; an error
        // writing them back (a full file system under a sparse file, an I/O error) is
        // reported to the next fsync of any descriptor opened before it. If there was
        // one, the stop was not clean: say so, and leave the DIMM marked running so the
        // next start counts the loss as a dirty shutdown.
        let seen = self.writeback_failure.lock_unpoisoned().clone();
        if let Some(message) = seen {
            return Err(DimmError::BackingWrite { path: self.config.path.clone(), source: io::Error::other(message) });
        }
        if let (Some(file), false) = (self.backing_file(), self.config.readonly) {
            file.sync_data().map_err(|source| DimmError::BackingWrite { path: self.config.path.clone(), source })?;
        }
        self.state.running = false;
        self.compact()
    }

    /// Makes poison changes durable by appending them to the journal (one `fdatasync`
    /// for all of `ops`), folding the journal into the state file when it has grown.
    /// A no-op for ephemeral DIMMs.
    pub(crate) fn journal_poison(&mut self, ops: &[PoisonOp]) -> Result<(), DimmError> {
        let Some(journal) = &mut self.journal else {
            return Ok(());
        };
        journal.append(ops)?;
        if journal.records() > COMPACT_AFTER_RECORDS.max(self.state.poison.len() as u64) {
            // The changes are durable already; a failed compaction only leaves the
            // journal longer, to be folded in next time.
            let _ = self.compact();
        }
        Ok(())
    }

    /// Writes the state file (with every poison change) and empties the journal. In
    /// that order: a crash in between replays changes the snapshot already holds,
    /// which changes nothing (`poison_journal.rs`).
    pub fn compact(&mut self) -> Result<(), DimmError> {
        self.save_state()?;
        if let Some(journal) = &mut self.journal {
            journal.reset()?;
        }
        Ok(())
    }

    /// Label bytes `[offset, offset + len)`, or `None` outside the area.
    pub fn read_labels(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        self.labels.get(usize::try_from(offset).ok()?..usize::try_from(end).ok()?)
    }

    /// Writes label bytes and makes them durable before returning. On a storage
    /// error the in-memory area is left as it was.
    pub fn write_labels(&mut self, offset: u64, data: &[u8]) -> Result<(), DimmError> {
        if self.config.readonly {
            return Err(DimmError::ReadOnly { handle: self.handle() });
        }
        let area = self.labels.len() as u64;
        let range_err = || DimmError::LabelRange { offset, len: data.len() as u64, area };
        let end = offset.checked_add(data.len() as u64).filter(|&e| e <= area).ok_or_else(range_err)?;
        let range = offset as usize..end as usize;
        let Some(paths) = &self.storage else {
            self.labels[range].copy_from_slice(data);
            return Ok(());
        };
        let old = self.labels[range.clone()].to_vec();
        self.labels[range.clone()].copy_from_slice(data);
        if let Err(e) = persist::write_atomic(&paths.labels, &self.labels) {
            self.labels[range].copy_from_slice(&old);
            return Err(e.into());
        }
        Ok(())
    }

    /// The SMART payload the guest reads (host values, injection, threshold alarms).
    pub fn smart(&self) -> SmartHealth {
        self.state.smart()
    }

    /// Host: replaces the SMART values. Returns the health event to raise, if the
    /// guest-visible health, alarms or shutdown state changed.
    pub fn set_health(&mut self, health: SmartHealth) -> Result<Vec<Notification>, DimmError> {
        health.validate()?;
        self.update_state(|s| s.health = health)
    }

    /// Host (or function 17): replaces the alarm thresholds.
    pub fn set_thresholds(&mut self, thresholds: SmartThresholds) -> Result<Vec<Notification>, DimmError> {
        thresholds.validate()?;
        self.update_state(|s| s.thresholds = thresholds)
    }

    /// Host: replaces the whole SMART injection state (same effects as function 18).
    pub fn set_injection(&mut self, injection: SmartInjection) -> Result<Vec<Notification>, DimmError> {
        if let Some(s) = injection.spares_percent.filter(|&s| s > 100) {
            return Err(HealthError::Percentage { field: "injected spares", value: s }.into());
        }
        self.update_state(|s| {
            bump_on_unsafe_shutdown_injection(s, injection.unsafe_shutdown);
            s.injection = injection;
        })
    }

    /// Function 18: injects or uninjects the fields the request names. Injecting an
    /// unsafe shutdown bumps the shutdown count once, as a real unsafe shutdown would.
    pub fn inject(&mut self, request: &InjectRequest) -> Result<Vec<Notification>, DimmError> {
        self.update_state(|s| {
            if let Some(t) = request.media_temperature {
                s.injection.media_temperature = t;
            }
            if let Some(p) = request.spares_percent {
                s.injection.spares_percent = p;
            }
            if let Some(f) = request.fatal {
                s.injection.fatal = f;
            }
            if let Some(u) = request.unsafe_shutdown {
                bump_on_unsafe_shutdown_injection(s, u);
                s.injection.unsafe_shutdown = u;
            }
        })
    }

    /// Function 10: arms (or disarms) counting of an unclean stop of this run.
    pub fn set_shutdown_latch(&mut self, enable: bool) -> Result<(), DimmError> {
        self.update_state(|s| s.latch_shutdown_status = enable).map(|_| ())
    }

    /// Applies `change`, persists it, and reports a health event if the guest-visible
    /// health changed. If the state cannot be saved, nothing changes.
    /// `change` must only touch the SMART part of the state: only that is rolled back,
    /// so the poison list (possibly large) is never cloned here.
    fn update_state(&mut self, change: impl FnOnce(&mut DimmState)) -> Result<Vec<Notification>, DimmError> {
        let s = &self.state;
        let before = (s.health.clone(), s.thresholds, s.injection, s.latch_shutdown_status);
        let key_before = s.smart().event_key();
        change(&mut self.state);
        if let Err(e) = self.save_state() {
            let s = &mut self.state;
            (s.health, s.thresholds, s.injection, s.latch_shutdown_status) = before;
            return Err(e);
        }
        if key_before != self.state.smart().event_key() {
            Ok(vec![Notification { target: NotifyTarget::Dimm { handle: self.handle() }, code: NOTIFY_DIMM_HEALTH }])
        } else {
            Ok(Vec::new())
        }
    }
}

fn bump_on_unsafe_shutdown_injection(state: &mut DimmState, inject: bool) {
    if inject && !state.injection.unsafe_shutdown {
        state.health.unsafe_shutdown_count = state.health.unsafe_shutdown_count.saturating_add(1);
    }
}

/// Allocates `[0, size)` of `file` (regular files; a block device is allocated already).
fn preallocate(file: &File, size: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if !file.metadata()?.is_file() {
        return Ok(());
    }
    let len = libc::off_t::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: posix_fallocate on a descriptor we own; it returns the error number.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Size of a regular file or block device, without reading its contents.
fn backing_size(path: &std::path::Path) -> Result<u64, DimmError> {
    let io_err = |source| DimmError::BackingFile { path: path.to_path_buf(), source };
    let meta = fs::metadata(path).map_err(io_err)?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    if meta.file_type().is_block_device() {
        let mut f = File::open(path).map_err(io_err)?;
        return f.seek(SeekFrom::End(0)).map_err(io_err);
    }
    Err(DimmError::BackingNotFile { path: path.to_path_buf() })
}

#[cfg(test)]
mod tests;
