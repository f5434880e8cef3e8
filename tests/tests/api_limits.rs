//! Hostile and broken clients against the control API server (issue 10, points 1, 3 and
//! 4): none of them can kill it, use it up or hold up another client. Each test drives a
//! raw Unix socket the way the reproduction did, then checks that a normal client is
//! still answered. Waits are bounded (the client's timeout); none asserts how fast
//! anything is.

mod api_support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_support::start;
use nvdimm_model::event_log::EventKind;
use serde_json::Value;
use vnvdimm_control::fake::FakeBackend;
use vnvdimm_control::http::Deadlines;
use vnvdimm_control::{ApiClient, ApiServer, ApiServerHandle, ServerLimits};

/// Long enough that no test here depends on it passing; short enough that a hang fails.
const PATIENCE: Duration = Duration::from_secs(10);

fn client(socket: &std::path::Path) -> ApiClient {
    ApiClient::new(socket).with_timeout(PATIENCE)
}

/// Reads everything the server sends on `stream` until it closes: (status, body).
fn answer_of(stream: &mut UnixStream) -> (u16, Value) {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut raw = Vec::new();
    // A reset after the answer (the request was not read in full) ends it like EOF.
    if let Err(e) = stream.read_to_end(&mut raw) {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "no answer within PATIENCE: {e}");
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}")))
}

fn connect(socket: &std::path::Path, bytes: &[u8]) -> UnixStream {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// Waits (bounded) until the server serves exactly `n` connections.
fn wait_for_connections(server: &ApiServerHandle, n: usize) {
    let end = Instant::now() + PATIENCE;
    while server.connections() != n {
        assert!(Instant::now() < end, "the server serves {} connections, not {n}", server.connections());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start_with(limits: ServerLimits) -> (tempfile::TempDir, std::path::PathBuf, ApiServerHandle) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let backend = Arc::new(FakeBackend::with_default_platform());
    let server = ApiServer::start_with(&socket, backend, limits).unwrap();
    (dir, socket, server)
}

/// Point 1: tiny_http allocated the unread remainder of a huge announced body and aborted.
#[test]
fn a_huge_content_length_is_413_and_the_server_lives_on() {
    let vm = start();
    for length in ["1099511627776", "9223372036854775807", "18446744073709551616"] {
        let mut s = connect(
            &vm.socket,
            format!("POST /api/v1/poison HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{}}").as_bytes(),
        );
        let (status, body) = answer_of(&mut s);
        assert_eq!(status, 413, "Content-Length {length}: {body}");
        assert!(body["error"].as_str().unwrap().contains("at most 65536 bytes"), "{body}");
    }
    assert_eq!(vm.get("/vm").status, 200);
    assert!(vm.backend.calls().is_empty());
}

/// Point 4: headers announcing 5000 bytes, one byte sent, then silence; the other
/// clients are answered meanwhile.
#[test]
fn a_client_stuck_in_its_body_does_not_hold_up_others() {
    let vm = start();
    let stuck = connect(&vm.socket, b"PUT /api/v1/ars HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{");
    let stuck_head = connect(&vm.socket, b"GET /api/v1/vm HTTP/1.1\r\nHost: x");
    let c = client(&vm.socket);
    for _ in 0..3 {
        assert_eq!(c.get("/vm").unwrap().status, 200);
        assert_eq!(c.post("/poison", &serde_json::json!({"dimm": 0, "offset": 0, "length": 1})).unwrap().status, 200);
    }
    drop((stuck, stuck_head));
}

/// Point 4: 200 pipelined requests never read. Only the first is answered (one request
/// per connection), and the others' clients are not held up by it.
#[test]
fn pipelined_requests_get_one_answer_and_hold_up_nobody() {
    let vm = start();
    let mut pipelined = connect(&vm.socket, &b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200));
    assert_eq!(client(&vm.socket).get("/vm").unwrap().status, 200);
    let (status, body) = answer_of(&mut pipelined);
    assert_eq!(status, 200, "{body}");
    assert!(body["events"].is_array(), "{body}");
}

/// A client that asks for a large answer and never reads it waits alone: the answer is
/// written outside the lock that orders requests.
#[test]
fn a_client_that_does_not_read_its_answer_holds_up_nobody() {
    let vm = start();
    {
        let mut p = vm.backend.platform_lock();
        for i in 0..5000 {
            p.log_event(EventKind::PoisonAdded { dimm: 0, offset: i * 4096, length: 4096 });
        }
    }
    // Several MiB of pretty JSON: far more than the socket buffer.
    let unread: Vec<UnixStream> = (0..4).map(|_| connect(&vm.socket, b"GET /api/v1/events HTTP/1.1\r\n\r\n")).collect();
    let c = client(&vm.socket);
    for _ in 0..3 {
        assert_eq!(c.get("/ars").unwrap().status, 200);
    }
    drop(unread);
}

/// Point 3: every half-sent request held a thread and descriptors, without limit and for
/// ever. Now a connection gets the head deadline, then 408, and its slot comes back.
#[test]
fn half_sent_requests_time_out_with_408_and_free_their_connection() {
    let short = Duration::from_millis(200);
    let limits =
        ServerLimits { deadlines: Deadlines { head: short, body: short, write: PATIENCE }, ..Default::default() };
    let (_dir, socket, server) = start_with(limits);
    let mut in_head = connect(&socket, b"GET /api/v1/vm HTTP/1.1\r\n");
    let mut in_body = connect(&socket, b"PUT /api/v1/ars HTTP/1.1\r\nContent-Length: 50\r\n\r\n{");
    let mut silent = UnixStream::connect(&socket).unwrap();
    for (stream, what) in [(&mut in_head, "headers"), (&mut in_body, "body"), (&mut silent, "headers")] {
        let (status, body) = answer_of(stream);
        assert_eq!(status, 408, "{body}");
        assert!(body["error"].as_str().unwrap().contains(what), "{body}");
    }
    wait_for_connections(&server, 0);
    assert_eq!(client(&socket).get("/vm").unwrap().status, 200);
}

/// Point 3: a connection beyond the limit is answered 503 at once (never queued behind
/// the slow ones), and the server serves again as soon as they go.
#[test]
fn connections_beyond_the_limit_are_503_and_the_server_recovers() {
    let limits = ServerLimits { max_connections: 4, ..Default::default() };
    let (_dir, socket, server) = start_with(limits);
    let held: Vec<UnixStream> = (0..4).map(|_| connect(&socket, b"GET /api/v1/vm HTTP/1.1\r\n")).collect();
    wait_for_connections(&server, 4);
    let r = client(&socket).get("/vm").unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.error_message().unwrap().contains("too many connections"), "{}", r.body);
    // Many more: each is turned away without taking a thread.
    let extra: Vec<UnixStream> = (0..300)
        .map(|_| {
            let mut s = UnixStream::connect(&socket).unwrap();
            // The 503 may come, and the connection close, before this is written.
            let _ = s.write_all(b"GET /api/v1/vm HTTP/1.1\r\n");
            s
        })
        .collect();
    for mut s in extra {
        assert_eq!(answer_of(&mut s).0, 503);
    }
    assert_eq!(server.connections(), 4);
    drop(held);
    wait_for_connections(&server, 0);
    assert_eq!(client(&socket).get("/vm").unwrap().status, 200);
}

/// Broken requests are answered with the status that names the problem; none changes anything.
#[test]
fn malformed_requests_get_4xx_or_5xx_and_change_nothing() {
    let vm = start();
    let before = vm.snapshot();
    for (request, status) in [
        (format!("GET /api/v1/vm HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000)), 431),
        ("GET /api/v1/vm HTTP/2.0\r\n\r\n".to_string(), 505),
        ("PUT /api/v1/ars HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}\r\n0\r\n\r\n".to_string(), 501),
        ("PUT /api/v1/ars HTTP/1.1\r\nContent-Length: 1x\r\n\r\n".to_string(), 400),
        ("PUT /api/v1/ars HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_string(), 400),
    ] {
        let (got, body) = answer_of(&mut connect(&vm.socket, request.as_bytes()));
        assert_eq!(got, status, "{:?}: {body}", &request[..40.min(request.len())]);
    }
    assert_eq!(vm.snapshot(), before);
}

/// Once the server is dropped (the VMM is ending), a connection still being read no
/// longer holds the VM: it is answered 503, and the backend (with the device model and
/// its backing-file locks) is released at once.
#[test]
fn a_dropped_server_lets_go_of_the_vm_and_answers_late_requests_503() {
    let mut vm = start();
    let mut late = connect(&vm.socket, b"GET /api/v1/vm HTTP/1.1\r\n");
    let server = vm.server.take().unwrap();
    wait_for_connections(&server, 1);
    drop(server);
    assert_eq!(Arc::strong_count(&vm.backend), 1, "a connection thread still holds the backend");
    late.write_all(b"\r\n").unwrap();
    let (status, body) = answer_of(&mut late);
    assert_eq!(status, 503, "{body}");
}

/// Point 4: a power-off whose client was killed while the API was busy still powered the
/// VM off later. A request that never arrived in full is never acted on.
#[test]
fn a_request_cut_off_midway_is_never_acted_on() {
    let vm = start();
    let server = vm.server.as_ref().unwrap();
    let cut = connect(&vm.socket, b"PUT /api/v1/vm/power-off HTTP/1.1\r\nContent-Length: 2\r\n\r\n{");
    wait_for_connections(server, 1);
    drop(cut);
    wait_for_connections(server, 0);
    assert!(vm.backend.calls().is_empty(), "{:?}", vm.backend.calls());
    assert_eq!(vm.get("/vm").body["state"], "running");
}
