//! The HTTP/1.1 the control API speaks, and no more: one request per connection, read
//! without blocking as it arrives ([`RequestReader`]), its head under a size cap, its
//! body read only when a `Content-Length` within [`MAX_BODY`] announces it (never
//! allocated from what the client claims), and an answer that always closes the
//! connection. The server (`api_connection.rs`) holds each part to its [`Deadlines`].
//! Keeping it this small is what lets the server promise that no client can make it
//! allocate, wait or queue without bound (docs/api.md, "Limits").

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Largest request body accepted; the biggest real one (a batch of poison ranges) is far smaller.
pub const MAX_BODY: usize = 64 * 1024;

/// Largest request line plus headers accepted.
pub const MAX_HEAD: usize = 8 * 1024;

/// Why a request could not be read. Each maps to the status answered (if the client
/// can still be answered at all).
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("request headers larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("request body too large: at most {MAX_BODY} bytes")]
    BodyTooLarge,
    #[error("the request headers did not arrive within {0:?}")]
    HeadTimeout(Duration),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error("the connection closed before the request was complete")]
    Closed,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("HTTP version `{0}` is not supported: send HTTP/1.1")]
    Version(String),
    #[error("Transfer-Encoding is not supported: send the body with a Content-Length")]
    TransferEncoding,
    #[error("cannot read the request: {0}")]
    Io(#[source] io::Error),
}

impl HttpError {
    /// The status to answer with; `None` when nobody is left to answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::HeadTooLarge => Some(431),
            HttpError::BodyTooLarge => Some(413),
            HttpError::HeadTimeout(_) | HttpError::BodyTimeout(_) => Some(408),
            HttpError::Malformed(_) => Some(400),
            HttpError::Version(_) => Some(505),
            HttpError::TransferEncoding => Some(501),
            HttpError::Closed | HttpError::Io(_) => None,
        }
    }
}

/// How long a client may take over each part of its request and our answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From accepting the connection to the end of the headers.
    pub head: Duration,
    /// From the end of the headers to the end of the body.
    pub body: Duration,
    /// For writing the whole answer (a client that does not read it is dropped).
    pub write: Duration,
}

/// A request read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    pub body: Vec<u8>,
}

/// The part of a request being read, each with its own deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Head,
    Body,
}

/// What a read of the bytes that have arrived gave.
#[derive(Debug)]
pub enum Progress {
    /// More is needed; nothing arrived that could complete it yet.
    Pending,
    Complete(HttpRequest),
}

/// One request read from a non-blocking stream as its bytes arrive, so that the host I/O
/// loop serves every client without waiting for any. What it holds is bounded by
/// [`MAX_HEAD`] and [`MAX_BODY`] whatever the client sends.
#[derive(Debug, Default)]
pub struct RequestReader {
    /// The head until it is complete, then the body.
    buf: Vec<u8>,
    head: Option<Head>,
    continue_owed: bool,
}

impl RequestReader {
    pub fn part(&self) -> Part {
        if self.head.is_some() {
            Part::Body
        } else {
            Part::Head
        }
    }

    /// Whether `100 Continue` is owed now (curl waits for it before bodies over 1 KiB);
    /// true once at most.
    pub fn take_continue(&mut self) -> bool {
        std::mem::take(&mut self.continue_owed)
    }

    /// Reads what `stream` has (until it would block). Bytes after the body (a pipelined
    /// second request) are never read: one request per connection.
    pub fn read_from(&mut self, stream: &mut impl Read) -> Result<Progress, HttpError> {
        let mut chunk = [0u8; 4096];
        loop {
            let want = match &self.head {
                None => chunk.len(),
                Some(head) if self.buf.len() >= head.length => {
                    let head = self.head.take().expect("matched just above");
                    let body = std::mem::take(&mut self.buf);
                    return Ok(Progress::Complete(HttpRequest { method: head.method, target: head.target, body }));
                }
                Some(head) => (head.length - self.buf.len()).min(chunk.len()),
            };
            match stream.read(&mut chunk[..want]) {
                Ok(0) => {
                    return Err(if self.head.is_none() && !self.buf.is_empty() {
                        HttpError::Malformed("incomplete headers".into())
                    } else {
                        HttpError::Closed
                    })
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if self.head.is_none() {
                        self.take_head()?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Progress::Pending),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(HttpError::Io(e)),
            }
        }
    }

    /// Parses the head once its end has arrived; what followed it starts the body.
    fn take_head(&mut self) -> Result<(), HttpError> {
        let Some((end, skip)) = head_end(&self.buf) else {
            if self.buf.len() > MAX_HEAD {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(());
        };
        if end > MAX_HEAD {
            return Err(HttpError::HeadTooLarge);
        }
        let head = parse_head(&self.buf[..end])?;
        let mut body = self.buf.split_off(end + skip);
        body.truncate(head.length);
        self.continue_owed = head.expect_continue && body.len() < head.length;
        self.buf = body;
        self.head = Some(head);
        Ok(())
    }
}

/// Where the head ends (`\r\n\r\n`, or `\n\n` from clients that send bare line feeds)
/// and how long the terminator is.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[derive(Debug)]
struct Head {
    method: String,
    target: String,
    /// The body's length, at most [`MAX_BODY`].
    length: usize,
    expect_continue: bool,
}

fn parse_head(raw: &[u8]) -> Result<Head, HttpError> {
    let text = std::str::from_utf8(raw).map_err(|_| HttpError::Malformed("headers are not UTF-8".into()))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed(format!("request line `{}`", printable(request_line))));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed(format!("method `{}`", printable(method))));
    }
    if !target.starts_with('/') {
        return Err(HttpError::Malformed(format!("request target `{}`: give a path", printable(target))));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::Version(printable(version)));
    }
    let mut content_length: Option<u64> = None;
    let mut expect_continue = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::Malformed(format!("header line `{}`", printable(line))));
        };
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            let length = parse_length(value)?;
            if content_length.is_some_and(|l| l != length) {
                return Err(HttpError::Malformed("two different Content-Length headers".into()));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::TransferEncoding);
        } else if name.eq_ignore_ascii_case("expect") && value.eq_ignore_ascii_case("100-continue") {
            expect_continue = true;
        }
    }
    let length = content_length.unwrap_or(0);
    // Checked before reading or reserving anything: the claim is the client's, not ours.
    if length > MAX_BODY as u64 {
        return Err(HttpError::BodyTooLarge);
    }
    Ok(Head { method: method.to_string(), target: target.to_string(), length: length as usize, expect_continue })
}

/// A Content-Length: digits only. Values beyond u64 are as "too large" as 2^40 is.
fn parse_length(value: &str) -> Result<u64, HttpError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::Malformed(format!("Content-Length `{}` is not a number", printable(value))));
    }
    value.parse().or(Err(HttpError::BodyTooLarge))
}

/// At most 64 characters, control bytes escaped: error messages quote client input.
fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_debug).collect()
}

/// Whether the peer has closed its end completely (for a Unix stream socket, POLLHUP:
/// both directions shut; a client that only shut its writing side still waits).
pub fn peer_gone(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd { fd: stream.as_raw_fd(), events: 0, revents: 0 };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

/// Writes all of `data` before `deadline`.
pub fn write_all_by(stream: &mut UnixStream, mut data: &[u8], deadline: Instant) -> io::Result<()> {
    while !data.is_empty() {
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        match stream.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Time left before `deadline`; an error once it has passed (a zero timeout would mean
/// "wait forever" to the socket).
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(left)
}

/// A complete answer: status, JSON body, `Content-Length`, `Connection: close`, and
/// `Allow` for a 405.
pub fn response_bytes(status: u16, body: &[u8], allow: Option<&str>) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    if let Some(allow) = allow {
        head.push_str(&format!("Allow: {allow}\r\n"));
    }
    head.push_str("\r\n");
    let mut answer = head.into_bytes();
    answer.extend_from_slice(body);
    answer
}

/// The answer `100 Continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads what a client sent and then closed (so the read never waits).
    fn read(input: &[u8]) -> Result<HttpRequest, HttpError> {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(input).unwrap();
        drop(theirs);
        ours.set_nonblocking(true).unwrap();
        match RequestReader::default().read_from(&mut ours)? {
            Progress::Complete(request) => Ok(request),
            Progress::Pending => panic!("a closed client left the request pending"),
        }
    }

    #[test]
    fn reads_method_target_and_body() {
        let r = read(b"PUT /api/v1/ars?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.method.as_str(), r.target.as_str(), &r.body[..]), ("PUT", "/api/v1/ars?x=1", &b"{}"[..]));
        let r = read(b"GET /api/v1/vm HTTP/1.0\n\n").unwrap();
        assert_eq!((r.method.as_str(), r.body.len()), ("GET", 0));
    }

    #[test]
    fn a_pipelined_second_request_is_not_part_of_the_body() {
        let r = read(b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /vm HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.body, b"{}");
    }

    #[test]
    fn huge_content_lengths_are_refused_before_reading() {
        for length in ["65537", "1099511627776", "9223372036854775807", "99999999999999999999999"] {
            let input = format!("POST /p HTTP/1.1\r\nContent-Length: {length}\r\n\r\n{{}}");
            assert!(matches!(read(input.as_bytes()), Err(HttpError::BodyTooLarge)), "{length}");
        }
    }

    #[test]
    fn malformed_heads_are_400_and_other_versions_505() {
        for input in [
            &b"garbage\r\n\r\n"[..],
            b"get /x HTTP/1.1\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"\xff\xfe /x HTTP/1.1\r\n\r\n",
        ] {
            let e = read(input).unwrap_err();
            assert_eq!(e.status(), Some(400), "{input:?}: {e}");
        }
        assert_eq!(read(b"GET /x HTTP/9.9\r\n\r\n").unwrap_err().status(), Some(505));
        assert_eq!(read(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err().status(), Some(501));
    }

    #[test]
    fn oversized_heads_are_431() {
        let input = format!("GET /x HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(read(input.as_bytes()), Err(HttpError::HeadTooLarge)));
        // Without an end of headers in sight, too.
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(format!("GET /x HTTP/1.1\r\nX: {}", "a".repeat(2 * MAX_HEAD)).as_bytes()).unwrap();
        ours.set_nonblocking(true).unwrap();
        assert!(matches!(RequestReader::default().read_from(&mut ours), Err(HttpError::HeadTooLarge)));
    }

    #[test]
    fn a_short_body_or_head_is_not_a_request() {
        assert!(matches!(read(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n{"), Err(HttpError::Closed)));
        assert!(matches!(read(b""), Err(HttpError::Closed)));
        assert_eq!(read(b"GET /x HTTP/1.1\r\n").unwrap_err().status(), Some(400));
    }

    /// A request that arrives in pieces is read piece by piece, the part it is in known
    /// at each step (the connection's deadline depends on it).
    #[test]
    fn a_request_in_pieces_completes_with_its_last_piece() {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut reader = RequestReader::default();
        assert!(matches!(reader.read_from(&mut ours), Ok(Progress::Pending)));
        theirs.write_all(b"PUT /x HTTP/1.1\r\nContent-").unwrap();
        assert!(matches!(reader.read_from(&mut ours), Ok(Progress::Pending)));
        assert_eq!(reader.part(), Part::Head);
        theirs.write_all(b"Length: 5\r\n\r\n{\"").unwrap();
        assert!(matches!(reader.read_from(&mut ours), Ok(Progress::Pending)));
        assert_eq!(reader.part(), Part::Body);
        assert!(!reader.take_continue(), "not asked for");
        theirs.write_all(b"a\"}").unwrap();
        match reader.read_from(&mut ours) {
            Ok(Progress::Complete(r)) => assert_eq!(r.body, b"{\"a\"}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expect_100_continue_is_owed_once_until_the_body_is_there() {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.write_all(b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n").unwrap();
        let mut reader = RequestReader::default();
        assert!(matches!(reader.read_from(&mut ours), Ok(Progress::Pending)));
        assert!(reader.take_continue());
        assert!(!reader.take_continue());
        // A client that sent its body without waiting is owed nothing.
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.write_all(b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        let mut reader = RequestReader::default();
        assert!(matches!(reader.read_from(&mut ours), Ok(Progress::Complete(_))));
        assert!(!reader.take_continue());
    }

    #[test]
    fn a_peer_that_closed_is_gone_one_that_only_stopped_writing_is_not() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        assert!(!peer_gone(&ours));
        theirs.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(!peer_gone(&ours));
        drop(theirs);
        assert!(peer_gone(&ours));
    }

    #[test]
    fn answers_close_the_connection_and_carry_allow() {
        assert_eq!(
            String::from_utf8(response_bytes(405, b"{}", Some("GET, PUT"))).unwrap(),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
             Connection: close\r\nAllow: GET, PUT\r\n\r\n{}"
        );
    }
}
