use super::*;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::devices::buffered_uart::MAX_QUEUED;
use crate::host_io::HostIo;
use crate::devices::serial::SerialDevice;
use crate::devices::bus::BusDevice;

fn uart() -> Arc<Mutex<BufferedUart>> {
    Arc::new(Mutex::new(BufferedUart::new(SerialDevice::new(Box::new(std::io::sink()))).unwrap()))
}

/// What the guest reads within `limit`, polling LSR as a guest without interrupts does.
fn guest_reads(uart: &Mutex<BufferedUart>, want: usize, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let mut dev = uart.lock_unpoisoned();
        let mut lsr = [0u8];
        dev.read(5, &mut lsr);
        if lsr[0] & 1 != 0 {
            let mut b = [0u8];
            dev.read(0, &mut b);
            got.push(b[0]);
        } else {
            drop(dev);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

#[test]
fn host_bytes_reach_the_guest_through_the_loop() {
    let io = HostIo::start().unwrap();
    let (mut host, source) = UnixStream::pair().unwrap();
    let uart = uart();
    io.add(Box::new(UartFeed::new("test", source, uart.clone(), None).unwrap())).unwrap();
    host.write_all(b"hello guest\n").unwrap();
    assert_eq!(guest_reads(&uart, 12, Duration::from_secs(5)), b"hello guest\n");
}

#[test]
fn a_guest_that_does_not_read_pauses_the_source_and_loses_nothing() {
    let io = HostIo::start().unwrap();
    let (host, source) = UnixStream::pair().unwrap();
    let uart = uart();
    io.add(Box::new(UartFeed::new("test", source, uart.clone(), None).unwrap())).unwrap();
    let total = MAX_QUEUED * 3;
    let sent: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let writer = {
        let sent = sent.clone();
        let mut host = host;
        std::thread::spawn(move || host.write_all(&sent))
    };
    // The queue fills while the guest sleeps; the rest waits in the socket.
    std::thread::sleep(Duration::from_millis(200));
    assert!(uart.lock_unpoisoned().queued() <= MAX_QUEUED);
    assert_eq!(guest_reads(&uart, total, Duration::from_secs(60)), sent);
    writer.join().unwrap().unwrap();
}

#[test]
fn end_of_input_leaves_the_loop_serving_the_others() {
    let io = HostIo::start().unwrap();
    let (closing, source_a) = UnixStream::pair().unwrap();
    let (mut live, source_b) = UnixStream::pair().unwrap();
    let (uart_a, uart_b) = (uart(), uart());
    io.add(Box::new(UartFeed::new("a", source_a, uart_a, None).unwrap())).unwrap();
    io.add(Box::new(UartFeed::new("b", source_b, uart_b.clone(), None).unwrap())).unwrap();
    drop(closing);
    std::thread::sleep(Duration::from_millis(50));
    live.write_all(b"still here").unwrap();
    assert_eq!(guest_reads(&uart_b, 10, Duration::from_secs(5)), b"still here");
}

#[test]
fn a_ctrl_a_released_by_the_next_key_is_not_lost_when_the_queue_is_full() {
    use crate::devices::console_escape::ConsoleEscape;
    let io = HostIo::start().unwrap();
    let (mut host, source) = UnixStream::pair().unwrap();
    let uart = uart();
    let escape = ConsoleEscape::new(Box::new(|| {}));
    io.add(Box::new(UartFeed::new("test", source, uart.clone(), Some(escape)).unwrap())).unwrap();
    // Fill the queue to one byte short of full, ending on a held-back Ctrl-A; then one
    // more key releases two bytes into a queue with room for one.
    let mut first = vec![b'x'; MAX_QUEUED + 64 - 1];
    first.push(0x01);
    host.write_all(&first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    host.write_all(b"b").unwrap();
    let mut expected = vec![b'x'; MAX_QUEUED + 64 - 1];
    expected.extend([0x01, b'b']);
    assert_eq!(guest_reads(&uart, expected.len(), Duration::from_secs(60)), expected);
}
