//! `GET`/`PUT /dimms/{index}/firmware`: the API's words for the device model's firmware
//! controls (nvdimm_model::platform_firmware).

use std::time::Duration;

use nvdimm_model::platform_firmware::{FirmwareChange, FirmwareView};

use crate::handlers::{bad_request, Reply};
use crate::types::{FirmwareResponse, FirmwareUpdate};

pub fn response(dimm: usize, v: FirmwareView) -> FirmwareResponse {
    FirmwareResponse {
        dimm,
        running_version: v.running_version,
        staged_version: v.staged_version,
        update: v.update.to_string(),
        received_bytes: v.received_bytes,
        armed: v.armed,
        last_activation: v.last_activation.to_string(),
        live_activation: v.live_activation,
        verify_time_ms: v.verify_time_ms,
        pending_fault: v.pending_fault,
    }
}

/// Checks an update and names the field that is wrong; nothing is applied here.
pub fn change(u: &FirmwareUpdate) -> Result<FirmwareChange, Reply> {
    if *u == FirmwareUpdate::default() {
        return Err(bad_request("give at least one of fail_next, cancel_fault, verify_time_ms"));
    }
    if u.fail_next.is_some() && u.cancel_fault {
        return Err(bad_request("fail_next: give fail_next or cancel_fault, not both"));
    }
    let fail_next = match (u.fail_next, u.cancel_fault) {
        (Some(f), _) => Some(Some(f)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    Ok(FirmwareChange { fail_next, verify_time: u.verify_time_ms.map(Duration::from_millis) })
}
