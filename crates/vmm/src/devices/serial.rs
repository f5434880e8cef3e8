//! The 16550 UARTs (vm-superio) on the IO bus: COM1 (ttyS0, the console, to the writer
//! given: the process's stdout for `vnvdimm run`), COM2 (ttyS1, the image's step
//! results, onto the same writer) and COM3 (ttyS2, the guest agent: agent_port.rs).
//!
//! With an in-kernel irqchip the UART's interrupt is an eventfd registered with
//! KVM_IRQFD on IRQ 4 (edge: one write, one interrupt, as vm-superio raises it per
//! event); without one it goes nowhere and guests poll LSR.

use nvdimm_model::sync::LockUnpoisoned;
use std::io::Write;

use kvm_ioctls::VmFd;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::devices::bus::{Action, BusDevice};

/// vm-superio's receive FIFO.
const RX_FIFO_SIZE: usize = 64;
const IER_OFFSET: u8 = 1;

/// Eight registers from the base port.
pub const SERIAL_PORT_LEN: u64 = 8;

/// The interrupt of a UART on a VM without an in-kernel irqchip (bare-metal test
/// programs, or a host whose KVM refused KVM_CREATE_IRQCHIP): it goes nowhere, and such
/// guests poll LSR.
pub struct NoIrq;

impl Trigger for NoIrq {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        Ok(())
    }
}

/// The UART's interrupt: nowhere, or an irqfd.
pub enum SerialIrq {
    None(NoIrq),
    Fd(EventFd),
}

impl Trigger for SerialIrq {
    type E = std::io::Error;
    fn trigger(&self) -> Result<(), Self::E> {
        match self {
            SerialIrq::None(_) => Ok(()),
            SerialIrq::Fd(fd) => fd.write(1),
        }
    }
}

pub struct SerialDevice {
    uart: Serial<SerialIrq, NoEvents, Box<dyn Write + Send>>,
}

impl SerialDevice {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        SerialDevice {
            uart: Serial::new(SerialIrq::None(NoIrq), out),
        }
    }

    /// A UART whose interrupt raises `gsi` (needs KVM_CREATE_IRQCHIP first). On failure
    /// the writer comes back with the reason, for a UART without interrupt.
    pub fn with_irq(
        vm_fd: &VmFd,
        gsi: u32,
        out: Box<dyn Write + Send>,
    ) -> Result<Self, (String, Box<dyn Write + Send>)> {
        let fd = match EventFd::new(EFD_NONBLOCK) {
            Ok(fd) => fd,
            Err(e) => return Err((format!("eventfd: {e}"), out)),
        };
        if let Err(e) = vm_fd.register_irqfd(&fd, gsi) {
            return Err((format!("KVM_IRQFD on GSI {gsi}: {e}"), out));
        }
        Ok(SerialDevice {
            uart: Serial::new(SerialIrq::Fd(fd), out),
        })
    }
}

impl SerialDevice {
    /// Room left in the receive FIFO (64 bytes in all).
    pub fn rx_room(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// Whether received bytes wait in the FIFO.
    pub fn rx_pending(&self) -> bool {
        self.rx_room() < RX_FIFO_SIZE
    }

    /// Raises again every interrupt whose condition holds and that the guest enabled
    /// (received data waiting, transmitter empty), as writing IER does on a 16550.
    pub fn reassert_interrupts(&mut self) {
        let enabled = self.uart.read(IER_OFFSET);
        if let Err(e) = self.uart.write(IER_OFFSET, enabled) {
            log::debug!("serial: {e:?}");
        }
    }

    /// Puts host bytes into the receive FIFO (raising the guest's receive interrupt when
    /// it enabled one); returns how many fitted.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        if bytes.is_empty() || self.rx_room() == 0 {
            return 0;
        }
        match self.uart.enqueue_raw_bytes(bytes) {
            Ok(n) => n,
            Err(e) => {
                log::debug!("serial: receive: {e:?}");
                0
            }
        }
    }
}

/// One writer behind several UARTs (ttyS0 and ttyS1 both print on the console), so
/// their bytes interleave only at store granularity, as on a QEMU mux chardev.
#[derive(Clone)]
pub struct SharedWriter(std::sync::Arc<std::sync::Mutex<Box<dyn Write + Send>>>);

impl SharedWriter {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        SharedWriter(std::sync::Arc::new(std::sync::Mutex::new(out)))
    }
}

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock_unpoisoned().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock_unpoisoned().flush()
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if let (Ok(offset), [byte]) = (u8::try_from(offset), data) {
            *byte = self.uart.read(offset);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Action {
        // UART registers are bytes; wider accesses are a guest bug and are dropped.
        if let (Ok(offset), [byte]) = (u8::try_from(offset), data) {
            if let Err(e) = self.uart.write(offset, *byte) {
                log::debug!("serial: {e:?}");
            }
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmitted_bytes_reach_the_writer_and_wide_writes_do_not() {
        let out = Shared::default();
        let mut dev = SerialDevice::new(Box::new(out.clone()));
        dev.write(0, b"h");
        dev.write(0, b"ij"); // two-byte store to THR: dropped
        dev.write(0, b"i");
        assert_eq!(out.0.lock().unwrap().as_slice(), b"hi");
        let mut lsr = [0u8];
        dev.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "transmitter holding register empty");
        let mut wide = [0u8; 2];
        dev.read(5, &mut wide);
        assert_eq!(wide, [0xff, 0xff]);
    }
}
