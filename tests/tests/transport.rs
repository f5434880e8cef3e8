//! The DSM transport in-process: requests are written into a simulated guest mailbox
//! exactly as the AML's NCAL method writes them, the doorbell is rung, and the answer is
//! read back from the output area, as the AML reads it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nvdimm_model::clock::ManualClock;
use nvdimm_model::dsm::{INTEL_UUID, ROOT_UUID};
use nvdimm_model::health::{SmartHealth, Temperature};
use nvdimm_model::mailbox::{self, MailboxMemory, MAILBOX_SIZE};
use nvdimm_model::{NvdimmPlatform, PlatformConfig, PlatformLayout};

const MAILBOX_GPA: u64 = 0x3FF0_0000;

/// A guest's view of the mailbox plus the platform behind the doorbell.
struct Guest {
    mem: Vec<u8>,
    platform: NvdimmPlatform,
    clock: Arc<ManualClock>,
    sequence: u32,
}

impl Guest {
    fn new() -> Self {
        let config = PlatformConfig::default_in(Path::new("/unused"));
        let layout = PlatformLayout::packed(
            &config,
            4 << 30,
            1 << 30,
            0xFE00_0000,
            MAILBOX_GPA,
            MAILBOX_GPA + mailbox::DOORBELL_SLOT as u64,
        );
        let clock = Arc::new(ManualClock::default());
        let platform = NvdimmPlatform::ephemeral_with_clock(config, layout, clock.clone()).expect("valid platform");
        Guest { mem: vec![0; MAILBOX_SIZE as usize], platform, clock, sequence: 0 }
    }

    /// What NCAL does: header, UUID, input length and input, then the doorbell; then
    /// wait for completion and return `Mid(OBUF, 0, OLEN)`.
    fn call_raw(&mut self, handle: u32, uuid: [u8; 16], revision: u32, function: u32, input: &[u8], declared: u32) -> Vec<u8> {
        self.sequence = (self.sequence & 0xFFFF) + 1;
        self.mem.write_u32(mailbox::HANDLE, handle);
        self.mem.write_u32(mailbox::REVISION, revision);
        self.mem.write_u32(mailbox::FUNCTION, function);
        self.mem.write_bytes(mailbox::UUID, &uuid);
        self.mem.write_u32(mailbox::INPUT_LEN, declared);
        if input.len() <= mailbox::MAX_INPUT {
            self.mem.write_bytes(mailbox::INPUT, input);
        }
        self.mem.write_u32(mailbox::DOORBELL_SLOT, self.sequence);
        self.platform.serve_mailbox(&mut self.mem, self.sequence);
        assert_eq!(self.mem.read_u32(mailbox::COMPLETION), self.sequence, "call was not completed");
        mailbox::read_response(&self.mem)
    }

    fn call(&mut self, handle: u32, uuid: [u8; 16], revision: u32, function: u32, input: &[u8]) -> Vec<u8> {
        self.call_raw(handle, uuid, revision, function, input, input.len() as u32)
    }

    fn root(&mut self, function: u32, input: &[u8]) -> Vec<u8> {
        self.call(0, ROOT_UUID, 1, function, input)
    }

    fn intel(&mut self, handle: u32, function: u32, input: &[u8]) -> Vec<u8> {
        let revision = if function >= 11 { 2 } else { 1 };
        self.call(handle, INTEL_UUID, revision, function, input)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn le(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn labels_written_with_f6_read_back_identical_with_f5() {
    let mut g = Guest::new();
    let handle = g.platform.dimms()[1].handle();

    let size = g.intel(handle, 4, &[]);
    assert_eq!(u32_at(&size, 0), 0, "label size status");
    let area = u32_at(&size, 4);
    let max = u32_at(&size, 8);
    assert_eq!(area, 128 * 1024);
    assert!(max > 0 && max as usize + 8 <= mailbox::MAX_INPUT, "max transfer {max} must fit the mailbox");

    // Write the whole area in max-transfer chunks with a pattern, as Linux does.
    let pattern: Vec<u8> = (0..area).map(|i| (i.wrapping_mul(7) ^ (i >> 8)) as u8).collect();
    for offset in (0..area).step_by(max as usize) {
        let len = max.min(area - offset);
        let data = &pattern[offset as usize..(offset + len) as usize];
        let out = g.intel(handle, 6, &le(&[&offset.to_le_bytes(), &len.to_le_bytes(), data]));
        assert_eq!(u32_at(&out, 0), 0, "set label at {offset}");
    }
    let mut read = Vec::new();
    for offset in (0..area).step_by(max as usize) {
        let len = max.min(area - offset);
        let out = g.intel(handle, 5, &le(&[&offset.to_le_bytes(), &len.to_le_bytes()]));
        assert_eq!(u32_at(&out, 0), 0, "get label at {offset}");
        assert_eq!(out.len(), 4 + len as usize, "get label returns exactly the requested bytes");
        read.extend_from_slice(&out[4..]);
    }
    assert_eq!(read, pattern);
    // The other DIMM's area is untouched.
    let other = g.platform.dimms()[0].handle();
    let out = g.intel(other, 5, &le(&[&0u32.to_le_bytes(), &16u32.to_le_bytes()]));
    assert_eq!(&out[4..], &[0u8; 16]);
}

#[test]
fn injected_errors_come_back_from_ars_after_start() {
    let mut g = Guest::new();
    let window = g.platform.dimms()[0].spa_range();
    let handle = g.platform.dimms()[0].handle();
    let bad = window.start + 0x10_0000;

    // Inject with notify: the platform asks for a root 0x81 notification.
    let out = g.root(7, &le(&[&bad.to_le_bytes(), &512u64.to_le_bytes(), &[1u8]]));
    assert_eq!(u32_at(&out, 0), 0, "inject status");
    let notes = g.platform.take_notifications();
    assert!(notes.iter().any(|n| n.code == 0x81), "inject with notify requests Notify 0x81: {notes:?}");

    // Start a full ARS over the window; it is in progress until the clock moves.
    let len = window.end - window.start;
    let start = le(&[&window.start.to_le_bytes(), &len.to_le_bytes(), &2u16.to_le_bytes(), &[0u8], &[0u8; 5]]);
    let out = g.root(2, &start);
    assert_eq!(u32_at(&out, 0), 0, "start ARS status");
    let out = g.root(3, &[]);
    assert_eq!(u32_at(&out, 0), 1 << 16, "ARS in progress right after start");

    g.clock.advance(Duration::from_secs(60));
    let out = g.root(3, &[]);
    assert_eq!(u32_at(&out, 0), 0, "ARS done");
    assert_eq!(u32_at(&out, 4) as usize + 4, out.len(), "output length field counts the bytes after the status");
    let records = u32_at(&out, 44) as usize;
    assert_eq!(records, 1);
    assert_eq!(u32_at(&out, 48), handle);
    assert_eq!(u64_at(&out, 56), bad);
    assert_eq!(u64_at(&out, 64), 512);

    // Clearing it through the guest removes it from the next scrub.
    let out = g.root(4, &le(&[&bad.to_le_bytes(), &512u64.to_le_bytes()]));
    assert_eq!(u32_at(&out, 0), 0, "clear status");
    assert_eq!(u64_at(&out, 8), 512, "cleared length");
    assert_eq!(u32_at(&g.root(2, &start), 0), 0);
    g.clock.advance(Duration::from_secs(60));
    let out = g.root(3, &[]);
    assert_eq!(u32_at(&out, 44), 0, "no records after clear");
}

#[test]
fn smart_values_set_by_the_host_come_back_through_f1() {
    let mut g = Guest::new();
    let handle = g.platform.dimms()[0].handle();
    let health = SmartHealth {
        spares_percent: 42,
        life_used_percent: 17,
        media_temperature: Temperature::from_celsius(71).unwrap(),
        controller_temperature: Temperature::from_celsius(-5).unwrap(),
        unsafe_shutdown_count: 9,
        ..SmartHealth::default()
    };
    g.platform.dimm_mut(0).unwrap().set_health(health).expect("host health is valid");

    let out = g.intel(handle, 1, &[]);
    assert_eq!(out.len(), 132, "SMART payload is 132 bytes");
    assert_eq!(u32_at(&out, 0), 0);
    assert_eq!(out[13], 42, "spares");
    assert_eq!(out[14], 17, "life used");
    assert_eq!(u16::from_le_bytes([out[16], out[17]]), 71 * 16, "media temperature in 1/16 C");
    assert_eq!(u16::from_le_bytes([out[18], out[19]]), 0x8000 | (5 * 16), "negative controller temperature");
    assert_eq!(u32_at(&out, 20), 9, "unsafe shutdown count");
}

#[test]
fn bad_requests_get_the_spec_status_codes() {
    let mut g = Guest::new();
    let handle = g.platform.dimms()[0].handle();

    // No such DIMM under the Intel family.
    assert_eq!(u32_at(&g.call(0xABCD, INTEL_UUID, 1, 1, &[]), 0), 2);
    // Unknown UUID: a one-byte zero buffer, whatever the function.
    assert_eq!(g.call(0, [0x11; 16], 1, 0, &[]), vec![0]);
    // Label read past the end of the area, and a read longer than the max transfer.
    let out = g.intel(handle, 5, &le(&[&(128 * 1024 - 8u32).to_le_bytes(), &16u32.to_le_bytes()]));
    assert_eq!(u32_at(&out, 0), 3, "label read past the end");
    let out = g.intel(handle, 5, &le(&[&0u32.to_le_bytes(), &8192u32.to_le_bytes()]));
    assert_eq!(u32_at(&out, 0), 3, "label read longer than max transfer");
    // Set label whose declared length disagrees with the data it carries.
    let out = g.intel(handle, 6, &le(&[&0u32.to_le_bytes(), &64u32.to_le_bytes(), &[0u8; 8]]));
    assert_eq!(u32_at(&out, 0), 3, "set label with short data");
    // Short buffers.
    assert_eq!(u32_at(&g.intel(handle, 5, &[1, 2, 3]), 0), 3, "short get label input");
    assert_eq!(u32_at(&g.root(2, &[0; 8]), 0), 2, "short start ARS input");
    assert_eq!(u32_at(&g.root(4, &[0; 4]), 0), 2, "short clear error input");
    // An address outside every DIMM window.
    assert_eq!(u32_at(&g.root(1, &le(&[&0x1000u64.to_le_bytes(), &0x1000u64.to_le_bytes()])), 0) & 0xFFFF, 2);
    // A declared input longer than the mailbox holds, for both families.
    assert_eq!(u32_at(&g.call_raw(0, ROOT_UUID, 1, 2, &[], 5000), 0), 2);
    assert_eq!(u32_at(&g.call_raw(handle, INTEL_UUID, 1, 6, &[], u32::MAX), 0), 3);
    // An unsupported function.
    assert_eq!(u32_at(&g.intel(handle, 9, &[]), 0), 1, "vendor-specific function is not supported");
}

#[test]
fn function_zero_masks_advertise_what_is_served() {
    let mut g = Guest::new();
    let handle = g.platform.dimms()[0].handle();
    let root = g.root(0, &[]);
    let root_mask = root.iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    assert_eq!(root_mask, 0x3bf, "root: functions 0-5 and 7-9");
    // Linux probes functions 11-30 with revision 2 and the others with revision 1.
    for (revision, functions) in [(1, &[1u32, 2, 3, 4, 5, 6, 10][..]), (2, &[17, 18][..])] {
        let out = g.call(handle, INTEL_UUID, revision, 0, &[]);
        let mask = out.iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        assert_ne!(mask & 1, 0, "revision {revision}: function 0 answers");
        for &f in functions {
            assert_ne!(mask & (1 << f), 0, "revision {revision}: function {f} advertised in {mask:#x}");
        }
    }
}
