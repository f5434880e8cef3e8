//! Intel-family DIMM `_DSM` (UUID 4309AC30-0D11-11E4-9191-0800200C9A66).
//!
//! Linux asks function 0 with revision 1 for functions 1-10 and with revision 2 for
//! functions 11-30, and calls each function with that same revision; so each
//! function answers only at its own revision and function 0 lists, per revision,
//! exactly the functions callable at that revision. Anything else is "not supported".
//! Every input is read through bounds-checked accessors: a hostile or short buffer
//! gets status 3 (invalid input), never a panic. See docs/dimm-dsm.md.

use crate::dimm::{Dimm, DimmError};
use crate::dsm::{function_mask, intel_status, no_functions, status_only, Input, Output};
use crate::events::Notification;
use crate::health::{InjectRequest, SmartThresholds};
use crate::mailbox::MAX_INPUT;
use crate::dsm_firmware::{FN_ACTIVATE_ARM, FN_ACTIVATE_DIMM_INFO, FN_FIRMWARE_INFO, FN_QUERY_FINISH};
use crate::dsm_security::SECURITY_FUNCTIONS;

/// Function 4's extended status bit 0 (status bit 16): the label area is locked; Linux
/// (`xlat_nvdimm_status`) turns it into -EACCES and marks the DIMM locked.
pub const LABELS_LOCKED: u32 = 1 << 16;

pub const FN_SMART: u32 = 1;
pub const FN_SMART_THRESHOLDS: u32 = 2;
pub const FN_BLOCK_FLAGS: u32 = 3;
pub const FN_LABEL_SIZE: u32 = 4;
pub const FN_GET_LABEL: u32 = 5;
pub const FN_SET_LABEL: u32 = 6;
pub const FN_LATCH_SHUTDOWN_STATUS: u32 = 10;
pub const FN_SET_SMART_THRESHOLDS: u32 = 17;
pub const FN_INJECT_SMART: u32 = 18;

/// Largest label payload per get/set call: a set-label input (8-byte header plus data)
/// must fit the 4096-byte mailbox input area.
pub const MAX_LABEL_TRANSFER: u32 = (MAX_INPUT - 8) as u32;

/// The revision Linux (and the Intel DSM spec) uses for `function`.
pub fn revision_for(function: u32) -> u32 {
    if (11..=30).contains(&function) {
        2
    } else {
        1
    }
}

/// Function 0 mask for `revision` (bit 0 set whenever anything is supported).
pub fn supported_functions(dimm: &Dimm, revision: u32) -> u64 {
    let has_labels = !dimm.labels.is_empty();
    let bits: &[(u32, bool)] = match revision {
        1 => &[
            (FN_SMART, true),
            (FN_SMART_THRESHOLDS, true),
            (FN_BLOCK_FLAGS, true),
            (FN_LABEL_SIZE, has_labels),
            (FN_GET_LABEL, has_labels),
            // A read-only DIMM keeps readable labels: Linux then uses them read-only.
            (FN_SET_LABEL, has_labels && !dimm.config.readonly),
            (FN_LATCH_SHUTDOWN_STATUS, true),
        ],
        2 => &[(FN_SET_SMART_THRESHOLDS, true), (FN_INJECT_SMART, true)],
        _ => &[],
    };
    let mut mask = bits.iter().filter(|(_, on)| *on).fold(0u64, |m, (f, _)| m | 1 << f);
    if revision == 2 {
        // Firmware information and update (12-16) on every DIMM; live activation
        // (29, 30) where the platform offers it (docs/firmware-update.md).
        mask |= (FN_FIRMWARE_INFO..=FN_QUERY_FINISH).fold(0u64, |m, f| m | 1 << f);
        if dimm.firmware_session.live_activation {
            mask |= 1 << FN_ACTIVATE_DIMM_INFO | 1 << FN_ACTIVATE_ARM;
        }
    }
    // Security erases the media: not on a read-only DIMM (docs/security.md).
    if revision == 2 && !dimm.config.readonly {
        mask |= SECURITY_FUNCTIONS.fold(0u64, |m, f| m | 1 << f);
    }
    if mask == 0 {
        0
    } else {
        mask | 1
    }
}

/// Answers one call. Health events caused by the call are appended to `notifications`.
pub fn call(
    dimm: &mut Dimm,
    function: u32,
    revision: u32,
    input: &[u8],
    notifications: &mut Vec<Notification>,
) -> Vec<u8> {
    if function == 0 {
        return match supported_functions(dimm, revision) {
            0 => no_functions(),
            mask => function_mask(mask),
        };
    }
    let supported = function < 64
        && revision == revision_for(function)
        && supported_functions(dimm, revision) & (1u64 << function) != 0;
    if !supported {
        return status_only(intel_status::NOT_SUPPORTED);
    }
    let input = Input(input);
    if dimm.security_session.locked && matches!(function, FN_LABEL_SIZE | FN_GET_LABEL | FN_SET_LABEL) {
        return match function {
            FN_LABEL_SIZE => Output::new().u32(LABELS_LOCKED).u32(0).u32(0).finish(),
            _ => status_only(crate::security::INVALID_STATE),
        };
    }
    match function {
        FN_SMART => dimm.smart().encode().to_vec(),
        FN_SMART_THRESHOLDS => dimm.state.thresholds.encode().to_vec(),
        // Status, then flags 0: no block-window flags (block mode does not exist here).
        FN_BLOCK_FLAGS => Output::new().u32(intel_status::SUCCESS).u32(0).finish(),
        FN_LABEL_SIZE => {
            Output::new().u32(intel_status::SUCCESS).u32(dimm.labels.len() as u32).u32(MAX_LABEL_TRANSFER).finish()
        }
        FN_GET_LABEL => get_label(dimm, &input),
        FN_SET_LABEL => set_label(dimm, &input),
        FN_LATCH_SHUTDOWN_STATUS => latch(dimm, &input),
        FN_SET_SMART_THRESHOLDS => match SmartThresholds::decode_set(input.0) {
            Err(_) => status_only(intel_status::INVALID_INPUT),
            Ok(t) => with_events(dimm.set_thresholds(t), notifications),
        },
        FN_INJECT_SMART => match InjectRequest::decode(input.0) {
            Err(_) => status_only(intel_status::INVALID_INPUT),
            Ok(req) => with_events(dimm.inject(&req), notifications),
        },
        _ => status_only(intel_status::NOT_SUPPORTED),
    }
}

/// Checks `[offset, offset + len)` against the label area and the transfer limit.
fn label_range(dimm: &Dimm, offset: u32, len: u32) -> Option<(u64, u64)> {
    let end = u64::from(offset) + u64::from(len);
    (len <= MAX_LABEL_TRANSFER && end <= dimm.labels.len() as u64).then_some((u64::from(offset), u64::from(len)))
}

fn get_label(dimm: &Dimm, input: &Input<'_>) -> Vec<u8> {
    let (Some(offset), Some(len)) = (input.u32(0), input.u32(4)) else {
        return status_only(intel_status::INVALID_INPUT);
    };
    let Some((offset, len)) = label_range(dimm, offset, len) else {
        return status_only(intel_status::INVALID_INPUT);
    };
    match dimm.read_labels(offset, len) {
        Some(bytes) => Output::new().u32(intel_status::SUCCESS).bytes(bytes).finish(),
        None => status_only(intel_status::INVALID_INPUT),
    }
}

fn set_label(dimm: &mut Dimm, input: &Input<'_>) -> Vec<u8> {
    let (Some(offset), Some(len)) = (input.u32(0), input.u32(4)) else {
        return status_only(intel_status::INVALID_INPUT);
    };
    if input.len() as u64 != 8 + u64::from(len) {
        return status_only(intel_status::INVALID_INPUT);
    }
    let Some((offset, _)) = label_range(dimm, offset, len) else {
        return status_only(intel_status::INVALID_INPUT);
    };
    // Answer only once the bytes are durable: the guest treats success as persisted.
    match dimm.write_labels(offset, &input.0[8..]) {
        Ok(()) => status_only(intel_status::SUCCESS),
        Err(DimmError::LabelRange { .. }) => status_only(intel_status::INVALID_INPUT),
        Err(DimmError::ReadOnly { .. }) => status_only(intel_status::NOT_SUPPORTED),
        Err(_) => status_only(intel_status::HW_ERROR),
    }
}

fn latch(dimm: &mut Dimm, input: &Input<'_>) -> Vec<u8> {
    let enable = match input.u8(0) {
        Some(0) => false,
        Some(1) => true,
        _ => return status_only(intel_status::INVALID_INPUT),
    };
    match dimm.set_shutdown_latch(enable) {
        Ok(()) => status_only(intel_status::SUCCESS),
        Err(_) => status_only(intel_status::HW_ERROR),
    }
}

fn with_events(result: Result<Vec<Notification>, DimmError>, notifications: &mut Vec<Notification>) -> Vec<u8> {
    match result {
        Ok(events) => {
            notifications.extend(events);
            status_only(intel_status::SUCCESS)
        }
        Err(DimmError::Health(_)) => status_only(intel_status::INVALID_INPUT),
        Err(_) => status_only(intel_status::HW_ERROR),
    }
}

#[cfg(test)]
mod tests;
