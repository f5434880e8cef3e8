//! The host I/O loop: one thread running an event-manager `EventManager` that serves
//! every host-side source of a VM, each a subscriber woken by epoll, none polled: under
//! KVM the console's input into COM1 and the guest agent's socket into COM3; under TCG
//! QMP; on both the stop signals (`signal_source`). Sources are added from any thread
//! through the manager's remote endpoint.
//!
//! A `HostIo` is a shared handle: the loop runs until its last clone is dropped. The
//! control API keeps one, so that answers still in flight when the guest ends (the
//! answer to `power-off` itself) are written before the loop stops (server.rs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use event_manager::{EventManager, MutEventSubscriber, RemoteEndpoint, SubscriberId, SubscriberOps};
use thiserror::Error;

pub type Subscriber = Box<dyn MutEventSubscriber + Send>;

#[derive(Debug, Error)]
pub enum HostIoError {
    #[error("cannot create the host I/O loop's epoll set: {0:?}")]
    Create(event_manager::Error),
    #[error("cannot start the host I/O thread: {0}")]
    Thread(std::io::Error),
    #[error("the host I/O loop refused a new source: {0:?}")]
    Add(event_manager::Error),
}

/// The running loop; dropping its last clone stops the thread.
#[derive(Clone)]
pub struct HostIo {
    running: Arc<Running>,
}

struct Running {
    endpoint: RemoteEndpoint<Subscriber>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HostIo {
    pub fn start() -> Result<Self, HostIoError> {
        let mut manager = EventManager::<Subscriber>::new().map_err(HostIoError::Create)?;
        let endpoint = manager.remote_endpoint();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("vnv-host-io".into())
            .spawn(move || {
                while !stopping.load(Ordering::Acquire) {
                    // EINTR comes back as Ok(0); any other error means the epoll set
                    // itself is gone, and no source can be served any more.
                    if let Err(e) = manager.run() {
                        log::error!("host I/O loop stopped: {e:?}; console input and the agent line are dead");
                        return;
                    }
                }
            })
            .map_err(HostIoError::Thread)?;
        Ok(HostIo { running: Arc::new(Running { endpoint, stop, thread: Some(thread) }) })
    }

    /// Adds a source; its `init` registers the descriptors it waits on.
    pub fn add(&self, subscriber: Subscriber) -> Result<SubscriberId, HostIoError> {
        self.running
            .endpoint
            .call_blocking(move |ops: &mut dyn SubscriberOps<Subscriber = Subscriber>| {
                Ok::<_, event_manager::Error>(ops.add_subscriber(subscriber))
            })
            .map_err(HostIoError::Add)
    }

    /// Takes a source out of the loop; once this returns it is never called again.
    /// Dropped here, or at once if the loop has already ended.
    pub fn remove(&self, id: SubscriberId) {
        let removed =
            self.running.endpoint.call_blocking(move |ops: &mut dyn SubscriberOps<Subscriber = Subscriber>| {
                ops.remove_subscriber(id).map(drop)
            });
        if let Err(e) = removed {
            log::debug!("host I/O loop: source {id:?} was already gone: {e:?}");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.endpoint.kick();
        if let Some(thread) = self.thread.take() {
            // A source that held the last clone is dropped on the loop's own thread,
            // which then ends by itself; joining it there would wait forever.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// A timer for a source of the loop: non-blocking, because re-arming it between epoll's
/// report and the source's read clears the expiry, and a blocking read would then wait
/// for the next one, holding up every other source.
pub fn loop_timer() -> std::io::Result<vmm_sys_util::timerfd::TimerFd> {
    use std::os::fd::AsRawFd;
    let timer = vmm_sys_util::timerfd::TimerFd::new()?;
    let fd = timer.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor the timer owns; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(timer)
}
