//! `GET`/`PUT /dimms/{i}/firmware` against the fake backend over a real platform: the
//! host provokes failures the guest's firmware `_DSM` calls then meet; bad requests
//! name the field.

mod api_support;

use api_support::start;
use nvdimm_model::dsm::INTEL_UUID;
use nvdimm_model::mailbox::DsmRequest;
use serde_json::json;

fn guest_call(vm: &api_support::Vm, function: u32, input: Vec<u8>) -> Vec<u8> {
    let mut p = vm.backend.platform_lock();
    let handle = p.dimms()[0].handle();
    p.call_dsm(&DsmRequest { handle, uuid: INTEL_UUID, revision: 2, function, input })
}

#[test]
fn the_host_provokes_firmware_failures_the_guest_then_meets() {
    use nvdimm_model::dsm_firmware::FN_START_UPDATE;
    let vm = start();
    let fw = vm.get("/dimms/0/firmware").body;
    assert_eq!((fw["update"].as_str(), fw["running_version"].as_u64()), (Some("idle"), Some(nvdimm_model::firmware::FACTORY_VERSION)));
    let fw = vm.ok("PUT", "/dimms/0/firmware", Some(json!({"fail_next": "busy", "verify_time_ms": 250})));
    assert_eq!((fw["pending_fault"].as_str(), fw["verify_time_ms"].as_u64()), (Some("busy"), Some(250)));
    assert_eq!(guest_call(&vm, FN_START_UPDATE, vec![])[..4], 0x1_0007u32.to_le_bytes(), "busy, once");
    assert_eq!(guest_call(&vm, FN_START_UPDATE, vec![])[..4], 0u32.to_le_bytes());
    assert_eq!(vm.get("/dimms/0/firmware").body["update"], "receiving");
    for (body, words) in [
        (json!({}), "give at least one"),
        (json!({"fail_next": "melt"}), "unknown variant `melt`"),
        (json!({"fail_next": "busy", "cancel_fault": true}), "not both"),
        (json!({"verify_time_ms": 600000}), "above the 60000 ms"),
    ] {
        let message = vm.fails("PUT", "/dimms/0/firmware", Some(body.clone()), 400);
        assert!(message.contains(words), "{body}: {message}");
    }
}
