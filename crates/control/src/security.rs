//! `GET`/`PUT /dimms/{index}/security`: the API's words for the device model's
//! security controls (nvdimm_model::platform_security).

use std::time::Duration;

use nvdimm_model::platform_security::{SecurityChange, SecurityView};
use nvdimm_model::security::{passphrase_from_hex, passphrase_from_text};

use crate::handlers::{bad_request, Reply};
use crate::types::{SecurityResponse, SecurityUpdate};

pub fn response(dimm: usize, v: SecurityView) -> SecurityResponse {
    SecurityResponse {
        dimm,
        state: v.state.to_string(),
        passphrase_set: v.passphrase_set,
        locked: v.locked,
        frozen: v.frozen,
        failed_attempts: v.failed_attempts,
        attempt_limit_reached: v.attempt_limit_reached,
        master_enabled: v.master_enabled,
        failed_master_attempts: v.failed_master_attempts,
        overwrite_remaining_ms: v.overwrite_remaining_ms,
        overwrite_time_ms: v.overwrite_time_ms,
    }
}

/// Checks an update and names the field that is wrong; nothing is applied here.
pub fn change(u: &SecurityUpdate) -> Result<SecurityChange, Reply> {
    if *u == SecurityUpdate::default() {
        return Err(bad_request(
            "give at least one of passphrase, passphrase_hex, remove_passphrase, master_passphrase, master_enabled, \
             locked, frozen, reset_attempts, overwrite_time_ms",
        ));
    }
    let given = [u.passphrase.is_some(), u.passphrase_hex.is_some(), u.remove_passphrase];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(bad_request("passphrase: give one of passphrase, passphrase_hex and remove_passphrase"));
    }
    let text = |field: &str, t: &str| passphrase_from_text(t).map_err(|e| bad_request(format!("{field}: {e}")));
    let passphrase = match (&u.passphrase, &u.passphrase_hex) {
        (Some(t), _) => Some(Some(text("passphrase", t)?)),
        (_, Some(h)) => Some(Some(passphrase_from_hex(h).map_err(|e| bad_request(format!("passphrase_hex: {e}")))?)),
        _ if u.remove_passphrase => Some(None),
        _ => None,
    };
    if u.locked == Some(true) && u.remove_passphrase {
        return Err(bad_request("locked: a DIMM without a passphrase cannot be locked"));
    }
    Ok(SecurityChange {
        passphrase,
        master_passphrase: u.master_passphrase.as_deref().map(|t| text("master_passphrase", t)).transpose()?,
        master_enabled: u.master_enabled,
        locked: u.locked,
        frozen: u.frozen,
        reset_attempts: u.reset_attempts,
        overwrite_time: u.overwrite_time_ms.map(Duration::from_millis),
    })
}
