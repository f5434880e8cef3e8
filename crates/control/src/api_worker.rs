//! Where the control API's requests run, off the host I/O loop: a handler may wait for
//! the guest (a power-off, a machine check, a command run by the agent), and the loop
//! must go on serving every other source meanwhile. Requests other than `exec` run one
//! at a time on one thread, in the order their bodies arrived, as backends expect (a
//! device model change and its backend call do not interleave with another request's).
//! An `exec` queues for the guest on a thread of its own (exec_queue.rs) and leaves the
//! queue if its client hangs up. Answers go back to the loop through a channel and an
//! EventFd that wakes it.

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use nvdimm_model::sync::LockUnpoisoned;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::api_connection::encode;
use crate::exec_queue::{Queued, MAX_EXEC_PENDING};
use crate::handlers::Reply;
use crate::http::{self, HttpRequest};
use crate::routes::{lookup, Endpoint, Lookup};
use crate::server::{route, Shared};
use crate::types::API_PREFIX;

/// Which connection an answer is for (the loop's own number for it, never reused while
/// the connection lives).
pub(crate) type ConnectionId = u32;

/// The loop's end of the answers: each for a connection, as the bytes to write.
pub(crate) type AnswerQueue = Receiver<(ConnectionId, Vec<u8>)>;

/// The way back to the loop: answers, and the EventFd that says some are waiting.
pub(crate) struct Answers {
    sender: Sender<(ConnectionId, Vec<u8>)>,
    ready: EventFd,
}

impl Answers {
    /// The sending side, and the receiving side the loop keeps with its EventFd.
    pub(crate) fn new() -> io::Result<(Answers, AnswerQueue, EventFd)> {
        let (sender, receiver) = mpsc::channel();
        let ready = EventFd::new(EFD_NONBLOCK)?;
        let loop_side = ready.try_clone()?;
        Ok((Answers { sender, ready }, receiver, loop_side))
    }

    fn try_clone(&self) -> io::Result<Answers> {
        Ok(Answers { sender: self.sender.clone(), ready: self.ready.try_clone()? })
    }

    fn send(&self, id: ConnectionId, reply: &Reply) {
        // The loop may be gone (the VMM is ending): then nobody waits for this answer.
        if self.sender.send((id, encode(reply))).is_ok() {
            let _ = self.ready.write(1);
        }
    }
}

/// The handler thread's queue.
pub(crate) struct Worker {
    jobs: Sender<(ConnectionId, HttpRequest)>,
    answers: Answers,
    shared: Arc<Shared>,
}

impl Worker {
    /// Starts the thread that runs requests other than `exec`; it ends when the worker
    /// is dropped, after the request it is running.
    pub(crate) fn start(shared: Arc<Shared>, answers: Answers) -> io::Result<Worker> {
        let (jobs, queue) = mpsc::channel::<(ConnectionId, HttpRequest)>();
        let thread_answers = answers.try_clone()?;
        let thread_shared = shared.clone();
        std::thread::Builder::new().name("vnvdimm-api".into()).spawn(move || {
            for (id, request) in queue {
                thread_answers.send(id, &answer_in_order(&request, &thread_shared));
            }
        })?;
        Ok(Worker { jobs, answers, shared })
    }

    /// Runs `request` for connection `id`; `stream` is that connection (an `exec` watches
    /// it for its client hanging up). The answer arrives through [`Answers`], always.
    pub(crate) fn submit(&self, id: ConnectionId, request: HttpRequest, stream: &UnixStream) {
        if !is_exec(&request) {
            if let Err(mpsc::SendError((id, _))) = self.jobs.send((id, request)) {
                self.answers.send(id, &shutting_down());
            }
            return;
        }
        let Some(ticket) = self.shared.exec_queue.enter() else {
            let message =
                format!("too many guest commands queued or running: at most {MAX_EXEC_PENDING}; try again later");
            return self.answers.send(id, &Reply::error(429, message));
        };
        let started = stream.try_clone().and_then(|client| {
            let answers = self.answers.try_clone()?;
            let shared = self.shared.clone();
            std::thread::Builder::new().name("vnvdimm-api-exec".into()).spawn(move || {
                let reply = match backend_of(&shared) {
                    Ok(backend) => {
                        let client_gone = || http::peer_gone(&client);
                        let queued = Queued { inner: backend.as_ref(), ticket: &ticket, client_gone: &client_gone };
                        route(&request.method, &request.target, &request.body, &queued)
                    }
                    Err(reply) => reply,
                };
                answers.send(id, &reply);
            })
        });
        if let Err(e) = started {
            self.answers.send(id, &Reply::error(503, format!("cannot run the command now: {e}; try again")));
        }
    }
}

/// A request other than `exec`, after those that arrived before it.
fn answer_in_order(request: &HttpRequest, shared: &Shared) -> Reply {
    match backend_of(shared) {
        Ok(backend) => route(&request.method, &request.target, &request.body, backend.as_ref()),
        Err(reply) => reply,
    }
}

/// The backend, unless the server is stopping (then it has let go of the VM).
fn backend_of(shared: &Shared) -> Result<Arc<dyn crate::Backend>, Reply> {
    let backend = shared.backend.lock_unpoisoned().clone();
    backend.filter(|_| !shared.is_stopping()).ok_or_else(shutting_down)
}

fn shutting_down() -> Reply {
    Reply::error(503, "the VMM is shutting down")
}

fn is_exec(request: &HttpRequest) -> bool {
    let path = request.target.split('?').next().unwrap_or("");
    path.strip_prefix(API_PREFIX)
        .is_some_and(|rest| matches!(lookup(&request.method, rest), Lookup::Found { endpoint: Endpoint::Exec, .. }))
}
