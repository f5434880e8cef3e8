//! Every control API endpoint against a running server (FakeBackend over a real
//! ephemeral NvdimmPlatform), through the real client: what it answers, what it changes
//! in the device model, and which backend calls and events it causes.

mod api_support;

use std::os::unix::net::UnixListener;
use std::sync::Arc;

use api_support::{start, DIMM0_SPA, DIMM1_SPA, GIB};
use nvdimm_model::event_log::MachineCheckKind;
use nvdimm_model::events::{Notification, NotifyTarget};
use serde_json::{json, Value};
use vnvdimm_control::fake::{Call, FakeBackend};
use vnvdimm_control::types::{DimmSummary, HealthResponse, PoisonList, VmResponse};
use vnvdimm_control::{ApiClient, ApiError, ApiServer, BackendError, Capabilities, ClientError};

fn event_types(events: &Value) -> Vec<String> {
    events["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

#[test]
fn vm_info_reports_backend_and_platform() {
    let vm = start();
    let info: VmResponse = serde_json::from_value(vm.get("/vm").body).unwrap();
    assert_eq!(info.api_version, "v1");
    assert_eq!(info.backend, "fake");
    assert_eq!(info.state, vnvdimm_control::VmState::Running);
    assert_eq!((info.memory_bytes, info.cpus, info.dimm_count), (512 << 20, 1, 2));
    assert_eq!(info.persistence_domain, "cpu_cache");
    assert!(info.capabilities.action_optional_machine_check);
}

#[test]
fn dimms_list_their_identity_placement_and_counters() {
    let vm = start();
    vm.backend.set_flush_counts(vec![3, 7]);
    vm.ok("POST", "/poison", Some(json!({"dimm": 1, "offset": 8192, "length": 512})));
    let dimms: Vec<DimmSummary> = serde_json::from_value(vm.get("/dimms").body["dimms"].clone()).unwrap();
    assert_eq!(dimms.len(), 2);
    let platform = vm.backend.platform_config();
    for (i, d) in dimms.iter().enumerate() {
        assert_eq!(d.index, i);
        assert_eq!(d.handle, platform.dimms[i].handle);
        assert_eq!(d.ndctl_id, platform.dimms[i].identity.ndctl_id());
        assert_eq!(d.size, GIB);
        assert_eq!(d.label_size, platform.dimms[i].label_size);
        assert_eq!(d.health.last_shutdown, "clean");
    }
    assert_eq!((dimms[0].spa_base, dimms[1].spa_base), (DIMM0_SPA, DIMM1_SPA));
    assert_eq!((dimms[0].flush_count, dimms[1].flush_count), (3, 7));
    assert_eq!((dimms[0].poison_ranges, dimms[1].poison_ranges, dimms[1].poison_bytes), (0, 1, 512));
    let one: DimmSummary = serde_json::from_value(vm.get("/dimms/1").body).unwrap();
    assert_eq!(one, dimms[1]);
}

#[test]
fn poison_by_dimm_offset_is_recorded_listed_and_logged() {
    let vm = start();
    let added = vm.ok("POST", "/poison", Some(json!({"dimm": 0, "offset": "0x2000", "length": "4K"})));
    assert_eq!(
        added,
        json!({"dimm": 0, "offset": 0x2000, "length": 4096, "spa": DIMM0_SPA + 0x2000,
        "notified": false, "machine_check": "none", "spread": []})
    );
    let list: PoisonList = serde_json::from_value(vm.get("/dimms/0/poison").body).unwrap();
    assert_eq!(list.ranges.len(), 1);
    assert_eq!((list.ranges[0].offset, list.ranges[0].length, list.ranges[0].spa), (0x2000, 4096, DIMM0_SPA + 0x2000));
    assert_eq!(list.total_bytes, 4096);
    assert!(vm.get("/dimms/1/poison").body["ranges"].as_array().unwrap().is_empty());
    // No notify asked: the backend only re-plans memory.
    assert_eq!(vm.backend.calls(), vec![Call::PoisonChanged(0)]);
    let events = vm.get("/events").body;
    assert_eq!(event_types(&events), vec!["poison_added"]);
    assert_eq!(events["events"][0]["offset"], 0x2000);
}

/// Issue 10, point 9: many ranges in one request, recorded with one durable write per DIMM.
#[test]
fn a_batch_of_poison_ranges_is_recorded_listed_logged_and_notified_once() {
    let vm = start();
    let added = vm.ok(
        "POST",
        "/poison",
        Some(json!({"ranges": [
            {"dimm": 0, "offset": "0x2000", "length": "4K"},
            {"spa": DIMM1_SPA + 0x1000, "length": 512},
            {"dimm": 0, "offset": 0, "length": 4096}
        ], "notify": true})),
    );
    assert_eq!(
        added,
        json!({"ranges": [
            {"dimm": 0, "offset": 0x2000, "length": 4096, "spa": DIMM0_SPA + 0x2000},
            {"dimm": 1, "offset": 0x1000, "length": 512, "spa": DIMM1_SPA + 0x1000},
            {"dimm": 0, "offset": 0, "length": 4096, "spa": DIMM0_SPA}
        ], "notified": true})
    );
    let list: PoisonList = serde_json::from_value(vm.get("/dimms/0/poison").body).unwrap();
    assert_eq!(list.ranges.iter().map(|r| (r.offset, r.length)).collect::<Vec<_>>(), vec![(0, 4096), (0x2000, 4096)]);
    assert_eq!(vm.get("/dimms/1/poison").body["total_bytes"], 512);
    let calls = vm.backend.calls();
    assert_eq!(&calls[..2], &[Call::PoisonChanged(0), Call::PoisonChanged(1)]);
    assert!(matches!(&calls[2..], [Call::RaiseNotifications(n)] if n.len() == 1), "{calls:?}");
    assert_eq!(event_types(&vm.get("/events").body)[..3], ["poison_added", "poison_added", "poison_added"]);
}

#[test]
fn poison_by_spa_with_notify_raises_root_0x81() {
    let vm = start();
    let added = vm.ok("POST", "/poison", Some(json!({"spa": DIMM1_SPA + 0x10000, "length": 256, "notify": true})));
    assert_eq!((added["dimm"].as_u64(), added["offset"].as_u64()), (Some(1), Some(0x10000)));
    assert_eq!(added["notified"], true);
    assert_eq!(
        vm.backend.calls(),
        vec![
            Call::PoisonChanged(1),
            Call::RaiseNotifications(vec![Notification { target: NotifyTarget::Root, code: 0x81 }])
        ]
    );
    assert_eq!(event_types(&vm.get("/events").body), vec!["poison_added", "notify"]);
}

#[test]
fn poison_with_action_optional_machine_check_reaches_the_backend() {
    let vm = start();
    vm.ok(
        "POST",
        "/poison",
        Some(json!({"dimm": 1, "offset": 4096, "length": 64, "machine_check": "action_optional"})),
    );
    let gpa = DIMM1_SPA + 4096;
    assert_eq!(
        vm.backend.calls(),
        vec![Call::PoisonChanged(1), Call::MachineCheck { gpa, kind: MachineCheckKind::ActionOptional }]
    );
    let events = vm.get("/events").body;
    assert_eq!(event_types(&events), vec!["poison_added", "machine_check"]);
    assert_eq!(events["events"][1]["gpa"], gpa);
}

#[test]
fn a_backend_without_machine_checks_refuses_them_and_changes_nothing() {
    let vm = start();
    vm.backend.set_capabilities(Capabilities::default());
    let before = vm.snapshot();
    let msg = vm.fails(
        "POST",
        "/poison",
        Some(json!({"dimm": 0, "offset": 0, "length": 4096, "machine_check": "action_optional"})),
        501,
    );
    assert!(msg.contains("machine_check") && msg.contains("fake backend"), "{msg}");
    assert_eq!(vm.snapshot(), before);
    assert!(vm.backend.calls().is_empty());
}

#[test]
fn clearing_poison_reports_the_cleared_bytes() {
    let vm = start();
    vm.ok("POST", "/poison", Some(json!({"dimm": 0, "offset": 4096, "length": 4096})));
    let cleared = vm.ok("DELETE", "/poison", Some(json!({"dimm": 0, "offset": 0, "length": 6144})));
    assert_eq!(cleared["cleared_bytes"], 2048);
    let list: PoisonList = serde_json::from_value(vm.get("/dimms/0/poison").body).unwrap();
    assert_eq!((list.ranges[0].offset, list.ranges[0].length), (6144, 2048));
    let cleared = vm.ok("DELETE", "/poison", Some(json!({"spa": DIMM0_SPA + 6144, "length": 2048})));
    assert_eq!((cleared["dimm"].as_u64(), cleared["cleared_bytes"].as_u64()), (Some(0), Some(2048)));
    assert_eq!(vm.get("/dimms/0/poison").body["total_bytes"], 0);
    // A clean range: nothing to clear, nothing for the backend to re-plan.
    let cleared = vm.ok("DELETE", "/poison", Some(json!({"dimm": 1, "offset": 0, "length": 4096})));
    assert_eq!(cleared["cleared_bytes"], 0);
    assert_eq!(vm.backend.calls(), vec![Call::PoisonChanged(0), Call::PoisonChanged(0), Call::PoisonChanged(0)]);
    assert_eq!(event_types(&vm.get("/events").body), vec!["poison_added", "poison_cleared", "poison_cleared"]);
}

#[test]
fn health_get_shows_guest_view_host_values_and_thresholds() {
    let vm = start();
    let h: HealthResponse = serde_json::from_value(vm.get("/dimms/1/health").body).unwrap();
    assert_eq!(h.dimm, 1);
    assert_eq!(h.smart.state, nvdimm_model::health::HealthState::Ok);
    assert_eq!(h.smart, h.host);
    assert_eq!(h.notified, None);
}

#[test]
fn a_visible_health_change_raises_the_dimm_notification() {
    let vm = start();
    let h = vm.ok("PUT", "/dimms/1/health", Some(json!({"state": "critical", "spares_percent": 10})));
    assert_eq!(h["notified"], true);
    assert_eq!(h["smart"]["state"], "critical");
    assert_eq!(h["smart"]["spares_percent"], 10);
    let handle = vm.backend.platform_config().dimms[1].handle;
    assert_eq!(
        vm.backend.calls(),
        vec![Call::RaiseNotifications(vec![Notification { target: NotifyTarget::Dimm { handle }, code: 0x81 }])]
    );
    assert_eq!(vm.get("/dimms/1").body["health"]["state"], "critical");
    assert_eq!(vm.get("/dimms/0").body["health"]["state"], "ok");
    assert_eq!(event_types(&vm.get("/events").body), vec!["health_changed", "notify"]);
}

#[test]
fn an_invisible_health_change_is_applied_without_notification() {
    let vm = start();
    let h = vm.ok("PUT", "/dimms/0/health", Some(json!({"life_used_percent": 42, "media_temperature": 40.5})));
    assert_eq!(h["notified"], false);
    assert_eq!(
        (h["smart"]["life_used_percent"].as_u64(), h["smart"]["media_temperature"].as_f64()),
        (Some(42), Some(40.5))
    );
    assert!(vm.backend.calls().is_empty());
}

#[test]
fn thresholds_trip_alarms_the_guest_sees() {
    let vm = start();
    let h = vm.ok(
        "PUT",
        "/dimms/0/health",
        Some(json!({"spares_percent": 40, "thresholds": {"spares_percent": 50, "alarm_control": {"spares": true}}})),
    );
    assert_eq!(h["thresholds"]["spares_percent"], 50);
    assert_eq!(h["smart"]["alarm_trips"]["spares"], true);
    assert_eq!(h["host"]["alarm_trips"]["spares"], false);
    assert_eq!(h["notified"], true);
}

#[test]
fn shutdown_state_sets_count_and_dirty_flag() {
    let vm = start();
    let h = vm.ok("PUT", "/dimms/0/shutdown-state", Some(json!({"dirty_shutdown_count": 5, "last_shutdown_state": 1})));
    assert_eq!(
        (h["smart"]["unsafe_shutdown_count"].as_u64(), h["smart"]["last_shutdown_state"].as_u64()),
        (Some(5), Some(1))
    );
    assert_eq!(h["notified"], true);
    let d = vm.get("/dimms/0").body;
    assert_eq!(
        (d["health"]["unsafe_shutdown_count"].as_u64(), d["health"]["last_shutdown"].as_str()),
        (Some(5), Some("dirty"))
    );
    let h = vm.ok("PUT", "/dimms/0/shutdown-state", Some(json!({"last_shutdown_state": 0})));
    assert_eq!(
        (h["smart"]["unsafe_shutdown_count"].as_u64(), h["smart"]["last_shutdown_state"].as_u64()),
        (Some(5), Some(0))
    );
}

#[test]
fn ars_rate_reads_and_sets() {
    let vm = start();
    assert_eq!(vm.get("/ars").body, json!({"rate_bytes_per_sec": 2 * GIB, "running": false}));
    assert_eq!(vm.ok("PUT", "/ars", Some(json!({"rate_bytes_per_sec": "512M"})))["rate_bytes_per_sec"], 512 << 20);
    assert_eq!(vm.ok("PUT", "/ars", Some(json!({"rate_bytes_per_sec": 1000})))["rate_bytes_per_sec"], 1000);
    assert_eq!(vm.get("/ars").body["rate_bytes_per_sec"], 1000);
}

#[test]
fn events_since_returns_only_newer_events() {
    let vm = start();
    for offset in [0, 4096, 8192] {
        vm.ok("POST", "/poison", Some(json!({"dimm": 0, "offset": offset, "length": 512})));
    }
    let all = vm.get("/events").body;
    assert_eq!(all["last_seq"], 3);
    let seqs: Vec<u64> = all["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let newer = vm.get("/events?since=2").body;
    assert_eq!(newer["events"].as_array().unwrap().len(), 1);
    assert_eq!(newer["events"][0]["offset"], 8192);
    let none = vm.get("/events?since=3").body;
    assert_eq!(none, json!({"events": [], "last_seq": 3}));
}

#[test]
fn guest_dsm_calls_appear_in_the_event_log() {
    let vm = start();
    let request = nvdimm_model::mailbox::DsmRequest {
        handle: 0,
        uuid: nvdimm_model::dsm::ROOT_UUID,
        revision: 1,
        function: 0,
        input: Vec::new(),
    };
    vm.backend.platform_lock().call_dsm(&request);
    let events = vm.get("/events").body;
    assert_eq!(events["events"][0]["type"], "dsm");
    assert_eq!(events["events"][0]["family"], "root");
}

#[test]
fn power_off_stops_the_vm_once() {
    let vm = start();
    assert_eq!(vm.ok("PUT", "/vm/power-off", None), json!({"state": "stopped"}));
    assert_eq!(vm.get("/vm").body["state"], "stopped");
    assert_eq!(event_types(&vm.get("/events").body), vec!["power_off"]);
    let msg = vm.fails("PUT", "/vm/power-off", None, 409);
    assert!(msg.contains("already stopped"), "{msg}");
    assert_eq!(vm.backend.calls(), vec![Call::PowerOff]);
}

#[test]
fn backend_failures_map_to_5xx_and_409_with_context() {
    let vm = start();
    vm.backend.fail_next(BackendError::Failed("KVM_SET_USER_MEMORY_REGION: EINVAL".into()));
    let msg = vm.fails("POST", "/poison", Some(json!({"dimm": 0, "offset": 0, "length": 4096})), 500);
    assert!(msg.starts_with("the poison was recorded, but") && msg.contains("EINVAL"), "{msg}");
    vm.backend.fail_next(BackendError::Conflict("the guest is not running".into()));
    let msg = vm.fails("PUT", "/dimms/0/health", Some(json!({"state": "fatal"})), 409);
    assert!(msg.contains("not running"), "{msg}");
    vm.backend.fail_next(BackendError::Unsupported("power-off".into()));
    vm.fails("PUT", "/vm/power-off", None, 501);
}

#[test]
fn concurrent_clients_are_all_served() {
    let vm = start();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let client = ApiClient::new(&vm.socket);
            std::thread::spawn(move || {
                for i in 0..20u64 {
                    let body = json!({"dimm": t % 2, "offset": (t * 100 + i) * 4096, "length": 512});
                    let r = client.post("/poison", &body).unwrap();
                    assert_eq!(r.status, 200, "{}", r.body);
                    assert_eq!(client.get("/dimms").unwrap().status, 200);
                    assert_eq!(client.get("/events?since=0").unwrap().status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let ranges = |i| vm.get(&format!("/dimms/{i}/poison")).body["ranges"].as_array().unwrap().len();
    assert_eq!(ranges(0) + ranges(1), 160);
    assert_eq!(vm.get("/events").body["last_seq"], 160);
}

#[test]
fn the_server_replaces_stale_sockets_refuses_other_files_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let backend = || -> Arc<FakeBackend> { Arc::new(FakeBackend::with_default_platform()) };
    // A socket file nobody serves (a VMM that was killed) is replaced.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let server = ApiServer::start(&stale, backend()).unwrap();
    assert_eq!(ApiClient::new(&stale).get("/vm").unwrap().status, 200);
    // A live one is refused.
    let err = ApiServer::start(&stale, backend()).err().unwrap();
    assert!(matches!(err, ApiError::InUse { .. }), "{err}");
    drop(server);
    assert!(!stale.exists(), "dropping the server removes its socket");
    assert!(matches!(ApiClient::new(&stale).get("/vm"), Err(ClientError::NoSocket { .. })));
    // A regular file is never removed.
    let file = dir.path().join("file");
    std::fs::write(&file, b"keep me").unwrap();
    let err = ApiServer::start(&file, backend()).err().unwrap();
    assert!(matches!(err, ApiError::NotASocket { .. }), "{err}");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}
