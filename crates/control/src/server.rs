//! The server: a Unix socket listener whose accept loop only accepts (it never reads
//! from a client, so no client can stall it), each connection served on its own thread
//! under a connection limit and read with deadlines (`http.rs`), like firecracker's API
//! thread in what it promises, with threads so that one slow client waits alone.
//! Stopped, and its socket removed, when the handle is dropped.

use nvdimm_model::sync::LockUnpoisoned;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::backend::Backend;
use crate::exec_queue::{ExecQueue, Queued, MAX_EXEC_PENDING};
use crate::handlers::{self, Reply, Request};
use crate::http::{self, HttpRequest};
use crate::limits::{ServerLimits, Slots};
use crate::routes::{lookup, Endpoint, Lookup};
use crate::types::API_PREFIX;

pub use crate::http::MAX_BODY;

/// How long the accept loop rests after an accept error that retrying at once would
/// only repeat (out of descriptors or memory): the pending client waits in the backlog
/// and is accepted once a connection has closed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("--api-socket {path}: the path exists and is not a socket; choose another path or remove it")]
    NotASocket { path: PathBuf },
    #[error("--api-socket {path}: another process is serving this socket; stop it or choose another path")]
    InUse { path: PathBuf },
    #[error("--api-socket {path}: cannot remove the stale socket: {source}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--api-socket {path}: cannot listen: {message}")]
    Bind { path: PathBuf, message: String },
    #[error("cannot start the API thread: {0}")]
    Thread(#[source] io::Error),
}

/// Starts the control API server.
pub struct ApiServer;

impl ApiServer {
    /// Listens on `socket_path` and answers requests until the handle is dropped, with
    /// the default [`ServerLimits`]. A socket file left by a VMM that exited is
    /// replaced; a path that exists and is not a socket, or a socket someone still
    /// serves, is refused.
    pub fn start(socket_path: &Path, backend: Arc<dyn Backend>) -> Result<ApiServerHandle, ApiError> {
        Self::start_with(socket_path, backend, ServerLimits::default())
    }

    /// [`ApiServer::start`] with other limits (tests use short deadlines).
    pub fn start_with(
        socket_path: &Path,
        backend: Arc<dyn Backend>,
        limits: ServerLimits,
    ) -> Result<ApiServerHandle, ApiError> {
        let path = socket_path.to_path_buf();
        prepare_path(&path)?;
        let bind_error = |e: io::Error| ApiError::Bind { path: path.clone(), message: e.to_string() };
        let listener = bind_listening(&path).map_err(bind_error)?;
        let identity = std::fs::symlink_metadata(&path).map(|m| (m.dev(), m.ino())).map_err(bind_error)?;
        // Non-blocking so that an accept after poll() said "ready" cannot hang if the
        // client has already gone.
        listener.set_nonblocking(true).map_err(bind_error)?;
        let (wake_rx, wake_tx) = UnixStream::pair().map_err(ApiError::Thread)?;
        let shared = Arc::new(Shared {
            backend: Mutex::new(Some(backend)),
            limits,
            slots: Slots::new(limits.max_connections),
            stopping: AtomicBool::new(false),
            handler_lock: Mutex::new(()),
            exec_queue: ExecQueue::new(MAX_EXEC_PENDING),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("vnvdimm-api".into())
                .spawn(move || accept_loop(&listener, &wake_rx, &shared))
                .map_err(ApiError::Thread)?
        };
        Ok(ApiServerHandle { path, identity, wake: wake_tx, shared, thread: Some(thread) })
    }
}

/// A listening socket at `path` that appears there only once it listens: bound under a
/// temporary name beside it, then renamed into place. A client that waits for the path to
/// exist (scripts, the tests) could otherwise connect between bind and listen and be
/// refused as if the VMM had exited, as one did on a loaded machine.
fn bind_listening(path: &Path) -> io::Result<UnixListener> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".new");
    let temp = PathBuf::from(temp);
    let _ = std::fs::remove_file(&temp);
    match UnixListener::bind(&temp) {
        Ok(listener) => match std::fs::rename(&temp, path) {
            Ok(()) => Ok(listener),
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                Err(e)
            }
        },
        // The longer name may not fit in sun_path (108 bytes): bind the path itself.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => UnixListener::bind(path),
        Err(e) => Err(e),
    }
}

/// The running server. Dropping it stops accepting, answers requests still being read
/// with 503, and removes the socket file.
pub struct ApiServerHandle {
    path: PathBuf,
    /// (device, inode) of the socket we bound: only that file is removed on drop.
    identity: (u64, u64),
    wake: UnixStream,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServerHandle {
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Connections being served right now (for tests of the connection limit).
    pub fn connections(&self) -> usize {
        self.shared.slots.in_use()
    }

    /// `exec` requests queued or running right now.
    pub fn exec_pending(&self) -> usize {
        self.shared.exec_queue.pending()
    }
}

impl Drop for ApiServerHandle {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Connection threads may outlive the handle by a deadline or two; they must not
        // keep the VM (its device model, its backing-file locks) alive meanwhile.
        self.shared.backend.lock_unpoisoned().take();
        // Wakes poll(); a failed write still leaves `stopping` for the next wake-up.
        let _ = io::Write::write(&mut &self.wake, &[1]);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the accept loop and every connection thread share.
struct Shared {
    /// Taken away when the handle is dropped; requests then get 503.
    backend: Mutex<Option<Arc<dyn Backend>>>,
    limits: ServerLimits,
    slots: Arc<Slots>,
    stopping: AtomicBool,
    /// Requests other than `exec` run one at a time, in the order their bodies arrived,
    /// as they did on the single API thread before: backends may rely on the device
    /// model change and its backend call not interleaving with another request's. Only
    /// the handler holds it, never the reading or writing of a connection.
    handler_lock: Mutex<()>,
    exec_queue: Arc<ExecQueue>,
}

fn prepare_path(path: &Path) -> Result<(), ApiError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ApiError::Bind { path: path.to_path_buf(), message: e.to_string() }),
    };
    if !meta.file_type().is_socket() {
        return Err(ApiError::NotASocket { path: path.to_path_buf() });
    }
    if UnixStream::connect(path).is_ok() {
        return Err(ApiError::InUse { path: path.to_path_buf() });
    }
    std::fs::remove_file(path).map_err(|source| ApiError::RemoveStale { path: path.to_path_buf(), source })
}

/// Accepts until stopped. No error ends it: each is either retried at once or, when
/// retrying could only fail again for now (no descriptors, no memory), after a pause.
fn accept_loop(listener: &UnixListener, wake: &UnixStream, shared: &Arc<Shared>) {
    while !shared.stopping.load(Ordering::SeqCst) {
        match wait_readable(listener, wake) {
            Ok(Ready::Wake) => break,
            Ok(Ready::Listener) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        }
        match listener.accept() {
            Ok((stream, _)) => admit(stream, shared),
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {}
            // The client gave up between connect and accept.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            // EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unforeseen.
            Err(_) => std::thread::sleep(ACCEPT_BACKOFF),
        }
    }
}

enum Ready {
    Listener,
    Wake,
}

fn wait_readable(listener: &UnixListener, wake: &UnixStream) -> io::Result<Ready> {
    let mut fds = [
        libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: wake.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // POLLHUP on the wake end means the handle is gone: stop as well.
    if fds[1].revents != 0 {
        return Ok(Ready::Wake);
    }
    Ok(Ready::Listener)
}

/// Gives the connection a slot and a thread, or answers 503 at once when there is no slot.
fn admit(stream: UnixStream, shared: &Arc<Shared>) {
    let Some(slot) = shared.slots.try_acquire() else {
        refuse(stream, &format!("too many connections: at most {} at once; try again", shared.limits.max_connections));
        return;
    };
    let shared = shared.clone();
    // If the thread cannot be created the closure, with the stream and the slot, is
    // dropped: the client sees the connection close and may retry.
    let _ = std::thread::Builder::new().name("vnvdimm-api-conn".into()).spawn(move || {
        let _slot = slot;
        serve_connection(stream, &shared);
    });
}

/// Answers 503 without reading the request or ever blocking: a fresh socket's buffer
/// holds the short answer, and if it does not the client simply sees the close.
fn refuse(mut stream: UnixStream, message: &str) {
    if stream.set_nonblocking(true).is_ok() {
        let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
        let _ = http::write_response(&mut stream, 503, &body, None, Instant::now() + Duration::from_secs(1));
    }
}

fn serve_connection(mut stream: UnixStream, shared: &Shared) {
    let deadlines = shared.limits.deadlines;
    let reply = match http::read_request(&mut stream, &deadlines) {
        Ok(request) => answer(&request, &stream, shared),
        Err(e) => match e.status() {
            Some(status) => Reply::error(status, e.to_string()),
            None => return,
        },
    };
    let body = serde_json::to_vec_pretty(&reply.body).unwrap_or_default();
    // The client may have gone away or stopped reading; either way we are done with it.
    let written = http::write_response(
        &mut stream,
        reply.status,
        &body,
        reply.allow.as_deref(),
        Instant::now() + deadlines.write,
    );
    if written.is_ok() {
        linger(&mut stream);
    }
}

/// Most bytes discarded from what a client sent beyond its request.
const LINGER_BYTES: usize = 2 * MAX_BODY;

/// Closing a Unix socket whose input has unread bytes (a body we refused, pipelined
/// requests) makes the client's next read fail with a reset, which some clients report
/// instead of our answer. So discard what has already arrived (a bounded amount, without
/// waiting for more: the slot is not held for a client that keeps the connection open)
/// before closing; a client still sending after that gets the reset.
fn linger(stream: &mut UnixStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut discarded = 0;
    let mut chunk = [0u8; 4096];
    while discarded < LINGER_BYTES {
        match io::Read::read(stream, &mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

fn answer(request: &HttpRequest, stream: &UnixStream, shared: &Shared) -> Reply {
    let backend = shared.backend.lock_unpoisoned().clone();
    let Some(backend) = backend.filter(|_| !shared.stopping.load(Ordering::SeqCst)) else {
        return Reply::error(503, "the VMM is shutting down");
    };
    let backend = backend.as_ref();
    // A guest command may run for minutes; it does not hold up the other requests. It
    // queues for the guest (exec_queue.rs) and leaves the queue if its client hangs up.
    if is_exec(request) {
        let Some(ticket) = shared.exec_queue.enter() else {
            return Reply::error(
                429,
                format!("too many guest commands queued or running: at most {MAX_EXEC_PENDING}; try again later"),
            );
        };
        let client_gone = || http::peer_gone(stream);
        let queued = Queued { inner: backend, ticket: &ticket, client_gone: &client_gone };
        return route(&request.method, &request.target, &request.body, &queued);
    }
    let _turn = shared.handler_lock.lock_unpoisoned();
    route(&request.method, &request.target, &request.body, backend)
}

fn is_exec(request: &HttpRequest) -> bool {
    let path = request.target.split('?').next().unwrap_or("");
    path.strip_prefix(API_PREFIX)
        .is_some_and(|rest| matches!(lookup(&request.method, rest), Lookup::Found { endpoint: Endpoint::Exec, .. }))
}

/// Answers one request given as method, URL (path and query) and body.
pub fn route(method: &str, url: &str, body: &[u8], backend: &dyn Backend) -> Reply {
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    };
    let Some(rest) = path.strip_prefix(API_PREFIX) else {
        return Reply::error(404, format!("no such endpoint {path}: every path starts with {API_PREFIX}"));
    };
    match lookup(method, rest) {
        Lookup::Found { endpoint, index } => handlers::handle(backend, &Request { endpoint, index, query, body }),
        Lookup::WrongMethod { allow } => {
            let allow = allow.join(", ");
            let mut reply = Reply::error(405, format!("{path} does not take {method}; it takes {allow}"));
            reply.allow = Some(allow);
            reply
        }
        Lookup::NotFound => Reply::error(404, format!("no such endpoint {path} (see docs/api.md)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_socket_path_appears_listening_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        // A temporary left by a VMM killed between bind and rename is replaced.
        std::fs::write(dir.path().join("api.sock.new"), b"stale").unwrap();
        let listener = bind_listening(&path).unwrap();
        assert!(!dir.path().join("api.sock.new").exists());
        // Listening from the moment the path exists: a connect succeeds before any accept.
        UnixStream::connect(&path).expect("connect as soon as the path exists");
        drop(listener);
    }
}
