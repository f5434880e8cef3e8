//! Intel-family DIMM `_DSM` functions 19-28 (revision 2): the guest's side of
//! security.rs. Each input must have exactly the length Linux sends
//! (`struct nd_intel_*` in drivers/acpi/nfit/intel.h without the status word): a
//! longer or shorter one is INVALID_INPUT and changes nothing.

use std::time::Duration;

use crate::dimm::Dimm;
use crate::dsm::{intel_status, status_only, Output};
use crate::security::{Effect, Passphrase, Request, Security, PASSPHRASE_LEN};

pub const FN_GET_SECURITY_STATE: u32 = 19;
pub const FN_SET_PASSPHRASE: u32 = 20;
pub const FN_DISABLE_PASSPHRASE: u32 = 21;
pub const FN_UNLOCK_UNIT: u32 = 22;
pub const FN_FREEZE_LOCK: u32 = 23;
pub const FN_SECURE_ERASE: u32 = 24;
pub const FN_OVERWRITE: u32 = 25;
pub const FN_QUERY_OVERWRITE: u32 = 26;
pub const FN_SET_MASTER_PASSPHRASE: u32 = 27;
pub const FN_MASTER_SECURE_ERASE: u32 = 28;

pub const SECURITY_FUNCTIONS: std::ops::RangeInclusive<u32> = FN_GET_SECURITY_STATE..=FN_MASTER_SECURE_ERASE;

/// Answers one security call on `dimm` at platform-clock time `now`. Returns the answer
/// and whether the DIMM's media must now be erased (the caller does it, and answers
/// HW_ERROR instead if it cannot). Changed keys are already durable when this returns.
pub fn call(dimm: &mut Dimm, function: u32, input: &[u8], now: Duration) -> (Vec<u8>, bool) {
    match function {
        FN_GET_SECURITY_STATE => {
            if !input.is_empty() {
                return (status_only(intel_status::INVALID_INPUT), false);
            }
            let (extended, state) = security(dimm).state(now);
            let out = Output::new().u32(intel_status::SUCCESS).u8(extended).zeros(3).u8(state).zeros(3).finish();
            (out, false)
        }
        FN_QUERY_OVERWRITE => {
            if !input.is_empty() {
                return (status_only(intel_status::INVALID_INPUT), false);
            }
            (status_only(security(dimm).query_overwrite(now)), false)
        }
        _ => match parse(function, input) {
            Some(request) => apply(dimm, request, now),
            None => (status_only(intel_status::INVALID_INPUT), false),
        },
    }
}

fn security(dimm: &mut Dimm) -> Security<'_> {
    Security { keys: &mut dimm.state.security, session: &mut dimm.security_session }
}

fn passphrase(bytes: &[u8]) -> Passphrase {
    let mut p = [0; PASSPHRASE_LEN];
    p.copy_from_slice(bytes);
    p
}

/// The request `function` carries, if `input` has exactly its length.
fn parse(function: u32, input: &[u8]) -> Option<Request> {
    let one = || (input.len() == PASSPHRASE_LEN).then(|| passphrase(input));
    let two = || {
        (input.len() == 2 * PASSPHRASE_LEN)
            .then(|| (passphrase(&input[..PASSPHRASE_LEN]), passphrase(&input[PASSPHRASE_LEN..])))
    };
    Some(match function {
        FN_SET_PASSPHRASE => two().map(|(old, new)| Request::SetPassphrase { old, new })?,
        FN_DISABLE_PASSPHRASE => Request::Disable { passphrase: one()? },
        FN_UNLOCK_UNIT => Request::Unlock { passphrase: one()? },
        FN_FREEZE_LOCK => input.is_empty().then_some(Request::Freeze)?,
        FN_SECURE_ERASE => Request::SecureErase { passphrase: one()? },
        FN_OVERWRITE => Request::Overwrite { passphrase: one()? },
        FN_SET_MASTER_PASSPHRASE => two().map(|(old, new)| Request::SetMaster { old, new })?,
        FN_MASTER_SECURE_ERASE => Request::MasterErase { passphrase: one()? },
        _ => return None,
    })
}

/// Applies `request` and makes changed keys durable; if they cannot be saved, the
/// DIMM's security is put back as it was and the answer is HW_ERROR.
fn apply(dimm: &mut Dimm, request: Request, now: Duration) -> (Vec<u8>, bool) {
    let before = (dimm.state.security.clone(), dimm.security_session.clone());
    match security(dimm).apply(request, now) {
        Err(status) => (status_only(status), false),
        Ok(Effect::None) => (status_only(intel_status::SUCCESS), false),
        Ok(effect) => {
            if dimm.save_state().is_err() {
                (dimm.state.security, dimm.security_session) = before;
                return (status_only(intel_status::HW_ERROR), false);
            }
            (status_only(intel_status::SUCCESS), effect == Effect::EraseMedia)
        }
    }
}

#[cfg(test)]
mod tests;
