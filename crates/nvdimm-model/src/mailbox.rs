//! The DSM transport ABI shared by the KVM and QEMU TCG backends.
//!
//! The guest's AML (see `aml.rs`) fills a mailbox in guest RAM, then stores a
//! sequence number to the doorbell word. The host copies the request out, answers
//! it, writes the output and finally stores the same sequence number to the
//! completion word, which the AML polls. Layout (all little-endian u32 unless noted):
//!
//! | offset | field |
//! |---|---|
//! | 0x000 | NFIT device handle (0 = root device) |
//! | 0x004 | revision (`_DSM` Arg1) |
//! | 0x008 | function index (`_DSM` Arg2) |
//! | 0x00C | input length in bytes |
//! | 0x010 | 16-byte UUID, exactly the bytes of `_DSM` Arg0 |
//! | 0x020 | output length in bytes (host writes) |
//! | 0x024 | completion: sequence number of the last answered call (host writes, last) |
//! | 0x028 | doorbell slot, used when the doorbell lives in RAM (TCG) |
//! | 0x030 | root Notify 0x80 raised count (host increments) |
//! | 0x034 | root Notify 0x81 raised count (host increments) |
//! | 0x038 | root Notify 0x80 seen count (AML writes) |
//! | 0x03C | root Notify 0x81 seen count (AML writes) |
//! | 0x040 | DIMM Notify 0x81 raised counts, one u32 per DIMM in configuration order (host) |
//! | 0x0C0 | DIMM Notify 0x81 seen counts, one u32 per DIMM (AML) |
//!
//! Notifications are counters, each word with one writer: the host increments a
//! "raised" word, `NEVT` notifies when it differs from the "seen" word and copies it
//! there. A set-bit/clear-bit word would need a read-modify-write by the AML that loses
//! a bit the host sets in between.
//! | 0x1000 | input bytes (up to 4096) |
//! | 0x2000 | output bytes (up to 4096) |

use thiserror::Error;

pub const MAILBOX_SIZE: u64 = 0x3000;
/// The mailbox's header as a type (all little-endian): the offset constants below are
/// its fields' offsets. Both sides of the mailbox run concurrently, so it is never read
/// or written as a whole: each word is accessed on its own (volatile on the host, AML
/// field accesses in the guest), and the type only fixes where each word is.
#[repr(C)]
pub struct MailboxHeader {
    /// NFIT device handle (0 = root device).
    pub handle: u32,
    /// `_DSM` Arg1.
    pub revision: u32,
    /// `_DSM` Arg2.
    pub function: u32,
    pub input_len: u32,
    /// Exactly the bytes of `_DSM` Arg0.
    pub uuid: [u8; 16],
    /// Host writes.
    pub output_len: u32,
    /// Sequence number of the last answered call (host writes, last).
    pub completion: u32,
    /// Used when the doorbell lives in RAM (TCG).
    pub doorbell_slot: u32,
    _reserved: u32,
    pub notify_root_fit_raised: u32,
    pub notify_root_errors_raised: u32,
    pub notify_root_fit_seen: u32,
    pub notify_root_errors_seen: u32,
    pub notify_dimm_raised: [u32; 32],
    pub notify_dimm_seen: [u32; 32],
}

use std::mem::offset_of;
pub const HANDLE: usize = offset_of!(MailboxHeader, handle);
pub const REVISION: usize = offset_of!(MailboxHeader, revision);
pub const FUNCTION: usize = offset_of!(MailboxHeader, function);
pub const INPUT_LEN: usize = offset_of!(MailboxHeader, input_len);
pub const UUID: usize = offset_of!(MailboxHeader, uuid);
pub const OUTPUT_LEN: usize = offset_of!(MailboxHeader, output_len);
pub const COMPLETION: usize = offset_of!(MailboxHeader, completion);
pub const DOORBELL_SLOT: usize = offset_of!(MailboxHeader, doorbell_slot);
pub const NOTIFY_ROOT_FIT_RAISED: usize = offset_of!(MailboxHeader, notify_root_fit_raised);
pub const NOTIFY_ROOT_ERRORS_RAISED: usize = offset_of!(MailboxHeader, notify_root_errors_raised);
pub const NOTIFY_ROOT_FIT_SEEN: usize = offset_of!(MailboxHeader, notify_root_fit_seen);
pub const NOTIFY_ROOT_ERRORS_SEEN: usize = offset_of!(MailboxHeader, notify_root_errors_seen);
pub const NOTIFY_DIMM_RAISED: usize = offset_of!(MailboxHeader, notify_dimm_raised);
pub const NOTIFY_DIMM_SEEN: usize = offset_of!(MailboxHeader, notify_dimm_seen);
// The ABI the AML (aml.rs), the bare-metal programs (firmware/include) and the docs
// use: moving a field is a compatibility break, so the offsets are pinned.
const _: () = assert!(
    HANDLE == 0x00
        && REVISION == 0x04
        && FUNCTION == 0x08
        && INPUT_LEN == 0x0C
        && UUID == 0x10
        && OUTPUT_LEN == 0x20
        && COMPLETION == 0x24
        && DOORBELL_SLOT == 0x28
        && NOTIFY_ROOT_FIT_RAISED == 0x30
        && NOTIFY_ROOT_ERRORS_RAISED == 0x34
        && NOTIFY_ROOT_FIT_SEEN == 0x38
        && NOTIFY_ROOT_ERRORS_SEEN == 0x3C
        && NOTIFY_DIMM_RAISED == 0x40
        && NOTIFY_DIMM_SEEN == 0xC0
        && std::mem::size_of::<MailboxHeader>() <= INPUT
);
/// DIMMs with a notification counter pair (the SSDT names DIMMs NV00..NV1F).
pub const NOTIFY_MAX_DIMMS: usize = (NOTIFY_DIMM_SEEN - NOTIFY_DIMM_RAISED) / 4;
const _: () = assert!(NOTIFY_MAX_DIMMS >= crate::config::MAX_DIMMS && NOTIFY_DIMM_SEEN + 4 * NOTIFY_MAX_DIMMS <= INPUT);

/// The word pair of one notification: the host increments `raised`, the AML copies it
/// to `seen` when it notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyCounter {
    pub raised: usize,
    pub seen: usize,
}

/// The counter of root notification `code` (0x80 table changed, 0x81 new errors).
pub fn root_notify_counter(code: u8) -> Option<NotifyCounter> {
    match code {
        crate::events::NOTIFY_ROOT_FIT_CHANGED => {
            Some(NotifyCounter { raised: NOTIFY_ROOT_FIT_RAISED, seen: NOTIFY_ROOT_FIT_SEEN })
        }
        crate::events::NOTIFY_ROOT_NEW_ERRORS => {
            Some(NotifyCounter { raised: NOTIFY_ROOT_ERRORS_RAISED, seen: NOTIFY_ROOT_ERRORS_SEEN })
        }
        _ => None,
    }
}

/// The health-notification (0x81) counter of the DIMM at `index` in configuration order.
pub fn dimm_notify_counter(index: usize) -> Option<NotifyCounter> {
    (index < NOTIFY_MAX_DIMMS)
        .then(|| NotifyCounter { raised: NOTIFY_DIMM_RAISED + 4 * index, seen: NOTIFY_DIMM_SEEN + 4 * index })
}
pub const INPUT: usize = 0x1000;
pub const OUTPUT: usize = 0x2000;
pub const MAX_INPUT: usize = 0x1000;
pub const MAX_OUTPUT: usize = 0x1000;
/// How many 10 us stalls the AML waits for completion before giving up: about 10 s of
/// guest time, well inside ACPICA's 30 s limit on one `While` loop (a loop that hits that
/// limit aborts the method instead of returning our time-out status). A real call under
/// TCG takes well under a millisecond.
pub const AML_POLL_LIMIT: u32 = 1_000_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MailboxError {
    #[error("guest declared {0} input bytes; the mailbox holds at most 4096")]
    InputTooLong(u32),
}

/// Guest memory holding the mailbox. Backends implement it over their mapping
/// (with volatile copies where the guest runs concurrently); tests use a `Vec<u8>`.
pub trait MailboxMemory {
    /// Copies `buf.len()` bytes at `offset` from the mailbox.
    fn read_bytes(&self, offset: usize, buf: &mut [u8]);
    /// Copies `data` to the mailbox at `offset`.
    fn write_bytes(&mut self, offset: usize, data: &[u8]);

    fn read_u32(&self, offset: usize) -> u32 {
        let mut b = [0; 4];
        self.read_bytes(offset, &mut b);
        u32::from_le_bytes(b)
    }
    fn write_u32(&mut self, offset: usize, value: u32) {
        self.write_bytes(offset, &value.to_le_bytes());
    }
}

impl MailboxMemory for [u8] {
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self[offset..offset + buf.len()]);
    }
    fn write_bytes(&mut self, offset: usize, data: &[u8]) {
        self[offset..offset + data.len()].copy_from_slice(data);
    }
}

impl MailboxMemory for Vec<u8> {
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        self.as_slice().read_bytes(offset, buf)
    }
    fn write_bytes(&mut self, offset: usize, data: &[u8]) {
        self.as_mut_slice().write_bytes(offset, data)
    }
}

/// One `_DSM` call, copied out of guest memory so the guest cannot change it mid-call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsmRequest {
    pub handle: u32,
    pub uuid: [u8; 16],
    pub revision: u32,
    pub function: u32,
    pub input: Vec<u8>,
}

impl DsmRequest {
    /// Copies the request out of the mailbox. The declared length is checked after
    /// the copy of the header, and only that many input bytes are read.
    pub fn read_from(mem: &dyn MailboxMemory) -> Result<Self, MailboxError> {
        let mut header = [0u8; 0x20];
        mem.read_bytes(0, &mut header);
        let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        let input_len = word(INPUT_LEN);
        if input_len as usize > MAX_INPUT {
            return Err(MailboxError::InputTooLong(input_len));
        }
        let mut input = vec![0; input_len as usize];
        mem.read_bytes(INPUT, &mut input);
        Ok(DsmRequest {
            handle: word(HANDLE),
            uuid: header[UUID..UUID + 16].try_into().expect("16 bytes"),
            revision: word(REVISION),
            function: word(FUNCTION),
            input,
        })
    }

    /// Writes this request the way the AML does (used by tests and bare-metal guests' hosts).
    pub fn write_to(&self, mem: &mut dyn MailboxMemory) {
        mem.write_u32(HANDLE, self.handle);
        mem.write_u32(REVISION, self.revision);
        mem.write_u32(FUNCTION, self.function);
        mem.write_u32(INPUT_LEN, self.input.len() as u32);
        mem.write_bytes(UUID, &self.uuid);
        mem.write_bytes(INPUT, &self.input[..self.input.len().min(MAX_INPUT)]);
    }
}

/// Writes the answer, then the completion word. `output` longer than the mailbox
/// is a device-model bug, so it is cut rather than trusted.
pub fn write_response(mem: &mut dyn MailboxMemory, output: &[u8], sequence: u32) {
    let output = &output[..output.len().min(MAX_OUTPUT)];
    mem.write_bytes(OUTPUT, output);
    mem.write_u32(OUTPUT_LEN, output.len() as u32);
    std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
    mem.write_u32(COMPLETION, sequence);
}

/// Reads the answer the host wrote (what the AML returns to the OS).
pub fn read_response(mem: &dyn MailboxMemory) -> Vec<u8> {
    let len = (mem.read_u32(OUTPUT_LEN) as usize).min(MAX_OUTPUT);
    let mut out = vec![0; len];
    mem.read_bytes(OUTPUT, &mut out);
    out
}

#[cfg(test)]
mod notify_counter_tests {
    use super::*;
    use crate::events::{Notification, NotifyTarget, NOTIFY_DIMM_HEALTH, NOTIFY_ROOT_FIT_CHANGED, NOTIFY_ROOT_NEW_ERRORS};
    use crate::NvdimmPlatform;

    #[test]
    fn every_notification_has_its_own_pair_of_single_writer_words() {
        let fit = root_notify_counter(NOTIFY_ROOT_FIT_CHANGED).unwrap();
        let errors = root_notify_counter(NOTIFY_ROOT_NEW_ERRORS).unwrap();
        assert_eq!(fit, NotifyCounter { raised: 0x30, seen: 0x38 });
        assert_eq!(errors, NotifyCounter { raised: 0x34, seen: 0x3C });
        assert_eq!(root_notify_counter(0x82), None);
        assert_eq!(dimm_notify_counter(0), Some(NotifyCounter { raised: 0x40, seen: 0xC0 }));
        assert_eq!(dimm_notify_counter(31), Some(NotifyCounter { raised: 0xBC, seen: 0x13C }));
        assert_eq!(dimm_notify_counter(32), None);
        // No word is both a raised and a seen counter, and none overlaps the request.
        let mut words: Vec<usize> = vec![fit.raised, fit.seen, errors.raised, errors.seen];
        words.extend((0..32).flat_map(|i| {
            let c = dimm_notify_counter(i).unwrap();
            [c.raised, c.seen]
        }));
        let count = words.len();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), count);
        assert!(words.iter().all(|&w| w > DOORBELL_SLOT && w + 4 <= INPUT));
    }

    #[test]
    fn the_platform_maps_a_dimm_handle_to_its_counter() {
        let platform = NvdimmPlatform::example();
        let handle = platform.dimms()[1].handle();
        let n = Notification { target: NotifyTarget::Dimm { handle }, code: NOTIFY_DIMM_HEALTH };
        assert_eq!(platform.notify_counter(&n), dimm_notify_counter(1));
        let stranger = Notification { target: NotifyTarget::Dimm { handle: 0xdead }, code: NOTIFY_DIMM_HEALTH };
        assert_eq!(platform.notify_counter(&stranger), None);
        let root = Notification { target: NotifyTarget::Root, code: NOTIFY_ROOT_NEW_ERRORS };
        assert_eq!(platform.notify_counter(&root), root_notify_counter(NOTIFY_ROOT_NEW_ERRORS));
    }
}
