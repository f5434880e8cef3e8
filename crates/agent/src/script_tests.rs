//! The real agent script (`images/vnv-agent`) under the host's busybox sh, driven by
//! `AgentClient` over its stdin/stdout: the same script and protocol the guest runs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{AgentClient, STATUS_KILLED};

fn agent_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../images/vnv-agent")
}

fn spawn_agent() -> (Child, AgentClient) {
    let busybox = std::env::var("VNV_BUSYBOX").unwrap_or_else(|_| "busybox".into());
    let mut child = Command::new(&busybox)
        .arg("sh")
        .arg(agent_script())
        .arg("-")
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {busybox} (Debian: apt-get install busybox-static, or set VNV_BUSYBOX): {e}"));
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut client = AgentClient::new(stdout, stdin);
    client.transfer_grace = Duration::from_secs(20);
    client.wait_ready(Duration::from_secs(20)).unwrap();
    (child, client)
}

#[test]
fn real_agent_runs_commands_and_reports_status_and_output() {
    let (mut child, mut c) = spawn_agent();
    let t = Duration::from_secs(20);

    let out = c.exec("echo hi; echo err >&2; exit 3", t).unwrap();
    assert_eq!((out.status, out.text().as_str()), (3, "hi\nerr\n"));

    // Quotes, newlines and shell syntax arrive unchanged.
    let cmd = "printf '%s|' \"a b\" 'c'\"'\"'d' $((6*7))\nprintf 'second line\\n'";
    assert_eq!(c.exec(cmd, t).unwrap().text(), "a b|c'd|42|second line\n");

    // Binary output.
    assert_eq!(
        c.exec("printf '\\000\\377\\n'", t).unwrap().output,
        vec![0, 255, b'\n']
    );

    // Large output crosses as many base64 lines.
    let expected: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    let out = c.exec("seq 1 20000", t).unwrap();
    assert_eq!(out.status, 0);
    assert_eq!(out.text(), expected);

    // A command reading stdin gets /dev/null, not the protocol stream.
    let out = c.exec("cat; echo done", t).unwrap();
    assert_eq!(out.text(), "done\n");

    // Empty output.
    let out = c.exec("true", t).unwrap();
    assert_eq!((out.status, out.output.len()), (0, 0));

    // Killed at the guest-side timeout.
    let start = Instant::now();
    let out = c.exec("sleep 30", Duration::from_secs(1)).unwrap();
    assert_eq!(out.status, STATUS_KILLED);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );

    c.shutdown(Duration::from_secs(10)).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "agent exited with {status}");
}

#[test]
fn real_agent_skips_noise_and_rejects_damaged_requests() {
    use std::io::Write;
    let busybox = std::env::var("VNV_BUSYBOX").unwrap_or_else(|_| "busybox".into());
    let mut child = Command::new(&busybox)
        .arg("sh")
        .arg(agent_script())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Noise before anything, and a request whose base64 does not match its checksum.
    stdin
        .write_all(b"\x1b[2J random bytes \xff\xfe\nVNVA1 EXEC 900 5 00000000 ZWNobyBoaQ==\nVNVA1 EXEC x\n")
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut c = AgentClient::new(stdout, stdin);
    c.wait_ready(Duration::from_secs(20)).unwrap();
    // The refusal of request 900 (ERR 900 bad-checksum) is not this request's answer.
    let out = c.exec("echo ok", Duration::from_secs(20)).unwrap();
    assert_eq!(out.text(), "ok\n");
    let out = c.exec("echo again", Duration::from_secs(20)).unwrap();
    assert_eq!(out.text(), "again\n");
    c.shutdown(Duration::from_secs(10)).unwrap();
    let _ = child.wait();
}

#[test]
fn real_agent_kills_a_cancelled_command_and_all_it_started() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (mut child, mut c) = spawn_agent();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("sleeper.pid");
    let cancel = AtomicBool::new(false);
    let started = Instant::now();
    let cmd = format!("sleep 600 & echo $! > {}; wait", pid_file.display());
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !pid_file.exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
            cancel.store(true, Ordering::SeqCst);
        });
        c.exec_unless(&cmd, Duration::from_secs(600), &|| cancel.load(Ordering::SeqCst))
    });
    match result {
        Err(crate::AgentError::Cancelled { status, .. }) => assert_eq!(status, STATUS_KILLED),
        other => panic!("expected a cancellation, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    // The grandchild went with it: the whole session was killed.
    let sleeper = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", sleeper.trim()));
    let gone_by = Instant::now() + Duration::from_secs(10);
    while proc_dir.exists() && !std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default().contains(") Z ") {
        assert!(Instant::now() < gone_by, "the command's child {} outlived the kill", sleeper.trim());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The agent is free for the next command, and a kill for a finished one is ignored.
    let out = c.exec("echo next", Duration::from_secs(20)).unwrap();
    assert_eq!(out.text(), "next\n");
    c.shutdown(Duration::from_secs(10)).unwrap();
    assert!(child.wait().unwrap().success());
}

