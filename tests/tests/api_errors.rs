//! Every error path of the control API: the status, a message that says what is wrong,
//! and that nothing changed (poison, health, ARS rate, event log all as before).

mod api_support;

use api_support::{start, Vm, DIMM0_SPA, DIMM1_SPA, GIB};
use serde_json::{json, Value};

/// Sends a request that must fail with `status` and a message containing every one of
/// `words`, and checks that nothing changed.
fn refused(vm: &Vm, method: &str, path: &str, body: Option<Value>, status: u16, words: &[&str]) {
    let before = vm.snapshot();
    let msg = vm.fails(method, path, body, status);
    for w in words {
        assert!(msg.contains(w), "{method} {path}: `{msg}` does not mention `{w}`");
    }
    assert_eq!(vm.snapshot(), before, "{method} {path} changed something");
    assert!(vm.backend.calls().is_empty(), "{method} {path} called the backend: {:?}", vm.backend.calls());
}

#[test]
fn unknown_dimm_in_the_path_is_404_and_a_non_number_400() {
    let vm = start();
    for path in ["/dimms/2", "/dimms/2/poison", "/dimms/2/health", "/dimms/99999999999"] {
        refused(&vm, "GET", path, None, 404, &["no nvdimm #", "2 nvdimms"]);
    }
    refused(&vm, "PUT", "/dimms/2/health", Some(json!({"state": "fatal"})), 404, &["no nvdimm #2"]);
    refused(&vm, "PUT", "/dimms/7/shutdown-state", Some(json!({"last_shutdown_state": 1})), 404, &["#7"]);
    for path in ["/dimms/abc", "/dimms/-1/health", "/dimms/1.5/poison", "/dimms/+0", "/dimms/00", "/dimms/01/health"] {
        refused(&vm, "GET", path, None, 400, &["is not a non-negative integer"]);
    }
}

#[test]
fn malformed_bodies_and_unknown_fields_are_400() {
    let vm = start();
    let raw = |body: &str| {
        let req = format!(
            "POST /api/v1/poison HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, answer) = vm.client.raw(req.as_bytes()).unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        (status, answer["error"].as_str().unwrap().to_string())
    };
    let before = vm.snapshot();
    for (body, word) in [
        ("{", "invalid request body"),
        ("not json", "invalid request body"),
        ("[1, 2]", "invalid request body"),
        ("", "request body missing"),
        ("{\"dimm\": 0, \"offset\": 0, \"length\": 1, \"colour\": 1}", "unknown field `colour`"),
        ("{\"dimm\": 0, \"offset\": 0}", "missing field `length`"),
        ("{\"dimm\": 0, \"offset\": -4, \"length\": 1}", "negative"),
        ("{\"dimm\": 0, \"offset\": 1.5, \"length\": 1}", "whole number"),
        ("{\"dimm\": 0, \"offset\": \"12Q\", \"length\": 1}", "12Q"),
        ("{\"dimm\": 0, \"offset\": 0, \"length\": 1, \"machine_check\": \"action_required\"}", "unknown variant"),
        ("{\"dimm\": 0, \"offset\": 0, \"length\": 1, \"notify\": \"yes\"}", "invalid type"),
    ] {
        let (status, msg) = raw(body);
        assert_eq!(status, 400, "{body}: {msg}");
        assert!(msg.contains(word), "{body}: `{msg}` does not mention `{word}`");
    }
    assert_eq!(vm.snapshot(), before);
    refused(&vm, "PUT", "/dimms/0/health", Some(json!({"health_state": "ok"})), 400, &["unknown field `health_state`"]);
    refused(&vm, "PUT", "/dimms/0/health", Some(json!({"alarm_trips": {"sparez": true}})), 400, &["unknown field"]);
    refused(&vm, "PUT", "/ars", Some(json!({"rate": 5})), 400, &["unknown field `rate`"]);
}

#[test]
fn poison_addressing_errors_name_the_field() {
    let vm = start();
    let post = |body: Value, words: &[&str]| refused(&vm, "POST", "/poison", Some(body), 400, words);
    post(json!({"dimm": 0, "offset": GIB, "length": 1}), &["offset:", "beyond the end of nvdimm #0"]);
    post(json!({"dimm": 0, "offset": GIB - 512, "length": 1024}), &["length:", "runs past the end"]);
    post(json!({"dimm": 0, "offset": 0, "length": u64::MAX}), &["length:"]);
    post(json!({"dimm": 0, "offset": 0, "length": 0}), &["length:", "at least 1 byte"]);
    post(json!({"dimm": 2, "offset": 0, "length": 1}), &["dimm:", "no nvdimm #2"]);
    post(json!({"dimm": 0, "length": 1}), &["offset:", "required"]);
    post(json!({"offset": 0, "length": 1}), &["dimm:", "required"]);
    post(json!({"length": 1}), &["dimm and offset, or spa"]);
    post(json!({"dimm": 0, "offset": 0, "spa": DIMM0_SPA, "length": 1}), &["not both"]);
    post(json!({"spa": 0x1000, "length": 1}), &["spa:", "not inside any nvdimm window", "#0 [0x100000000"]);
    post(json!({"spa": DIMM1_SPA + GIB, "length": 1}), &["spa:"]);
    post(json!({"spa": DIMM0_SPA + GIB - 1, "length": 2}), &["length:", "window"]);
    refused(&vm, "DELETE", "/poison", Some(json!({"dimm": 0, "offset": GIB, "length": 1})), 400, &["offset:"]);
    refused(&vm, "DELETE", "/poison", Some(json!({"spa": 0, "length": 1})), 400, &["spa:"]);
    refused(
        &vm,
        "DELETE",
        "/poison",
        Some(json!({"dimm": 0, "offset": 0, "length": 1, "notify": true})),
        400,
        &["unknown field `notify`"],
    );
}

/// A batch is validated as a whole: one bad range refuses all of them.
#[test]
fn a_batch_with_one_bad_range_changes_nothing_and_names_it() {
    let vm = start();
    let post = |body: Value, words: &[&str]| refused(&vm, "POST", "/poison", Some(body), 400, words);
    let good = json!({"dimm": 0, "offset": 0, "length": 4096});
    post(json!({"ranges": [good, {"dimm": 0, "offset": GIB, "length": 1}]}), &["ranges[1].offset:", "beyond the end"]);
    post(json!({"ranges": [good, {"spa": 0, "length": 1}]}), &["ranges[1].spa:"]);
    post(json!({"ranges": [good, {"dimm": 0, "offset": 0, "length": 0}]}), &["ranges[1].length:"]);
    post(json!({"ranges": []}), &["ranges: empty"]);
    post(json!({"ranges": [good], "machine_check": "action_optional"}), &["unknown field `machine_check`"]);
    post(json!({"ranges": [{"dimm": 0, "offset": 0, "length": 1, "notify": true}]}), &["unknown field `notify`"]);
    post(json!({"ranges": good}), &["invalid type"]);
}

#[test]
fn invalid_health_values_change_nothing() {
    let vm = start();
    let put = |body: Value, words: &[&str]| refused(&vm, "PUT", "/dimms/0/health", Some(body), 400, words);
    put(json!({"spares_percent": 101}), &["101", "0..=100"]);
    put(json!({"state": "critical", "life_used_percent": 200}), &["200"]);
    put(json!({"spares_percent": 300}), &["invalid value"]);
    put(json!({"media_temperature": 30.01}), &["1/16"]);
    put(json!({"media_temperature": 5000}), &["out of range"]);
    let msg = vm.fails("PUT", "/dimms/0/health", Some(json!({"media_temperature": 1e308})), 400);
    assert!(msg.contains("1e308") && msg.len() < 200, "the message echoes the value briefly: {msg}");
    put(json!({"alarm_trips": {}}), &["no field to change"]);
    put(json!({"state": "broken"}), &["unknown variant `broken`"]);
    put(json!({"vendor_data": vec![0u8; 93]}), &["92"]);
    put(json!({"valid": 0x8000_0000u32}), &["undefined bits"]);
    put(json!({"state": "fatal", "thresholds": {"spares_percent": 101}}), &["101"]);
    put(json!({}), &["no field to change"]);
    put(json!({"thresholds": {}}), &["no field to change"]);
    refused(&vm, "PUT", "/dimms/0/shutdown-state", Some(json!({})), 400, &["dirty_shutdown_count"]);
    refused(&vm, "PUT", "/dimms/0/shutdown-state", Some(json!({"last_shutdown_state": 256})), 400, &["invalid value"]);
}

#[test]
fn ars_rate_must_be_positive() {
    let vm = start();
    refused(&vm, "PUT", "/ars", Some(json!({"rate_bytes_per_sec": 0})), 400, &["rate_bytes_per_sec", "at least 1"]);
    refused(&vm, "PUT", "/ars", Some(json!({"rate_bytes_per_sec": -1})), 400, &["negative"]);
    refused(&vm, "PUT", "/ars", None, 400, &["request body missing"]);
}

#[test]
fn query_strings_are_checked() {
    let vm = start();
    refused(&vm, "GET", "/events?since=abc", None, 400, &["since:", "abc"]);
    refused(&vm, "GET", "/events?limit=3", None, 400, &["unknown query parameter `limit=3`"]);
    refused(&vm, "GET", "/events?since=1&since=2", None, 400, &["since: given twice"]);
    refused(&vm, "GET", "/vm?verbose=1", None, 400, &["no query parameters"]);
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let vm = start();
    refused(&vm, "POST", "/vm", Some(json!({})), 405, &["/api/v1/vm does not take POST", "GET"]);
    refused(&vm, "GET", "/poison", None, 405, &["POST, DELETE"]);
    refused(&vm, "DELETE", "/dimms/0/health", None, 405, &["GET, PUT"]);
    refused(&vm, "GET", "/vm/power-off", None, 405, &["PUT"]);
    let (status, _) = vm.client.raw(b"PATCH /api/v1/ars HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(status, 405);
    // The Allow header, as HTTP wants it for 405.
    let mut stream = std::os::unix::net::UnixStream::connect(&vm.socket).unwrap();
    use std::io::{Read, Write};
    stream.write_all(b"GET /api/v1/poison HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.to_ascii_lowercase().contains("\r\nallow: post, delete\r\n"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("content-type: application/json"), "{answer}");
}

#[test]
fn unknown_paths_are_404() {
    let vm = start();
    refused(&vm, "GET", "/nothing", None, 404, &["no such endpoint /api/v1/nothing"]);
    refused(&vm, "GET", "/dimms/0/labels", None, 404, &["no such endpoint"]);
    let (status, body) = vm.client.raw(b"GET /vm HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("/api/v1"));
}

#[test]
fn bodies_where_none_belongs_and_oversized_bodies_are_refused() {
    let vm = start();
    refused(&vm, "GET", "/dimms", Some(json!({"x": 1})), 400, &["takes no request body"]);
    refused(&vm, "PUT", "/vm/power-off", Some(json!({"now": true})), 400, &["takes no request body"]);
    let big = "x".repeat(70 * 1024);
    refused(&vm, "PUT", "/ars", Some(json!({ "rate_bytes_per_sec": big })), 413, &["too large"]);
}

#[test]
fn garbage_on_the_socket_does_not_stop_the_server() {
    let vm = start();
    for junk in [&b"\x00\x01\x02garbage\r\n\r\n"[..], b"GET\r\n\r\n", b"GET /api/v1/vm HTTP/9.9\r\n\r\n"] {
        // Each gets a status that says what is wrong with it (400, 505).
        let (status, _) = vm.client.raw(junk).unwrap();
        assert!((400..600).contains(&status), "{junk:?} got {status}");
    }
    // A client that connects and hangs up mid-request.
    {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&vm.socket).unwrap();
        s.write_all(b"PUT /api/v1/ars HTTP/1.1\r\nContent-Length: 100\r\n\r\n{").unwrap();
    }
    assert_eq!(vm.get("/vm").status, 200);
    assert_eq!(vm.get("/ars").body["rate_bytes_per_sec"], 2 * GIB);
}
