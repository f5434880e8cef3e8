//! The COM1 16550 UART (vm-superio) on the IO bus; the guest's console output goes
//! to the writer given (the process's stdout for `vnvdimm run`).
//!
//! With an in-kernel irqchip the UART's interrupt is an eventfd registered with
//! KVM_IRQFD on IRQ 4 (edge: one write, one interrupt, as vm-superio raises it per
//! event); without one it goes nowhere and guests poll LSR.

use std::io::Write;

use kvm_ioctls::VmFd;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::bus::{Action, BusDevice};

/// Eight registers from the base port.
pub const SERIAL_PORT_LEN: u64 = 8;

/// This machine has no interrupt controller a guest could take an IRQ from (see
/// docs/running.md), so the UART's interrupt goes nowhere; guests poll LSR.
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
                crate::debug_log!("serial: {e:?}");
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
