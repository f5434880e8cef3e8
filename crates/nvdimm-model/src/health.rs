//! SMART health of a DIMM as the Intel `_DSM` family reports it: the 132-byte
//! payload of function 1, the thresholds of functions 2/17 and the overrides of
//! function 18 (SMART injection). Layouts follow Linux's and ndctl's
//! `struct nd_intel_smart`, `nd_intel_smart_threshold` and `nd_intel_smart_inject`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Size of the function 1 output, status word included (Linux refuses less).
pub const SMART_PAYLOAD_SIZE: usize = 132;
/// Size of the function 2 output, status word included.
pub const THRESHOLDS_PAYLOAD_SIZE: usize = 12;
/// Input of function 17: alarm control u16, spares u8, media temp u16, controller temp u16.
pub const SET_THRESHOLDS_INPUT_SIZE: usize = 7;
/// Input of function 18 (everything of `nd_intel_smart_inject` before its status word).
pub const INJECT_INPUT_SIZE: usize = 15;
/// Bytes of vendor-specific data the SMART payload has room for.
pub const MAX_VENDOR_DATA: usize = 92;

/// Validation flags of the SMART payload (offset 4): a field is only meaningful, and
/// only printed by `ndctl list -DH`, when its bit is set.
pub mod valid {
    /// ndctl prints `health_state`.
    pub const HEALTH: u32 = 1 << 0;
    /// ndctl prints `spares_percentage`.
    pub const SPARES: u32 = 1 << 1;
    /// ndctl prints `life_used_percentage`.
    pub const LIFE_USED: u32 = 1 << 2;
    /// ndctl prints `temperature_celsius`.
    pub const MEDIA_TEMPERATURE: u32 = 1 << 3;
    /// ndctl prints `controller_temperature_celsius`.
    pub const CONTROLLER_TEMPERATURE: u32 = 1 << 4;
    /// ndctl prints `shutdown_count`; Linux exposes it as `nmemX/nfit/dirty_shutdown`.
    pub const SHUTDOWN_COUNT: u32 = 1 << 5;
    /// Not printed by ndctl.
    pub const AIT_DRAM_STATUS: u32 = 1 << 6;
    /// Not printed by ndctl.
    pub const PMIC_TEMPERATURE: u32 = 1 << 7;
    /// ndctl prints `alarm_temperature`, `alarm_controller_temperature`, `alarm_spares`.
    pub const ALARM_TRIPS: u32 = 1 << 9;
    /// ndctl prints `shutdown_state` ("clean"/"dirty"); with a non-zero state Linux
    /// marks the DIMM dirty at boot (`flush_fail` in `nmemX/nfit/flags`).
    pub const LAST_SHUTDOWN_STATE: u32 = 1 << 10;
    /// Vendor data size and bytes are valid. Not printed by ndctl.
    pub const VENDOR_DATA: u32 = 1 << 11;
    /// Every defined bit.
    pub const ALL: u32 = HEALTH
        | SPARES
        | LIFE_USED
        | MEDIA_TEMPERATURE
        | CONTROLLER_TEMPERATURE
        | SHUTDOWN_COUNT
        | AIT_DRAM_STATUS
        | PMIC_TEMPERATURE
        | ALARM_TRIPS
        | LAST_SHUTDOWN_STATE
        | VENDOR_DATA;
    /// Everything ndctl knows how to print.
    pub const NDCTL_VISIBLE: u32 = HEALTH
        | SPARES
        | LIFE_USED
        | MEDIA_TEMPERATURE
        | CONTROLLER_TEMPERATURE
        | SHUTDOWN_COUNT
        | ALARM_TRIPS
        | LAST_SHUTDOWN_STATE;
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HealthError {
    #[error("temperature {0} is out of range: the SMART encoding holds -2047.9375..=2047.9375 degC")]
    TemperatureRange(String),
    #[error("temperature {0} degC is not a multiple of 1/16 degC, the SMART resolution")]
    TemperatureResolution(String),
    #[error("{field} is {value}%; a percentage must be 0..=100")]
    Percentage { field: &'static str, value: u8 },
    #[error("validation flags {0:#x} set undefined bits (defined: {all:#x})", all = valid::ALL)]
    UnknownValidBits(u32),
    #[error("vendor data is {0} bytes; the SMART payload holds at most 92")]
    VendorDataTooLong(usize),
    #[error("alarm bits {0:#x} are undefined (bit0 spares, bit1 media temperature, bit2 controller temperature)")]
    UnknownAlarmBits(u16),
    #[error("{0}: expected {1} input bytes, got {2}")]
    ShortInput(&'static str, usize, usize),
    #[error("SMART injection flags {0:#x} set undefined bits (bit0 media temp, bit1 spares, bit2 fatal, bit3 unsafe shutdown)")]
    UnknownInjectFlags(u64),
    #[error("SMART injection {0} enable byte is {1}; it must be 0 or 1")]
    BadEnable(&'static str, u8),
}

/// Overall health, the `health` field of SMART function 1 (bit0 non-critical,
/// bit1 critical, bit2 fatal; 0 = ok).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    #[default]
    Ok,
    NonCritical,
    Critical,
    Fatal,
}

impl HealthState {
    pub fn bits(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::NonCritical => 1,
            Self::Critical => 2,
            Self::Fatal => 4,
        }
    }

    /// The state ndctl would print for a raw health byte: the most severe bit wins.
    pub fn from_bits(bits: u8) -> Self {
        if bits & 4 != 0 {
            Self::Fatal
        } else if bits & 2 != 0 {
            Self::Critical
        } else if bits & 1 != 0 {
            Self::NonCritical
        } else {
            Self::Ok
        }
    }

    /// The string `ndctl list -DH` prints as `health_state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NonCritical => "non-critical",
            Self::Critical => "critical",
            Self::Fatal => "fatal",
        }
    }
}

impl FromStr for HealthState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ok" => Ok(Self::Ok),
            "non-critical" | "non_critical" => Ok(Self::NonCritical),
            "critical" => Ok(Self::Critical),
            "fatal" => Ok(Self::Fatal),
            _ => Err("expected ok, non-critical, critical or fatal".to_string()),
        }
    }
}

/// A SMART temperature, kept in 1/16 degC (the device's resolution) so that what the
/// host sets is exactly what the guest reads. On the wire: bit 15 sign, bits 14:0
/// magnitude in 1/16 degC. In JSON: degrees Celsius as a number (e.g. `36.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Temperature(i16);

impl Temperature {
    /// Largest magnitude the 15-bit field holds, in 1/16 degC.
    pub const MAX_SIXTEENTHS: i16 = 0x7fff;

    pub fn from_celsius(degrees: i16) -> Result<Self, HealthError> {
        i16::checked_mul(degrees, 16)
            .filter(|s| *s != i16::MIN)
            .map(Temperature)
            .ok_or_else(|| HealthError::TemperatureRange(format!("{degrees} degC")))
    }

    pub fn from_sixteenths(sixteenths: i32) -> Result<Self, HealthError> {
        i16::try_from(sixteenths)
            .ok()
            .filter(|s| *s != i16::MIN)
            .map(Temperature)
            .ok_or_else(|| HealthError::TemperatureRange(format!("{sixteenths}/16 degC")))
    }

    /// Exact conversion: refuses values that are not a multiple of 1/16 degC.
    pub fn from_celsius_f64(degrees: f64) -> Result<Self, HealthError> {
        let sixteenths = degrees * 16.0;
        if !sixteenths.is_finite() || sixteenths.abs() > f64::from(Self::MAX_SIXTEENTHS) {
            // `{degrees}` of 1e308 is a 309-digit number; a value this far out reads better short.
            let shown = if degrees.abs() < 1e6 { format!("{degrees}") } else { format!("{degrees:e}") };
            return Err(HealthError::TemperatureRange(format!("{shown} degC")));
        }
        if sixteenths.fract() != 0.0 {
            return Err(HealthError::TemperatureResolution(degrees.to_string()));
        }
        Ok(Temperature(sixteenths as i16))
    }

    pub fn sixteenths(self) -> i16 {
        self.0
    }

    pub fn celsius(self) -> f64 {
        f64::from(self.0) / 16.0
    }

    /// Sign-magnitude encoding used by every SMART temperature field.
    pub fn encode(self) -> u16 {
        let magnitude = self.0.unsigned_abs() & 0x7fff;
        if self.0 < 0 {
            magnitude | 0x8000
        } else {
            magnitude
        }
    }

    /// Decodes the wire form; "negative zero" reads as zero, like ndctl's decoder.
    pub fn decode(raw: u16) -> Self {
        let magnitude = (raw & 0x7fff) as i16;
        Temperature(if raw & 0x8000 != 0 { -magnitude } else { magnitude })
    }
}

impl TryFrom<f64> for Temperature {
    type Error = HealthError;
    fn try_from(degrees: f64) -> Result<Self, HealthError> {
        Self::from_celsius_f64(degrees)
    }
}

impl From<Temperature> for f64 {
    fn from(t: Temperature) -> f64 {
        t.celsius()
    }
}

impl fmt::Display for Temperature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} degC", self.celsius())
    }
}

/// The three SMART alarms. Used both for alarms that tripped (function 1) and for
/// which alarms are enabled (threshold alarm control, functions 2 and 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Alarms {
    pub spares: bool,
    pub media_temperature: bool,
    pub controller_temperature: bool,
}

impl Alarms {
    pub const SPARES: u8 = 1 << 0;
    pub const MEDIA_TEMPERATURE: u8 = 1 << 1;
    pub const CONTROLLER_TEMPERATURE: u8 = 1 << 2;

    pub fn bits(self) -> u8 {
        (self.spares as u8 * Self::SPARES)
            | (self.media_temperature as u8 * Self::MEDIA_TEMPERATURE)
            | (self.controller_temperature as u8 * Self::CONTROLLER_TEMPERATURE)
    }

    pub fn from_bits(bits: u16) -> Result<Self, HealthError> {
        if bits & !0x7 != 0 {
            return Err(HealthError::UnknownAlarmBits(bits));
        }
        let bits = bits as u8;
        Ok(Alarms {
            spares: bits & Self::SPARES != 0,
            media_temperature: bits & Self::MEDIA_TEMPERATURE != 0,
            controller_temperature: bits & Self::CONTROLLER_TEMPERATURE != 0,
        })
    }

    pub fn union(self, other: Alarms) -> Alarms {
        Alarms {
            spares: self.spares || other.spares,
            media_temperature: self.media_temperature || other.media_temperature,
            controller_temperature: self.controller_temperature || other.controller_temperature,
        }
    }
}

/// Every field of the SMART payload, as the host sets it. What the guest reads is
/// [`SmartHealth::effective`]: these values with SMART injection applied and alarms
/// computed from the thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmartHealth {
    /// Validation flags (see [`valid`]); a field whose bit is clear is sent but ignored.
    pub valid: u32,
    pub state: HealthState,
    pub spares_percent: u8,
    pub life_used_percent: u8,
    /// Alarms the host declares tripped (thresholds may trip more, see `effective`).
    pub alarm_trips: Alarms,
    pub media_temperature: Temperature,
    pub controller_temperature: Temperature,
    /// Unsafe (dirty) shutdown count; incremented by `Dimm::open` after an unclean stop.
    pub unsafe_shutdown_count: u32,
    /// Address Indirection Table DRAM status (vendor-defined; 1 = ready).
    pub ait_dram_status: u8,
    pub pmic_temperature: Temperature,
    /// 0 = the last shutdown was clean; anything else = dirty. Recomputed at every open.
    pub last_shutdown_state: u8,
    /// Vendor-specific bytes (at most 92); their count is the payload's vendor data size.
    pub vendor_data: Vec<u8>,
}

impl Default for SmartHealth {
    /// A healthy new DIMM at room temperature, with every field ndctl prints valid.
    fn default() -> Self {
        SmartHealth {
            valid: valid::NDCTL_VISIBLE | valid::AIT_DRAM_STATUS | valid::PMIC_TEMPERATURE,
            state: HealthState::Ok,
            spares_percent: 100,
            life_used_percent: 0,
            alarm_trips: Alarms::default(),
            media_temperature: Temperature(30 * 16),
            controller_temperature: Temperature(35 * 16),
            unsafe_shutdown_count: 0,
            ait_dram_status: 1,
            pmic_temperature: Temperature(32 * 16),
            last_shutdown_state: 0,
            vendor_data: Vec::new(),
        }
    }
}

impl SmartHealth {
    /// Defaults with the given overall state (what `--nvdimm health=` selects).
    pub fn with_state(state: HealthState) -> Self {
        SmartHealth { state, ..Self::default() }
    }

    pub fn validate(&self) -> Result<(), HealthError> {
        if self.valid & !valid::ALL != 0 {
            return Err(HealthError::UnknownValidBits(self.valid));
        }
        if self.spares_percent > 100 {
            return Err(HealthError::Percentage { field: "spares", value: self.spares_percent });
        }
        if self.life_used_percent > 100 {
            return Err(HealthError::Percentage { field: "life used", value: self.life_used_percent });
        }
        if self.vendor_data.len() > MAX_VENDOR_DATA {
            return Err(HealthError::VendorDataTooLong(self.vendor_data.len()));
        }
        Ok(())
    }

    /// What the guest sees: injected overrides replace the host's values, and an
    /// enabled threshold alarm trips when its value crosses the threshold
    /// (spares below, temperatures above), on top of alarms the host set.
    pub fn effective(&self, thresholds: &SmartThresholds, injection: &SmartInjection) -> SmartHealth {
        let mut out = self.clone();
        if let Some(t) = injection.media_temperature {
            out.media_temperature = t;
        }
        if let Some(s) = injection.spares_percent {
            out.spares_percent = s;
        }
        if injection.fatal {
            out.state = HealthState::Fatal;
        }
        if injection.unsafe_shutdown {
            out.last_shutdown_state = out.last_shutdown_state.max(1);
        }
        let enabled = thresholds.alarm_control;
        let computed = Alarms {
            spares: enabled.spares && out.spares_percent < thresholds.spares_percent,
            media_temperature: enabled.media_temperature && out.media_temperature > thresholds.media_temperature,
            controller_temperature: enabled.controller_temperature
                && out.controller_temperature > thresholds.controller_temperature,
        };
        out.alarm_trips = out.alarm_trips.union(computed);
        out
    }

    /// The function 1 output: status word (success) then the 128-byte payload.
    pub fn encode(&self) -> [u8; SMART_PAYLOAD_SIZE] {
        let mut b = [0u8; SMART_PAYLOAD_SIZE];
        b[4..8].copy_from_slice(&(self.valid & valid::ALL).to_le_bytes());
        b[12] = self.state.bits();
        b[13] = self.spares_percent;
        b[14] = self.life_used_percent;
        b[15] = self.alarm_trips.bits();
        b[16..18].copy_from_slice(&self.media_temperature.encode().to_le_bytes());
        b[18..20].copy_from_slice(&self.controller_temperature.encode().to_le_bytes());
        b[20..24].copy_from_slice(&self.unsafe_shutdown_count.to_le_bytes());
        b[24] = self.ait_dram_status;
        b[25..27].copy_from_slice(&self.pmic_temperature.encode().to_le_bytes());
        b[35] = self.last_shutdown_state;
        let vendor = &self.vendor_data[..self.vendor_data.len().min(MAX_VENDOR_DATA)];
        b[36..40].copy_from_slice(&(vendor.len() as u32).to_le_bytes());
        b[40..40 + vendor.len()].copy_from_slice(vendor);
        b
    }

    /// The fields a health event is about: a change in any of them is worth a
    /// DIMM Notify 0x81 (ndctl monitor then re-reads SMART).
    pub fn event_key(&self) -> (u8, u8, u8) {
        (self.state.bits(), self.alarm_trips.bits(), self.last_shutdown_state)
    }
}

/// SMART alarm thresholds (functions 2 and 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmartThresholds {
    pub alarm_control: Alarms,
    pub spares_percent: u8,
    pub media_temperature: Temperature,
    pub controller_temperature: Temperature,
}

impl Default for SmartThresholds {
    /// Alarms off (ndctl shows `alarm_enabled_*: false`) with plausible trip points.
    fn default() -> Self {
        SmartThresholds {
            alarm_control: Alarms::default(),
            spares_percent: 10,
            media_temperature: Temperature(82 * 16),
            controller_temperature: Temperature(98 * 16),
        }
    }
}

impl SmartThresholds {
    pub fn validate(&self) -> Result<(), HealthError> {
        if self.spares_percent > 100 {
            return Err(HealthError::Percentage { field: "spares threshold", value: self.spares_percent });
        }
        Ok(())
    }

    /// The function 2 output: status, alarm control u16, spares u8, media temp u16,
    /// controller temp u16, reserved u8.
    pub fn encode(&self) -> [u8; THRESHOLDS_PAYLOAD_SIZE] {
        let mut b = [0u8; THRESHOLDS_PAYLOAD_SIZE];
        b[4..6].copy_from_slice(&u16::from(self.alarm_control.bits()).to_le_bytes());
        b[6] = self.spares_percent;
        b[7..9].copy_from_slice(&self.media_temperature.encode().to_le_bytes());
        b[9..11].copy_from_slice(&self.controller_temperature.encode().to_le_bytes());
        b
    }

    /// Parses the function 17 input (the same fields without status and reserved byte).
    pub fn decode_set(input: &[u8]) -> Result<Self, HealthError> {
        if input.len() < SET_THRESHOLDS_INPUT_SIZE {
            return Err(HealthError::ShortInput("set SMART threshold", SET_THRESHOLDS_INPUT_SIZE, input.len()));
        }
        let field = |at: usize| u16::from_le_bytes([input[at], input[at + 1]]);
        let thresholds = SmartThresholds {
            alarm_control: Alarms::from_bits(field(0))?,
            spares_percent: input[2],
            media_temperature: Temperature::decode(field(3)),
            controller_temperature: Temperature::decode(field(5)),
        };
        thresholds.validate()?;
        Ok(thresholds)
    }
}

/// SMART injection (function 18): values that override the host's until uninjected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmartInjection {
    pub media_temperature: Option<Temperature>,
    pub spares_percent: Option<u8>,
    /// Health reads as fatal.
    pub fatal: bool,
    /// The last shutdown reads as dirty (the count was bumped once when injected).
    pub unsafe_shutdown: bool,
}

impl SmartInjection {
    pub const FLAG_MEDIA_TEMPERATURE: u64 = 1 << 0;
    pub const FLAG_SPARES: u64 = 1 << 1;
    pub const FLAG_FATAL: u64 = 1 << 2;
    pub const FLAG_UNSAFE_SHUTDOWN: u64 = 1 << 3;

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One function 18 request: for each flagged field, inject (enable 1) or uninject (enable 0).
/// This is what `ndctl inject-smart` sends: one request per field, e.g. `-m 60` sends
/// flags bit0 with enable 1 and 60*16, `--media-temperature-uninject` the same flag with enable 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectRequest {
    pub media_temperature: Option<Option<Temperature>>,
    pub spares_percent: Option<Option<u8>>,
    pub fatal: Option<bool>,
    pub unsafe_shutdown: Option<bool>,
}

impl InjectRequest {
    /// Parses the 15-byte input: flags u64, media temp enable u8, media temp u16,
    /// spares enable u8, spares u8, fatal enable u8, unsafe shutdown enable u8.
    pub fn decode(input: &[u8]) -> Result<Self, HealthError> {
        if input.len() < INJECT_INPUT_SIZE {
            return Err(HealthError::ShortInput("SMART inject", INJECT_INPUT_SIZE, input.len()));
        }
        let mut flags_bytes = [0u8; 8];
        flags_bytes.copy_from_slice(&input[..8]);
        let flags = u64::from_le_bytes(flags_bytes);
        if flags & !0xf != 0 {
            return Err(HealthError::UnknownInjectFlags(flags));
        }
        let enable = |name: &'static str, b: u8| match b {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(HealthError::BadEnable(name, other)),
        };
        let mut req =
            InjectRequest { media_temperature: None, spares_percent: None, fatal: None, unsafe_shutdown: None };
        if flags & SmartInjection::FLAG_MEDIA_TEMPERATURE != 0 {
            let on = enable("media temperature", input[8])?;
            let t = Temperature::decode(u16::from_le_bytes([input[9], input[10]]));
            req.media_temperature = Some(on.then_some(t));
        }
        if flags & SmartInjection::FLAG_SPARES != 0 {
            let on = enable("spares", input[11])?;
            if on && input[12] > 100 {
                return Err(HealthError::Percentage { field: "injected spares", value: input[12] });
            }
            req.spares_percent = Some(on.then_some(input[12]));
        }
        if flags & SmartInjection::FLAG_FATAL != 0 {
            req.fatal = Some(enable("fatal", input[13])?);
        }
        if flags & SmartInjection::FLAG_UNSAFE_SHUTDOWN != 0 {
            req.unsafe_shutdown = Some(enable("unsafe shutdown", input[14])?);
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_encoding_is_sign_magnitude_sixteenths() {
        assert_eq!(Temperature::from_celsius(23).unwrap().encode(), 23 * 16);
        assert_eq!(Temperature::from_celsius_f64(-1.5).unwrap().encode(), 0x8000 | 24);
        assert_eq!(Temperature::decode(0x8000 | 24).celsius(), -1.5);
        assert_eq!(Temperature::decode(0x8000), Temperature::from_celsius(0).unwrap());
        assert!(Temperature::from_celsius_f64(20.01).is_err());
        assert!(Temperature::from_celsius_f64(2048.0).is_err());
        assert!(Temperature::from_celsius(3000).is_err());
        for raw in [0u16, 1, 0x7fff, 0x8001, 0xffff] {
            assert_eq!(Temperature::decode(raw).encode(), raw);
        }
    }

    #[test]
    fn temperature_json_is_celsius() {
        let t = Temperature::from_sixteenths(36 * 16 + 8).unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "36.5");
        assert_eq!(serde_json::from_str::<Temperature>("36.5").unwrap(), t);
        assert!(serde_json::from_str::<Temperature>("36.51").is_err());
    }

    #[test]
    fn smart_payload_offsets() {
        let h = SmartHealth {
            valid: valid::ALL,
            state: HealthState::Critical,
            spares_percent: 42,
            life_used_percent: 7,
            alarm_trips: Alarms { spares: true, media_temperature: false, controller_temperature: true },
            media_temperature: Temperature::from_celsius_f64(-3.25).unwrap(),
            controller_temperature: Temperature::from_celsius(51).unwrap(),
            unsafe_shutdown_count: 0x01020304,
            ait_dram_status: 0x5a,
            pmic_temperature: Temperature::from_celsius(40).unwrap(),
            last_shutdown_state: 3,
            vendor_data: vec![0xaa; 92],
        };
        let b = h.encode();
        assert_eq!(b.len(), 132);
        assert_eq!(&b[0..4], &[0, 0, 0, 0]);
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 0xeff);
        assert_eq!(b[12], 2);
        assert_eq!(b[13], 42);
        assert_eq!(b[14], 7);
        assert_eq!(b[15], 0b101);
        assert_eq!(u16::from_le_bytes([b[16], b[17]]), 0x8000 | 52);
        assert_eq!(u16::from_le_bytes([b[18], b[19]]), 51 * 16);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 0x01020304);
        assert_eq!(b[24], 0x5a);
        assert_eq!(u16::from_le_bytes([b[25], b[26]]), 40 * 16);
        assert_eq!(&b[27..35], &[0; 8]);
        assert_eq!(b[35], 3);
        assert_eq!(u32::from_le_bytes(b[36..40].try_into().unwrap()), 92);
        assert!(b[40..].iter().all(|&x| x == 0xaa));
    }

    #[test]
    fn validation_refuses_bad_values() {
        let ok = SmartHealth::default();
        assert_eq!(ok.validate(), Ok(()));
        assert!(SmartHealth { valid: 1 << 8, ..ok.clone() }.validate().is_err());
        assert!(SmartHealth { spares_percent: 101, ..ok.clone() }.validate().is_err());
        assert!(SmartHealth { vendor_data: vec![0; 93], ..ok.clone() }.validate().is_err());
    }

    #[test]
    fn thresholds_round_trip_through_f17_and_f2() {
        let input = [0x05, 0x00, 15, 0x40, 0x05, 0x10, 0x86];
        let t = SmartThresholds::decode_set(&input).unwrap();
        assert_eq!(t.alarm_control, Alarms { spares: true, media_temperature: false, controller_temperature: true });
        assert_eq!(t.spares_percent, 15);
        assert_eq!(t.media_temperature.celsius(), 84.0);
        assert_eq!(t.controller_temperature.celsius(), -(0x610 as f64) / 16.0);
        let out = t.encode();
        assert_eq!(&out[4..11], &input);
        assert_eq!(out[11], 0);
        assert!(SmartThresholds::decode_set(&input[..6]).is_err());
        assert!(SmartThresholds::decode_set(&[8, 0, 1, 0, 0, 0, 0]).is_err());
        assert!(SmartThresholds::decode_set(&[1, 0, 101, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn effective_applies_injection_and_threshold_alarms() {
        let host = SmartHealth::default();
        let mut thr = SmartThresholds::default();
        let inj = SmartInjection {
            media_temperature: Some(Temperature::from_celsius(90).unwrap()),
            spares_percent: Some(5),
            fatal: true,
            unsafe_shutdown: true,
        };
        let e = host.effective(&thr, &inj);
        assert_eq!(e.state, HealthState::Fatal);
        assert_eq!(e.spares_percent, 5);
        assert_eq!(e.last_shutdown_state, 1);
        assert_eq!(e.alarm_trips, Alarms::default(), "alarms disabled by default");
        thr.alarm_control = Alarms { spares: true, media_temperature: true, controller_temperature: true };
        let e = host.effective(&thr, &inj);
        assert_eq!(e.alarm_trips, Alarms { spares: true, media_temperature: true, controller_temperature: false });
        let e = host.effective(&thr, &SmartInjection::default());
        assert_eq!(e, host);
    }

    #[test]
    fn inject_decoding_matches_ndctl_requests() {
        // ndctl inject-smart -m 60: flags bit0, enable 1, 60*16.
        let mut input = [0u8; 15];
        input[0] = 1;
        input[8] = 1;
        input[9..11].copy_from_slice(&(60u16 * 16).to_le_bytes());
        let req = InjectRequest::decode(&input).unwrap();
        assert_eq!(req.media_temperature, Some(Some(Temperature::from_celsius(60).unwrap())));
        assert_eq!(req.spares_percent, None);
        // --media-temperature-uninject: same flag, enable 0.
        input[8] = 0;
        assert_eq!(InjectRequest::decode(&input).unwrap().media_temperature, Some(None));
        input[8] = 2;
        assert!(InjectRequest::decode(&input).is_err());
        assert!(InjectRequest::decode(&[0; 14]).is_err());
        let mut bad = [0u8; 15];
        bad[0] = 0x10;
        assert!(InjectRequest::decode(&bad).is_err());
    }

    #[test]
    fn smart_health_json_round_trip() {
        let h = SmartHealth { vendor_data: vec![1, 2, 3], ..SmartHealth::with_state(HealthState::NonCritical) };
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<SmartHealth>(&json).unwrap(), h);
        let partial: SmartHealth = serde_json::from_str(r#"{"state":"fatal","media_temperature":41.25}"#).unwrap();
        assert_eq!(partial.state, HealthState::Fatal);
        assert_eq!(partial.media_temperature.sixteenths(), 41 * 16 + 4);
        assert!(serde_json::from_str::<SmartHealth>(r#"{"colour":1}"#).is_err());
    }
}
