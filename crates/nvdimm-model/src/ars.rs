//! Address Range Scrub state machine.
//!
//! One scrub at a time, like a real platform. A full scrub of N bytes takes
//! N / `scrub_rate` seconds of the platform clock; a short scrub (Start ARS flag
//! RETURN_PREV_DATA) completes at once. Query ARS Status computes its records from the
//! live poison set on every call, one page at a time, so even 100,000+ ranges cost only
//! a logarithmic lookup plus one page of output.
//!
//! Output rules follow what Linux (drivers/acpi/nfit/core.c, drivers/nvdimm/bus.c) accepts:
//! the whole answer fits in the max ARS output size reported by Query ARS Capabilities;
//! the output-length field counts the bytes after the status word (44 + 24 * records);
//! when records do not fit, the status is "stopped early" (3 << 16) with the overflow
//! flag, and the restart address/length tell Linux where to start the next scrub.

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;

use crate::dimm::Dimm;
use crate::dsm::Output;
use crate::mailbox::MAX_OUTPUT;
use crate::poison::PoisonSet;
use crate::spa_map::{merge_by_spa, SpaMap};

/// Max ARS output size we report: the mailbox's whole output area.
pub const MAX_ARS_OUTPUT: usize = MAX_OUTPUT;
/// Query ARS Status header: status .. record count.
pub const STATUS_HEADER: usize = 48;
pub const RECORD_SIZE: usize = 24;
/// Records one Query ARS Status answer can carry (168 with a 4 KiB output).
pub const RECORDS_PER_PAGE: usize = (MAX_ARS_OUTPUT - STATUS_HEADER) / RECORD_SIZE;

/// Extended status words of Query ARS Status (ndctl compares the whole dword).
pub mod ext_status {
    pub const DONE: u32 = 0;
    pub const IN_PROGRESS: u32 = 1 << 16;
    pub const NONE_THIS_BOOT: u32 = 2 << 16;
    pub const STOPPED_EARLY: u32 = 3 << 16;
}

pub const TYPE_VOLATILE: u16 = 1 << 0;
pub const TYPE_PERSISTENT: u16 = 1 << 1;
/// Start ARS flags: return the previous results instead of scrubbing (a "short" ARS).
pub const START_RETURN_PREV_DATA: u8 = 1 << 1;
/// Query ARS Status flags: records did not fit; continue at the restart address.
pub const STATUS_OVERFLOW: u16 = 1 << 0;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArsError {
    #[error("an address range scrub is already running; wait for Query ARS Status to report completion")]
    Busy,
}

/// What to scrub: a range inside one system-address range of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubRequest {
    /// Index of the range in [`SpaMap::windows`].
    pub window: usize,
    /// First SPA to scrub.
    pub spa: u64,
    pub len: u64,
    pub ars_type: u16,
    /// RETURN_PREV_DATA: complete immediately with what is already known.
    pub short: bool,
}

#[derive(Debug, Clone, Copy)]
struct Scrub {
    req: ScrubRequest,
    done_at: Duration,
}

#[derive(Debug, Default)]
pub struct ArsEngine {
    current: Option<Scrub>,
    /// Ranges the guest injected with ARS Error Inject, per DIMM index, in DIMM offsets.
    /// Always a subset of the DIMM's poison. Not persisted: like a platform's injection
    /// table, it is forgotten on restart while the poison itself stays.
    injected: BTreeMap<usize, PoisonSet>,
}

/// How long scrubbing `len` bytes takes at `rate` bytes per second.
pub fn scrub_duration(len: u64, rate: u64) -> Duration {
    let nanos = u128::from(len) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

impl ArsEngine {
    /// Starts a scrub. Returns the estimated time to completion.
    pub fn start(&mut self, req: ScrubRequest, now: Duration, rate: u64) -> Result<Duration, ArsError> {
        if self.running(now) {
            return Err(ArsError::Busy);
        }
        let took = if req.short { Duration::ZERO } else { scrub_duration(req.len, rate) };
        self.current = Some(Scrub { req, done_at: now.saturating_add(took) });
        Ok(took)
    }

    /// Whether a scrub is still in progress at `now`.
    pub fn running(&self, now: Duration) -> bool {
        self.current.is_some_and(|s| now < s.done_at)
    }

    /// The last scrub started, if any.
    pub fn last_request(&self) -> Option<ScrubRequest> {
        self.current.map(|s| s.req)
    }

    /// Builds the Query ARS Status output. `max_out` is the size limit of the whole
    /// answer (at least `STATUS_HEADER`); records beyond it are reported with the
    /// overflow flag and a restart range.
    pub fn query(&self, now: Duration, map: &SpaMap, dimms: &[Dimm], max_out: usize) -> Vec<u8> {
        let Some(scrub) = self.current else {
            return status_output(ext_status::NONE_THIS_BOOT, &Header::default(), &[]);
        };
        let req = scrub.req;
        let mut header = Header { spa: req.spa, len: req.len, ars_type: req.ars_type, ..Header::default() };
        if now < scrub.done_at {
            return status_output(ext_status::IN_PROGRESS, &header, &[]);
        }
        if map.windows().get(req.window).is_none() {
            // The request was validated against this map; nothing to report otherwise.
            return status_output(ext_status::DONE, &header, &[]);
        }
        let (start, end) = (req.spa, req.spa + req.len);
        let capacity = max_out.saturating_sub(STATUS_HEADER) / RECORD_SIZE;
        // Each member's poison inside the scrubbed range, as system ranges in address
        // order; an interleaved DIMM's range comes out one line at a time.
        let spans = map.dimm_spans(start, req.len).unwrap_or_default();
        let sources: Vec<_> = spans
            .iter()
            .filter_map(|span| Some((span, &dimms.get(span.dimm)?.state.poison)))
            .map(|(span, poison)| {
                poison
                    .clipped(span.offset, span.offset + span.len)
                    .flat_map(move |(offset, len)| map.spa_pieces(span.dimm, offset, len))
            })
            .collect();
        let mut records: Vec<Record> = merge_by_spa(sources)
            .take(capacity + 1)
            .map(|(source, spa, len)| Record { handle: dimms[spans[source].dimm].handle(), spa, len })
            .collect();
        let mut status = ext_status::DONE;
        if records.len() > capacity {
            records.truncate(capacity);
            // Restart after the last reported record; the next record starts at or after it.
            let restart = records.last().map_or(start, |r| r.spa + r.len);
            header.restart_spa = restart;
            header.restart_len = end - restart;
            header.len = restart - start;
            header.flags = STATUS_OVERFLOW;
            status = ext_status::STOPPED_EARLY;
        }
        status_output(status, &header, &records)
    }

    /// Records that the guest injected `[offset, offset + len)` on DIMM `dimm_index`.
    pub fn note_injected(
        &mut self,
        dimm_index: usize,
        offset: u64,
        len: u64,
    ) -> Result<(), crate::poison::PoisonError> {
        self.injected.entry(dimm_index).or_default().insert(offset, len)
    }

    /// Forgets injected ranges inside `[offset, offset + len)` (cleared by any means).
    pub fn forget_injected(&mut self, dimm_index: usize, offset: u64, len: u64) {
        if let Some(set) = self.injected.get_mut(&dimm_index) {
            // Removing can only fail by splitting a full set; dropping the whole DIMM's
            // list then is harmless (it only feeds Inject Status) and keeps the subset rule.
            if set.remove(offset, len).is_err() {
                set.clear();
            }
        }
    }

    /// Injected ranges of one DIMM.
    pub fn injected(&self, dimm_index: usize) -> Option<&PoisonSet> {
        self.injected.get(&dimm_index)
    }
}

#[derive(Debug, Default)]
struct Header {
    spa: u64,
    len: u64,
    restart_spa: u64,
    restart_len: u64,
    ars_type: u16,
    flags: u16,
}

struct Record {
    handle: u32,
    spa: u64,
    len: u64,
}

fn status_output(status: u32, h: &Header, records: &[Record]) -> Vec<u8> {
    // The output-length field excludes the status word: that is where Linux's record
    // parser counts from (44 + 24 * (i + 1) <= out_length) and matches ACPI's wording.
    let out_length = (STATUS_HEADER - 4 + records.len() * RECORD_SIZE) as u32;
    let mut out = Output(Vec::with_capacity(STATUS_HEADER + records.len() * RECORD_SIZE))
        .u32(status)
        .u32(out_length)
        .u64(h.spa)
        .u64(h.len)
        .u64(h.restart_spa)
        .u64(h.restart_len)
        .u16(h.ars_type)
        .u16(h.flags)
        .u32(records.len() as u32);
    for r in records {
        out = out.u32(r.handle).u32(0).u64(r.spa).u64(r.len);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A full page must fit the mailbox's output area.
    const _: () = assert!(STATUS_HEADER + RECORDS_PER_PAGE * RECORD_SIZE <= MAX_OUTPUT);

    #[test]
    fn page_capacity() {
        assert_eq!(RECORDS_PER_PAGE, 168);
    }

    #[test]
    fn duration_scales_with_rate() {
        assert_eq!(scrub_duration(1 << 30, 2 << 30), Duration::from_millis(500));
        assert_eq!(scrub_duration(u64::MAX, 1), Duration::from_nanos(u64::MAX));
        assert_eq!(scrub_duration(10, 0), Duration::from_secs(10));
    }

    #[test]
    fn busy_until_done() {
        let mut ars = ArsEngine::default();
        let req = ScrubRequest { window: 0, spa: 0, len: 1000, ars_type: TYPE_PERSISTENT, short: false };
        assert_eq!(ars.start(req, Duration::ZERO, 100), Ok(Duration::from_secs(10)));
        assert!(ars.running(Duration::from_secs(9)));
        assert_eq!(ars.start(req, Duration::from_secs(9), 100), Err(ArsError::Busy));
        assert!(!ars.running(Duration::from_secs(10)));
        let short = ScrubRequest { short: true, ..req };
        assert_eq!(ars.start(short, Duration::from_secs(10), 100), Ok(Duration::ZERO));
        assert!(!ars.running(Duration::from_secs(10)));
    }

    #[test]
    fn injected_tracking() {
        let mut ars = ArsEngine::default();
        ars.note_injected(1, 0, 512).unwrap();
        ars.forget_injected(1, 256, 256);
        assert_eq!(ars.injected(1).unwrap().iter().collect::<Vec<_>>(), vec![(0, 256)]);
        assert!(ars.injected(0).is_none());
    }
}
