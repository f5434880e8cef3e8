//! A host byte source feeding a guest UART through the host I/O loop: read when
//! readable, at most what the UART's queue takes, paused while the guest is not
//! reading and resumed by the UART's room event. On end of input the source leaves the
//! loop; the UART stays (the guest sees a quiet line, as after a cable pull).

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use nvdimm_model::sync::LockUnpoisoned;
use vmm_sys_util::eventfd::EventFd;

use crate::devices::buffered_uart::BufferedUart;
use crate::devices::console_escape::ConsoleEscape;

pub struct UartFeed<R> {
    name: &'static str,
    source: R,
    uart: Arc<Mutex<BufferedUart>>,
    room: EventFd,
    escape: Option<ConsoleEscape>,
    /// Bytes read but not yet taken by the UART: the escape filter may release a
    /// held-back Ctrl-A with the next key, one byte more than the read it came with.
    held: Vec<u8>,
    paused: bool,
}

impl<R: Read + AsRawFd + Send> UartFeed<R> {
    /// `escape`: the console's Ctrl-A commands (a terminal); None passes every byte.
    pub fn new(
        name: &'static str,
        source: R,
        uart: Arc<Mutex<BufferedUart>>,
        escape: Option<ConsoleEscape>,
    ) -> std::io::Result<Self> {
        let room = uart.lock_unpoisoned().room_event()?;
        Ok(UartFeed { name, source, uart, room, escape, held: Vec::new(), paused: false })
    }

    fn source_events(&self) -> Events {
        Events::new(&self.source, EventSet::IN)
    }

    /// Moves what the source has (up to the queue's space) into the UART. False when
    /// the source has ended.
    fn pump(&mut self, ops: &mut EventOps) -> bool {
        let mut buf = [0u8; 4096];
        let space = {
            let mut uart = self.uart.lock_unpoisoned();
            let taken = uart.push(&self.held);
            self.held.drain(..taken);
            uart.space()
        };
        if space == 0 || !self.held.is_empty() {
            self.pause(ops);
            return true;
        }
        let want = space.min(buf.len());
        let n = match self.source.read(&mut buf[..want]) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock) => {
                return true
            }
            Err(e) => {
                log::warn!("{}: reading the host side failed ({e}); no more input to the guest", self.name);
                return false;
            }
        };
        let bytes = crate::devices::console_escape::filter(self.escape.as_mut(), &buf[..n]);
        let mut uart = self.uart.lock_unpoisoned();
        let taken = uart.push(&bytes);
        self.held.extend_from_slice(&bytes[taken..]);
        if uart.space() == 0 || !self.held.is_empty() {
            drop(uart);
            self.pause(ops);
        }
        true
    }

    fn pause(&mut self, ops: &mut EventOps) {
        if !self.paused {
            self.paused = true;
            let _ = ops.remove(self.source_events());
        }
    }

    fn resume(&mut self, ops: &mut EventOps) {
        if self.paused {
            self.paused = false;
            if let Err(e) = ops.add(self.source_events()) {
                log::warn!("{}: cannot resume reading the host side: {e:?}", self.name);
            }
        }
    }

    fn end(&mut self, ops: &mut EventOps) {
        if !self.paused {
            let _ = ops.remove(self.source_events());
        }
        let _ = ops.remove(Events::new(&self.room, EventSet::IN));
    }
}

impl<R: Read + AsRawFd + Send> MutEventSubscriber for UartFeed<R> {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.room.as_raw_fd() {
            let _ = self.room.read();
            // What was held back goes first; the source waits until it is all in.
            let mut uart = self.uart.lock_unpoisoned();
            let taken = uart.push(&self.held);
            drop(uart);
            self.held.drain(..taken);
            if self.held.is_empty() {
                self.resume(ops);
            }
            return;
        }
        // Readable or hung up: a read tells which (0 bytes at the end).
        if !self.pump(ops) {
            self.end(ops);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(self.source_events()).and_then(|()| ops.add(Events::new(&self.room, EventSet::IN))) {
            log::warn!("{}: cannot watch the host side: {e:?}; no input reaches the guest", self.name);
        }
    }
}

#[cfg(test)]
mod tests;
