//! The console's keyboard under `--backend tcg`, as a source of the VM's host I/O loop:
//! standard input is read when readable, the Ctrl-A commands are applied, and the rest
//! goes to QEMU's stdin without ever blocking the loop. While QEMU does not take more
//! (its pipe is full), standard input is paused and the loop waits until QEMU's stdin
//! is writable again, as `UartFeed` does for a KVM guest's UART. When standard input
//! ends, QEMU's stdin is closed once it has taken the last bytes.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vnvdimm_tcg::console_in::ConsoleIn;
use vnvdimm_vmm::devices::console_escape::{self, ConsoleEscape};

pub struct KeyboardToQemu<R> {
    source: R,
    /// QEMU's stdin; `None` once closed (input over, or QEMU gone).
    qemu: Option<ConsoleIn>,
    escape: Option<ConsoleEscape>,
    /// Encoded bytes QEMU has not taken yet.
    pending: Vec<u8>,
    /// Waiting for QEMU's stdin to be writable (standard input paused meanwhile).
    waiting_for_qemu: bool,
    source_ended: bool,
}

impl<R: Read + AsRawFd + Send> KeyboardToQemu<R> {
    pub fn new(source: R, mut qemu: ConsoleIn, escape: Option<ConsoleEscape>) -> std::io::Result<Self> {
        set_nonblocking(qemu.pipe().as_raw_fd())?;
        Ok(KeyboardToQemu { source, qemu: Some(qemu), escape, pending: Vec::new(), waiting_for_qemu: false, source_ended: false })
    }

    fn source_events(&self) -> Events {
        Events::new(&self.source, EventSet::IN)
    }

    fn qemu_events(&mut self) -> Option<Events> {
        self.qemu.as_mut().map(|q| Events::new(q.pipe(), EventSet::OUT))
    }

    /// Reads what standard input has; false at its end.
    fn read_source(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        match self.source.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                let bytes = console_escape::filter(self.escape.as_mut(), &buf[..n]);
                if let Some(qemu) = self.qemu.as_mut() {
                    let encoded = qemu.encode(&bytes);
                    self.pending.extend_from_slice(&encoded);
                }
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => true,
            Err(e) => {
                log::warn!("console input: reading it failed ({e}); no more input to the guest");
                false
            }
        }
    }

    /// Writes what QEMU takes now; false when QEMU's stdin is gone (QEMU has ended).
    fn flush_to_qemu(&mut self) -> bool {
        let Some(qemu) = self.qemu.as_mut() else { return false };
        while !self.pending.is_empty() {
            match qemu.pipe().write(&self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        true
    }

    /// Pauses standard input while QEMU is behind, resumes it once QEMU took it all.
    fn follow_qemu(&mut self, ops: &mut EventOps) {
        let behind = !self.pending.is_empty();
        if behind && !self.waiting_for_qemu {
            self.waiting_for_qemu = true;
            if !self.source_ended {
                let _ = ops.remove(self.source_events());
            }
            if let Some(Err(e)) = self.qemu_events().map(|events| ops.add(events)) {
                log::warn!("console input: cannot wait for QEMU to take it: {e:?}");
            }
        } else if !behind && self.waiting_for_qemu {
            self.waiting_for_qemu = false;
            if let Some(events) = self.qemu_events() {
                let _ = ops.remove(events);
            }
            if !self.source_ended {
                if let Err(e) = ops.add(self.source_events()) {
                    log::warn!("console input: cannot resume reading it: {e:?}");
                }
            }
        }
    }

    /// Stops reading, and closes QEMU's stdin.
    fn end(&mut self, ops: &mut EventOps) {
        if self.waiting_for_qemu {
            if let Some(events) = self.qemu_events() {
                let _ = ops.remove(events);
            }
        } else if !self.source_ended {
            let _ = ops.remove(self.source_events());
        }
        self.source_ended = true;
        self.waiting_for_qemu = false;
        self.pending.clear();
        self.qemu = None;
    }
}

impl<R: Read + AsRawFd + Send> MutEventSubscriber for KeyboardToQemu<R> {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(self.source_events()) {
            log::warn!("console input: cannot watch it: {e:?}; no input reaches the guest");
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.source.as_raw_fd() && !self.read_source() {
            // The last bytes still go to QEMU; only reading stops.
            let _ = ops.remove(self.source_events());
            self.source_ended = true;
        }
        if !self.flush_to_qemu() || (self.source_ended && self.pending.is_empty()) {
            self.end(ops);
            return;
        }
        self.follow_qemu(ops);
    }
}

fn set_nonblocking(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor this process owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    use vnvdimm_vmm::host_io::HostIo;

    use super::*;

    /// A generous bound for "the loop answered at all" (a liveness check, not a speed one).
    const ALIVE_WITHIN: Duration = Duration::from_secs(30);

    /// A stand-in for QEMU that reads nothing until `gate` exists, then copies its stdin
    /// to `out` until it ends.
    fn slow_reader(gate: &std::path::Path, out: &std::path::Path) -> std::process::Child {
        let script = format!("while [ ! -e '{}' ]; do sleep 0.05; done; cat > '{}'", gate.display(), out.display());
        Command::new("sh").args(["-c", &script]).stdin(Stdio::piped()).spawn().unwrap()
    }

    /// A source that watches nothing: adding it is a round trip through the loop.
    struct NoSource;

    impl MutEventSubscriber for NoSource {
        fn init(&mut self, _ops: &mut EventOps) {}
        fn process(&mut self, _events: Events, _ops: &mut EventOps) {}
    }

    #[test]
    fn a_qemu_that_does_not_read_pauses_the_keyboard_not_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let (gate, out) = (dir.path().join("go"), dir.path().join("got"));
        let mut qemu = slow_reader(&gate, &out);
        let stdin = ConsoleIn::new(qemu.stdin.take().unwrap(), false);
        let (mut keyboard, source) = UnixStream::pair().unwrap();
        let host_io = HostIo::start().unwrap();
        host_io.add(Box::new(KeyboardToQemu::new(source, stdin, None).unwrap())).unwrap();
        // Far more than a pipe holds (64 KiB): QEMU's pipe fills while it does not read.
        let keys: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        let sent = keys.clone();
        let typist = std::thread::spawn(move || keyboard.write_all(&sent).unwrap());
        // The loop must go on serving while the pipe is full: a new source gets in.
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _ = tx.send(host_io.add(Box::new(NoSource)).is_ok());
            });
            assert_eq!(rx.recv_timeout(ALIVE_WITHIN), Ok(true), "the host I/O loop stopped serving while QEMU did not read");
        });
        std::fs::write(&gate, b"").unwrap();
        typist.join().unwrap();
        // The keyboard's end closes QEMU's stdin once everything got through: `cat` ends.
        assert!(qemu.wait().unwrap().success());
        assert_eq!(std::fs::read(&out).unwrap(), keys, "QEMU got every key, in order");
    }
}
