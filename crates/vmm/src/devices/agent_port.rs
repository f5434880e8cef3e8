//! COM3 (ttyS2, 0x3E8, GSI 10; described in the DSDT, as Linux cannot open it otherwise
//! on this hardware-reduced machine, and not sharing COM1's edge-triggered IRQ 4) carries the guest agent's byte stream
//! (docs/guest-agent.md). Its host side is one end of an in-process Unix socket pair:
//! `vnvdimm_agent::AgentClient` (or a test) uses the other end, taken once with
//! [`AgentPort::take_host_end`].
//!
//! Guest → host: each transmitted byte is sent on the socket without blocking the vCPU
//! for long; when nobody drains the socket for a second, bytes are dropped (as QEMU drops
//! them for a socket chardev with no client; the agent client's pings make up for a lost
//! READY line). Host → guest: the host I/O loop reads the socket into the UART's queue
//! (buffered_uart.rs), which refills the 64-byte receive FIFO whenever the guest has
//! read room into it.

use nvdimm_model::sync::LockUnpoisoned;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::devices::buffered_uart::BufferedUart;
use crate::host_io::HostIo;
use crate::devices::serial::SerialDevice;
use crate::devices::uart_feed::UartFeed;

/// COM3, where the image's init starts the agent (`/dev/ttyS2`), and its IRQ; the DSDT
/// describes both.
pub use vnvdimm_machine::acpi::{COM3_IRQ as AGENT_IRQ, COM3_PORT as AGENT_PORT};
/// COM2 (ttyS1): the image's step results; printed on the console.
pub use vnvdimm_machine::acpi::{COM2_IRQ as RESULTS_IRQ, COM2_PORT as RESULTS_PORT};

/// How long one guest byte may wait for room on the socket before it is dropped.
const SEND_WAIT: Duration = Duration::from_secs(1);

/// The VMM's end of the agent line; the socket is hung up when this is dropped.
pub struct AgentPort {
    pub uart: Arc<Mutex<BufferedUart>>,
    vmm_end: UnixStream,
    host_end: Mutex<Option<UnixStream>>,
}

impl AgentPort {
    /// Builds the socket pair and the UART (`make_uart` gets the guest→host writer and
    /// chooses the interrupt); the host→guest direction is a source of `host_io`.
    pub fn new(
        host_io: &HostIo,
        make_uart: impl FnOnce(Box<dyn Write + Send>) -> SerialDevice,
    ) -> std::io::Result<Self> {
        let (vmm_end, host_end) = UnixStream::pair()?;
        let writer = NonBlockingSend(vmm_end.try_clone()?);
        let uart = Arc::new(Mutex::new(BufferedUart::new(make_uart(Box::new(writer)))?));
        let feed = UartFeed::new("agent line", vmm_end.try_clone()?, uart.clone(), None)?;
        host_io.add(Box::new(feed)).map_err(std::io::Error::other)?;
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
    use std::io::Read;

    use crate::devices::bus::BusDevice;
    use crate::devices::buffered_uart::tests::drain;

    fn port() -> (HostIo, AgentPort) {
        let io = HostIo::start().unwrap();
        let port = AgentPort::new(&io, SerialDevice::new).unwrap();
        (io, port)
    }

    #[test]
    fn bytes_cross_the_line_both_ways_beyond_the_fifo() {
        let (_io, port) = port();
        let mut host = port.take_host_end().unwrap();
        assert!(port.take_host_end().is_none(), "the host end is handed out once");
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

        for &b in b"hi\n" {
            port.uart.lock_unpoisoned().write(0, &[b]);
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
            received.extend(drain(&mut port.uart.lock_unpoisoned()));
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(received, sent);
    }

    #[test]
    fn hang_up_ends_the_host_side() {
        let (_io, port) = port();
        let mut host = port.take_host_end().unwrap();
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        port.hang_up();
        let mut b = [0u8; 1];
        assert_eq!(host.read(&mut b).unwrap(), 0, "EOF after hang-up");
    }

    #[test]
    fn guest_output_nobody_reads_is_dropped_instead_of_blocking() {
        let (_io, port) = port();
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
