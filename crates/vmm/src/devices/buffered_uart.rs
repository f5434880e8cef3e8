//! A 16550 (vm-superio) with a queue of host bytes in front of its 64-byte receive
//! FIFO: what a host source (the console's stdin, the agent socket) sends waits here
//! and moves into the FIFO as the guest reads room into it. When the queue is full the
//! source is paused, and `room` is signalled once the guest has drained some of it, so
//! the host I/O loop resumes reading without polling (host_io.rs).

use std::collections::VecDeque;

use vmm_sys_util::eventfd::EventFd;

use crate::devices::bus::{Action, BusDevice};
use crate::devices::serial::SerialDevice;

/// Host bytes queued beyond the FIFO; a source that would exceed it is paused.
pub const MAX_QUEUED: usize = 64 * 1024;

/// Interrupt identification register; reading it tells the driver why it was interrupted.
const IIR: u64 = 2;

pub struct BufferedUart {
    uart: SerialDevice,
    queued: VecDeque<u8>,
    /// Written when room appears after a source found the queue full.
    room: EventFd,
    source_waiting: bool,
}

impl BufferedUart {
    pub fn new(uart: SerialDevice) -> std::io::Result<Self> {
        Ok(BufferedUart {
            uart,
            queued: VecDeque::new(),
            room: EventFd::new(libc::EFD_NONBLOCK)?,
            source_waiting: false,
        })
    }

    /// How many more host bytes the queue takes now.
    pub fn space(&self) -> usize {
        MAX_QUEUED - self.queued.len()
    }

    /// Queues as much of `bytes` as fits and moves what the FIFO takes into it; returns
    /// how many were taken. Taking fewer than offered arms the `room` signal.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let take = self.space().min(bytes.len());
        self.queued.extend(&bytes[..take]);
        self.refill();
        if take < bytes.len() || self.space() == 0 {
            self.source_waiting = true;
        }
        take
    }

    /// The event the host loop waits on while its source is paused.
    pub fn room_event(&self) -> std::io::Result<EventFd> {
        self.room.try_clone()
    }

    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    fn refill(&mut self) {
        while !self.queued.is_empty() && self.uart.rx_room() > 0 {
            let (front, _) = self.queued.as_slices();
            let n = self.uart.receive(front);
            if n == 0 {
                break;
            }
            self.queued.drain(..n);
        }
        if self.source_waiting && self.space() > 0 {
            self.source_waiting = false;
            let _ = self.room.write(1);
        }
    }
}

impl BusDevice for BufferedUart {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // A real 16550 reports "received data" in IIR for as long as its FIFO holds
        // bytes. vm-superio forgets the condition at the first RBR read and raises it
        // again only when new bytes arrive, while Linux's 8250 handler takes at most 256
        // bytes per interrupt and comes back for the rest through IIR: a request line
        // longer than that stayed in the FIFO, unread, until the host's next request
        // arrived, and the agent then saw the two as one line and ran only the second
        // (an s10 command under KVM). Asking IIR re-asserts the condition first.
        if offset == IIR && self.uart.rx_pending() {
            self.uart.reassert_interrupts();
        }
        self.uart.read(offset, data);
        // A read of RBR may have made room: move queued host bytes in.
        self.refill();
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Action {
        self.uart.write(offset, data)
    }
}

#[cfg(test)]
pub(crate) mod tests;
