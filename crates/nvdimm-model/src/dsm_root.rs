//! Root device `_DSM` (UUID 2F10E7A4-...): Address Range Scrub, Clear Uncorrectable
//! Error, Translate SPA and ARS error injection.
//!
//! Guest input is hostile: every field is read through `dsm::Input`, every range is
//! checked to lie inside one DIMM's SPA window with `checked_add`, and every answer
//! has the size Linux's `acpi_nfit_ctl` and ndctl expect for that function, also when
//! the status is an error (a short answer makes Linux report "output underflow").

use crate::ars::{self, ScrubRequest, MAX_ARS_OUTPUT};
use crate::clock::Clock;
use crate::config::PlatformConfig;
use crate::dimm::Dimm;
use crate::dsm::root_status::{FUNCTION_SPECIFIC, HW_ERROR, INVALID_INPUT, NOT_SUPPORTED, SUCCESS};
use crate::dsm::{function_mask, no_functions, status_only, Input, Output};
use crate::events::{Notification, NotifyTarget, NOTIFY_ROOT_NEW_ERRORS};
use crate::platform_poison::{change_poison, HostPoisonError};
use crate::poison_journal::PoisonOp;
use crate::spa_map::{merge_by_spa, DimmSpan, SpaMap};

/// Everything a root `_DSM` call may look at or change.
pub struct RootContext<'a> {
    pub config: &'a PlatformConfig,
    pub map: &'a SpaMap,
    pub dimms: &'a mut [Dimm],
    pub ars: &'a mut ars::ArsEngine,
    pub clock: &'a dyn Clock,
    pub notifications: &'a mut Vec<Notification>,
}

pub const QUERY: u32 = 0;
pub const ARS_CAP: u32 = 1;
pub const ARS_START: u32 = 2;
pub const ARS_STATUS: u32 = 3;
pub const CLEAR_ERROR: u32 = 4;
pub const TRANSLATE_SPA: u32 = 5;
pub const INJECT_ERROR: u32 = 7;
pub const INJECT_CLEAR: u32 = 8;
pub const INJECT_STATUS: u32 = 9;

/// Functions 0-5 and 7-9 (6 is reserved by ACPI).
pub const SUPPORTED_FUNCTIONS: u64 = 0b11_1011_1111;
/// The only revision the root `_DSM` defines; Linux always calls with it.
pub const REVISION: u32 = 1;

/// Clear Uncorrectable Error granularity. 256 bytes is what Intel Optane platforms and
/// Linux's nfit_test report; Linux's pmem driver clears whole 512-byte sectors, which
/// are always 256-aligned, and ndctl inject-error clamps each injection to this unit.
pub const CLEAR_ERROR_UNIT: u32 = 256;
/// Query ARS Capabilities flags bit 0: the platform raises Notify(root, 0x81) for new
/// uncorrectable errors (ACPI 6.2; Linux ignores the flags field).
pub const CAP_FLAG_NOTIFY_NEW_ERRORS: u16 = 1 << 0;
/// ARS Error Inject options bit 0: notify the OS as if the error had just been found.
pub const INJECT_OPTION_NOTIFY: u8 = 1 << 0;
/// Records one Inject Status answer can carry within the max ARS output size.
pub const INJECT_RECORDS_MAX: usize = (MAX_ARS_OUTPUT - 8) / 16;

pub fn call(ctx: RootContext<'_>, function: u32, revision: u32, input: &[u8]) -> Vec<u8> {
    if function == QUERY {
        // ACPI: function 0 for an unknown revision answers "no functions" (bit 0 clear).
        return if revision == REVISION { function_mask(SUPPORTED_FUNCTIONS) } else { no_functions() };
    }
    if revision != REVISION || function >= 64 || SUPPORTED_FUNCTIONS & (1 << function) == 0 {
        return status_only(NOT_SUPPORTED);
    }
    let input = Input(input);
    match function {
        ARS_CAP => ars_cap(&ctx, &input),
        ARS_START => ars_start(ctx, &input),
        ARS_STATUS => ctx.ars.query(ctx.clock.now(), ctx.map, ctx.dimms, MAX_ARS_OUTPUT),
        CLEAR_ERROR => clear_error(ctx, &input),
        TRANSLATE_SPA => translate_spa(&ctx, &input),
        INJECT_ERROR => inject_error(ctx, &input),
        INJECT_CLEAR => inject_clear(ctx, &input),
        INJECT_STATUS => inject_status(&ctx),
        _ => status_only(NOT_SUPPORTED),
    }
}

fn range_input(input: &Input<'_>) -> Option<(u64, u64)> {
    Some((input.u64(0)?, input.u64(8)?))
}

/// F1 output: status (ext: scrub types), max ARS output, clear error unit, flags, reserved.
fn ars_cap(ctx: &RootContext<'_>, input: &Input<'_>) -> Vec<u8> {
    let valid = range_input(input).and_then(|(spa, len)| ctx.map.window_at(spa, len)).is_some();
    if !valid {
        return Output::new().u32(INVALID_INPUT).zeros(12).finish();
    }
    // Only persistent scrub: every window is persistent memory.
    Output::new()
        .u32(SUCCESS | (u32::from(ars::TYPE_PERSISTENT) << 16))
        .u32(MAX_ARS_OUTPUT as u32)
        .u32(CLEAR_ERROR_UNIT)
        .u16(CAP_FLAG_NOTIFY_NEW_ERRORS)
        .u16(0)
        .finish()
}

/// F2 input: address, length, type u16, flags u8, 5 reserved. Output: status, estimated seconds.
fn ars_start(ctx: RootContext<'_>, input: &Input<'_>) -> Vec<u8> {
    let answer = |status: u32, secs: u32| Output::new().u32(status).u32(secs).finish();
    if input.len() < 24 {
        return answer(INVALID_INPUT, 0);
    }
    let (Some((spa, len)), Some(ars_type), Some(flags)) = (range_input(input), input.u16(16), input.u8(18)) else {
        return answer(INVALID_INPUT, 0);
    };
    let Some(window) = ctx.map.window_at(spa, len) else {
        return answer(INVALID_INPUT, 0);
    };
    if ars_type & ars::TYPE_PERSISTENT == 0 {
        return answer(INVALID_INPUT, 0);
    }
    let short = flags & ars::START_RETURN_PREV_DATA != 0;
    let req = ScrubRequest { window, spa, len, ars_type: ars::TYPE_PERSISTENT, short };
    match ctx.ars.start(req, ctx.clock.now(), ctx.config.ars.scrub_rate) {
        Ok(took) => {
            let secs = took.as_secs() + u64::from(took.subsec_nanos() > 0);
            answer(SUCCESS, u32::try_from(secs).unwrap_or(u32::MAX))
        }
        Err(ars::ArsError::Busy) => answer(FUNCTION_SPECIFIC, 0),
    }
}

/// F4 input: address, length (both multiples of the clear error unit). Output: status,
/// reserved, cleared length. The whole range is known good afterwards, so the cleared
/// length is the requested length (Linux treats 0 as failure).
fn clear_error(ctx: RootContext<'_>, input: &Input<'_>) -> Vec<u8> {
    let answer = |status: u32, cleared: u64| Output::new().u32(status).u32(0).u64(cleared).finish();
    let Some((spa, len)) = range_input(input) else {
        return answer(INVALID_INPUT, 0);
    };
    let unit_mask = u64::from(CLEAR_ERROR_UNIT - 1);
    if (spa | len) & unit_mask != 0 {
        return answer(INVALID_INPUT, 0);
    }
    let Some(spans) = ctx.map.dimm_spans(spa, len) else {
        return answer(INVALID_INPUT, 0);
    };
    let mut failed = false;
    for DimmSpan { dimm, offset, len } in spans {
        match change_poison(&mut ctx.dimms[dimm], dimm, &[PoisonOp::Clear { offset, len }]) {
            Ok(_) => ctx.ars.forget_injected(dimm, offset, len),
            // A hole punched into a full set, or a state file that cannot be written: the
            // media "could not be cleared". The other DIMMs of a set are still cleared.
            Err(_) => failed = true,
        }
    }
    match failed {
        false => answer(SUCCESS, len),
        true => answer(HW_ERROR, 0),
    }
}

/// F5 input: SPA. Output: status, flags u8, 3 reserved, translated length, NVDIMM count,
/// then {handle, reserved, DPA} per NVDIMM (one: nothing is mirrored). The translated
/// length runs to the end of the address's interleave line (of its window when not
/// interleaved): the bytes that follow it on the same DIMM.
fn translate_spa(ctx: &RootContext<'_>, input: &Input<'_>) -> Vec<u8> {
    let found = input.u64(0).and_then(|spa| Some((ctx.map.locate_byte(spa)?, ctx.map.contiguous_from(spa)?)));
    let Some(((index, dpa), translated)) = found else {
        return Output::new().u32(INVALID_INPUT).zeros(16).finish();
    };
    let dimm = &ctx.dimms[index];
    Output::new()
        .u32(SUCCESS)
        .u8(0)
        .zeros(3)
        .u64(translated)
        .u32(1)
        .u32(dimm.handle())
        .u32(0)
        .u64(dpa)
        .finish()
}

/// F7 input: base, length, options u8. Output: status.
fn inject_error(ctx: RootContext<'_>, input: &Input<'_>) -> Vec<u8> {
    let (Some((spa, len)), Some(options)) = (range_input(input), input.u8(16)) else {
        return status_only(INVALID_INPUT);
    };
    let Some(spans) = ctx.map.dimm_spans(spa, len) else {
        return status_only(INVALID_INPUT);
    };
    for DimmSpan { dimm, offset, len } in spans {
        match change_poison(&mut ctx.dimms[dimm], dimm, &[PoisonOp::Add { offset, len }]) {
            Ok(_) => {}
            // A full poison list: ndctl turns status 2 into an error the user sees, while
            // other codes would read as success.
            Err(HostPoisonError::Poison { .. }) => return status_only(INVALID_INPUT),
            Err(_) => return status_only(HW_ERROR),
        }
        // A full injected list only shortens Inject Status; the poison itself is in place.
        let _ = ctx.ars.note_injected(dimm, offset, len);
    }
    if options & INJECT_OPTION_NOTIFY != 0 {
        ctx.notifications.push(Notification { target: NotifyTarget::Root, code: NOTIFY_ROOT_NEW_ERRORS });
    }
    status_only(SUCCESS)
}

/// F8 input: base, length. Clears injected errors in the range (host-made media errors
/// stay: they were not injected). Output: status.
fn inject_clear(ctx: RootContext<'_>, input: &Input<'_>) -> Vec<u8> {
    let Some((spa, len)) = range_input(input) else {
        return status_only(INVALID_INPUT);
    };
    let Some(spans) = ctx.map.dimm_spans(spa, len) else {
        return status_only(INVALID_INPUT);
    };
    for DimmSpan { dimm, offset, len } in spans {
        let pieces: Vec<(u64, u64)> = match ctx.ars.injected(dimm) {
            Some(set) => set.clipped(offset, offset + len).collect(),
            None => continue,
        };
        let ops: Vec<PoisonOp> = pieces.iter().map(|&(offset, len)| PoisonOp::Clear { offset, len }).collect();
        if change_poison(&mut ctx.dimms[dimm], dimm, &ops).is_err() {
            return status_only(HW_ERROR);
        }
        ctx.ars.forget_injected(dimm, offset, len);
    }
    status_only(SUCCESS)
}

/// F9 output: status, record count, then {SPA base, length} of injected ranges in SPA
/// order, as many as fit in the max ARS output size.
fn inject_status(ctx: &RootContext<'_>) -> Vec<u8> {
    let sources: Vec<_> = (0..ctx.dimms.len())
        .filter_map(|i| ctx.ars.injected(i).map(|set| (i, set)))
        .map(|(i, set)| set.iter().flat_map(move |(off, len)| ctx.map.spa_pieces(i, off, len)))
        .collect();
    let records: Vec<(u64, u64)> =
        merge_by_spa(sources).map(|(_, spa, len)| (spa, len)).take(INJECT_RECORDS_MAX).collect();
    let mut out = Output::new().u32(SUCCESS).u32(records.len() as u32);
    for (spa, len) in records {
        out = out.u64(spa).u64(len);
    }
    out.finish()
}

#[cfg(test)]
mod tests;
