//! The guest's side of firmware.rs: Intel DIMM functions 12-16 (information and
//! update) and 29-30 (live activation: DIMM info, arm), and the Intel bus family's
//! functions 1-2 on the root device (activation info, activate). Inputs must have the
//! exact lengths Linux and ndctl send (`struct nd_intel_fw_*`, drivers/acpi/nfit/intel.h).

use std::time::Duration;

use crate::dimm::Dimm;
use crate::dsm::{function_mask, intel_status, no_functions, status_only, Input, Output};
use crate::firmware::{
    activation, Effect, Firmware, MAX_QUERY_TIME_US, MAX_SEND_LEN, QUERY_INTERVAL_US, STORAGE_SIZE,
};

pub const FN_FIRMWARE_INFO: u32 = 12;
pub const FN_START_UPDATE: u32 = 13;
pub const FN_SEND_DATA: u32 = 14;
pub const FN_FINISH_UPDATE: u32 = 15;
pub const FN_QUERY_FINISH: u32 = 16;
pub const FN_ACTIVATE_DIMM_INFO: u32 = 29;
pub const FN_ACTIVATE_ARM: u32 = 30;

/// Intel bus family `_DSM` UUID C7D8ACD4-2DF8-4B82-9F65-A325335AF149 (Linux's
/// NVDIMM_BUS_FAMILY_INTEL), in `ToUUID` byte order.
pub const INTEL_BUS_UUID: [u8; 16] =
    [0xd4, 0xac, 0xd8, 0xc7, 0xf8, 0x2d, 0x82, 0x4b, 0x9f, 0x65, 0xa3, 0x25, 0x33, 0x5a, 0xf1, 0x49];
pub const BUS_FN_ACTIVATE_INFO: u32 = 1;
pub const BUS_FN_ACTIVATE: u32 = 2;
/// The bus functions exist only at revision 1.
pub const BUS_REVISION: u32 = 1;

/// Firmware Interface Specification version function 12 reports (2.1).
pub const FIS_VERSION: u32 = 0x0201;
/// Function 12 output size (status word included), `struct nd_intel_fw_info`.
pub const FIRMWARE_INFO_SIZE: usize = 44;
/// Bus capability: the OS quiesces (Linux then offers "live" activation).
const BUS_CAP_OS_QUIESCE: u8 = 1 << 1;

pub fn is_update_function(function: u32) -> bool {
    (FN_FIRMWARE_INFO..=FN_QUERY_FINISH).contains(&function)
}

pub fn is_activation_function(function: u32) -> bool {
    (FN_ACTIVATE_DIMM_INFO..=FN_ACTIVATE_ARM).contains(&function)
}

fn firmware(dimm: &mut Dimm) -> Firmware<'_> {
    Firmware { versions: &mut dimm.state.firmware, session: &mut dimm.firmware_session }
}

/// Answers one DIMM firmware function. The returned flag asks the caller to persist
/// the DIMM's state (a version changed).
pub fn call(dimm: &mut Dimm, function: u32, input: &[u8], now: Duration) -> (Vec<u8>, bool) {
    let invalid = || (status_only(intel_status::INVALID_INPUT), false);
    let data = Input(input);
    match function {
        FN_FIRMWARE_INFO if input.is_empty() => {
            let v = &dimm.state.firmware;
            let out = Output::new()
                .u32(intel_status::SUCCESS)
                .u32(STORAGE_SIZE)
                .u32(MAX_SEND_LEN)
                .u32(QUERY_INTERVAL_US)
                .u32(MAX_QUERY_TIME_US)
                .u8(0) // update capability
                .zeros(3)
                .u32(FIS_VERSION)
                .u64(v.running)
                .u64(v.staged.unwrap_or(0))
                .finish();
            (out, false)
        }
        FN_START_UPDATE if input.is_empty() => match firmware(dimm).start() {
            Ok(context) => (Output::new().u32(intel_status::SUCCESS).u32(context).finish(), false),
            Err(status) => (Output::new().u32(status).u32(0).finish(), false),
        },
        FN_SEND_DATA => {
            let (Some(context), Some(offset), Some(len)) = (data.u32(0), data.u32(4), data.u32(8)) else {
                return invalid();
            };
            if input.len() as u64 != 12 + u64::from(len) {
                return invalid();
            }
            (status_only(firmware(dimm).send(context, offset, &input[12..])), false)
        }
        FN_FINISH_UPDATE if input.len() == 8 => {
            let (Some(flags), Some(context)) = (data.u8(0), data.u32(4)) else {
                return invalid();
            };
            if flags > 1 {
                return invalid();
            }
            (status_only(firmware(dimm).finish(context, flags == 1, now)), false)
        }
        FN_QUERY_FINISH if input.len() == 4 => {
            let Some(context) = data.u32(0) else {
                return invalid();
            };
            let (status, version, effect) = firmware(dimm).query(context, now);
            (Output::new().u32(status).u64(version).finish(), effect == Effect::VersionsChanged)
        }
        FN_ACTIVATE_DIMM_INFO if input.is_empty() => {
            let s = &dimm.firmware_session;
            let state = if s.armed { activation::STATE_ARMED } else { activation::STATE_IDLE };
            (Output::new().u32(intel_status::SUCCESS).u16(s.last_result).u8(state).zeros(7).finish(), false)
        }
        FN_ACTIVATE_ARM if input.len() == 1 => match data.u8(0) {
            Some(arm @ (0 | 1)) => {
                firmware(dimm).arm(arm == 1);
                (status_only(intel_status::SUCCESS), false)
            }
            _ => invalid(),
        },
        _ => invalid(),
    }
}

/// Root `_DSM` under the Intel bus UUID. `dimms` are all the platform's DIMMs; the
/// returned indices are DIMMs whose state must be persisted.
pub fn bus_call(dimms: &mut [Dimm], function: u32, revision: u32, input: &[u8]) -> (Vec<u8>, Vec<usize>) {
    if revision != BUS_REVISION {
        return (if function == 0 { no_functions() } else { status_only(intel_status::NOT_SUPPORTED) }, vec![]);
    }
    match function {
        0 => (function_mask(1 | 1 << BUS_FN_ACTIVATE_INFO | 1 << BUS_FN_ACTIVATE), vec![]),
        BUS_FN_ACTIVATE_INFO if input.is_empty() => {
            let armed = dimms.iter().any(|d| d.firmware_session.armed);
            let state = if armed { activation::STATE_ARMED } else { activation::STATE_IDLE };
            let out = Output::new()
                .u32(intel_status::SUCCESS)
                .u16(0)
                .u8(state)
                .u8(BUS_CAP_OS_QUIESCE)
                .u64(1) // activate time (µs): activation is instantaneous here
                .u64(0) // CPU quiesce time
                .u64(0) // I/O quiesce time
                .u64(1_000_000) // max quiesce time: never exceeded, so Linux never sees "overflow"
                .finish();
            (out, vec![])
        }
        BUS_FN_ACTIVATE if input.len() == 1 && input[0] <= 1 => {
            if !dimms.iter().any(|d| d.firmware_session.armed) {
                return (status_only(activation::BUS_NO_ARM), vec![]);
            }
            let mut changed = Vec::new();
            let mut failed = false;
            for (index, dimm) in dimms.iter_mut().enumerate() {
                let (result, effect) = firmware(dimm).activate();
                failed |= result == activation::RESULT_ERROR;
                if effect == Effect::VersionsChanged {
                    changed.push(index);
                }
            }
            let status = if failed { activation::BUS_ABORT } else { intel_status::SUCCESS };
            (status_only(status), changed)
        }
        1 | 2 => (status_only(intel_status::INVALID_INPUT), vec![]),
        _ => (status_only(intel_status::NOT_SUPPORTED), vec![]),
    }
}

#[cfg(test)]
mod tests;
