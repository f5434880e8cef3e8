//! DIMM security as the Intel DSM specification (functions 19-28) and Linux's
//! drivers/acpi/nfit/intel.c define it: a user passphrase that locks the DIMM at every
//! power-on, unlock, freeze, disable, secure erase, overwrite with its query, and a
//! master passphrase with its own erase. Pure state machine: no I/O here. The caller
//! persists [`SecurityKeys`] with the rest of the DIMM's state, erases the media when an
//! operation says so, and answers the guest with the status word each operation returns.
//!
//! | operation | refused with INVALID_STATE when | INVALID_PASS when |
//! |---|---|---|
//! | set passphrase | frozen, locked, over the attempt limit, overwrite running | the old passphrase is wrong (all zeros when none is set) |
//! | disable passphrase | no passphrase, frozen, over the limit, overwrite running | wrong passphrase |
//! | unlock | not locked, frozen, over the limit | wrong passphrase |
//! | freeze | no passphrase, overwrite running | - |
//! | secure erase | frozen, over the limit, overwrite running | wrong passphrase (zeros when none is set) |
//! | overwrite | frozen, over the limit, overwrite running | wrong passphrase (zeros when none is set) |
//! | set master passphrase | master over its limit, frozen (master disabled: NOT_SUPPORTED) | wrong old master |
//! | master secure erase | master over its limit, frozen (master disabled: NOT_SUPPORTED) | wrong master |
//!
//! Every wrong passphrase counts; at [`MAX_ATTEMPTS`] the DIMM reports PLIMIT (master:
//! extended PLIMIT) and refuses those operations until the next power-on, as the
//! hardware does. Frozen also lasts until the next power-on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dsm::intel_status;

pub const PASSPHRASE_LEN: usize = 32;
/// Wrong passphrases accepted per power cycle before the DIMM refuses further tries.
pub const MAX_ATTEMPTS: u8 = 5;
/// How long an overwrite takes unless the host sets another time.
pub const DEFAULT_OVERWRITE_TIME: Duration = Duration::from_secs(5);

/// `struct nd_intel_get_security_state` state bits.
pub mod state_bits {
    pub const ENABLED: u8 = 0x02;
    pub const LOCKED: u8 = 0x04;
    pub const FROZEN: u8 = 0x08;
    pub const PLIMIT: u8 = 0x10;
    pub const OVERWRITE: u8 = 0x40;
    /// Extended state: master passphrase enabled, master attempt limit reached.
    pub const MASTER_ENABLED: u8 = 0x01;
    pub const MASTER_PLIMIT: u8 = 0x02;
}

/// Status words Linux tells apart (intel.h).
pub const INVALID_STATE: u32 = 10;
pub const INVALID_PASS: u32 = 11;
pub const OVERWRITE_IN_PROGRESS: u32 = 0x1_0007;
pub const OVERWRITE_SEQUENCE_ERROR: u32 = 0x2_0007;

pub type Passphrase = [u8; PASSPHRASE_LEN];
const ZERO: Passphrase = [0; PASSPHRASE_LEN];

/// What survives power cycles: the passphrases (the DIMM keeps them in its own
/// non-volatile storage; here, the state sidecar, hex-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityKeys {
    #[serde(with = "hex_opt")]
    pub passphrase: Option<Passphrase>,
    #[serde(with = "hex_pass")]
    pub master_passphrase: Passphrase,
    /// Whether the master passphrase functions are available (Intel: a platform policy).
    pub master_enabled: bool,
}

impl Default for SecurityKeys {
    fn default() -> Self {
        // As shipped: no user passphrase, the master passphrase enabled and all zeros.
        SecurityKeys { passphrase: None, master_passphrase: ZERO, master_enabled: true }
    }
}

/// The power cycle's part: lock, freeze, attempt counts, a running overwrite.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecuritySession {
    pub locked: bool,
    pub frozen: bool,
    pub failed_attempts: u8,
    pub failed_master_attempts: u8,
    /// Platform-clock time the running overwrite ends.
    pub overwrite_until: Option<Duration>,
    /// How long the next overwrite takes.
    pub overwrite_time: Duration,
}

impl SecuritySession {
    /// A power-on: a DIMM with a passphrase comes up locked; nothing else carries over.
    pub fn power_on(keys: &SecurityKeys) -> Self {
        SecuritySession { locked: keys.passphrase.is_some(), overwrite_time: DEFAULT_OVERWRITE_TIME, ..Default::default() }
    }
}

/// What a successful operation asks of the caller besides answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing more.
    None,
    /// The keys changed: persist them.
    KeysChanged,
    /// Erase the DIMM's media (and persist the keys).
    EraseMedia,
}

/// A security request, its passphrases already read from the guest's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    SetPassphrase { old: Passphrase, new: Passphrase },
    Disable { passphrase: Passphrase },
    Unlock { passphrase: Passphrase },
    Freeze,
    SecureErase { passphrase: Passphrase },
    Overwrite { passphrase: Passphrase },
    SetMaster { old: Passphrase, new: Passphrase },
    MasterErase { passphrase: Passphrase },
}

/// Keys and session together: one DIMM's security.
pub struct Security<'a> {
    pub keys: &'a mut SecurityKeys,
    pub session: &'a mut SecuritySession,
}

impl Security<'_> {
    /// Function 19's state and extended-state bytes.
    pub fn state(&self, now: Duration) -> (u8, u8) {
        use state_bits::*;
        let s = &self.session;
        let mut state = 0;
        if self.keys.passphrase.is_some() {
            state |= ENABLED;
        }
        if s.locked {
            state |= LOCKED;
        }
        if s.frozen {
            state |= FROZEN;
        }
        if s.failed_attempts >= MAX_ATTEMPTS {
            state |= PLIMIT;
        }
        if s.overwrite_until.is_some_and(|end| now < end) {
            state |= OVERWRITE;
        }
        let mut extended = 0;
        if self.keys.master_enabled {
            extended |= MASTER_ENABLED;
        }
        if s.failed_master_attempts >= MAX_ATTEMPTS {
            extended |= MASTER_PLIMIT;
        }
        (extended, state)
    }

    fn overwriting(&self, now: Duration) -> bool {
        self.session.overwrite_until.is_some_and(|end| now < end)
    }

    fn over_limit(&self) -> bool {
        self.session.failed_attempts >= MAX_ATTEMPTS
    }

    /// The user passphrase check; a wrong one counts against the limit.
    fn check_user(&mut self, given: &Passphrase) -> Result<(), u32> {
        if *given == self.keys.passphrase.unwrap_or(ZERO) {
            return Ok(());
        }
        self.session.failed_attempts = self.session.failed_attempts.saturating_add(1);
        Err(INVALID_PASS)
    }

    fn check_master(&mut self, given: &Passphrase) -> Result<(), u32> {
        if !self.keys.master_enabled {
            return Err(intel_status::NOT_SUPPORTED);
        }
        if self.session.failed_master_attempts >= MAX_ATTEMPTS || self.session.frozen {
            return Err(INVALID_STATE);
        }
        if *given == self.keys.master_passphrase {
            return Ok(());
        }
        self.session.failed_master_attempts = self.session.failed_master_attempts.saturating_add(1);
        Err(INVALID_PASS)
    }

    /// Applies `request` at platform-clock time `now`: the effect to carry out, or the
    /// status word to answer with (nothing changed except an attempt counted).
    pub fn apply(&mut self, request: Request, now: Duration) -> Result<Effect, u32> {
        let enabled = self.keys.passphrase.is_some();
        let busy = self.overwriting(now);
        match request {
            Request::SetPassphrase { old, new } => {
                if self.session.frozen || self.session.locked || self.over_limit() || busy {
                    return Err(INVALID_STATE);
                }
                self.check_user(&old)?;
                self.keys.passphrase = Some(new);
                Ok(Effect::KeysChanged)
            }
            Request::Disable { passphrase } => {
                if !enabled || self.session.frozen || self.over_limit() || busy {
                    return Err(INVALID_STATE);
                }
                self.check_user(&passphrase)?;
                self.keys.passphrase = None;
                self.session.locked = false;
                Ok(Effect::KeysChanged)
            }
            Request::Unlock { passphrase } => {
                if !self.session.locked || self.session.frozen || self.over_limit() {
                    return Err(INVALID_STATE);
                }
                self.check_user(&passphrase)?;
                self.session.locked = false;
                Ok(Effect::None)
            }
            Request::Freeze => {
                if !enabled || busy {
                    return Err(INVALID_STATE);
                }
                self.session.frozen = true;
                Ok(Effect::None)
            }
            Request::SecureErase { passphrase } => {
                if self.session.frozen || self.over_limit() || busy {
                    return Err(INVALID_STATE);
                }
                self.check_user(&passphrase)?;
                self.keys.passphrase = None;
                self.session.locked = false;
                Ok(Effect::EraseMedia)
            }
            Request::Overwrite { passphrase } => {
                if self.session.frozen || self.over_limit() || busy {
                    return Err(INVALID_STATE);
                }
                self.check_user(&passphrase)?;
                // The media is erased now and reads as overwritten from here on; the
                // DIMM reports the overwrite running until the set time has passed.
                self.session.overwrite_until = Some(now + self.session.overwrite_time);
                self.session.locked = false;
                Ok(Effect::EraseMedia)
            }
            Request::SetMaster { old, new } => {
                self.check_master(&old)?;
                self.keys.master_passphrase = new;
                Ok(Effect::KeysChanged)
            }
            Request::MasterErase { passphrase } => {
                if busy {
                    return Err(INVALID_STATE);
                }
                self.check_master(&passphrase)?;
                self.keys.passphrase = None;
                self.session.locked = false;
                Ok(Effect::EraseMedia)
            }
        }
    }

    /// Function 26: 0 once a started overwrite has ended (and forgets it), "in
    /// progress" before, "sequence error" when none was started.
    pub fn query_overwrite(&mut self, now: Duration) -> u32 {
        match self.session.overwrite_until {
            None => OVERWRITE_SEQUENCE_ERROR,
            Some(end) if now < end => OVERWRITE_IN_PROGRESS,
            Some(_) => {
                self.session.overwrite_until = None;
                intel_status::SUCCESS
            }
        }
    }
}

/// A passphrase from the host (API, command line): up to 32 bytes of text, zero-padded
/// the way ndctl pads the key payload it hands the kernel.
pub fn passphrase_from_text(text: &str) -> Result<Passphrase, String> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > PASSPHRASE_LEN {
        return Err(format!("a passphrase is 1 to {PASSPHRASE_LEN} bytes, {} given", bytes.len()));
    }
    let mut p = ZERO;
    p[..bytes.len()].copy_from_slice(bytes);
    Ok(p)
}

fn to_hex(p: &Passphrase) -> String {
    p.iter().map(|b| format!("{b:02x}")).collect()
}

/// A passphrase as 64 hex digits: the exact 32 bytes (the state file's form, and the
/// host's way to give a binary key).
pub fn passphrase_from_hex(s: &str) -> Result<Passphrase, String> {
    if s.len() != 2 * PASSPHRASE_LEN || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("expected {} hex digits, got `{s}`", 2 * PASSPHRASE_LEN));
    }
    let mut p = ZERO;
    for (i, byte) in p.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(p)
}

mod hex_pass {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &super::Passphrase, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(p))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::Passphrase, D::Error> {
        super::passphrase_from_hex(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Option<super::Passphrase>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_some(&super::to_hex(p)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<super::Passphrase>, D::Error> {
        Option::<String>::deserialize(d)?.map(|h| super::passphrase_from_hex(&h)).transpose().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
