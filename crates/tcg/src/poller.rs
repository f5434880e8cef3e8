//! Serves the `_DSM` mailbox from the VM's host I/O loop: under TCG no guest store can
//! trap to us, so the AML stores the call's sequence number into the mailbox's doorbell
//! slot and spins until the completion word equals it. A request is pending whenever the
//! doorbell slot is non-zero and differs from the completion word.
//!
//! Right after the doorbell the AML writes one byte to an I/O port (`aml::SsdtOptions::
//! kick_port`); QEMU's `isa-debugcon` on that port forwards it to a Unix socket, which is
//! a source of the loop: a call is served as soon as its kick arrives, and an idle guest
//! costs no host CPU. A timer of the same source looks at the mailbox too: every
//! [`NOTIFY_EVERY`] while there is no kick connection (it connects the kick socket once
//! QEMU listens, and again if it went; tests that drive the mailbox alone have none),
//! and every [`SAFETY_EVERY`] once there is one, only as a safety net (it serves a call
//! whose kick never came and posts notifications nobody posted).

use nvdimm_model::sync::LockUnpoisoned;
use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber, SubscriberId};
use nvdimm_model::events::Notification;
use nvdimm_model::mailbox::{COMPLETION, DOORBELL_SLOT};
use nvdimm_model::NvdimmPlatform;
use thiserror::Error;
use vmm_sys_util::timerfd::TimerFd;
use vnvdimm_control::host_io::{loop_timer, HostIo, HostIoError};

use crate::ram::MailboxMapping;

#[derive(Debug, Error)]
pub enum PollerError {
    #[error("cannot create the mailbox's timer: {0}")]
    Timer(std::io::Error),
    #[error("cannot serve the mailbox from the host I/O loop: {0}")]
    Loop(#[from] HostIoError),
}

/// How often host-side notifications (e.g. poison added from the host) are posted, the
/// kick socket is (re)connected, and the mailbox is looked at without a kick.
pub const NOTIFY_EVERY: Duration = Duration::from_millis(10);

/// How often the mailbox is looked at without a kick once kicks can arrive.
pub const SAFETY_EVERY: Duration = Duration::from_secs(1);

// The loop tells the source's descriptors apart by these.
const TIMER: u32 = 0;
const KICK: u32 = 1;

/// What the source shares with its handle.
#[derive(Default)]
struct Shared {
    served: AtomicU64,
    kicks: AtomicU64,
    notifications: Mutex<Vec<Notification>>,
}

/// The mailbox served from a host I/O loop; [`MailboxPoller::stop`] takes it out.
pub struct MailboxPoller {
    shared: Arc<Shared>,
    id: SubscriberId,
}

impl MailboxPoller {
    /// Serves `mailbox` with `platform` from `host_io`; with `kick_socket`, woken by the
    /// kicks QEMU forwards on that Unix socket (QEMU listens on it).
    pub fn start(
        mailbox: MailboxMapping,
        platform: Arc<Mutex<NvdimmPlatform>>,
        kick_socket: Option<PathBuf>,
        host_io: &HostIo,
    ) -> Result<Self, PollerError> {
        let shared = Arc::new(Shared::default());
        let mut timer = loop_timer().map_err(PollerError::Timer)?;
        timer
            .reset(NOTIFY_EVERY, Some(NOTIFY_EVERY))
            .map_err(|e| PollerError::Timer(std::io::Error::from_raw_os_error(e.errno())))?;
        let source = MailboxSource {
            mailbox,
            platform,
            kick_path: kick_socket,
            kick: None,
            timer,
            shared: shared.clone(),
        };
        let id = host_io.add(Box::new(source))?;
        Ok(MailboxPoller { shared, id })
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
        self.shared.notifications.lock_unpoisoned().clone()
    }

    /// Takes the mailbox out of `host_io` (the one it was started in); returns how many
    /// requests were answered. Nothing is served once this returns.
    pub fn stop(self, host_io: &HostIo) -> u64 {
        host_io.remove(self.id);
        self.served()
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

/// The mailbox as a source of the host I/O loop.
struct MailboxSource {
    mailbox: MailboxMapping,
    platform: Arc<Mutex<NvdimmPlatform>>,
    kick_path: Option<PathBuf>,
    /// The connection to QEMU's kick chardev, once QEMU listens.
    kick: Option<UnixStream>,
    timer: TimerFd,
    shared: Arc<Shared>,
}

impl MailboxSource {
    fn connect_kick(&mut self, ops: &mut EventOps) {
        let Some(path) = self.kick_path.as_ref().filter(|_| self.kick.is_none()) else {
            return;
        };
        let Ok(stream) = UnixStream::connect(path) else {
            return; // QEMU does not listen yet (or any more); the next tick tries again.
        };
        if stream.set_nonblocking(true).is_ok() && ops.add(Events::with_data(&stream, KICK, EventSet::IN)).is_ok() {
            self.kick = Some(stream);
            self.tick_every(SAFETY_EVERY);
        }
    }

    /// Counts the kicks that arrived; lets the connection go when QEMU closed its end
    /// (it is exiting), so that the timer reconnects if QEMU listens again.
    fn take_kicks(&mut self, ops: &mut EventOps) {
        let Some(stream) = &mut self.kick else { return };
        let mut buf = [0u8; 64];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.shared.kicks.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        if let Some(stream) = self.kick.take() {
            let _ = ops.remove(Events::with_data(&stream, KICK, EventSet::IN));
            self.tick_every(NOTIFY_EVERY);
        }
    }

    fn tick_every(&mut self, period: Duration) {
        if let Err(e) = self.timer.reset(period, Some(period)) {
            log::warn!("the _DSM mailbox's timer cannot be set to {period:?}: {e}");
        }
    }

    fn serve(&mut self) {
        while serve_pending(&mut self.mailbox, &self.platform) {
            self.shared.served.fetch_add(1, Ordering::Relaxed);
        }
        let posted = post_notifications(&self.mailbox, &self.platform);
        if !posted.is_empty() {
            self.shared.notifications.lock_unpoisoned().extend(posted);
        }
    }
}

impl MutEventSubscriber for MailboxSource {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            TIMER => {
                let _ = self.timer.wait();
                self.connect_kick(ops);
            }
            _ => self.take_kicks(ops),
        }
        self.serve();
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::with_data(&self.timer, TIMER, EventSet::IN)) {
            log::error!("the _DSM mailbox cannot watch its timer: {e:?}; calls are served only on kicks");
        }
        self.connect_kick(ops);
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
    use std::io::Write;
    use std::thread;
    use std::time::Instant;

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
        let host_io = HostIo::start().unwrap();
        let poller =
            MailboxPoller::start(ram.map_mailbox(layout.mailbox).unwrap(), platform.clone(), None, &host_io).unwrap();

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

        assert_eq!(poller.stop(&host_io), 4);
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

    /// QEMU's side of the kick chardev: it listens; the poller connects once it does, and
    /// every byte written is a kick counted. A stopped poller serves nothing more.
    #[test]
    fn kicks_are_counted_once_qemu_listens_and_a_stopped_poller_serves_nothing() {
        let (_config, layout, platform) = platform();
        let dir = tempfile::tempdir().unwrap();
        let ram = RamFile::create(&dir.path().join("ram"), layout.below_4g).unwrap();
        let kick_path = dir.path().join("kick.sock");
        let host_io = HostIo::start().unwrap();
        let platform = Arc::new(Mutex::new(platform));
        let poller =
            MailboxPoller::start(ram.map_mailbox(layout.mailbox).unwrap(), platform, Some(kick_path.clone()), &host_io)
                .unwrap();
        // Listening only now: the poller's timer connects later.
        let listener = std::os::unix::net::UnixListener::bind(&kick_path).unwrap();
        let (mut qemu_side, _) = listener.accept().unwrap();
        let root = DsmRequest { handle: 0, uuid: ROOT_UUID, revision: 1, function: 0, input: vec![] };
        let mut guest = ram.map_mailbox(layout.mailbox).unwrap();
        root.write_to(&mut guest);
        guest.store_u32(DOORBELL_SLOT, 1);
        qemu_side.write_all(&[0x4b]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while guest.load_u32(COMPLETION) != 1 || poller.kicks() != 1 {
            assert!(Instant::now() < deadline, "served {}, kicks {}", poller.served(), poller.kicks());
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(poller.stop(&host_io), 1);
        guest.store_u32(DOORBELL_SLOT, 2);
        let _ = qemu_side.write_all(&[0x4b]);
        thread::sleep(NOTIFY_EVERY * 5);
        assert_eq!(guest.load_u32(COMPLETION), 1, "served after stop");
    }
}
