//! DIMM firmware update and activation as the Intel DSM specification and Linux
//! (drivers/acpi/nfit/intel.c, ndctl's update-firmware and activate-firmware) define
//! them. Pure state machine, no I/O: the caller persists [`FirmwareVersions`] with the
//! DIMM's state and answers with the status words returned here.
//!
//! Update: start (a context), send the image in chunks, finish (the image is checked),
//! query until verified; the verified image is then *staged*. A staged image becomes the
//! running firmware at the next power-on, or at once through live activation (arm the
//! DIMM, then the bus-level activate) when the platform offers it.
//!
//! Image format (what "checked" means): magic `VNVDFW01`, the new version as u64 LE
//! (non-zero), any payload, and a CRC-32 (IEEE) of everything before it as u32 LE.
//! [`build_image`] makes one; docs/firmware-update.md has the details.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dsm::intel_status;

pub const IMAGE_MAGIC: &[u8; 8] = b"VNVDFW01";
/// Magic, version and CRC.
pub const MIN_IMAGE_LEN: usize = 8 + 8 + 4;
/// Firmware storage the DIMM reports (and the largest image it takes).
pub const STORAGE_SIZE: u32 = 256 * 1024;
/// Largest chunk per send: the mailbox input (4096) less the 12-byte send header.
pub const MAX_SEND_LEN: u32 = 4096 - 12;
/// Query interval and maximum query time ndctl uses, in microseconds.
pub const QUERY_INTERVAL_US: u32 = 100_000;
pub const MAX_QUERY_TIME_US: u32 = 60_000_000;
pub const DEFAULT_VERIFY_TIME: Duration = Duration::from_secs(1);
/// The version every DIMM runs from the factory (what function 12 reported before updates existed).
pub const FACTORY_VERSION: u64 = 0x0001_0000_0000_0001;

/// Status words of the update functions (libndctl's `intel_cmd_fw_xlat_firmware_status`).
pub mod status {
    /// Start: another update is in progress. Send, finish, query: wrong context.
    pub const BUSY_OR_BAD_CONTEXT: u32 = 0x1_0007;
    /// Finish: already done (power-cycle first). Query: still verifying.
    pub const DONE_OR_VERIFYING: u32 = 0x2_0007;
    /// Finish or query: the image failed verification.
    pub const BAD_IMAGE: u32 = 0x3_0007;
    /// Finish: aborted as asked. Query: out of sequence.
    pub const ABORTED_OR_SEQUENCE: u32 = 0x4_0007;
    /// Send outside an update.
    pub const RETRY: u32 = 5;
}

/// Live activation: `nd_intel_fw_activate_dimminfo` and bus activate values.
pub mod activation {
    pub const STATE_IDLE: u8 = 0;
    pub const STATE_ARMED: u8 = 1;
    pub const RESULT_NONE: u16 = 0;
    pub const RESULT_NOT_STAGED: u16 = 1;
    pub const RESULT_SUCCESS: u16 = 2;
    pub const RESULT_ERROR: u16 = 7;
    /// Bus activate with no DIMM armed.
    pub const BUS_NO_ARM: u32 = 6 | 1 << 16;
    /// Bus activate failed (the host provoked it).
    pub const BUS_ABORT: u32 = 6 | 6 << 16;
}

/// What survives power cycles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FirmwareVersions {
    pub running: u64,
    /// A verified image waiting for activation.
    pub staged: Option<u64>,
}

impl Default for FirmwareVersions {
    fn default() -> Self {
        FirmwareVersions { running: FACTORY_VERSION, staged: None }
    }
}

impl FirmwareVersions {
    /// A power-on: a staged image becomes the running firmware. True if one did.
    pub fn power_on(&mut self) -> bool {
        match self.staged.take() {
            Some(v) => {
                self.running = v;
                true
            }
            None => false,
        }
    }
}

/// A failure the host asked for, taken by the next operation it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirmwareFault {
    /// The next finish rejects the image as if it failed verification.
    BadImage,
    /// The next start answers "busy with another update".
    Busy,
    /// The next live activation fails on this DIMM.
    Activation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    Idle,
    Receiving { context: u32, image: Vec<u8> },
    Verifying { context: u32, version: u64, until: Duration },
    Done { context: u32, version: u64 },
}

/// This power cycle's update and activation state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareSession {
    pub update: Update,
    last_context: u32,
    pub armed: bool,
    pub last_result: u16,
    pub fault: Option<FirmwareFault>,
    pub verify_time: Duration,
    /// The platform offers live activation (functions 29-30 and the bus functions).
    pub live_activation: bool,
}

impl Default for FirmwareSession {
    fn default() -> Self {
        FirmwareSession {
            update: Update::Idle,
            last_context: 0,
            armed: false,
            last_result: activation::RESULT_NONE,
            fault: None,
            verify_time: DEFAULT_VERIFY_TIME,
            live_activation: true,
        }
    }
}

/// What an operation asks of the caller besides answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The versions changed: persist them.
    VersionsChanged,
}

/// A DIMM's firmware: versions and session together.
pub struct Firmware<'a> {
    pub versions: &'a mut FirmwareVersions,
    pub session: &'a mut FirmwareSession,
}

impl Firmware<'_> {
    /// Function 13: a new update context, unless one is running.
    pub fn start(&mut self) -> Result<u32, u32> {
        if self.session.fault == Some(FirmwareFault::Busy) {
            self.session.fault = None;
            return Err(status::BUSY_OR_BAD_CONTEXT);
        }
        if matches!(self.session.update, Update::Receiving { .. } | Update::Verifying { .. }) {
            return Err(status::BUSY_OR_BAD_CONTEXT);
        }
        // Never 0: ndctl treats a zero context as "none".
        let context = self.session.last_context.wrapping_add(1).max(1);
        self.session.last_context = context;
        self.session.update = Update::Receiving { context, image: Vec::new() };
        Ok(context)
    }

    /// Function 14: `data` at `offset` of the image.
    pub fn send(&mut self, context: u32, offset: u32, data: &[u8]) -> u32 {
        let Update::Receiving { context: current, image } = &mut self.session.update else {
            return status::RETRY;
        };
        if context != *current {
            return status::BUSY_OR_BAD_CONTEXT;
        }
        let end = u64::from(offset) + data.len() as u64;
        if data.len() as u64 > u64::from(MAX_SEND_LEN) || end > u64::from(STORAGE_SIZE) {
            return intel_status::INVALID_INPUT;
        }
        let (offset, end) = (offset as usize, end as usize);
        if image.len() < end {
            image.resize(end, 0);
        }
        image[offset..end].copy_from_slice(data);
        intel_status::SUCCESS
    }

    /// Function 15: finish (check the image, start verifying) or abort.
    pub fn finish(&mut self, context: u32, abort: bool, now: Duration) -> u32 {
        if abort {
            // Ends a running update; "aborted" either way, as nfit_test answers.
            if matches!(self.session.update, Update::Receiving { .. } | Update::Verifying { .. }) {
                self.session.update = Update::Idle;
            }
            return status::ABORTED_OR_SEQUENCE;
        }
        let image = match &self.session.update {
            Update::Done { .. } => return status::DONE_OR_VERIFYING,
            Update::Receiving { context: c, .. } if *c != context => return status::BUSY_OR_BAD_CONTEXT,
            Update::Receiving { image, .. } => image,
            _ => return status::ABORTED_OR_SEQUENCE,
        };
        let checked = check_image(image);
        let forced_bad = self.session.fault == Some(FirmwareFault::BadImage);
        match checked {
            Some(version) if !forced_bad => {
                let until = now + self.session.verify_time;
                self.session.update = Update::Verifying { context, version, until };
                intel_status::SUCCESS
            }
            _ => {
                if forced_bad {
                    self.session.fault = None;
                }
                self.session.update = Update::Idle;
                status::BAD_IMAGE
            }
        }
    }

    /// Function 16: (status, updated version). A finished verification stages the image.
    pub fn query(&mut self, context: u32, now: Duration) -> (u32, u64, Effect) {
        let current = match &self.session.update {
            Update::Idle => return (intel_status::SUCCESS, 0, Effect::None),
            Update::Receiving { context, .. } | Update::Verifying { context, .. } | Update::Done { context, .. } => {
                *context
            }
        };
        if context != current {
            return (status::BUSY_OR_BAD_CONTEXT, 0, Effect::None);
        }
        match self.session.update {
            Update::Receiving { .. } => (status::ABORTED_OR_SEQUENCE, 0, Effect::None),
            Update::Verifying { until, .. } if now < until => (status::DONE_OR_VERIFYING, 0, Effect::None),
            Update::Verifying { context, version, .. } => {
                self.session.update = Update::Done { context, version };
                self.versions.staged = Some(version);
                (intel_status::SUCCESS, version, Effect::VersionsChanged)
            }
            Update::Done { version, .. } => (intel_status::SUCCESS, version, Effect::None),
            Update::Idle => (intel_status::SUCCESS, 0, Effect::None),
        }
    }

    /// Function 30: arm (true) or disarm this DIMM for the next live activation.
    pub fn arm(&mut self, arm: bool) {
        self.session.armed = arm;
    }

    /// The bus-level activate, for this DIMM: the result code it records.
    pub fn activate(&mut self) -> (u16, Effect) {
        if !self.session.armed {
            return (self.session.last_result, Effect::None);
        }
        self.session.armed = false;
        let (result, effect) = if self.session.fault == Some(FirmwareFault::Activation) {
            self.session.fault = None;
            (activation::RESULT_ERROR, Effect::None)
        } else if self.versions.power_on() {
            // The staged image runs now, as after a power cycle; the update is over.
            self.session.update = Update::Idle;
            (activation::RESULT_SUCCESS, Effect::VersionsChanged)
        } else {
            (activation::RESULT_NOT_STAGED, Effect::None)
        };
        self.session.last_result = result;
        (result, effect)
    }
}

/// The version in `image` if it is well-formed: magic, non-zero version, CRC.
pub fn check_image(image: &[u8]) -> Option<u64> {
    if image.len() < MIN_IMAGE_LEN || &image[..8] != IMAGE_MAGIC {
        return None;
    }
    let (body, crc) = image.split_at(image.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let version = u64::from_le_bytes(image[8..16].try_into().ok()?);
    (version != 0).then_some(version)
}

/// A valid image of `version` carrying `payload`.
pub fn build_image(version: u64, payload: &[u8]) -> Vec<u8> {
    let mut image = IMAGE_MAGIC.to_vec();
    image.extend(version.to_le_bytes());
    image.extend(payload);
    let crc = crc32fast::hash(&image);
    image.extend(crc.to_le_bytes());
    image
}

#[cfg(test)]
mod tests;
