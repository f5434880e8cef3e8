//! The doorbell driven as the guest's AML drives it, without KVM: fill the mailbox in
//! guest RAM, store the sequence number, read the answer.

use nvdimm_model::dsm::INTEL_UUID;
use nvdimm_model::event_log::EventKind;
use nvdimm_model::mailbox::{COMPLETION, FUNCTION, HANDLE, INPUT_LEN, OUTPUT, OUTPUT_LEN, REVISION, UUID};

use super::*;
use crate::test_rig::{rig, Rig};

fn doorbell(rig: &Rig) -> (Doorbell, Arc<AtomicU64>, u64) {
    let rings = Arc::new(AtomicU64::new(0));
    let bell = Doorbell::new(rig.platform.clone(), rig.memory.clone(), rings.clone());
    (bell, rings, rig.machine.memory_map.layout.mailbox)
}

fn put_u32(rig: &Rig, at: u64, value: u32) {
    rig.memory.write_ram(at, &value.to_le_bytes()).unwrap();
}

fn get_u32(rig: &Rig, at: u64) -> u32 {
    let mut b = [0u8; 4];
    rig.memory.read_ram(at, &mut b).unwrap();
    u32::from_le_bytes(b)
}

/// The request fields of an Intel-family call on DIMM 0.
fn request(rig: &Rig, mailbox: u64, function: u32, input_len: u32) {
    let handle = rig.machine.platform.dimms[0].handle;
    put_u32(rig, mailbox + HANDLE as u64, handle);
    put_u32(rig, mailbox + REVISION as u64, 1);
    put_u32(rig, mailbox + FUNCTION as u64, function);
    put_u32(rig, mailbox + INPUT_LEN as u64, input_len);
    rig.memory.write_ram(mailbox + UUID as u64, &INTEL_UUID).unwrap();
}

#[test]
fn a_rung_call_is_answered_before_the_store_returns() {
    let rig = rig(false);
    let (mut bell, rings, mailbox) = doorbell(&rig);
    request(&rig, mailbox, 0, 0);
    assert_eq!(bell.write(0, &7u32.to_le_bytes()), Action::DsmServed, "the run loop re-plans and notifies after it");
    assert_eq!(get_u32(&rig, mailbox + COMPLETION as u64), 7, "completion carries the sequence number");
    let len = get_u32(&rig, mailbox + OUTPUT_LEN as u64);
    assert!((1..=8).contains(&len), "function 0 answers with its supported-functions mask ({len} bytes)");
    let mut mask = vec![0u8; len as usize];
    rig.memory.read_ram(mailbox + OUTPUT as u64, &mut mask).unwrap();
    assert_eq!(mask[0] & 1, 1, "bit 0: functions are supported ({mask:x?})");
    assert_eq!(rings.load(Ordering::Relaxed), 1);
    let events = rig.platform.lock_unpoisoned().events_since(0);
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::Dsm(r) if r.family == "intel" && r.function == 0)),
        "{events:?}"
    );
}

#[test]
fn stores_that_are_not_a_32_bit_doorbell_word_call_nothing() {
    let rig = rig(false);
    let (mut bell, rings, mailbox) = doorbell(&rig);
    request(&rig, mailbox, 0, 0);
    bell.write(0, &[7, 0]);
    bell.write(0, &7u64.to_le_bytes());
    bell.write(4, &7u32.to_le_bytes());
    assert_eq!(get_u32(&rig, mailbox + COMPLETION as u64), 0);
    assert_eq!(rings.load(Ordering::Relaxed), 0);
    let mut read = [0xAAu8; 4];
    bell.read(0, &mut read);
    assert_eq!(read, [0; 4], "the doorbell reads as zero");
}

#[test]
fn an_oversized_input_length_is_refused_and_still_completed() {
    let rig = rig(false);
    let (mut bell, _, mailbox) = doorbell(&rig);
    request(&rig, mailbox, 1, u32::MAX);
    bell.write(0, &9u32.to_le_bytes());
    // The guest must never wait forever: a refused call completes with a status.
    assert_eq!(get_u32(&rig, mailbox + COMPLETION as u64), 9);
    assert_eq!(get_u32(&rig, mailbox + OUTPUT_LEN as u64), 4);
    let status = get_u32(&rig, mailbox + OUTPUT as u64);
    assert_eq!(status, nvdimm_model::dsm::intel_status::INVALID_INPUT);
}
