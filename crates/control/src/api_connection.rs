//! One client connection of the control API, as the host I/O loop serves it: read
//! without blocking until the request is complete, handed to a handler (the loop stops
//! watching it meanwhile), then answered without blocking. Each part has a deadline
//! (`Deadlines`); a client past one is answered 408 or, if it does not read its answer,
//! dropped. Nothing here ever waits.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use event_manager::EventSet;

use crate::handlers::Reply;
use crate::http::{self, Deadlines, HttpError, HttpRequest, Part, Progress, RequestReader};

/// Most bytes discarded from what a client sent beyond its request.
const LINGER_BYTES: usize = 2 * http::MAX_BODY;

enum Phase {
    Reading(RequestReader),
    /// The request is with a handler; the answer comes through [`Connection::answer`].
    Handling,
    Writing {
        answer: Vec<u8>,
        written: usize,
    },
    Closed,
}

pub(crate) struct Connection {
    stream: UnixStream,
    phase: Phase,
    /// When the current part must be done; none while a handler works (a guest command
    /// may run for minutes, and its client waits for it on purpose).
    deadline: Option<Instant>,
    deadlines: Deadlines,
}

impl Connection {
    /// A connection just accepted; `stream` is non-blocking.
    pub(crate) fn new(stream: UnixStream, deadlines: Deadlines, now: Instant) -> Self {
        Connection {
            stream,
            phase: Phase::Reading(RequestReader::default()),
            deadline: Some(now + deadlines.head),
            deadlines,
        }
    }

    pub(crate) fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// What the loop should wait for on this connection; `None` while a handler works
    /// (a client that hangs up then must not wake the loop over and over) or once closed.
    pub(crate) fn interest(&self) -> Option<EventSet> {
        match self.phase {
            Phase::Reading(_) => Some(EventSet::IN),
            Phase::Writing { .. } => Some(EventSet::OUT),
            Phase::Handling | Phase::Closed => None,
        }
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A request is with its handler or its answer is being written: a client is
    /// waiting for something it was promised.
    pub(crate) fn is_busy(&self) -> bool {
        matches!(self.phase, Phase::Handling | Phase::Writing { .. })
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Serves the connection after epoll said it is ready: reads what has arrived, or
    /// writes what fits. A complete request is returned for a handler.
    pub(crate) fn on_ready(&mut self, now: Instant) -> Option<HttpRequest> {
        match &mut self.phase {
            Phase::Reading(reader) => {
                let was = reader.part();
                let read = reader.read_from(&mut self.stream);
                let owes_continue = reader.take_continue();
                let part = reader.part();
                match read {
                    Ok(Progress::Complete(request)) => {
                        self.phase = Phase::Handling;
                        self.deadline = None;
                        return Some(request);
                    }
                    Ok(Progress::Pending) => {
                        if was == Part::Head && part == Part::Body {
                            self.deadline = Some(now + self.deadlines.body);
                        }
                        // A fresh connection's socket buffer always has room for these
                        // few bytes; if it somehow has not, the client's wait for them
                        // ends at the body deadline.
                        if owes_continue {
                            let _ = (&self.stream).write(http::CONTINUE);
                        }
                    }
                    Err(e) => self.fail(&e, now),
                }
            }
            Phase::Writing { .. } => self.write(),
            Phase::Handling | Phase::Closed => {}
        }
        None
    }

    /// The handler's answer: written as far as the socket takes it now, the rest when
    /// epoll says there is room.
    pub(crate) fn answer(&mut self, answer: Vec<u8>, now: Instant) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Writing { answer, written: 0 };
        self.deadline = Some(now + self.deadlines.write);
        self.write();
    }

    /// Acts on a deadline that has passed: a request not read in time is answered 408,
    /// an answer not taken in time is dropped.
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.deadline.is_none_or(|d| d > now) {
            return;
        }
        match &self.phase {
            Phase::Reading(reader) => {
                let e = match reader.part() {
                    Part::Head => HttpError::HeadTimeout(self.deadlines.head),
                    Part::Body => HttpError::BodyTimeout(self.deadlines.body),
                };
                self.fail(&e, now);
            }
            Phase::Writing { .. } => self.close(),
            Phase::Handling | Phase::Closed => {}
        }
    }

    /// A request that could not be read: answered with the status naming why, when
    /// someone is left to read it.
    fn fail(&mut self, e: &HttpError, now: Instant) {
        match e.status() {
            Some(status) => self.answer(encode(&Reply::error(status, e.to_string())), now),
            None => self.close(),
        }
    }

    fn write(&mut self) {
        let Phase::Writing { answer, written } = &mut self.phase else {
            return;
        };
        while *written < answer.len() {
            match (&self.stream).write(&answer[*written..]) {
                Ok(0) => return self.close(),
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The client went away; nobody is left to answer.
                Err(_) => return self.close(),
            }
        }
        self.linger();
        self.close();
    }

    /// Closing a Unix socket whose input has unread bytes (a body we refused, pipelined
    /// requests) makes the client's next read fail with a reset, which some clients
    /// report instead of our answer. So discard what has already arrived (a bounded
    /// amount, without waiting for more) before closing; a client still sending after
    /// that gets the reset.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let mut discarded = 0;
        let mut chunk = [0u8; 4096];
        while discarded < LINGER_BYTES {
            match io::Read::read(&mut self.stream, &mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.deadline = None;
    }
}

/// A reply as the bytes of a complete answer.
pub(crate) fn encode(reply: &Reply) -> Vec<u8> {
    let body = serde_json::to_vec_pretty(&reply.body).unwrap_or_default();
    http::response_bytes(reply.status, &body, reply.allow.as_deref())
}

/// Answers `reply` on a connection that is not served (over the connection limit, or
/// the server is stopping) and closes it, never blocking: a fresh socket's buffer holds
/// the short answer, and if it does not the client simply sees the close.
pub(crate) fn refuse(stream: UnixStream, reply: &Reply) {
    let _ = (&stream).write(&encode(reply));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Duration;

    fn deadlines() -> Deadlines {
        Deadlines { head: Duration::from_secs(1), body: Duration::from_secs(2), write: Duration::from_secs(3) }
    }

    fn pair(now: Instant) -> (Connection, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Connection::new(ours, deadlines(), now), theirs)
    }

    fn status_of(theirs: &mut UnixStream) -> String {
        let mut text = String::new();
        theirs.read_to_string(&mut text).unwrap();
        text.lines().next().unwrap_or("").to_string()
    }

    #[test]
    fn each_part_has_its_own_deadline_and_a_late_one_is_408() {
        let t0 = Instant::now();
        let (mut conn, mut theirs) = pair(t0);
        assert_eq!(conn.deadline(), Some(t0 + deadlines().head));
        theirs.write_all(b"PUT /x HTTP/1.1\r\nContent-Length: 9\r\n\r\n{").unwrap();
        let t1 = t0 + Duration::from_millis(500);
        assert!(conn.on_ready(t1).is_none());
        assert_eq!(conn.deadline(), Some(t1 + deadlines().body), "the body's deadline starts with the body");
        conn.expire(t1 + Duration::from_secs(1));
        assert_eq!(conn.interest(), Some(EventSet::IN), "not due yet");
        conn.expire(t1 + deadlines().body);
        assert!(conn.is_closed(), "a 408 this short is written at once");
        assert_eq!(status_of(&mut theirs), "HTTP/1.1 408 Request Timeout");
    }

    #[test]
    fn a_complete_request_waits_for_its_handler_without_a_deadline_then_is_answered() {
        let t0 = Instant::now();
        let (mut conn, mut theirs) = pair(t0);
        theirs.write_all(b"GET /api/v1/vm HTTP/1.1\r\n\r\n").unwrap();
        let request = conn.on_ready(t0).expect("complete");
        assert_eq!(request.target, "/api/v1/vm");
        assert_eq!((conn.interest(), conn.deadline()), (None, None));
        conn.expire(t0 + Duration::from_secs(3600));
        assert!(!conn.is_closed(), "a handler may take as long as it takes");
        conn.answer(encode(&Reply::ok(serde_json::json!({"state": "running"}))), t0);
        assert!(conn.is_closed());
        assert_eq!(status_of(&mut theirs), "HTTP/1.1 200 OK");
    }

    #[test]
    fn an_answer_the_client_does_not_take_waits_for_room_then_is_dropped_at_its_deadline() {
        let t0 = Instant::now();
        let (mut conn, mut theirs) = pair(t0);
        theirs.write_all(b"GET /api/v1/events HTTP/1.1\r\n\r\n").unwrap();
        conn.on_ready(t0).expect("complete");
        conn.answer(vec![b'x'; 8 << 20], t0);
        assert_eq!(conn.interest(), Some(EventSet::OUT), "more than a socket buffer: the rest waits for room");
        conn.expire(t0 + deadlines().write);
        assert!(conn.is_closed());
    }

    #[test]
    fn a_client_that_hangs_up_mid_request_is_closed_without_an_answer() {
        let t0 = Instant::now();
        let (mut conn, theirs) = pair(t0);
        (&theirs).write_all(b"PUT /api/v1/vm/power-off HTTP/1.1\r\nContent-Length: 2\r\n\r\n{").unwrap();
        drop(theirs);
        assert!(conn.on_ready(t0).is_none(), "never handed to a handler");
        assert!(conn.is_closed());
    }
}
