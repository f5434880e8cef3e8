//! `AgentClient`: runs commands in the guest through the agent on a serial line.
//!
//! A reader thread owns the receiving half and turns bytes into [`Event`]s; the client
//! writes requests and waits for the event with its request id. Events for other ids
//! (answers to requests that timed out earlier) are dropped, so a late answer can never
//! be mistaken for the current one.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::frame::{self, Event, FrameError, Parser};

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("cannot connect to the agent socket {path}: {source} (is QEMU running with `-chardev socket,path={path},server=on,wait=off -serial chardev:...`?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing to the agent failed: {0}")]
    Write(std::io::Error),
    #[error("the agent's line closed (guest powered off, or QEMU exited)")]
    Disconnected,
    #[error("the agent did not announce itself within {0:?}: is the guest booted with the vnvdimm image and a serial port on ttyS2?")]
    NotReady(Duration),
    #[error(
        "no answer to request {id} within {after:?}; the command may still be running in the guest"
    )]
    Timeout { id: u64, after: Duration },
    #[error("the agent refused request {id}: {reason}")]
    Rejected { id: u64, reason: String },
    #[error("the answer was damaged on the line: {0}; the command did run, rerun it only if that is safe")]
    Corrupt(FrameError),
    #[error("the agent restarted while request {id} was running (guest rebooted?)")]
    Restarted { id: u64 },
    #[error("request {id} was cancelled: the agent killed the command and all it started (status {status})")]
    Cancelled { id: u64, status: i32 },
    #[error("the guest-side timeout must be at least one second, got {0:?}")]
    BadTimeout(Duration),
}

/// What a command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status as the guest's shell reports it: 0-255, 128+N after signal N
    /// (137 when the agent killed it for running past its timeout).
    pub status: i32,
    /// stdout and stderr, interleaved as written.
    pub output: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// The output as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

/// Status the guest reports for a command it killed at its timeout (SIGKILL).
pub const STATUS_KILLED: i32 = 137;

/// How often a running command's cancellation is checked.
pub const CANCEL_POLL: Duration = Duration::from_millis(250);
/// How often an unanswered kill is repeated.
const KILL_RESEND: Duration = Duration::from_secs(1);

/// A connection to one guest agent. `Send`: a backend can keep it in a `Mutex` and
/// serve exec requests from any thread, one at a time (the agent runs one command at
/// a time anyway).
pub struct AgentClient {
    writer: Box<dyn Write + Send>,
    events: Receiver<Event>,
    // Blocks in read() until the peer closes; detached when the client is dropped.
    _reader: Option<JoinHandle<()>>,
    next_id: u64,
    release: Option<String>,
    /// Time allowed beyond a command's own timeout for the answer to cross the line.
    pub transfer_grace: Duration,
}

impl AgentClient {
    /// Talks to the agent over `reader`/`writer` (e.g. the two halves of a socket, or a
    /// child process's stdout/stdin). The reader is moved to a thread that ends at EOF
    /// or on a read error.
    pub fn new<R, W>(reader: R, writer: W) -> Self
    where
        R: Read + Send + 'static,
        W: Write + Send + 'static,
    {
        let (tx, events) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("vnv-agent-reader".into())
            .spawn(move || read_events(reader, tx))
            .ok();
        AgentClient {
            writer: Box::new(writer),
            events,
            _reader: reader,
            next_id: 1,
            release: None,
            transfer_grace: Duration::from_secs(30),
        }
    }

    /// Connects to the Unix socket QEMU listens on for the agent's serial port.
    pub fn connect_unix(path: &Path) -> Result<Self, AgentError> {
        let connect_err = |source| AgentError::Connect {
            path: path.to_path_buf(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(connect_err)?;
        let reader = stream.try_clone().map_err(connect_err)?;
        Ok(Self::new(reader, stream))
    }

    /// Like [`connect_unix`](Self::connect_unix), retrying while the socket does not
    /// exist yet (QEMU creates it shortly after starting).
    pub fn connect_unix_within(path: &Path, within: Duration) -> Result<Self, AgentError> {
        let deadline = Instant::now() + within;
        loop {
            match Self::connect_unix(path) {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The guest's `uname -r`, once the agent's READY line has been seen.
    pub fn kernel_release(&self) -> Option<&str> {
        self.release.as_deref()
    }

    /// Waits until the agent answers: a READY announcement or a reply to our pings
    /// (sent every 500 ms, so a client that connects after the announcement still syncs).
    pub fn wait_ready(&mut self, within: Duration) -> Result<(), AgentError> {
        let deadline = Instant::now() + within;
        loop {
            let id = self.take_id();
            self.send(&frame::ping_request(id))?;
            let round_end = (Instant::now() + Duration::from_millis(500)).min(deadline);
            loop {
                match self.next_event(round_end)? {
                    Some(Event::Ready { .. }) => return Ok(()),
                    Some(Event::Pong { id: got }) if got == id => return Ok(()),
                    Some(_) => continue,
                    None => break,
                }
            }
            if Instant::now() >= deadline {
                return Err(AgentError::NotReady(within));
            }
        }
    }

    /// Runs `command` with the guest's `sh`, stdin from /dev/null. The guest kills it
    /// after `timeout` (rounded up to whole seconds; status [`STATUS_KILLED`]); this call
    /// waits `timeout + transfer_grace` for the answer.
    pub fn exec(&mut self, command: &str, timeout: Duration) -> Result<ExecOutput, AgentError> {
        self.exec_unless(command, timeout, &|| false)
    }

    /// Like [`exec`](Self::exec), but once `cancelled()` (asked every
    /// [`CANCEL_POLL`]) is true, the agent is told to kill the command and everything it
    /// started, and the answer to that is [`AgentError::Cancelled`].
    pub fn exec_unless(
        &mut self,
        command: &str,
        timeout: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<ExecOutput, AgentError> {
        if timeout < Duration::from_secs(1) {
            return Err(AgentError::BadTimeout(timeout));
        }
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let id = self.take_id();
        self.send(&frame::exec_request(id, command, secs))?;
        let wait = Duration::from_secs(secs) + self.transfer_grace;
        let mut deadline = Instant::now() + wait;
        let mut kill_sent: Option<Instant> = None;
        loop {
            let now = Instant::now();
            // The kill is repeated: a request line can be cut by the agent's polling read.
            let resend_kill = kill_sent.is_some_and(|at| now.duration_since(at) >= KILL_RESEND);
            if resend_kill || (kill_sent.is_none() && cancelled()) {
                self.send(&frame::kill_request(id))?;
                if kill_sent.is_none() {
                    deadline = deadline.min(now + self.transfer_grace);
                }
                kill_sent = Some(now);
            }
            let round_end = deadline.min(now + CANCEL_POLL);
            match self.next_event(round_end)? {
                None if Instant::now() >= deadline => return Err(AgentError::Timeout { id, after: wait }),
                None => continue,
                Some(Event::Response { id: got, status, output }) if got == id => {
                    return match kill_sent {
                        Some(_) => Err(AgentError::Cancelled { id, status }),
                        None => Ok(ExecOutput { status, output }),
                    };
                }
                Some(Event::Rejected { id: got, reason }) if got == id => {
                    return Err(AgentError::Rejected { id, reason })
                }
                Some(Event::Corrupt(e)) if corrupt_id(&e) == id => {
                    return Err(AgentError::Corrupt(e))
                }
                Some(Event::Ready { .. }) => return Err(AgentError::Restarted { id }),
                Some(_) => continue,
            }
        }
    }

    /// Asks the agent to exit (an init started with `vnv.agent=hold` then powers the
    /// guest off) and waits for its goodbye.
    pub fn shutdown(&mut self, within: Duration) -> Result<(), AgentError> {
        let id = self.take_id();
        self.send(&frame::quit_request(id))?;
        let deadline = Instant::now() + within;
        loop {
            match self.next_event(deadline) {
                Ok(Some(Event::Bye { id: got })) if got == id => return Ok(()),
                Ok(Some(_)) => continue,
                Ok(None) => return Err(AgentError::Timeout { id, after: within }),
                // The guest may power off before we read the goodbye.
                Err(AgentError::Disconnected) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), AgentError> {
        self.writer
            .write_all(bytes)
            .and_then(|()| self.writer.flush())
            .map_err(AgentError::Write)
    }

    /// The next event before `deadline` (`None` when it passes). Remembers READY's release.
    fn next_event(&mut self, deadline: Instant) -> Result<Option<Event>, AgentError> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok(ev) => {
                if let Event::Ready { release, .. } = &ev {
                    self.release = Some(release.clone());
                }
                Ok(Some(ev))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(AgentError::Disconnected),
        }
    }
}

fn corrupt_id(e: &FrameError) -> u64 {
    match *e {
        FrameError::Truncated { id }
        | FrameError::BadBase64 { id, .. }
        | FrameError::Length { id, .. }
        | FrameError::Checksum { id, .. }
        | FrameError::TooLarge { id, .. } => id,
    }
}

fn read_events<R: Read>(mut reader: R, tx: mpsc::Sender<Event>) {
    let mut parser = Parser::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut events = Vec::new();
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        parser.push(&buf[..n], &mut events);
        for ev in events.drain(..) {
            if tx.send(ev).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{base64_encode, crc32};
    use std::io::{BufRead, BufReader};

    /// A stand-in agent on the other end of a socket pair: `answer` maps each request
    /// line to the bytes sent back.
    fn fake_agent(answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> AgentClient {
        let (host, guest) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut out = guest.try_clone().unwrap();
            for line in BufReader::new(guest).lines() {
                let Ok(line) = line else { return };
                if line.is_empty() {
                    continue;
                }
                if out.write_all(&answer(&line)).is_err() {
                    return;
                }
            }
        });
        let reader = host.try_clone().unwrap();
        let mut c = AgentClient::new(reader, host);
        c.transfer_grace = Duration::from_millis(300);
        c
    }

    fn rsp(id: &str, status: i32, out: &[u8]) -> Vec<u8> {
        format!(
            "@@VNVA-RSP {id} {status} {} {:08x}@@\n{}\n@@VNVA-END {id}@@\n",
            out.len(),
            crc32(out),
            base64_encode(out)
        )
        .into_bytes()
    }

    fn field(line: &str, n: usize) -> String {
        line.split(' ').nth(n).unwrap_or("").to_string()
    }

    #[test]
    fn exec_returns_its_own_answer_among_noise_and_stale_answers() {
        let mut c = fake_agent(|line| {
            let id = field(line, 2);
            let stale_id = id.parse::<u64>().unwrap() + 100;
            let mut v = b"[  5.0] kernel noise\n".to_vec();
            v.extend(rsp(&stale_id.to_string(), 9, b"stale"));
            v.extend(b"@@VNVA-PONG 3@@\n");
            v.extend(rsp(&id, 2, format!("ran {}", field(line, 5)).as_bytes()));
            v
        });
        for _ in 0..3 {
            let out = c.exec("ls /nope", Duration::from_secs(5)).unwrap();
            assert_eq!(out.status, 2);
            assert_eq!(out.text(), format!("ran {}", base64_encode(b"ls /nope")));
            assert!(!out.success());
        }
    }

    #[test]
    fn silence_is_a_timeout_and_the_late_answer_is_not_taken_for_the_next() {
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = count.clone();
        let mut c = fake_agent(move |line| {
            let id = field(line, 2);
            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                // First request: answer only after the client gave up.
                std::thread::sleep(Duration::from_millis(1600));
                return rsp(&id, 0, b"late");
            }
            rsp(&id, 0, b"second")
        });
        let start = Instant::now();
        let err = c.exec("sleep 100", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, AgentError::Timeout { id: 1, .. }), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(1300));
        assert_eq!(
            c.exec("true", Duration::from_secs(5)).unwrap().text(),
            "second"
        );
    }

    #[test]
    fn rejection_corruption_restart_and_hangup_are_errors() {
        let mut c = fake_agent(|line| {
            let id = field(line, 2);
            match field(line, 1).as_str() {
                "PING" => format!("@@VNVA-PONG {id}@@\n").into_bytes(),
                _ => match base64_decode_str(&field(line, 5)).as_str() {
                    "reject" => format!("@@VNVA-ERR {id} bad-checksum@@\n").into_bytes(),
                    "corrupt" => {
                        let mut v = rsp(&id, 0, b"abc");
                        let at = v.iter().position(|&b| b == b'\n').unwrap() + 1;
                        v[at] ^= 1;
                        v
                    }
                    "restart" => b"@@VNVA-READY 1 6.1.0-x@@\n".to_vec(),
                    _ => Vec::new(),
                },
            }
        });
        c.wait_ready(Duration::from_secs(2)).unwrap();
        let e = c.exec("reject", Duration::from_secs(2)).unwrap_err();
        assert!(
            matches!(e, AgentError::Rejected { ref reason, .. } if reason == "bad-checksum"),
            "{e}"
        );
        let e = c.exec("corrupt", Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, AgentError::Corrupt(_)), "{e}");
        let e = c.exec("restart", Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, AgentError::Restarted { .. }), "{e}");
        assert_eq!(c.kernel_release(), Some("6.1.0-x"));
        assert!(matches!(
            c.exec("x", Duration::from_millis(10)),
            Err(AgentError::BadTimeout(_))
        ));
    }

    #[test]
    fn a_closed_line_is_disconnected_and_nothing_answering_is_not_ready() {
        let (host, guest) = UnixStream::pair().unwrap();
        let mut c = AgentClient::new(host.try_clone().unwrap(), host);
        let e = c.wait_ready(Duration::from_millis(700)).unwrap_err();
        assert!(matches!(e, AgentError::NotReady(_)), "{e}");
        drop(guest);
        let e = c.exec("true", Duration::from_secs(1)).unwrap_err();
        assert!(
            matches!(e, AgentError::Disconnected | AgentError::Write(_)),
            "{e}"
        );
    }

    #[test]
    fn connecting_to_a_missing_socket_names_it() {
        let e = AgentClient::connect_unix_within(
            Path::new("/nonexistent/agent.sock"),
            Duration::from_millis(100),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("/nonexistent/agent.sock"), "{e}");
    }

    fn base64_decode_str(s: &str) -> String {
        String::from_utf8(crate::codec::base64_decode(s.as_bytes()).unwrap()).unwrap()
    }
}
