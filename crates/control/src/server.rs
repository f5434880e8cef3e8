//! The server: a Unix socket listener served by the host I/O loop (api_source.rs),
//! like firecracker's API in what it promises: no client can stall it, use it up or hold
//! up another client. Each connection is read and answered without blocking under its
//! deadlines; requests run on the worker's threads (api_worker.rs). Stopped, and its
//! socket removed, when the handle is dropped.

use nvdimm_model::sync::LockUnpoisoned;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::api_source::{ApiSource, SourceParts};
use crate::api_worker::{Answers, Worker};
use crate::backend::Backend;
use crate::exec_queue::{ExecQueue, MAX_EXEC_PENDING};
use crate::handlers::{self, Reply, Request};
use crate::host_io::{HostIo, HostIoError};
use crate::limits::ServerLimits;
use crate::routes::{lookup, Lookup};
use crate::types::API_PREFIX;

pub use crate::http::MAX_BODY;

/// Longest a stopping server waits for the answers it owes (requests being handled or
/// written) before it lets go; a handler stuck past this loses its client's answer.
const ANSWERS_IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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
    #[error("cannot start the API's handler thread or its descriptors: {0}")]
    Thread(#[source] io::Error),
    #[error("cannot serve the API in the host I/O loop: {0}")]
    Loop(#[from] HostIoError),
}

/// Starts the control API server.
pub struct ApiServer;

impl ApiServer {
    /// Listens on `socket_path` and answers requests until the handle is dropped, with
    /// the default [`ServerLimits`], in a host I/O loop of its own. A socket file left
    /// by a VMM that exited is replaced; a path that exists and is not a socket, or a
    /// socket someone still serves, is refused.
    pub fn start(socket_path: &Path, backend: Arc<dyn Backend>) -> Result<ApiServerHandle, ApiError> {
        Self::start_with(socket_path, backend, ServerLimits::default())
    }

    /// [`ApiServer::start`] with other limits (tests use short deadlines).
    pub fn start_with(
        socket_path: &Path,
        backend: Arc<dyn Backend>,
        limits: ServerLimits,
    ) -> Result<ApiServerHandle, ApiError> {
        Self::serve_with(&HostIo::start()?, socket_path, backend, limits)
    }

    /// Serves the API as a source of a VM's host I/O loop (the way `vnvdimm run` does),
    /// with the default limits.
    pub fn serve_on(
        host_io: &HostIo,
        socket_path: &Path,
        backend: Arc<dyn Backend>,
    ) -> Result<ApiServerHandle, ApiError> {
        Self::serve_with(host_io, socket_path, backend, ServerLimits::default())
    }

    fn serve_with(
        host_io: &HostIo,
        socket_path: &Path,
        backend: Arc<dyn Backend>,
        limits: ServerLimits,
    ) -> Result<ApiServerHandle, ApiError> {
        let path = socket_path.to_path_buf();
        prepare_path(&path)?;
        let bind_error = |e: io::Error| ApiError::Bind { path: path.clone(), message: e.to_string() };
        let listener = bind_listening(&path).map_err(bind_error)?;
        let identity = std::fs::symlink_metadata(&path).map(|m| (m.dev(), m.ino())).map_err(bind_error)?;
        // Non-blocking so that an accept after epoll said "ready" cannot hang if the
        // client has already gone.
        listener.set_nonblocking(true).map_err(bind_error)?;
        let shared = Arc::new(Shared {
            backend: Mutex::new(Some(backend)),
            limits,
            stopping: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            exec_queue: ExecQueue::new(MAX_EXEC_PENDING),
        });
        let (answers, answers_received, answers_ready) = Answers::new().map_err(ApiError::Thread)?;
        let worker = Worker::start(shared.clone(), answers).map_err(ApiError::Thread)?;
        let stop = EventFd::new(EFD_NONBLOCK).map_err(ApiError::Thread)?;
        let (quiet_tx, quiet) = mpsc::channel();
        let (drained_tx, drained) = mpsc::channel();
        let source = ApiSource::new(SourceParts {
            listener,
            answers: answers_received,
            answers_ready,
            stop: stop.try_clone().map_err(ApiError::Thread)?,
            worker,
            shared: shared.clone(),
            quiet: quiet_tx,
            drained: drained_tx,
        })
        .map_err(ApiError::Thread)?;
        let handle = ApiServerHandle {
            path,
            identity,
            stop,
            shared,
            quiet: Some(quiet),
            drained: Some(drained),
            host_io: Some(host_io.clone()),
        };
        // On failure the handle's drop removes the socket file again.
        host_io.add(Box::new(source))?;
        Ok(handle)
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

/// The running server. Dropping it stops accepting, lets go of the VM (requests still
/// being read are answered 503), and removes the socket file.
pub struct ApiServerHandle {
    path: PathBuf,
    /// (device, inode) of the socket we bound: only that file is removed on drop.
    identity: (u64, u64),
    /// Tells the loop's source to stop accepting.
    stop: EventFd,
    shared: Arc<Shared>,
    /// Says when no request is being handled or answered any more, once stopped.
    quiet: Option<Receiver<()>>,
    /// Says when the last connection is done, once stopped.
    drained: Option<Receiver<()>>,
    /// The loop serving us, kept running until our connections are done even when its
    /// VM has ended first (the VM's end is what answers a `power-off`).
    host_io: Option<HostIo>,
}

impl ApiServerHandle {
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Connections being served right now (for tests of the connection limit).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// `exec` requests queued or running right now.
    pub fn exec_pending(&self) -> usize {
        self.shared.exec_queue.pending()
    }
}

impl Drop for ApiServerHandle {
    fn drop(&mut self) {
        // The name goes first, so that no client connects while the listener closes (it
        // would be reset); those already connected are answered.
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Connections may outlive the handle by a deadline or two; they must not keep the
        // VM (its device model, its backing-file locks) alive meanwhile.
        self.shared.backend.lock_unpoisoned().take();
        let _ = self.stop.write(1);
        // A client whose request is being handled was promised an answer: the VMM must
        // not exit before writing it (a `power-off` is answered just as the VM ends).
        if let Some(quiet) = self.quiet.take() {
            let _ = quiet.recv_timeout(ANSWERS_IN_FLIGHT_WAIT);
        }
        if let (Some(host_io), Some(drained)) = (self.host_io.take(), self.drained.take()) {
            // The loop serves the connections still open until each is answered or past
            // its deadline; nobody waits for that.
            let _ = std::thread::Builder::new().name("vnvdimm-api-drain".into()).spawn(move || {
                let _ = drained.recv();
                drop(host_io);
            });
        }
    }
}

/// What the loop's source, the worker and the handle share.
pub(crate) struct Shared {
    /// Taken away when the handle is dropped; requests then get 503.
    pub(crate) backend: Mutex<Option<Arc<dyn Backend>>>,
    pub(crate) limits: ServerLimits,
    stopping: AtomicBool,
    pub(crate) connections: AtomicUsize,
    pub(crate) exec_queue: Arc<ExecQueue>,
}

impl Shared {
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
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

    /// The API shares the VM's host I/O loop with the console and the agent line: clients
    /// that send half a request or never read a large answer must not hold up the loop's
    /// other sources.
    #[test]
    fn stuck_clients_do_not_hold_up_the_loops_other_sources() {
        use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
        use nvdimm_model::event_log::EventKind;
        use std::io::Write;
        use std::sync::mpsc;
        use std::time::Duration;

        struct Probe {
            fd: EventFd,
            seen: mpsc::Sender<u64>,
        }
        impl MutEventSubscriber for Probe {
            fn process(&mut self, _: Events, _: &mut EventOps) {
                if let Ok(n) = self.fd.read() {
                    let _ = self.seen.send(n);
                }
            }
            fn init(&mut self, ops: &mut EventOps) {
                ops.add(Events::new(&self.fd, EventSet::IN)).unwrap();
            }
        }

        let host_io = HostIo::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let backend = Arc::new(crate::fake::FakeBackend::with_default_platform());
        {
            let mut p = backend.platform_lock();
            for i in 0..5000 {
                p.log_event(EventKind::PoisonAdded { dimm: 0, offset: i * 4096, length: 4096 });
            }
        }
        let api = ApiServer::serve_on(&host_io, &socket, backend).unwrap();
        let mut stuck = vec![];
        for request in [&b"GET /api/v1/vm HTTP/1.1\r\n"[..], b"PUT /api/v1/ars HTTP/1.1\r\nContent-Length: 90\r\n\r\n{"]
        {
            let mut s = UnixStream::connect(&socket).unwrap();
            s.write_all(request).unwrap();
            stuck.push(s);
        }
        for _ in 0..4 {
            // Several MiB of answer each, never read.
            let mut s = UnixStream::connect(&socket).unwrap();
            s.write_all(b"GET /api/v1/events HTTP/1.1\r\n\r\n").unwrap();
            stuck.push(s);
        }
        // The rest of the connection limit: silent clients.
        while stuck.len() < crate::limits::DEFAULT_MAX_CONNECTIONS {
            stuck.push(UnixStream::connect(&socket).unwrap());
        }
        let (seen, seen_rx) = mpsc::channel();
        let fd = EventFd::new(EFD_NONBLOCK).unwrap();
        let kick = fd.try_clone().unwrap();
        host_io.add(Box::new(Probe { fd, seen })).unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while api.connections() != stuck.len() {
            assert!(std::time::Instant::now() < end, "{} connections served", api.connections());
            std::thread::sleep(Duration::from_millis(10));
        }
        // And a client that connects as fast as it can, meanwhile: each connection is
        // beyond the limit and answered 503, and the other sources still get their turn.
        let flooding = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicUsize::new(0));
        let flood = {
            let (flooding, refused, socket) = (flooding.clone(), refused.clone(), socket.clone());
            std::thread::spawn(move || {
                while flooding.load(Ordering::Relaxed) {
                    if let Ok(mut s) = UnixStream::connect(&socket) {
                        let mut answer = String::new();
                        let _ = std::io::Read::read_to_string(&mut s, &mut answer);
                        if answer.starts_with("HTTP/1.1 503") {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        // The flood is under way (refused at least once) before the other source is asked:
        // on a busy machine its thread may start late.
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while refused.load(Ordering::Relaxed) == 0 {
            assert!(std::time::Instant::now() < end, "the flood was never refused");
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..3 {
            kick.write(1).unwrap();
            assert!(seen_rx.recv_timeout(Duration::from_secs(10)).is_ok(), "the loop's other source was held up");
        }
        flooding.store(false, Ordering::Relaxed);
        flood.join().unwrap();
        drop(stuck);
    }

    /// A request whose handling ends the VM (a `power-off`) is answered as the VM's loop
    /// goes: the VM dropping its handle on the loop must not take the answer with it, and
    /// stopping the server waits for the answer to be written. CI once saw the client of
    /// a nested KVM run get a closed connection instead.
    #[test]
    fn an_answer_owed_when_the_vms_loop_ends_is_still_written() {
        use crate::client::ApiClient;
        use std::time::Duration;

        let vm_loop = HostIo::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let backend = Arc::new(crate::fake::FakeBackend::with_default_platform());
        backend.hold_exec();
        let api = ApiServer::serve_on(&vm_loop, &socket, backend.clone()).unwrap();
        let client = {
            let socket = socket.clone();
            std::thread::spawn(move || {
                ApiClient::new(socket).post("/exec", &serde_json::json!({"command": "poweroff", "timeout_secs": 5}))
            })
        };
        let end = std::time::Instant::now() + Duration::from_secs(10);
        // In the backend's `exec`, not only queued for it: a handler that had not yet
        // started when the server stopped rightly answers 503.
        while !backend.calls().iter().any(|call| matches!(call, crate::fake::Call::Exec { .. })) {
            assert!(std::time::Instant::now() < end, "the request never reached its handler");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The VM ends while its handler still runs, then the handler finishes.
        drop(vm_loop);
        backend.release_exec();
        drop(api);
        let answer = client.join().unwrap().expect("the client got no answer");
        assert!(answer.is_success(), "{answer:?}");
    }

    /// A client that connected just as the server stopped, still waiting in the backlog,
    /// is answered 503: closing the listener with it queued would reset its connection
    /// (CI saw `ctl events --follow` fail with "connection reset" as its VMM exited).
    #[test]
    fn a_client_queued_when_the_server_stops_is_answered_not_reset() {
        use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
        use std::io::{Read, Write};
        use std::sync::mpsc;
        use std::time::Duration;

        /// Holds the loop inside its `process` until told to go on.
        struct Gate {
            fd: EventFd,
            entered: mpsc::Sender<()>,
            go_on: mpsc::Receiver<()>,
        }
        impl MutEventSubscriber for Gate {
            fn process(&mut self, _: Events, _: &mut EventOps) {
                let _ = self.fd.read();
                let _ = self.entered.send(());
                let _ = self.go_on.recv_timeout(Duration::from_secs(10));
            }
            fn init(&mut self, ops: &mut EventOps) {
                ops.add(Events::new(&self.fd, EventSet::IN)).unwrap();
            }
        }

        let host_io = HostIo::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let api = ApiServer::serve_on(&host_io, &socket, Arc::new(crate::fake::FakeBackend::with_default_platform()))
            .unwrap();
        // A second name for the socket, so the client can still connect once the server
        // has taken the first away: its connection then waits in the backlog behind the
        // stop, as a client's does when it connects in the instant before the stop.
        let alias = dir.path().join("alias.sock");
        std::fs::hard_link(&socket, &alias).unwrap();
        let (entered, entered_rx) = mpsc::channel();
        let (go_on, go_on_rx) = mpsc::channel();
        let fd = EventFd::new(EFD_NONBLOCK).unwrap();
        let kick = fd.try_clone().unwrap();
        host_io.add(Box::new(Gate { fd, entered, go_on: go_on_rx })).unwrap();
        kick.write(1).unwrap();
        entered_rx.recv_timeout(Duration::from_secs(10)).expect("the loop never reached the gate");

        let stopping = std::thread::spawn(move || drop(api));
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while socket.exists() {
            assert!(std::time::Instant::now() < end, "the server never took its socket's name away");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100)); // the stop is signalled just after
        let mut late = UnixStream::connect(&alias).unwrap();
        late.write_all(b"GET /api/v1/vm HTTP/1.1\r\n\r\n").unwrap();
        late.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        go_on.send(()).unwrap();

        let mut answer = String::new();
        let read = late.read_to_string(&mut answer);
        assert!(read.is_ok(), "the queued client's connection failed: {read:?}");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("shutting down"), "{answer}");
        stopping.join().unwrap();
    }
}
