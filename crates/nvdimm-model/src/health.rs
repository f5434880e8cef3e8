//! SMART health state of a DIMM (Intel `_DSM` function 1 and friends).
//! STUB: the SMART payload is filled in by the health work.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
