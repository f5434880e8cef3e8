//! `POST /exec` and `vnvdimm ctl exec` against the FakeBackend: validation, defaults,
//! what reaches the backend, and how ctl prints and exits. The real guest agent behind it
//! is exercised by tests/scenarios_tcg.rs.

mod api_support;

use api_support::start;
use serde_json::json;
use vnvdimm_control::fake::Call;
use vnvdimm_control::BackendError;

#[test]
fn exec_passes_command_and_timeout_and_answers_status_and_output() {
    let vm = start();
    let r = vm.ok("POST", "/exec", Some(json!({"command": "ndctl list -D"})));
    assert_eq!(r, json!({"status": 0, "output": "fake: ndctl list -D\n"}));
    vm.ok(
        "POST",
        "/exec",
        Some(json!({"command": "true", "timeout_secs": 300})),
    );
    let execs: Vec<Call> = vm
        .backend
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Exec { .. }))
        .collect();
    assert_eq!(
        execs,
        vec![
            Call::Exec {
                command: "ndctl list -D".into(),
                timeout_secs: 60
            },
            Call::Exec {
                command: "true".into(),
                timeout_secs: 300
            },
        ]
    );
}

#[test]
fn bad_exec_requests_are_refused_before_the_backend() {
    let vm = start();
    for (body, field) in [
        (json!({"command": "  "}), "command"),
        (
            json!({"command": "true", "timeout_secs": 0}),
            "timeout_secs",
        ),
        (
            json!({"command": "true", "timeout_secs": 86401}),
            "timeout_secs",
        ),
        (json!({"command": "true", "timeout": 5}), "timeout"),
        (json!({}), "command"),
    ] {
        let msg = vm.fails("POST", "/exec", Some(body.clone()), 400);
        assert!(msg.contains(field), "{body}: {msg}");
    }
    assert!(!vm
        .backend
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Exec { .. })));
    vm.fails("GET", "/exec", None, 405);
}

#[test]
fn backend_refusals_keep_their_status() {
    let vm = start();
    vm.backend
        .fail_next(BackendError::Unsupported("no agent".into()));
    assert!(vm
        .fails("POST", "/exec", Some(json!({"command": "true"})), 501)
        .contains("no agent"));
    vm.backend
        .fail_next(BackendError::Conflict("stopped".into()));
    vm.fails("POST", "/exec", Some(json!({"command": "true"})), 409);
}

#[test]
fn ctl_exec_prints_the_output_and_joins_words() {
    let vm = start();
    let sock = vm.socket.display().to_string();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = [
        "vnvdimm",
        "ctl",
        "--api-socket",
        &sock,
        "exec",
        "--timeout",
        "7",
        "--",
        "ndctl",
        "list",
        "-D",
    ];
    let code = vnvdimm::cli::run(args, &mut out, &mut err);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert_eq!(String::from_utf8_lossy(&out), "fake: ndctl list -D\n");
    assert!(vm.backend.calls().contains(&Call::Exec {
        command: "ndctl list -D".into(),
        timeout_secs: 7
    }));
    // A refusal: exit 1 and the message on stderr.
    vm.backend
        .fail_next(BackendError::Unsupported("no agent".into()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = vnvdimm::cli::run(
        [
            "vnvdimm",
            "ctl",
            "--api-socket",
            &sock,
            "exec",
            "--",
            "true",
        ],
        &mut out,
        &mut err,
    );
    assert_eq!(code, 1);
    assert!(
        String::from_utf8_lossy(&err).contains("no agent"),
        "{}",
        String::from_utf8_lossy(&err)
    );
    // No command is a usage error.
    let code = vnvdimm::cli::run(
        ["vnvdimm", "ctl", "--api-socket", &sock, "exec"],
        &mut Vec::new(),
        &mut Vec::new(),
    );
    assert_eq!(code, 2);
}

/// Issue 10, point 8: abandoned `exec` requests still ran, one after another, without
/// limit. Now at most 4 are queued or running (one more is 429), and one whose client
/// hangs up while it waits never reaches the guest.
#[test]
fn exec_requests_are_bounded_and_abandoned_ones_never_run() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    let vm = start();
    let server = vm.server.as_ref().unwrap();
    let exec = |command: &str| {
        let body = json!({ "command": command }).to_string();
        let mut s = UnixStream::connect(&vm.socket).unwrap();
        let head = format!("POST /api/v1/exec HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
        s.write_all(format!("{head}{body}").as_bytes()).unwrap();
        s
    };
    let wait_pending = |n: usize| {
        let end = Instant::now() + Duration::from_secs(10);
        while server.exec_pending() != n {
            assert!(Instant::now() < end, "{} exec requests pending, not {n}", server.exec_pending());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    vm.backend.hold_exec();
    let mut running = exec("running");
    wait_pending(1);
    let abandoned: Vec<UnixStream> = (0..2).map(|i| exec(&format!("abandoned {i}"))).collect();
    let mut waiting = exec("waiting");
    wait_pending(4);
    let r = vm.client.post("/exec", &json!({ "command": "one too many" })).unwrap();
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.error_message().unwrap().contains("at most 4"), "{}", r.body);
    // Two clients give up; the queue lets them go without running their commands.
    drop(abandoned);
    wait_pending(2);
    vm.backend.release_exec();
    let answer = |s: &mut UnixStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    assert!(answer(&mut running).contains("fake: running"));
    assert!(answer(&mut waiting).contains("fake: waiting"));
    let ran: Vec<String> = vm
        .backend
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Exec { command, .. } => Some(command),
            _ => None,
        })
        .collect();
    assert_eq!(ran, vec!["running", "waiting"]);
    wait_pending(0);
}

/// Issue 10, point 8, the rest: a command already running in the guest when its client
/// hangs up is cancelled (the agent kills it), so it no longer holds the queue.
#[test]
fn a_running_exec_whose_client_hangs_up_is_cancelled() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    let vm = start();
    let server = vm.server.as_ref().unwrap();
    vm.backend.hold_exec();
    let body = json!({ "command": "sleep 600" }).to_string();
    let mut s = UnixStream::connect(&vm.socket).unwrap();
    s.write_all(format!("POST /api/v1/exec HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while !vm.backend.calls().iter().any(|c| matches!(c, Call::Exec { .. })) {
        assert!(Instant::now() < end, "the command never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(vm.backend.exec_cancelled(), 0);
    drop(s);
    let end = Instant::now() + Duration::from_secs(10);
    while vm.backend.exec_cancelled() != 1 || server.exec_pending() != 0 {
        assert!(
            Instant::now() < end,
            "cancelled {}, pending {}",
            vm.backend.exec_cancelled(),
            server.exec_pending()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A client that stays gets its answer as before.
    vm.backend.release_exec();
    let r = vm.client.post("/exec", &json!({ "command": "after" })).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}
