use super::*;

pub(crate) fn reg_read(dev: &mut BufferedUart, offset: u64) -> u8 {
    let mut b = [0u8];
    dev.read(offset, &mut b);
    b[0]
}

/// Reads every byte the guest would see now (LSR data-ready, then RBR).
pub(crate) fn drain(dev: &mut BufferedUart) -> Vec<u8> {
    let mut got = Vec::new();
    while reg_read(dev, 5) & 1 != 0 {
        got.push(reg_read(dev, 0));
    }
    got
}

#[test]
fn pushed_bytes_reach_the_guest_in_order_beyond_the_fifo() {
    let mut dev = BufferedUart::new(SerialDevice::new(Box::new(std::io::sink()))).unwrap();
    let sent: Vec<u8> = (0..200u8).collect();
    assert_eq!(dev.push(&sent), 200);
    assert_eq!(drain(&mut dev), sent);
}

#[test]
fn a_full_queue_takes_what_fits_and_signals_room_once_the_guest_reads() {
    let mut dev = BufferedUart::new(SerialDevice::new(Box::new(std::io::sink()))).unwrap();
    let room = dev.room_event().unwrap();
    let big = vec![7u8; MAX_QUEUED + 64 + 10];
    // The queue takes MAX_QUEUED (64 of them move on into the FIFO); the rest is
    // refused, for the source to offer again, never dropped.
    assert_eq!(dev.push(&big), MAX_QUEUED);
    assert!(room.read().is_err(), "no room signal while the guest has read nothing");
    assert_eq!(reg_read(&mut dev, 0), 7);
    assert_eq!(room.read().unwrap(), 1, "the first byte read made room: signalled");
    assert!(dev.space() > 0);
}

#[test]
fn received_data_stays_in_iir_while_the_fifo_holds_bytes() {
    let mut dev = BufferedUart::new(SerialDevice::new(Box::new(std::io::sink()))).unwrap();
    assert_eq!(dev.push(&[b'x'; 300]), 300);
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
    taken += drain(&mut dev).len();
    assert_eq!(taken, 300);
    assert_eq!(reg_read(&mut dev, IIR) & 0x0f, 0x01, "nothing pending once the FIFO is empty");
}
