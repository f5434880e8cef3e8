//! A minimal QMP client (QEMU Machine Protocol: one JSON object per line over a Unix
//! socket). One connection carries both our commands and QEMU's events; its reading
//! side is a source of the VM's host I/O loop (`QmpReader`), which hands replies to the
//! caller waiting for them and keeps the events (the `SHUTDOWN` event tells a guest
//! power-off from a reset or a host `quit`).

use nvdimm_model::sync::LockUnpoisoned;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use serde_json::{json, Value};
use thiserror::Error;
use vnvdimm_control::host_io::{HostIo, HostIoError};

#[derive(Debug, Error)]
pub enum QmpError {
    #[error("cannot connect to QEMU's QMP socket {path} within {waited:?}: {source} (did QEMU start? see its stderr)")]
    Connect { path: PathBuf, waited: Duration, source: std::io::Error },
    #[error("QMP I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot read QMP in the host I/O loop: {0}")]
    HostIo(#[from] HostIoError),
    #[error("QEMU closed the QMP connection (it has exited)")]
    Closed,
    #[error("QEMU did not answer {command} within {0:?}", REPLY_TIMEOUT)]
    Timeout { command: String },
    #[error("QEMU refused {command}: {message}")]
    Refused { command: String, message: String },
}

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A QMP event as QEMU sent it (`{"event": NAME, "data": {...}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    pub name: String,
    pub data: Value,
}

/// A connected QMP session with capabilities negotiated.
pub struct Qmp {
    /// Held across write + reply so replies cannot be mismatched.
    channel: Mutex<(UnixStream, Receiver<Value>)>,
    events: Arc<Mutex<Vec<QmpEvent>>>,
}

impl Qmp {
    /// Connects (retrying while QEMU creates the socket), reads QEMU's side in `host_io`
    /// and leaves the greeting phase with `qmp_capabilities`.
    pub fn connect(path: &Path, wait: Duration, host_io: &HostIo) -> Result<Qmp, QmpError> {
        let started = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(source) if started.elapsed() >= wait => {
                    return Err(QmpError::Connect { path: path.to_path_buf(), waited: wait, source })
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        };
        let (tx, rx) = mpsc::channel();
        let events = Arc::new(Mutex::new(Vec::new()));
        let reader = QmpReader { stream: stream.try_clone()?, pending: Vec::new(), replies: Some(tx), events: events.clone() };
        host_io.add(Box::new(reader))?;
        let qmp = Qmp { channel: Mutex::new((stream, rx)), events };
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs a command and returns its `return` value.
    pub fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut request = json!({ "execute": command });
        if let Some(args) = arguments {
            request["arguments"] = args;
        }
        let mut guard = self.channel.lock_unpoisoned();
        let (stream, replies) = &mut *guard;
        // Drop replies of commands whose caller gave up waiting.
        while replies.try_recv().is_ok() {}
        let mut line = request.to_string();
        line.push('\n');
        stream.write_all(line.as_bytes()).map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => QmpError::Closed,
            _ => QmpError::Io(e),
        })?;
        let reply = match replies.recv_timeout(REPLY_TIMEOUT) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => return Err(QmpError::Timeout { command: command.to_string() }),
            Err(RecvTimeoutError::Disconnected) => return Err(QmpError::Closed),
        };
        if let Some(err) = reply.get("error") {
            let message = err.get("desc").and_then(Value::as_str).unwrap_or("unknown error").to_string();
            return Err(QmpError::Refused { command: command.to_string(), message });
        }
        Ok(reply.get("return").cloned().unwrap_or(Value::Null))
    }

    /// Runs an HMP (human monitor) command line and returns its text output.
    pub fn hmp(&self, command_line: &str) -> Result<String, QmpError> {
        let out = self.execute("human-monitor-command", Some(json!({ "command-line": command_line })))?;
        Ok(out.as_str().unwrap_or_default().to_string())
    }

    /// Events received so far.
    pub fn events(&self) -> Vec<QmpEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The `reason` of the first `SHUTDOWN` event, e.g. `guest-shutdown`,
    /// `guest-reset`, `guest-panic`, `host-qmp-quit`.
    pub fn shutdown_reason(&self) -> Option<String> {
        self.events()
            .into_iter()
            .find(|e| e.name == "SHUTDOWN")
            .and_then(|e| e.data.get("reason").and_then(Value::as_str).map(str::to_string))
    }
}

/// QEMU's side of the connection, read when epoll says so. The socket stays blocking
/// (its writing side is the caller's): one `read` per readiness, which cannot block.
struct QmpReader {
    stream: UnixStream,
    /// Bytes of a line not complete yet.
    pending: Vec<u8>,
    /// Dropped when QEMU closes the connection, so a waiting caller sees `Closed`.
    replies: Option<Sender<Value>>,
    events: Arc<Mutex<Vec<QmpEvent>>>,
}

impl QmpReader {
    fn take_line(&mut self, line: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(line) else { return };
        if let Some(name) = value.get("event").and_then(Value::as_str) {
            let event = QmpEvent { name: name.to_string(), data: value.get("data").cloned().unwrap_or(Value::Null) };
            self.events.lock_unpoisoned().push(event);
        } else if value.get("QMP").is_none() {
            if let Some(replies) = &self.replies {
                // Nobody waits any more only when the `Qmp` is gone.
                let _ = replies.send(value);
            }
        }
    }
}

impl MutEventSubscriber for QmpReader {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.stream, EventSet::IN)) {
            log::error!("QMP cannot be read: {e:?}");
            self.replies = None;
        }
    }

    fn process(&mut self, _events: Events, ops: &mut EventOps) {
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => {
                // QEMU has exited (or the `Qmp` shut the socket down): no more lines.
                let _ = ops.remove(Events::new(&self.stream, EventSet::IN));
                self.replies = None;
            }
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.pending.drain(..=end).collect();
                    self.take_line(&line);
                }
            }
        }
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        // Ends the reader's clone of the socket too (the loop sees the end and drops it).
        if let Ok(guard) = self.channel.lock() {
            let _ = guard.0.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    /// A scripted QMP server: greeting, then one canned reply per command, with an
    /// event in between to check events and replies are told apart.
    type Lines = std::io::Lines<BufReader<UnixStream>>;

    /// A QEMU stand-in on a socket in a fresh directory: it greets the client, then
    /// `script` gets its writing end and the client's lines.
    fn fake_qemu<T: Send + 'static>(
        script: impl FnOnce(&mut UnixStream, &mut Lines) -> T + Send + 'static,
    ) -> (tempfile::TempDir, PathBuf, thread::JoinHandle<T>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            let mut lines = BufReader::new(stream).lines();
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            script(&mut w, &mut lines)
        });
        (dir, path, server)
    }

    #[test]
    fn commands_replies_errors_and_events() {
        let (_dir, path, server) = fake_qemu(|w, lines| {
            let mut seen = Vec::new();
            while let Some(Ok(line)) = lines.next() {
                let v: Value = serde_json::from_str(&line).unwrap();
                let cmd = v["execute"].as_str().unwrap().to_string();
                match cmd.as_str() {
                    "human-monitor-command" => {
                        writeln!(w, r#"{{"event": "SHUTDOWN", "data": {{"guest": true, "reason": "guest-shutdown"}}}}"#)
                            .unwrap();
                        let echoed = v["arguments"]["command-line"].as_str().unwrap();
                        writeln!(w, "{}", json!({ "return": format!("ran {echoed}\r\n") })).unwrap();
                    }
                    "bogus" => writeln!(w, r#"{{"error": {{"class": "CommandNotFound", "desc": "nope"}}}}"#).unwrap(),
                    _ => writeln!(w, r#"{{"return": {{}}}}"#).unwrap(),
                }
                seen.push(cmd);
            }
            seen
        });
        let host_io = HostIo::start().unwrap();
        let qmp = Qmp::connect(&path, Duration::from_secs(5), &host_io).unwrap();
        assert_eq!(qmp.hmp("mce 0 9 0x1 0x2 0x3 0x4").unwrap(), "ran mce 0 9 0x1 0x2 0x3 0x4\r\n");
        let err = qmp.execute("bogus", None).unwrap_err();
        assert!(matches!(&err, QmpError::Refused { message, .. } if message == "nope"), "{err}");
        assert_eq!(qmp.shutdown_reason().as_deref(), Some("guest-shutdown"));
        drop(qmp);
        assert_eq!(server.join().unwrap(), vec!["qmp_capabilities", "human-monitor-command", "bogus"]);
    }

    /// A reply that arrives in pieces is still one reply; a QEMU that goes away is
    /// `Closed` at once, not a reply timeout.
    #[test]
    fn a_reply_in_pieces_then_a_closed_connection() {
        let (_dir, path, server) = fake_qemu(|w, lines| {
            lines.next(); // qmp_capabilities
            w.write_all(br#"{"ret"#).unwrap();
            thread::sleep(Duration::from_millis(50));
            w.write_all(b"urn\": {}}\n").unwrap();
            lines.next(); // query-status
            w.write_all(br#"{"return": {"status": "run"#).unwrap();
            thread::sleep(Duration::from_millis(50));
            w.write_all(b"ning\"}}\n").unwrap();
            lines.next(); // the command QEMU never answers: it exits
        });
        let host_io = HostIo::start().unwrap();
        let qmp = Qmp::connect(&path, Duration::from_secs(5), &host_io).unwrap();
        assert_eq!(qmp.execute("query-status", None).unwrap()["status"], "running");
        // Closed, not Timeout: the loop saw the end of the connection.
        let err = qmp.execute("stop", None).unwrap_err();
        assert!(matches!(err, QmpError::Closed), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn connect_gives_up_with_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let host_io = HostIo::start().unwrap();
        let err = Qmp::connect(&dir.path().join("none.sock"), Duration::from_millis(50), &host_io).err().unwrap();
        assert!(err.to_string().contains("QMP socket"), "{err}");
    }
}
