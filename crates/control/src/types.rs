//! The JSON bodies of the control API, shared by the server and the client. Request
//! bodies refuse unknown fields so a typo is an error, not a silent no-op. docs/api.yaml
//! describes the same shapes.

use std::fmt;

use nvdimm_model::config::parse_size;
use nvdimm_model::health::{Alarms, HealthState, SmartHealth, SmartInjection, SmartThresholds, Temperature};
use serde::de::{self, Visitor};
use nvdimm_model::firmware::FirmwareFault;
use serde::{Deserialize, Deserializer, Serialize};

use crate::backend::{Capabilities, VmState};

/// Version part of every path: `/api/v1/...`.
pub const API_PREFIX: &str = "/api/v1";

/// A byte count or address: a JSON number, or a string such as `"0x1000"`, `"4096"`,
/// `"4K"`, `"1G"` (binary units), which keeps addresses above 2^53 exact for clients
/// whose JSON numbers are doubles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl Visitor<'_> for BytesVisitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer or a string like \"0x1000\" or \"4K\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bytes, E> {
                u64::try_from(v).map(Bytes).map_err(|_| E::custom(format!("{v} is negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Bytes, E> {
                Err(E::custom(format!("{v} is not a whole number of bytes")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                parse_size(v.trim()).map(Bytes).map_err(|e| E::custom(format!("\"{v}\": {e}")))
            }
        }
        deserializer.deserialize_any(BytesVisitor)
    }
}

/// Which machine check, if any, `POST /poison` delivers after recording the poison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineCheckRequest {
    #[default]
    None,
    /// Patrol-scrub style (SRAO): the guest learns of the error without consuming it.
    ActionOptional,
}

/// `POST /poison`: where (`dimm` + `offset`, or `spa`), how much, and how to tell the guest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoisonRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimm: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spa: Option<Bytes>,
    pub length: Bytes,
    /// Raise Notify(root, 0x81) so the guest rescans (Linux starts an ARS).
    #[serde(default)]
    pub notify: bool,
    #[serde(default)]
    pub machine_check: MachineCheckRequest,
}

/// `POST /poison` with many ranges: `{"ranges": [...], "notify": bool}`. Each range
/// is addressed as in [`ClearPoisonRequest`]; all are recorded with one durable write.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoisonBatchRequest {
    pub ranges: Vec<ClearPoisonRequest>,
    #[serde(default)]
    pub notify: bool,
}

/// `DELETE /poison`: the same addressing as [`PoisonRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearPoisonRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimm: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spa: Option<Bytes>,
    pub length: Bytes,
}

/// A partial update of the three alarm flags: absent fields keep their value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spares: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_temperature: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_temperature: Option<bool>,
}

impl AlarmsUpdate {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn apply(&self, to: &mut Alarms) {
        if let Some(v) = self.spares {
            to.spares = v;
        }
        if let Some(v) = self.media_temperature {
            to.media_temperature = v;
        }
        if let Some(v) = self.controller_temperature {
            to.controller_temperature = v;
        }
    }
}

/// A partial update of the SMART alarm thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsUpdate {
    /// Which alarms are enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_control: Option<AlarmsUpdate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spares_percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_temperature: Option<Temperature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_temperature: Option<Temperature>,
}

/// `PUT /dimms/{index}/health`: a partial update of the host's SMART values (and
/// thresholds). Setting a field also sets its validation flag, unless `valid` is given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<HealthState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spares_percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub life_used_percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_trips: Option<AlarmsUpdate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_temperature: Option<Temperature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_temperature: Option<Temperature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pmic_temperature: Option<Temperature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsafe_shutdown_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_shutdown_state: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ait_dram_status: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_data: Option<Vec<u8>>,
    /// Validation flags to publish, replacing the automatic ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<ThresholdsUpdate>,
}

/// `PUT /dimms/{index}/shutdown-state`: what `ndctl list -DH` shows as `shutdown_count`
/// and `shutdown_state`, and Linux as `nmemX/nfit/dirty_shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownStateUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_shutdown_count: Option<u32>,
    /// 0 = clean, anything else = dirty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_shutdown_state: Option<u8>,
}

/// `PUT /dimms/{index}/security`: prepare a DIMM's security state for a test. Absent
/// fields stay as they are; at least one must be given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityUpdate {
    /// Set the user passphrase: 1 to 32 bytes of text, zero-padded to 32 as ndctl's keys are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
    /// Set the user passphrase from 64 hex digits (the exact 32 bytes the guest sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_hex: Option<String>,
    /// Remove the user passphrase (security disabled, unlocked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remove_passphrase: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_passphrase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_enabled: Option<bool>,
    /// Lock (needs a passphrase) or unlock the DIMM now, as a power-on or an unlock would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    /// Freeze or thaw security until the next power-on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<bool>,
    /// Forget the wrong-passphrase counts (as a power cycle would).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset_attempts: bool,
    /// How long the next overwrite takes, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overwrite_time_ms: Option<u64>,
}

/// `GET /dimms/{index}/security` and the answer to its `PUT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityResponse {
    pub dimm: usize,
    /// What Linux shows in nmemX/security: disabled, unlocked, locked, frozen or overwrite.
    pub state: String,
    pub passphrase_set: bool,
    pub locked: bool,
    pub frozen: bool,
    pub failed_attempts: u8,
    pub attempt_limit_reached: bool,
    pub master_enabled: bool,
    pub failed_master_attempts: u8,
    pub overwrite_remaining_ms: u64,
    pub overwrite_time_ms: u64,
}

/// `PUT /dimms/{index}/firmware`: provoke an update or activation failure, or set the
/// verify time. Absent fields stay as they are; at least one must be given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareUpdate {
    /// bad_image (the next finish rejects the image), busy (the next start is refused)
    /// or activation (the next live activation fails on this DIMM); taken once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_next: Option<FirmwareFault>,
    /// Cancel a provoked failure not yet taken.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_fault: bool,
    /// How long the DIMM verifies an image after finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_time_ms: Option<u64>,
}

/// `GET /dimms/{index}/firmware` and the answer to its `PUT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareResponse {
    pub dimm: usize,
    pub running_version: u64,
    pub staged_version: Option<u64>,
    /// idle, receiving, verifying or done.
    pub update: String,
    pub received_bytes: u64,
    pub armed: bool,
    /// none, success, not_staged or error.
    pub last_activation: String,
    pub live_activation: bool,
    pub verify_time_ms: u64,
    pub pending_fault: Option<FirmwareFault>,
}

/// `PUT /ars`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArsUpdate {
    pub rate_bytes_per_sec: Bytes,
}

/// `POST /exec`: a shell command for the guest agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Run by the guest's `sh`: any shell syntax, pipes, several lines.
    pub command: String,
    /// The guest kills the command after this many seconds (default
    /// [`EXEC_DEFAULT_TIMEOUT_SECS`], at most [`EXEC_MAX_TIMEOUT_SECS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

pub const EXEC_DEFAULT_TIMEOUT_SECS: u64 = 60;
/// One day: a longer wait is more likely a unit mistake than a plan.
pub const EXEC_MAX_TIMEOUT_SECS: u64 = 86_400;

/// `GET /vm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmResponse {
    pub api_version: String,
    pub backend: String,
    pub state: VmState,
    pub memory_bytes: u64,
    pub cpus: u32,
    pub uptime_ms: u64,
    pub capabilities: Capabilities,
    /// `cpu_cache`, `memory_controller` or `none`.
    pub persistence_domain: String,
    pub dimm_count: usize,
}

/// The health fields `ndctl list -DH` shows, as the guest reads them now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSummary {
    pub state: HealthState,
    pub spares_percent: u8,
    pub life_used_percent: u8,
    pub alarm_trips: Alarms,
    pub unsafe_shutdown_count: u32,
    /// `clean` or `dirty`.
    pub last_shutdown: String,
}

impl HealthSummary {
    pub fn of(smart: &SmartHealth) -> Self {
        HealthSummary {
            state: smart.state,
            spares_percent: smart.spares_percent,
            life_used_percent: smart.life_used_percent,
            alarm_trips: smart.alarm_trips,
            unsafe_shutdown_count: smart.unsafe_shutdown_count,
            last_shutdown: if smart.last_shutdown_state == 0 { "clean" } else { "dirty" }.to_string(),
        }
    }
}

/// One entry of `GET /dimms`, and `GET /dimms/{index}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimmSummary {
    pub index: usize,
    pub handle: u32,
    /// The id `ndctl list -D` prints.
    pub ndctl_id: String,
    pub path: String,
    pub size: u64,
    /// Guest physical address of the DIMM's first byte.
    pub spa_base: u64,
    /// The interleave set the DIMM is in (`--interleave-set`, numbered from 0), if any.
    #[serde(default)]
    pub interleave_set: Option<usize>,
    pub label_size: u64,
    pub readonly: bool,
    /// Flush hint addresses published in the NFIT.
    pub flush_hints: usize,
    pub health: HealthSummary,
    pub poison_ranges: usize,
    pub poison_bytes: u64,
    /// Flush-hint writes the VMM served.
    pub flush_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimmsResponse {
    pub dimms: Vec<DimmSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoisonRange {
    pub offset: u64,
    pub length: u64,
    /// Guest physical address of `offset`. In an interleave set the range continues at
    /// the DIMM's next line, not at the next address.
    pub spa: u64,
}

/// `GET /dimms/{index}/poison`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoisonList {
    pub dimm: usize,
    pub ranges: Vec<PoisonRange>,
    pub total_bytes: u64,
}

/// `POST /poison`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoisonAdded {
    pub dimm: usize,
    pub offset: u64,
    pub length: u64,
    pub spa: u64,
    pub notified: bool,
    pub machine_check: MachineCheckRequest,
    /// Every DIMM range the request landed on, lowest address first, when a `spa` range
    /// spans several DIMMs of an interleave set (the fields above are the first).
    #[serde(default)]
    pub spread: Vec<AddedRange>,
}

/// One range of a batch `POST /poison`, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedRange {
    pub dimm: usize,
    pub offset: u64,
    pub length: u64,
    pub spa: u64,
}

/// Batch `POST /poison`: every range, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoisonBatchAdded {
    pub ranges: Vec<AddedRange>,
    pub notified: bool,
}

/// `DELETE /poison`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoisonCleared {
    pub dimm: usize,
    pub offset: u64,
    pub length: u64,
    pub spa: u64,
    /// Poisoned bytes that were inside the range (0 when it was clean).
    pub cleared_bytes: u64,
    /// As in `PoisonAdded`: every DIMM range of a `spa` range across an interleave set.
    #[serde(default)]
    pub spread: Vec<AddedRange>,
}

/// `GET /dimms/{index}/health`, and the answer to the health and shutdown-state `PUT`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    pub dimm: usize,
    /// What the guest reads (host values, injection and threshold alarms applied).
    pub smart: SmartHealth,
    /// The values the host set.
    pub host: SmartHealth,
    pub thresholds: SmartThresholds,
    /// What the guest injected with `ndctl inject-smart`.
    pub injection: SmartInjection,
    /// On `PUT`: whether a DIMM Notify 0x81 was raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<bool>,
}

/// `GET /ars` and `PUT /ars`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArsResponse {
    pub rate_bytes_per_sec: u64,
    /// A scrub the guest started is still in progress.
    pub running: bool,
}

/// `PUT /vm/power-off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerOffResponse {
    pub state: VmState,
}

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
