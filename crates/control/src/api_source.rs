//! The control API as a source of the host I/O loop (host_io.rs): the listening socket,
//! every client connection, one timer for all their deadlines, and the EventFd through
//! which handlers hand back their answers, all waited on by the loop's epoll. No client
//! can stall the loop: every read and write is non-blocking, each connection is held to
//! its deadlines, and the number of connections is capped (one more is answered 503 at
//! once, without being read). Requests run on the worker's threads (api_worker.rs).

use std::collections::HashMap;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use crate::api_connection::{refuse, Connection};
use crate::api_worker::{AnswerQueue, ConnectionId, Worker};
use crate::handlers::Reply;
use crate::server::Shared;

/// How long accepting rests after an accept error that retrying at once would only
/// repeat (out of descriptors or memory): the pending client waits in the backlog and
/// is accepted once a connection has closed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Most connections accepted per wake-up of the loop.
const ACCEPTS_PER_WAKE: usize = 32;

/// Most connections taken from the backlog when the server stops (the kernel's largest
/// backlog); the socket's name is gone by then, so no more can arrive.
const BACKLOG_AT_STOP: usize = 4096;

// The loop tells our descriptors apart by these; connections take the numbers above.
const LISTENER: u32 = 0;
const TIMER: u32 = 1;
const ANSWERS: u32 = 2;
const STOP: u32 = 3;
const FIRST_CONNECTION: u32 = 4;

struct Client {
    connection: Connection,
    /// What epoll watches for it now (`None`: not registered).
    watched: Option<EventSet>,
}

pub(crate) struct ApiSource {
    listener: Option<UnixListener>,
    /// Accepting rests until then (see [`ACCEPT_BACKOFF`]).
    accept_paused_until: Option<Instant>,
    timer: TimerFd,
    answers: AnswerQueue,
    answers_ready: EventFd,
    stop: EventFd,
    clients: HashMap<ConnectionId, Client>,
    next_id: ConnectionId,
    worker: Worker,
    shared: Arc<Shared>,
    /// Told once the server has stopped and no request is being handled or answered.
    quiet: Option<Sender<()>>,
    /// Told once the server has stopped and its last connection is done.
    drained: Option<Sender<()>>,
}

pub(crate) struct SourceParts {
    pub listener: UnixListener,
    pub answers: AnswerQueue,
    pub answers_ready: EventFd,
    pub stop: EventFd,
    pub worker: Worker,
    pub shared: Arc<Shared>,
    pub quiet: Sender<()>,
    pub drained: Sender<()>,
}

impl ApiSource {
    pub(crate) fn new(parts: SourceParts) -> io::Result<Self> {
        let timer = crate::host_io::loop_timer()?;
        Ok(ApiSource {
            listener: Some(parts.listener),
            accept_paused_until: None,
            timer,
            answers: parts.answers,
            answers_ready: parts.answers_ready,
            stop: parts.stop,
            clients: HashMap::new(),
            next_id: FIRST_CONNECTION,
            worker: parts.worker,
            shared: parts.shared,
            quiet: Some(parts.quiet),
            drained: Some(parts.drained),
        })
    }

    fn accept_all(&mut self, ops: &mut EventOps, now: Instant) {
        // Bounded, so that a client connecting as fast as it can does not keep the loop
        // here: the listener stays readable and is served again after the other sources.
        for _ in 0..ACCEPTS_PER_WAKE {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => self.admit(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The client gave up between connect and accept.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                // EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unforeseen: the listener
                // stays readable, so stop watching it for a while rather than spin.
                Err(_) => {
                    let _ = ops.remove(Events::with_data(listener, LISTENER, EventSet::IN));
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: UnixStream, now: Instant) {
        let max = self.shared.limits.max_connections;
        if self.clients.len() >= max {
            let message = format!("too many connections: at most {max} at once; try again");
            return refuse(stream, &Reply::error(503, message));
        }
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let id = self.fresh_id();
        let connection = Connection::new(stream, self.shared.limits.deadlines, now);
        self.clients.insert(id, Client { connection, watched: None });
    }

    /// A number no live connection has (they wrap after 2^32 connections).
    fn fresh_id(&mut self) -> ConnectionId {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(FIRST_CONNECTION);
            if !self.clients.contains_key(&id) {
                return id;
            }
        }
    }

    fn serve_client(&mut self, id: ConnectionId, now: Instant) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        // Once the server is stopping, the worker answers 503 (it has no backend to ask).
        if let Some(request) = client.connection.on_ready(now) {
            self.worker.submit(id, request, client.connection.stream());
        }
    }

    fn take_answers(&mut self, now: Instant) {
        let _ = self.answers_ready.read();
        while let Ok((id, answer)) = self.answers.try_recv() {
            if let Some(client) = self.clients.get_mut(&id) {
                client.connection.answer(answer, now);
            }
        }
    }

    fn on_timer(&mut self, ops: &mut EventOps, now: Instant) {
        let _ = self.timer.wait();
        for client in self.clients.values_mut() {
            client.connection.expire(now);
        }
        if self.accept_paused_until.is_some_and(|until| until <= now) {
            self.accept_paused_until = None;
            if let Some(listener) = &self.listener {
                if ops.add(Events::with_data(listener, LISTENER, EventSet::IN)).is_ok() {
                    self.accept_all(ops, now);
                }
            }
        }
    }

    /// Stops accepting; connections already accepted are still answered (503 once read).
    /// So are those waiting in the backlog: closing the listener would reset them, and a
    /// client that connected a moment before the VMM stopped would see "connection reset"
    /// instead of an answer.
    fn stop_listening(&mut self, ops: &mut EventOps, now: Instant) {
        let _ = self.stop.read();
        if let Some(listener) = self.listener.take() {
            if self.accept_paused_until.take().is_none() {
                let _ = ops.remove(Events::with_data(&listener, LISTENER, EventSet::IN));
            }
            for _ in 0..BACKLOG_AT_STOP {
                match listener.accept() {
                    Ok((stream, _)) => self.admit(stream, now),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }

    /// Brings epoll, the deadline timer and the shared count up to date after an event,
    /// and lets closed connections go.
    fn settle(&mut self, ops: &mut EventOps) {
        self.clients.retain(|&id, client| {
            let wanted = client.connection.interest();
            if wanted != client.watched {
                let stream = client.connection.stream();
                let changed = match (client.watched, wanted) {
                    (None, Some(set)) => ops.add(Events::with_data(stream, id, set)),
                    (Some(_), Some(set)) => ops.modify(Events::with_data(stream, id, set)),
                    (Some(set), None) => ops.remove(Events::with_data(stream, id, set)),
                    (None, None) => Ok(()),
                };
                if changed.is_err() {
                    // Not watchable: it could never finish. Let it go (unregistering first,
                    // since a handler may hold a duplicate of its descriptor).
                    if let Some(set) = client.watched {
                        let _ = ops.remove(Events::with_data(stream, id, set));
                    }
                    return false;
                }
                client.watched = wanted;
            }
            !client.connection.is_closed()
        });
        self.shared.connections.store(self.clients.len(), Ordering::Release);
        self.arm_timer();
        if self.listener.is_none() {
            if !self.clients.values().any(|c| c.connection.is_busy()) {
                if let Some(quiet) = self.quiet.take() {
                    let _ = quiet.send(());
                }
            }
            if self.clients.is_empty() {
                if let Some(drained) = self.drained.take() {
                    let _ = drained.send(());
                }
            }
        }
    }

    fn arm_timer(&mut self) {
        let next = self.clients.values().filter_map(|c| c.connection.deadline()).chain(self.accept_paused_until).min();
        let _ = match next {
            // A zero duration would disarm the timer: a deadline already passed fires at once.
            Some(at) => {
                self.timer.reset(at.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)), None)
            }
            None => self.timer.clear(),
        };
    }
}

impl MutEventSubscriber for ApiSource {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let now = Instant::now();
        match events.data() {
            LISTENER => self.accept_all(ops, now),
            TIMER => self.on_timer(ops, now),
            ANSWERS => self.take_answers(now),
            STOP => self.stop_listening(ops, now),
            id => self.serve_client(id, now),
        }
        self.settle(ops);
    }

    fn init(&mut self, ops: &mut EventOps) {
        let registered = [
            ops.add(Events::with_data(&self.timer, TIMER, EventSet::IN)),
            ops.add(Events::with_data(&self.answers_ready, ANSWERS, EventSet::IN)),
            ops.add(Events::with_data(&self.stop, STOP, EventSet::IN)),
            match &self.listener {
                Some(listener) => ops.add(Events::with_data(listener, LISTENER, EventSet::IN)),
                None => Ok(()),
            },
        ];
        if let Some(Err(e)) = registered.into_iter().find(|r| r.is_err()) {
            log::error!("the control API cannot watch its descriptors: {e:?}; it will not answer");
        }
    }
}
