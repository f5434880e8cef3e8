//! A small blocking HTTP/1.1 client for the control API over its Unix socket: one
//! connection per request (`Connection: close`), JSON in and out. Used by
//! `vnvdimm ctl` and by tests.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::http::write_all_by;
use crate::types::API_PREFIX;

/// Largest response accepted (a full event log is a few MiB).
const MAX_RESPONSE: usize = 256 << 20;

/// How long a client waits for an answer unless told otherwise (`vnvdimm ctl --api-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between connection attempts while the server's backlog is full.
const CONNECT_RETRY: Duration = Duration::from_millis(10);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no API socket at {path}: is the VMM running with --api-socket {path}?")]
    NoSocket { path: PathBuf },
    #[error("nothing is listening on {path}: the VMM that created it has exited")]
    NotListening { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no complete answer within {after:?}; the VMM is busy, stopped or stuck")]
    Timeout { path: PathBuf, after: Duration },
    #[error("the VMM's answer is not valid HTTP/JSON: {0}")]
    BadResponse(String),
    #[error("cannot encode the request body: {0}")]
    Encode(String),
}

/// An answer from the API: its status and JSON body (`null` when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
}

impl ApiResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `error` message of a 4xx/5xx answer.
    pub fn error_message(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    socket: PathBuf,
    timeout: Duration,
}

impl ApiClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ApiClient { socket: socket.into(), timeout: DEFAULT_TIMEOUT }
    }

    /// Bounds each request as a whole: connecting, sending and reading the answer.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn get(&self, path: &str) -> Result<ApiResponse, ClientError> {
        self.request("GET", path, None::<&Value>)
    }

    pub fn put(&self, path: &str, body: &impl Serialize) -> Result<ApiResponse, ClientError> {
        self.request("PUT", path, Some(body))
    }

    pub fn post(&self, path: &str, body: &impl Serialize) -> Result<ApiResponse, ClientError> {
        self.request("POST", path, Some(body))
    }

    pub fn delete(&self, path: &str, body: &impl Serialize) -> Result<ApiResponse, ClientError> {
        self.request("DELETE", path, Some(body))
    }

    /// Sends `method` to `path` (relative to `/api/v1`, query included) with an optional JSON body.
    pub fn request<B: Serialize + ?Sized>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<ApiResponse, ClientError> {
        let body = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| ClientError::Encode(e.to_string()))?,
            None => Vec::new(),
        };
        let mut head = format!("{method} {API_PREFIX}{path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if !body.is_empty() {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(&body);
        let (status, body) = self.raw(&raw)?;
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&body).map_err(|e| ClientError::BadResponse(format!("body: {e}")))?
        };
        Ok(ApiResponse { status, body })
    }

    /// Sends `request` as is (for tests of malformed input) and returns the status and
    /// body. The whole exchange, connecting included, ends within the client's timeout.
    pub fn raw(&self, request: &[u8]) -> Result<(u16, Vec<u8>), ClientError> {
        let deadline = Instant::now() + self.timeout;
        let mut stream = self.connect(deadline)?;
        let io_err = |source: io::Error| match source.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                ClientError::Timeout { path: self.socket.clone(), after: self.timeout }
            }
            _ => ClientError::Io { path: self.socket.clone(), source },
        };
        // The server may answer before it has read everything (413, 503) and close:
        // then the write fails but the answer is there to read.
        let sent = write_all_by(&mut stream, request, deadline);
        let mut answer = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let received = loop {
            match read_by(&mut stream, &mut chunk, deadline) {
                Ok(0) => break Ok(()),
                Ok(n) if answer.len() + n > MAX_RESPONSE => {
                    return Err(ClientError::BadResponse(format!("answer larger than {MAX_RESPONSE} bytes")));
                }
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                Err(e) => break Err(e),
            }
        };
        if (sent.is_err() || received.is_err()) && is_complete(&answer) {
            // A server that closes with our request partly unread makes the kernel
            // report a reset after its answer; the answer is whole, so use it.
            return parse_response(&answer);
        }
        sent.map_err(io_err)?;
        received.map_err(io_err)?;
        parse_response(&answer)
    }

    /// Connects before `deadline`. A plain connect() blocks while the server's backlog
    /// is full (a VMM that is stopped or out of descriptors); a non-blocking one says
    /// EAGAIN instead, and is retried until the deadline.
    fn connect(&self, deadline: Instant) -> Result<UnixStream, ClientError> {
        loop {
            match connect_nonblocking(&self.socket) {
                Ok(stream) => return Ok(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(ClientError::Timeout { path: self.socket.clone(), after: self.timeout });
                    }
                    std::thread::sleep(CONNECT_RETRY);
                }
                Err(source) => {
                    return Err(match source.kind() {
                        io::ErrorKind::NotFound => ClientError::NoSocket { path: self.socket.clone() },
                        io::ErrorKind::ConnectionRefused => ClientError::NotListening { path: self.socket.clone() },
                        _ => ClientError::Io { path: self.socket.clone(), source },
                    })
                }
            }
        }
    }
}

/// A connected stream in blocking mode, or the error of a non-blocking connect.
fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all zeros is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "socket path too long or not a valid path"));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain socket(2); the descriptor is owned by `fd` at once.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes.
    let rc = unsafe { libc::connect(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// One read that gives up at `deadline`.
fn read_by(stream: &mut UnixStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Splits an HTTP/1.1 response read to EOF into status and body (Content-Length,
/// chunked, or up to the end).
fn parse_response(answer: &[u8]) -> Result<(u16, Vec<u8>), ClientError> {
    let bad = |what: &str| ClientError::BadResponse(what.to_string());
    let head_end = find(answer, b"\r\n\r\n").ok_or_else(|| bad("no end of headers (connection closed early?)"))?;
    let head = std::str::from_utf8(&answer[..head_end]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| ClientError::BadResponse(format!("status line `{status_line}`")))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| bad("Content-Length is not a number"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let rest = &answer[head_end + 4..];
    if chunked {
        return dechunk(rest).map(|body| (status, body));
    }
    match length {
        Some(n) if n > rest.len() => Err(bad("body shorter than its Content-Length")),
        Some(n) => Ok((status, rest[..n].to_vec())),
        None => Ok((status, rest.to_vec())),
    }
}

/// Whether `answer` holds a head and all the body its Content-Length announces.
fn is_complete(answer: &[u8]) -> bool {
    let Some(head_end) = find(answer, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..head_end]);
    let length = head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|n| answer.len() - (head_end + 4) >= n)
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, ClientError> {
    let bad = || ClientError::BadResponse("malformed chunked body".to_string());
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or_else(bad)?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| bad())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            return Err(bad());
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked() {
        let r = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nX: y\r\n\r\n{}extra";
        assert_eq!(parse_response(r).unwrap(), (404, b"{}".to_vec()));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), (200, b"abcde".to_vec()));
    }

    #[test]
    fn refuses_broken_answers() {
        for r in [&b"HTTP/1.1 200 OK\r\n"[..], b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}"] {
            assert!(matches!(parse_response(r), Err(ClientError::BadResponse(_))), "{r:?}");
        }
    }

    #[test]
    fn a_server_that_never_answers_or_never_accepts_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mute.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let client = ApiClient::new(&path).with_timeout(Duration::from_millis(200));
        // Accepted (by the kernel's backlog) but never answered.
        let err = client.get("/vm").unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
        // A full backlog: a blocking connect() would wait forever here.
        let mut held = Vec::new();
        while let Ok(s) = connect_nonblocking(&path) {
            held.push(s);
            assert!(held.len() < 100_000, "the backlog never filled");
        }
        let err = client.get("/vm").unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("no complete answer"), "{err}");
        drop(listener);
    }

    #[test]
    fn says_when_there_is_no_socket_or_no_listener() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        let err = ApiClient::new(&missing).get("/vm").unwrap_err();
        assert!(matches!(err, ClientError::NoSocket { .. }), "{err}");
        assert!(err.to_string().contains("--api-socket"), "{err}");
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let err = ApiClient::new(&stale).get("/vm").unwrap_err();
        assert!(matches!(err, ClientError::NotListening { .. }), "{err}");
    }
}
