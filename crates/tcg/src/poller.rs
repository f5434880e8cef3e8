//! Serves the `_DSM` mailbox by polling: under TCG no guest store can trap to us, so
//! the AML stores the call's sequence number into the mailbox's doorbell slot and
//! spins until the completion word equals it. A request is pending whenever the
//! doorbell slot is non-zero and differs from the completion word.
//!
//! Right after the doorbell the AML writes one byte to an I/O port (`aml::SsdtOptions::
//! kick_port`); QEMU's `isa-debugcon` on that port forwards it to a Unix socket. While
//! that socket is connected the poller sleeps in `read` and wakes on the kick, so a call
//! is served at once and an idle guest costs no host CPU. Without it (before QEMU
//! listens, after it exits, or for tests that drive the mailbox alone) the poller falls
//! back to short sleeps.

use nvdimm_model::sync::LockUnpoisoned;
use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nvdimm_model::events::Notification;
use nvdimm_model::mailbox::{COMPLETION, DOORBELL_SLOT};
use nvdimm_model::NvdimmPlatform;
use thiserror::Error;

use crate::ram::MailboxMapping;

#[derive(Debug, Error)]
pub enum PollerError {
    #[error("cannot start the mailbox poller thread: {0}")]
    Spawn(std::io::Error),
    #[error("the mailbox poller thread panicked; the device model is in an unknown state")]
    Panicked,
}

/// Idle sleep between doorbell checks. A DSM call waits at most this long (plus the
/// host's timer slack) for us; boot makes on the order of a hundred calls.
const IDLE_SLEEP: Duration = Duration::from_micros(50);
/// After a call, keep polling without sleeping for a while: calls come in bursts.
const BURST_WINDOW: Duration = Duration::from_millis(2);
/// How often host-side notifications (e.g. poison added from the host) are posted
/// when the guest is idle; also the longest wait for a kick before the mailbox is
/// checked anyway.
const NOTIFY_EVERY: Duration = Duration::from_millis(10);
/// How often to try connecting to the kick socket while it is not there yet.
const KICK_CONNECT_EVERY: Duration = Duration::from_millis(1);

/// What the poller thread shares with its owner.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    served: AtomicU64,
    kicks: AtomicU64,
    notifications: Mutex<Vec<Notification>>,
}

/// A running poller. Stops (and joins) on [`MailboxPoller::stop`] or drop.
pub struct MailboxPoller {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl MailboxPoller {
    /// Starts polling `mailbox` and answering requests with `platform`; with
    /// `kick_socket`, waits for kicks on that Unix socket (QEMU listens on it).
    pub fn start(
        mailbox: MailboxMapping,
        platform: Arc<Mutex<NvdimmPlatform>>,
        kick_socket: Option<PathBuf>,
    ) -> Result<Self, PollerError> {
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("dsm-mailbox-poller".into())
            .spawn(move || poll_loop(mailbox, &platform, &thread_shared, kick_socket))
            .map_err(PollerError::Spawn)?;
        Ok(MailboxPoller {
            shared,
            thread: Some(thread),
        })
    }

    /// Number of requests answered so far.
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// Kick bytes received from the guest so far.
    pub fn kicks(&self) -> u64 {
        self.shared.kicks.load(Ordering::Relaxed)
    }

    /// Notifications the device model raised and we posted to the mailbox so far.
    pub fn notifications(&self) -> Vec<Notification> {
        self.shared.notifications.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Stops the thread and waits for it; returns how many requests it answered.
    pub fn stop(mut self) -> Result<u64, PollerError> {
        self.join()
    }

    fn join(&mut self) -> Result<u64, PollerError> {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().map_err(|_| PollerError::Panicked)?;
        }
        Ok(self.served())
    }
}

impl Drop for MailboxPoller {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// Serves one pending request, if any. Returns whether it did. Public so backends
/// with their own loop (and tests) can drive the mailbox step by step.
pub fn serve_pending(mailbox: &mut MailboxMapping, platform: &Mutex<NvdimmPlatform>) -> bool {
    let doorbell = mailbox.load_u32(DOORBELL_SLOT);
    if doorbell == 0 || doorbell == mailbox.load_u32(COMPLETION) {
        return false;
    }
    // A poisoned lock means a host-side panic elsewhere; serving from the inner
    // state is still better than leaving the guest spinning for 20 s per call.
    let mut platform = platform.lock_unpoisoned();
    platform.serve_mailbox(mailbox, doorbell);
    true
}

/// Posts pending device-model notifications by incrementing their mailbox counters
/// (docs/dsm-transport.md), and logs each as `EventKind::Notify` (the guest's `NEVT`
/// picks them up, see [`crate::event_zone`]).
pub fn post_notifications(mailbox: &MailboxMapping, platform: &Mutex<NvdimmPlatform>) -> Vec<Notification> {
    let mut platform = platform.lock_unpoisoned();
    let pending = platform.take_notifications();
    for n in &pending {
        if let Some(counter) = platform.notify_counter(n) {
            mailbox.increment_u32(counter.raised);
        }
        platform.log_event(nvdimm_model::event_log::EventKind::Notify(*n));
    }
    pending
}

/// The connection to QEMU's kick chardev, made once QEMU listens.
struct KickLink {
    path: PathBuf,
    stream: Option<UnixStream>,
    last_attempt: Option<Instant>,
}

impl KickLink {
    fn connected(&mut self) -> Option<&mut UnixStream> {
        if self.stream.is_none() && self.last_attempt.is_none_or(|t| t.elapsed() >= KICK_CONNECT_EVERY) {
            self.last_attempt = Some(Instant::now());
            self.stream = UnixStream::connect(&self.path)
                .and_then(|s| s.set_read_timeout(Some(NOTIFY_EVERY)).map(|()| s))
                .ok();
        }
        self.stream.as_mut()
    }

    /// Waits up to `NOTIFY_EVERY` for kicks; returns how many arrived, or None when
    /// there is no connection (the caller then sleeps briefly instead).
    fn wait(&mut self) -> Option<u64> {
        let stream = self.connected()?;
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => {
                // QEMU closed its end (it is exiting); keep serving by polling.
                self.stream = None;
                Some(0)
            }
            Ok(n) => Some(n as u64),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => Some(0),
            Err(_) => {
                self.stream = None;
                Some(0)
            }
        }
    }
}

fn poll_loop(mut mailbox: MailboxMapping, platform: &Mutex<NvdimmPlatform>, shared: &Shared, kick: Option<PathBuf>) {
    let mut kick = kick.map(|path| KickLink { path, stream: None, last_attempt: None });
    let mut last_call = Instant::now() - BURST_WINDOW;
    let mut last_notify = Instant::now() - NOTIFY_EVERY;
    while !shared.stop.load(Ordering::Acquire) {
        let served = serve_pending(&mut mailbox, platform);
        if served {
            shared.served.fetch_add(1, Ordering::Relaxed);
            last_call = Instant::now();
        }
        if served || last_notify.elapsed() >= NOTIFY_EVERY {
            let posted = post_notifications(&mailbox, platform);
            if !posted.is_empty() {
                if let Ok(mut log) = shared.notifications.lock() {
                    log.extend(posted);
                }
            }
            last_notify = Instant::now();
        }
        if served {
            // The next call of a burst may already be waiting; look before sleeping.
            continue;
        }
        if let Some(kicks) = kick.as_mut().and_then(KickLink::wait) {
            shared.kicks.fetch_add(kicks, Ordering::Relaxed);
        } else if last_call.elapsed() < BURST_WINDOW {
            thread::yield_now();
        } else {
            thread::sleep(IDLE_SLEEP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{TcgLayout, TcgLayoutOptions};
    use crate::ram::RamFile;
    use nvdimm_model::config::{DimmConfig, PersistenceDomain, PlatformConfig, MIB};
    use nvdimm_model::dsm::{INTEL_UUID, ROOT_UUID};
    use nvdimm_model::event_log::EventKind;
    use nvdimm_model::mailbox::{self, DsmRequest, MailboxMemory};

    fn platform() -> (PlatformConfig, TcgLayout, NvdimmPlatform) {
        let dimms = (0..2)
            .map(|i| DimmConfig::with_defaults(i, format!("/nonexistent/{i}").into(), 64 * MIB))
            .collect();
        let config = PlatformConfig::new(dimms, PersistenceDomain::CpuCache).unwrap();
        let layout = TcgLayout::new(&config, TcgLayoutOptions::default()).unwrap();
        let platform = NvdimmPlatform::ephemeral(config.clone(), layout.platform_layout()).unwrap();
        (config, layout, platform)
    }

    /// Writes a request into the shared file exactly as the AML does: header and
    /// input first, the doorbell slot last; then waits for the completion word.
    fn call(ram: &RamFile, base: u64, req: &DsmRequest, seq: u32) -> Vec<u8> {
        let mut guest = ram.map_mailbox(base).unwrap();
        req.write_to(&mut guest);
        guest.store_u32(DOORBELL_SLOT, seq);
        let deadline = Instant::now() + Duration::from_secs(10);
        while guest.load_u32(COMPLETION) != seq {
            assert!(Instant::now() < deadline, "poller never completed sequence {seq}");
            thread::sleep(Duration::from_micros(100));
        }
        mailbox::read_response(&guest)
    }

    #[test]
    fn poller_serves_requests_written_into_the_ram_file() {
        let (_config, layout, platform) = platform();
        let expected_root = {
            let (_, _, mut p) = self::platform();
            p.call_dsm(&DsmRequest {
                handle: 0,
                uuid: ROOT_UUID,
                revision: 1,
                function: 0,
                input: vec![],
            })
        };
        let dir = tempfile::tempdir().unwrap();
        let ram = RamFile::create(&dir.path().join("ram"), layout.below_4g).unwrap();
        let platform = Arc::new(Mutex::new(platform));
        let poller = MailboxPoller::start(ram.map_mailbox(layout.mailbox).unwrap(), platform.clone(), None).unwrap();

        let root = DsmRequest {
            handle: 0,
            uuid: ROOT_UUID,
            revision: 1,
            function: 0,
            input: vec![],
        };
        let out = call(&ram, layout.mailbox, &root, 1);
        assert_eq!(out, expected_root, "root function 0 answer differs from a direct call");

        // Label size (Intel F4) of the second DIMM: same answer as asking the model directly.
        let handle = platform.lock().unwrap().dimms()[1].handle();
        let f4 = DsmRequest {
            handle,
            uuid: INTEL_UUID,
            revision: 1,
            function: 4,
            input: vec![],
        };
        let direct = {
            let (_, _, mut p) = self::platform();
            p.call_dsm(&f4)
        };
        let out = call(&ram, layout.mailbox, &f4, 2);
        assert!(out.len() >= 4, "function 4 answered {} bytes", out.len());
        assert_eq!(out, direct);

        // A hostile input length is answered with a status, not a crash, and the
        // next call still works.
        let mut guest = ram.map_mailbox(layout.mailbox).unwrap();
        guest.write_u32(mailbox::INPUT_LEN, 0xffff_ffff);
        guest.store_u32(DOORBELL_SLOT, 3);
        let deadline = Instant::now() + Duration::from_secs(10);
        while guest.load_u32(COMPLETION) != 3 {
            assert!(Instant::now() < deadline, "hostile request never completed");
            thread::sleep(Duration::from_micros(100));
        }
        assert_eq!(mailbox::read_response(&guest).len(), 4);
        assert_eq!(call(&ram, layout.mailbox, &root, 4), expected_root);

        assert_eq!(poller.stop().unwrap(), 4);
        // The hostile request never reaches a DSM handler, so the model logs 3 calls.
        let log: Vec<_> = platform
            .lock()
            .unwrap()
            .events_since(0)
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Dsm(call) => Some(call),
                _ => None,
            })
            .collect();
        assert_eq!(log.len(), 3);
        assert_eq!(log[1].handle, handle);
        assert_eq!(log[1].function, 4);
    }

    #[test]
    fn nothing_is_served_without_a_new_doorbell() {
        let (_config, layout, platform) = platform();
        let dir = tempfile::tempdir().unwrap();
        let ram = RamFile::create(&dir.path().join("ram"), layout.below_4g).unwrap();
        let platform = Mutex::new(platform);
        let mut mb = ram.map_mailbox(layout.mailbox).unwrap();
        assert!(!serve_pending(&mut mb, &platform), "doorbell 0 must not be served");
        mb.store_u32(DOORBELL_SLOT, 7);
        assert!(serve_pending(&mut mb, &platform));
        assert_eq!(mb.load_u32(COMPLETION), 7);
        assert!(
            !serve_pending(&mut mb, &platform),
            "an answered doorbell must not be served twice"
        );
    }
}
