//! The HTTP side: a tiny_http server on a Unix socket, one thread answering requests in
//! order (like firecracker's API thread), stopped and its socket removed on drop.

use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use thiserror::Error;
use tiny_http::{Header, Response, Server};

use crate::backend::Backend;
use crate::handlers::{self, Reply, Request};
use crate::routes::{lookup, Lookup};
use crate::types::API_PREFIX;

/// Largest request body accepted; the biggest real one (a health update) is far smaller.
pub const MAX_BODY: usize = 64 * 1024;

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
    /// Listens on `socket_path` and answers requests on a new thread until the handle is
    /// dropped. A socket file left by a VMM that exited is replaced; a path that exists
    /// and is not a socket, or a socket someone still serves, is refused.
    pub fn start(socket_path: &Path, backend: Arc<dyn Backend>) -> Result<ApiServerHandle, ApiError> {
        let path = socket_path.to_path_buf();
        prepare_path(&path)?;
        let server =
            Server::http_unix(&path).map_err(|e| ApiError::Bind { path: path.clone(), message: e.to_string() })?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, stop) = (server.clone(), stop.clone());
            std::thread::Builder::new()
                .name("vnvdimm-api".into())
                .spawn(move || serve(&server, backend, &stop))
                .map_err(ApiError::Thread)?
        };
        Ok(ApiServerHandle { path, server, stop, thread: Some(thread) })
    }
}

/// The running server. Dropping it stops the thread and removes the socket file.
pub struct ApiServerHandle {
    path: PathBuf,
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServerHandle {
    pub fn socket_path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ApiServerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // tiny_http removes the socket file when the last reference goes, which is ours now.
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

fn serve(server: &Server, backend: Arc<dyn Backend>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        // The timeout only bounds how long a missed unblock could delay shutdown.
        let request = match server.recv_timeout(Duration::from_millis(500)) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            // A client that sent garbage or went away; tiny_http already answered it if it could.
            Err(_) => continue,
        };
        // A guest command may run for minutes; it gets its own thread so the rest of
        // the API (poison, health, power-off) stays responsive meanwhile. The backend
        // runs guest commands one at a time.
        if is_exec(&request) {
            let backend = backend.clone();
            let spawned = std::thread::Builder::new()
                .name("vnvdimm-api-exec".into())
                .spawn(move || answer(request, backend.as_ref()));
            // On failure the request went with the closure; the client sees the connection close.
            let _ = spawned;
            continue;
        }
        answer(request, backend.as_ref());
    }
}

fn is_exec(request: &tiny_http::Request) -> bool {
    let path = request.url().split('?').next().unwrap_or("");
    *request.method() == tiny_http::Method::Post
        && path.strip_prefix(API_PREFIX).is_some_and(|rest| {
            matches!(lookup("POST", rest), Lookup::Found { endpoint: crate::routes::Endpoint::Exec, .. })
        })
}

fn answer(mut request: tiny_http::Request, backend: &dyn Backend) {
    let reply = match read_body(&mut request) {
        Ok(body) => route(request.method().as_str(), request.url(), &body, backend),
        Err(reply) => reply,
    };
    let body = serde_json::to_vec_pretty(&reply.body).unwrap_or_default();
    let mut response = Response::from_data(body)
        .with_status_code(reply.status)
        // Always a Content-Length, never chunked: clients stay simple.
        .with_chunked_threshold(usize::MAX);
    response.add_header(header("Content-Type", "application/json"));
    if let Some(allow) = &reply.allow {
        response.add_header(header("Allow", allow));
    }
    // The client may have gone away; nothing to do about it.
    let _ = request.respond(response);
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header names and ASCII values")
}

fn read_body(request: &mut tiny_http::Request) -> Result<Vec<u8>, Reply> {
    if request.body_length().is_some_and(|len| len > MAX_BODY) {
        return Err(Reply::error(413, format!("request body too large: at most {MAX_BODY} bytes")));
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Reply::error(400, format!("cannot read the request body: {e}")))?;
    if body.len() > MAX_BODY {
        return Err(Reply::error(413, format!("request body too large: at most {MAX_BODY} bytes")));
    }
    Ok(body)
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
