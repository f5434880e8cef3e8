//! The host's side of DIMM security (control API, `vnvdimm ctl security`), and erasing
//! a DIMM's media where it is stored: its own backing file, or for a member of an
//! interleave set its lines in the set's files (docs/security.md).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::dimm::DimmError;
use crate::event_log::EventKind;
use crate::security::{state_bits, Passphrase, Security, SecurityKeys, SecuritySession, MAX_ATTEMPTS};
use crate::NvdimmPlatform;

#[derive(Debug, Error)]
pub enum HostSecurityError {
    #[error("no nvdimm #{index}: the platform has {count} nvdimms, numbered from 0")]
    NoSuchDimm { index: usize, count: usize },
    #[error("nvdimm #{index} is read-only (readonly=on): it offers no security functions")]
    ReadOnly { index: usize },
    #[error("nvdimm #{index}: `locked` needs a passphrase; set one first")]
    LockWithoutPassphrase { index: usize },
    #[error("nvdimm #{index}: the security state could not be saved, nothing changed: {source}")]
    Persist {
        index: usize,
        #[source]
        source: DimmError,
    },
    #[error("nvdimm #{index}: erasing the media failed: {source}")]
    Erase {
        index: usize,
        #[source]
        source: io::Error,
    },
}

/// What `GET /dimms/{i}/security` shows: the guest's view plus what only the host sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityView {
    /// What Linux shows in nmemX/security: disabled, unlocked, locked, frozen or overwrite.
    pub state: &'static str,
    pub passphrase_set: bool,
    pub locked: bool,
    pub frozen: bool,
    pub failed_attempts: u8,
    pub attempt_limit_reached: bool,
    pub master_enabled: bool,
    pub failed_master_attempts: u8,
    /// Milliseconds left of a running overwrite; 0 when none runs.
    pub overwrite_remaining_ms: u64,
    pub overwrite_time_ms: u64,
}

/// A host change to a DIMM's security; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityChange {
    /// Some(Some(p)): set the passphrase; Some(None): remove it (and unlock).
    pub passphrase: Option<Option<Passphrase>>,
    pub master_passphrase: Option<Passphrase>,
    pub master_enabled: Option<bool>,
    pub locked: Option<bool>,
    pub frozen: Option<bool>,
    /// Forget wrong-passphrase counts (as a power cycle would).
    pub reset_attempts: bool,
    pub overwrite_time: Option<Duration>,
}

impl NvdimmPlatform {
    fn security_dimm(&self, index: usize) -> Result<(), HostSecurityError> {
        match self.dimms.get(index) {
            None => Err(HostSecurityError::NoSuchDimm { index, count: self.dimms.len() }),
            Some(d) if d.config.readonly => Err(HostSecurityError::ReadOnly { index }),
            Some(_) => Ok(()),
        }
    }

    pub fn security_view(&self, index: usize) -> Result<SecurityView, HostSecurityError> {
        if index >= self.dimms.len() {
            return Err(HostSecurityError::NoSuchDimm { index, count: self.dimms.len() });
        }
        let now = self.clock.now();
        let dimm = &self.dimms[index];
        let (mut keys, mut session) = (dimm.state.security.clone(), dimm.security_session.clone());
        let (extended, state) = Security { keys: &mut keys, session: &mut session }.state(now);
        let s = &dimm.security_session;
        let remaining = s.overwrite_until.map_or(Duration::ZERO, |end| end.saturating_sub(now));
        Ok(SecurityView {
            state: linux_state(state),
            passphrase_set: keys.passphrase.is_some(),
            locked: s.locked,
            frozen: s.frozen,
            failed_attempts: s.failed_attempts,
            attempt_limit_reached: s.failed_attempts >= MAX_ATTEMPTS,
            master_enabled: extended & state_bits::MASTER_ENABLED != 0,
            failed_master_attempts: s.failed_master_attempts,
            overwrite_remaining_ms: remaining.as_millis() as u64,
            overwrite_time_ms: s.overwrite_time.as_millis() as u64,
        })
    }

    /// Applies a host change, all or nothing: the new keys are durable before it returns.
    pub fn set_security(&mut self, index: usize, change: &SecurityChange) -> Result<SecurityView, HostSecurityError> {
        self.security_dimm(index)?;
        let dimm = &mut self.dimms[index];
        let before: (SecurityKeys, SecuritySession) = (dimm.state.security.clone(), dimm.security_session.clone());
        let (keys, session) = (&mut dimm.state.security, &mut dimm.security_session);
        if let Some(p) = change.passphrase {
            keys.passphrase = p;
            if p.is_none() {
                session.locked = false;
            }
        }
        if let Some(m) = change.master_passphrase {
            keys.master_passphrase = m;
        }
        if let Some(e) = change.master_enabled {
            keys.master_enabled = e;
        }
        if let Some(l) = change.locked {
            if l && keys.passphrase.is_none() {
                (dimm.state.security, dimm.security_session) = before;
                return Err(HostSecurityError::LockWithoutPassphrase { index });
            }
            session.locked = l;
        }
        if let Some(f) = change.frozen {
            session.frozen = f;
        }
        if change.reset_attempts {
            session.failed_attempts = 0;
            session.failed_master_attempts = 0;
        }
        if let Some(t) = change.overwrite_time {
            session.overwrite_time = t;
        }
        if let Err(source) = dimm.save_state() {
            (dimm.state.security, dimm.security_session) = before;
            return Err(HostSecurityError::Persist { index, source });
        }
        self.security_view(index)
    }

    /// Zeroes DIMM `index`'s media where it is stored and clears its poison (fresh
    /// media has no errors): the secure erase, master erase and overwrite of the
    /// security functions. An ephemeral DIMM has no media to erase.
    pub fn erase_media(&mut self, index: usize) -> Result<(), HostSecurityError> {
        let size = self.dimms[index].config.size;
        let pieces: Vec<(usize, u64, u64)> = if self.map.is_identity() {
            vec![(index, 0, size)]
        } else {
            self.map
                .spa_pieces(index, 0, size)
                .filter_map(|(spa, len)| self.map.storage_of(spa).map(|(file, at)| (file, at, len)))
                .collect()
        };
        let mut touched: Vec<usize> = Vec::new();
        for (file, at, len) in pieces {
            if let Some(f) = self.dimms[file].backing_file() {
                zero_range(f, at, len).map_err(|source| HostSecurityError::Erase { index, source })?;
                if !touched.contains(&file) {
                    touched.push(file);
                }
            }
        }
        // Durable before the guest hears "erased".
        for file in touched {
            if let Some(f) = self.dimms[file].backing_file() {
                f.sync_data().map_err(|source| HostSecurityError::Erase { index, source })?;
            }
        }
        let poisoned = self.dimms[index].state.poison.total_bytes();
        if poisoned > 0 {
            // Best effort: the media is erased either way; a poison list that cannot be
            // saved keeps reporting the old errors, which a scrub shows.
            let _ = self.clear_poison(index, 0, size);
        }
        self.log.push(EventKind::MediaErased { dimm: index, bytes: size });
        Ok(())
    }
}

/// What Linux's `security` attribute would show for these state bits.
fn linux_state(state: u8) -> &'static str {
    use state_bits::*;
    if state & OVERWRITE != 0 {
        "overwrite"
    } else if state & ENABLED == 0 {
        "disabled"
    } else if state & LOCKED != 0 {
        "locked"
    } else if state & (FROZEN | PLIMIT) != 0 {
        "frozen"
    } else {
        "unlocked"
    }
}

/// Zeroes `[at, at + len)` of `file`: a punched hole where the file system can (a
/// mapping of the range reads zeros at once), else written zeros. The caller syncs.
fn zero_range(file: &File, at: u64, len: u64) -> io::Result<()> {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate on a descriptor we own with a valid range; it returns -1 on error.
    let punched = unsafe { libc::fallocate(file.as_raw_fd(), mode, at as libc::off_t, len as libc::off_t) } == 0;
    if !punched {
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK as usize];
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            file.write_all_at(&zeros[..n as usize], at + done)?;
            done += n;
        }
    }
    Ok(())
}
