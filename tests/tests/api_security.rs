//! `GET`/`PUT /dimms/{i}/security` against the fake backend over a real platform: the
//! host prepares states, the guest's `_DSM` calls see them, bad requests change nothing.

mod api_support;

use api_support::start;
use nvdimm_model::dsm::INTEL_UUID;
use nvdimm_model::dsm_security::{FN_GET_SECURITY_STATE, FN_UNLOCK_UNIT};
use nvdimm_model::mailbox::DsmRequest;
use serde_json::json;
use vnvdimm_control::types::SecurityResponse;

fn guest_call(vm: &api_support::Vm, function: u32, input: Vec<u8>) -> Vec<u8> {
    let mut p = vm.backend.platform_lock();
    let handle = p.dimms()[0].handle();
    p.call_dsm(&DsmRequest { handle, uuid: INTEL_UUID, revision: 2, function, input })
}

fn padded(text: &str) -> Vec<u8> {
    let mut p = text.as_bytes().to_vec();
    p.resize(32, 0);
    p
}

#[test]
fn the_host_locks_a_dimm_and_the_guest_unlocks_it_with_the_passphrase() {
    let vm = start();
    let s: SecurityResponse = serde_json::from_value(vm.get("/dimms/0/security").body).unwrap();
    assert_eq!((s.dimm, s.state.as_str(), s.passphrase_set), (0, "disabled", false));
    let body = vm.ok("PUT", "/dimms/0/security", Some(json!({"passphrase": "s3cret", "locked": true, "overwrite_time_ms": 2500})));
    let s: SecurityResponse = serde_json::from_value(body).unwrap();
    assert_eq!((s.state.as_str(), s.locked, s.overwrite_time_ms), ("locked", true, 2500));
    // The guest's Get Security State: ENABLED | LOCKED.
    assert_eq!(guest_call(&vm, FN_GET_SECURITY_STATE, vec![])[8], 0x06);
    assert_eq!(guest_call(&vm, FN_UNLOCK_UNIT, padded("wrong"))[..4], 11u32.to_le_bytes());
    assert_eq!(guest_call(&vm, FN_UNLOCK_UNIT, padded("s3cret"))[..4], 0u32.to_le_bytes());
    let s: SecurityResponse = serde_json::from_value(vm.get("/dimms/0/security").body).unwrap();
    assert_eq!((s.state.as_str(), s.failed_attempts), ("unlocked", 1));
    let s: SecurityResponse =
        serde_json::from_value(vm.ok("PUT", "/dimms/0/security", Some(json!({"frozen": true, "reset_attempts": true})))).unwrap();
    assert_eq!((s.state.as_str(), s.failed_attempts), ("frozen", 0));
    let s: SecurityResponse =
        serde_json::from_value(vm.ok("PUT", "/dimms/0/security", Some(json!({"remove_passphrase": true})))).unwrap();
    assert_eq!((s.state.as_str(), s.passphrase_set), ("disabled", false));
}

#[test]
fn bad_security_requests_name_the_field_and_change_nothing() {
    let vm = start();
    let before = vm.get("/dimms/0/security").body;
    for (body, status, words) in [
        (json!({}), 400, "give at least one"),
        (json!({"locked": true}), 400, "needs a passphrase"),
        (json!({"passphrase": ""}), 400, "passphrase: a passphrase is 1 to 32 bytes"),
        (json!({"passphrase": "x".repeat(33)}), 400, "passphrase: a passphrase is 1 to 32 bytes"),
        (json!({"passphrase_hex": "zz"}), 400, "passphrase_hex: expected 64 hex digits"),
        (json!({"passphrase": "a", "remove_passphrase": true}), 400, "give one of"),
        (json!({"passphrase": "a", "colour": "red"}), 400, "unknown field `colour`"),
    ] {
        let message = vm.fails("PUT", "/dimms/0/security", Some(body.clone()), status);
        assert!(message.contains(words), "{body}: {message}");
    }
    assert!(vm.fails("GET", "/dimms/7/security", None, 404).contains("no nvdimm #7"));
    assert_eq!(vm.get("/dimms/0/security").body, before);
}

