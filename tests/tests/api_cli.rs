//! `vnvdimm ctl`: every subcommand against a running API server, its JSON output, and
//! its exit status (0 accepted, 1 refused or unreachable, 2 usage error).

mod api_support;

use api_support::{ctl, start, DIMM1_SPA, GIB};
use serde_json::Value;
use vnvdimm_control::fake::Call;

/// Runs a ctl command that must succeed and returns its JSON output.
fn ok(vm: &api_support::Vm, args: &[&str]) -> Value {
    let (code, out, err) = ctl(&vm.socket, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    assert!(err.is_empty(), "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

#[test]
fn info_dimms_and_dimm() {
    let vm = start();
    assert_eq!(ok(&vm, &["info"])["backend"], "fake");
    assert_eq!(ok(&vm, &["dimms"])["dimms"].as_array().unwrap().len(), 2);
    assert_eq!(ok(&vm, &["dimm", "1"])["spa_base"], DIMM1_SPA);
    // Pretty-printed by default.
    let (_, out, _) = ctl(&vm.socket, &["info"]);
    assert!(out.contains("\n  \"backend\": \"fake\""), "{out}");
}

#[test]
fn poison_add_list_clear() {
    let vm = start();
    let added = ok(&vm, &["poison", "add", "--dimm", "0", "--offset", "4K", "--length", "512", "--notify"]);
    assert_eq!((added["offset"].as_u64(), added["notified"].as_bool()), (Some(4096), Some(true)));
    let spa = format!("{:#x}", DIMM1_SPA + 0x3000);
    let added = ok(&vm, &["poison", "add", "--spa", &spa, "--length", "0x1000", "--machine-check", "action-optional"]);
    assert_eq!((added["dimm"].as_u64(), added["machine_check"].as_str()), (Some(1), Some("action_optional")));
    let list = ok(&vm, &["poison", "list", "1"]);
    assert_eq!(list["ranges"][0]["offset"], 0x3000);
    let cleared = ok(&vm, &["poison", "clear", "--dimm", "0", "--offset", "0", "--length", "1M"]);
    assert_eq!(cleared["cleared_bytes"], 512);
    let cleared = ok(&vm, &["poison", "clear", "--spa", &spa, "--length", "4K"]);
    assert_eq!(cleared["cleared_bytes"], 4096);
    assert!(vm.backend.calls().contains(&Call::MachineCheck {
        gpa: DIMM1_SPA + 0x3000,
        kind: nvdimm_model::event_log::MachineCheckKind::ActionOptional
    }));
}

#[test]
fn poison_add_batch_sends_a_file_of_ranges_in_batches() {
    let vm = start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad-blocks.txt");
    let mut text = String::from("# 1000 ranges on DIMM 0, one on DIMM 1 by address\n");
    for i in 0..1000u64 {
        text.push_str(&format!("dimm=0 offset={:#x} length=512\n", i * 8192));
    }
    text.push_str(&format!("spa={:#x} length=4K\n", DIMM1_SPA + 0x2000));
    std::fs::write(&file, text).unwrap();
    let summary = ok(&vm, &["poison", "add-batch", "--file", file.to_str().unwrap(), "--notify"]);
    assert_eq!((summary["ranges_added"].as_u64(), summary["requests"].as_u64()), (Some(1001), Some(3)), "{summary}");
    assert_eq!(ok(&vm, &["poison", "list", "0"])["ranges"].as_array().unwrap().len(), 1000);
    assert_eq!(ok(&vm, &["poison", "list", "1"])["ranges"][0]["offset"], 0x2000);
}

#[test]
fn poison_add_batch_checks_every_line_first_and_says_what_a_refused_batch_left() {
    let vm = start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ranges.txt");
    std::fs::write(&file, "dimm=0 offset=0 length=512\ndimm=0 length=512\n").unwrap();
    let (code, _, err) = ctl(&vm.socket, &["poison", "add-batch", "--file", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 2: give either dimm= with offset=, or spa= alone"), "{err}");
    assert_eq!(ok(&vm, &["poison", "list", "0"])["ranges"].as_array().unwrap().len(), 0, "a bad file sent nothing");
    // Line 450 is outside DIMM 0: the second batch (401..500) is refused whole.
    let mut text = String::new();
    for i in 0..500u64 {
        let offset = if i == 449 { 1u64 << 50 } else { i * 8192 };
        text.push_str(&format!("dimm=0 offset={offset} length=512\n"));
    }
    std::fs::write(&file, text).unwrap();
    let (code, _, err) = ctl(&vm.socket, &["poison", "add-batch", "--file", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ranges 401..500 refused") && err.contains("the 400 ranges before it were recorded"), "{err}");
    assert_eq!(ok(&vm, &["poison", "list", "0"])["ranges"].as_array().unwrap().len(), 400);
}

#[test]
fn health_get_set_and_shutdown_state() {
    let vm = start();
    let h = ok(
        &vm,
        &[
            "health",
            "set",
            "1",
            "--state",
            "non-critical",
            "--spares",
            "10",
            "--media-temperature",
            "-2.5",
            "--alarm-spares",
            "true",
            "--threshold-spares",
            "20",
            "--enable-alarm-media-temperature",
            "true",
        ],
    );
    assert_eq!(h["notified"], true);
    assert_eq!(h["smart"]["state"], "non_critical");
    assert_eq!(h["smart"]["media_temperature"], -2.5);
    assert_eq!(h["host"]["alarm_trips"]["spares"], true);
    assert_eq!(h["thresholds"]["spares_percent"], 20);
    assert_eq!(h["thresholds"]["alarm_control"]["media_temperature"], true);
    assert_eq!(ok(&vm, &["health", "get", "1"])["smart"]["spares_percent"], 10);
    let h = ok(&vm, &["shutdown-state", "0", "--dirty-shutdown-count", "3", "--last-shutdown-state", "dirty"]);
    assert_eq!(
        (h["smart"]["unsafe_shutdown_count"].as_u64(), h["smart"]["last_shutdown_state"].as_u64()),
        (Some(3), Some(1))
    );
}

#[test]
fn ars_and_events_and_power_off() {
    let vm = start();
    assert_eq!(ok(&vm, &["ars", "set", "--rate", "1G"])["rate_bytes_per_sec"], GIB);
    assert_eq!(ok(&vm, &["ars", "get"])["rate_bytes_per_sec"], GIB);
    ok(&vm, &["poison", "add", "--dimm", "0", "--offset", "0", "--length", "512"]);
    ok(&vm, &["poison", "add", "--dimm", "0", "--offset", "8K", "--length", "512"]);
    let events = ok(&vm, &["events"]);
    assert_eq!(events["events"].as_array().unwrap().len(), 2);
    assert_eq!(ok(&vm, &["events", "--since", "1"])["events"][0]["offset"], 8192);
    assert_eq!(ok(&vm, &["power-off"])["state"], "stopped");
    assert_eq!(ok(&vm, &["info"])["state"], "stopped");
}

#[test]
fn events_follow_prints_one_line_per_event() {
    let vm = start();
    let socket = vm.socket.clone();
    let follower =
        std::thread::spawn(move || ctl(&socket, &["events", "--follow", "--max-events", "3", "--interval-ms", "20"]));
    for offset in ["0", "4K", "8K"] {
        ok(&vm, &["poison", "add", "--dimm", "1", "--offset", offset, "--length", "512"]);
    }
    let (code, out, err) = follower.join().unwrap();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seqs: Vec<u64> = lines.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
}

#[test]
fn events_follow_ends_when_the_vmm_exits() {
    let mut vm = start();
    let socket = vm.socket.clone();
    let follower = std::thread::spawn(move || ctl(&socket, &["events", "--follow", "--interval-ms", "20"]));
    ok(&vm, &["poison", "add", "--dimm", "1", "--offset", "0", "--length", "512"]);
    // Let the follower see the event, then stop the server as a VMM exit would.
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(vm.server.take());
    let (code, out, err) = follower.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(err.contains("the VMM exited"), "{err}");
}

#[test]
fn api_refusals_exit_1_with_the_message() {
    let vm = start();
    let (code, out, err) = ctl(&vm.socket, &["dimm", "9"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("no nvdimm #9") && err.contains("HTTP 404"), "{err}");
    let (code, _, err) = ctl(&vm.socket, &["poison", "add", "--dimm", "0", "--offset", "2G", "--length", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("offset:") && err.contains("HTTP 400"), "{err}");
    let (code, _, err) = ctl(&vm.socket, &["health", "set", "0", "--spares", "101"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("101"), "{err}");
    vm.backend.set_capabilities(Default::default());
    let (code, _, err) = ctl(
        &vm.socket,
        &["poison", "add", "--spa", "0x140000000", "--length", "1", "--machine-check", "action-optional"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 501"), "{err}");
    assert_eq!(vm.get("/dimms/1/poison").body["total_bytes"], 0);
}

#[test]
fn unreachable_vmm_exits_1_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let (code, _, err) = ctl(&missing, &["info"]);
    assert_eq!(code, 1);
    assert!(err.contains("no API socket at") && err.contains("--api-socket"), "{err}");
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let (code, _, err) = ctl(&stale, &["dimms"]);
    assert_eq!(code, 1);
    assert!(err.contains("nothing is listening"), "{err}");
}

/// Issue 10, point 4: ctl waited for ever on a VMM that accepted and never answered.
#[test]
fn a_vmm_that_does_not_answer_is_given_up_on_after_api_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mute = dir.path().join("mute.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&mute).unwrap();
    let (code, _, err) = ctl(&mute, &["--api-timeout", "1", "info"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no complete answer within 1s"), "{err}");
    for bad in ["0", "x", "86401"] {
        assert_eq!(ctl(&mute, &["--api-timeout", bad, "info"]).0, 2, "--api-timeout {bad}");
    }
}

#[test]
fn usage_errors_exit_2_without_calling_the_api() {
    let vm = start();
    let cases: &[&[&str]] = &[
        &["poison", "add", "--length", "1"],
        &["poison", "add", "--dimm", "0", "--length", "1"],
        &["poison", "add", "--offset", "0", "--length", "1"],
        &["poison", "add", "--dimm", "0", "--offset", "0", "--spa", "0x100000000", "--length", "1"],
        &["poison", "add", "--dimm", "0", "--offset", "12Q", "--length", "1"],
        &["poison", "add", "--dimm", "0", "--offset", "0"],
        &["poison", "add", "--dimm", "0", "--offset", "0", "--length", "1", "--machine-check", "action-required"],
        &["poison", "clear", "--spa", "0x100000000"],
        &["health", "set", "0"],
        &["health", "set", "0", "--state", "sick"],
        &["health", "set", "0", "--media-temperature", "30.01"],
        &["health", "set", "0", "--alarm-spares", "maybe"],
        &["shutdown-state", "0"],
        &["shutdown-state", "0", "--last-shutdown-state", "muddy"],
        &["ars", "set"],
        &["ars", "set", "--rate", "fast"],
        &["events", "--max-events", "3"],
        &["dimm", "x"],
        &["frobnicate"],
    ];
    for args in cases {
        let (code, _, err) = ctl(&vm.socket, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.is_empty(), "{args:?}");
    }
    assert!(vm.get("/events").body["events"].as_array().unwrap().is_empty());
    assert!(vm.backend.calls().is_empty());
    // --api-socket itself is required.
    let mut err = Vec::new();
    assert_eq!(vnvdimm::cli::run(["vnvdimm", "ctl", "info"], &mut Vec::new(), &mut err), 2);
    assert!(String::from_utf8_lossy(&err).contains("--api-socket"));
}
