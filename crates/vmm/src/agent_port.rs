//! COM3 (ttyS2, 0x3E8, GSI 10; described in the DSDT, as Linux cannot open it otherwise
//! on this hardware-reduced machine, and not sharing COM1's edge-triggered IRQ 4) carries the guest agent's byte stream
//! (docs/guest-agent.md). Its host side is one end of an in-process Unix socket pair:
//! `vnvdimm_agent::AgentClient` (or a test) uses the other end, taken once with
//! [`AgentPort::take_host_end`].
//!
//! Guest → host: each transmitted byte is sent on the socket without blocking the vCPU
//! for long; when nobody drains the socket for a second, bytes are dropped (as QEMU drops
//! them for a socket chardev with no client; the agent client's pings make up for a lost
//! READY line). Host → guest: a thread reads the socket into a queue that refills the
//! 64-byte receive FIFO whenever the guest has read room into it.

use nvdimm_model::sync::LockUnpoisoned;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bus::{Action, BusDevice};
use crate::serial::SerialDevice;

/// COM3, where the image's init starts the agent (`/dev/ttyS2`), and its IRQ; the DSDT
/// describes both.
pub use vnvdimm_machine::acpi::{COM3_IRQ as AGENT_IRQ, COM3_PORT as AGENT_PORT};
/// COM2 (ttyS1): the image's step results; printed on the console.
pub use vnvdimm_machine::acpi::{COM2_IRQ as RESULTS_IRQ, COM2_PORT as RESULTS_PORT};

/// Host bytes queued beyond the FIFO; the reader thread waits while this many wait.
const MAX_QUEUED: usize = 64 * 1024;
/// How long one guest byte may wait for room on the socket before it is dropped.
const SEND_WAIT: Duration = Duration::from_secs(1);

/// The UART plus the host bytes it has not taken yet.
pub struct AgentUart {
    uart: SerialDevice,
    queued: VecDeque<u8>,
}

impl AgentUart {
    fn refill(&mut self) {
        while !self.queued.is_empty() && self.uart.rx_room() > 0 {
            let (front, _) = self.queued.as_slices();
            let n = self.uart.receive(front);
            if n == 0 {
                break;
            }
            self.queued.drain(..n);
        }
    }
}

/// Interrupt identification register; reading it tells the driver why it was interrupted.
const IIR: u64 = 2;

impl BusDevice for AgentUart {
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

/// The VMM's end of the agent line; the socket is hung up when this is dropped.
pub struct AgentPort {
    pub uart: Arc<Mutex<AgentUart>>,
    vmm_end: UnixStream,
    host_end: Mutex<Option<UnixStream>>,
}

impl AgentPort {
    /// Builds the socket pair and the UART (`make_uart` gets the guest→host writer and
    /// chooses the interrupt), and starts the host→guest thread.
    pub fn new(
        make_uart: impl FnOnce(Box<dyn Write + Send>) -> SerialDevice,
    ) -> std::io::Result<Self> {
        let (vmm_end, host_end) = UnixStream::pair()?;
        let writer = NonBlockingSend(vmm_end.try_clone()?);
        let uart = Arc::new(Mutex::new(AgentUart {
            uart: make_uart(Box::new(writer)),
            queued: VecDeque::new(),
        }));
        let reader = vmm_end.try_clone()?;
        let feed = uart.clone();
        std::thread::Builder::new()
            .name("vnv-agent-rx".into())
            .spawn(move || feed_guest(reader, feed))?;
        Ok(AgentPort {
            uart,
            vmm_end,
            host_end: Mutex::new(Some(host_end)),
        })
    }

    /// The host's end of the line, once (an `AgentClient` reads and writes it).
    pub fn take_host_end(&self) -> Option<UnixStream> {
        self.host_end
            .lock_unpoisoned()
            .take()
    }

    /// Ends the line: the host end reads EOF (an `AgentClient` reports `Disconnected`)
    /// and the host→guest thread ends. Called when the guest stopped.
    pub fn hang_up(&self) {
        let _ = self.vmm_end.shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for AgentPort {
    fn drop(&mut self) {
        self.hang_up();
    }
}

fn feed_guest(mut from_host: UnixStream, uart: Arc<Mutex<AgentUart>>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match from_host.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let mut dev = uart.lock_unpoisoned();
            let room = MAX_QUEUED.saturating_sub(dev.queued.len());
            let take = room.min(rest.len());
            dev.queued.extend(&rest[..take]);
            dev.refill();
            drop(dev);
            rest = &rest[take..];
            if !rest.is_empty() {
                // The guest is not reading; wait for it rather than grow without bound.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Guest → host writes that never block the vCPU for more than `SEND_WAIT`.
struct NonBlockingSend(UnixStream);

impl Write for NonBlockingSend {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let fd = self.0.as_raw_fd();
        let mut waited = false;
        loop {
            // SAFETY: buf is valid for buf.len() bytes; fd is an open socket we own.
            let sent = unsafe {
                libc::send(
                    fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if sent >= 0 {
                return Ok(sent as usize);
            }
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock if !waited => {
                    waited = true;
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut pfd, 1, SEND_WAIT.as_millis() as libc::c_int) };
                }
                // Nobody drains the line (or it is closed): drop, as a serial line would.
                _ => return Ok(buf.len()),
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg_read(dev: &mut AgentUart, offset: u64) -> u8 {
        let mut b = [0u8];
        dev.read(offset, &mut b);
        b[0]
    }

    #[test]
    fn bytes_cross_the_line_both_ways_beyond_the_fifo() {
        let port = AgentPort::new(SerialDevice::new).unwrap();
        let mut host = port.take_host_end().unwrap();
        assert!(
            port.take_host_end().is_none(),
            "the host end is handed out once"
        );
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

        for &b in b"hi\n" {
            port.uart.lock().unwrap().write(0, &[b]);
        }
        let mut got = [0u8; 3];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi\n");

        // 200 bytes: more than the 64-byte FIFO, so the queue must refill it.
        let sent: Vec<u8> = (0..200u8).collect();
        host.write_all(&sent).unwrap();
        let mut received = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while received.len() < sent.len() && std::time::Instant::now() < deadline {
            let mut dev = port.uart.lock().unwrap();
            if reg_read(&mut dev, 5) & 1 != 0 {
                received.push(reg_read(&mut dev, 0));
            } else {
                drop(dev);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(received, sent);
    }

    #[test]
    fn received_data_stays_in_iir_while_the_fifo_holds_bytes() {
        let port = AgentPort::new(SerialDevice::new).unwrap();
        let mut host = port.take_host_end().unwrap();
        host.write_all(&[b'x'; 300]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while port.uart.lock().unwrap().queued.len() + 64 < 300 - 64 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut dev = port.uart.lock().unwrap();
        dev.write(1, &[0x01]); // IER: received-data interrupt on
        // Linux's 8250 handler: IIR, then at most 256 bytes while LSR says data ready.
        assert_eq!(reg_read(&mut dev, IIR) & 0x0f, 0x04, "received data reported");
        let mut taken = 0;
        while taken < 256 && reg_read(&mut dev, 5) & 1 != 0 {
            reg_read(&mut dev, 0);
            taken += 1;
        }
        assert_eq!(taken, 256);
        // The handler runs again for the rest: IIR must still say received data.
        assert_eq!(reg_read(&mut dev, IIR) & 0x0f, 0x04, "44 bytes still in the FIFO must be reported");
        while reg_read(&mut dev, 5) & 1 != 0 {
            reg_read(&mut dev, 0);
            taken += 1;
        }
        assert_eq!(taken, 300);
        assert_eq!(reg_read(&mut dev, IIR) & 0x0f, 0x01, "nothing pending once the FIFO is empty");
    }

    #[test]
    fn hang_up_ends_the_host_side() {
        let port = AgentPort::new(SerialDevice::new).unwrap();
        let mut host = port.take_host_end().unwrap();
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        port.hang_up();
        let mut b = [0u8; 1];
        assert_eq!(host.read(&mut b).unwrap(), 0, "EOF after hang-up");
    }

    #[test]
    fn guest_output_nobody_reads_is_dropped_instead_of_blocking() {
        let port = AgentPort::new(SerialDevice::new).unwrap();
        let _host = port.take_host_end().unwrap();
        let big = vec![b'x'; 4 << 20];
        let mut w = NonBlockingSend(port.vmm_end.try_clone().unwrap());
        // More than any socket buffer: a blocking writer would hang here.
        let mut total = 0;
        while total < (16 << 20) {
            let n = w.write(&big).unwrap();
            assert!(n > 0);
            total += n;
        }
    }
}
