//! Host-to-guest commands for an idling bare-metal program (firmware/idle.S), so tests
//! can make the guest act (load an address, read the notification counters, exit) while
//! they drive the control API. Ports: `CMD_PORT` (command, read-to-clear), `+4`/`+8`
//! (the 64-bit argument, low and high word).
//!
//! A read of the command register with no command pending waits up to `IDLE_WAIT` for
//! one, so the idle loop does not spin the host CPU; a vCPU kick (vcpu_control) is then
//! served at most `IDLE_WAIT` late.

use nvdimm_model::sync::LockUnpoisoned;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use vnvdimm_vmm::devices::bus::{Action, BusDevice};

pub const CMD_PORT: u16 = 0x518;
pub const CMD_PORT_LEN: u64 = 12;
pub const IDLE_WAIT: Duration = Duration::from_millis(1);

#[derive(Default)]
struct State {
    command: u32,
    arg: u64,
}

/// Shared between the test (`send`) and the device on the IO bus.
#[derive(Default)]
pub struct GuestCommands {
    state: Mutex<State>,
    posted: Condvar,
}

impl GuestCommands {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock_unpoisoned()
    }

    /// Posts `command` with `arg`, replacing one the guest has not taken yet.
    pub fn send(&self, command: u32, arg: u64) {
        let mut state = self.lock();
        state.command = command;
        state.arg = arg;
        self.posted.notify_all();
    }

    fn take(&self) -> u32 {
        let state = self.lock();
        let (mut state, _) = self
            .posted
            .wait_timeout_while(state, IDLE_WAIT, |s| s.command == 0)
            .unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut state.command)
    }
}

pub struct CommandPort(pub Arc<GuestCommands>);

impl BusDevice for CommandPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            0 => self.0.take(),
            4 => self.0.lock().arg as u32,
            8 => (self.0.lock().arg >> 32) as u32,
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(4);
        data.fill(0);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) -> Action {
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(port: &mut CommandPort, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        port.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn a_command_is_read_once_with_its_argument() {
        let commands = GuestCommands::new();
        let mut port = CommandPort(commands.clone());
        assert_eq!(read(&mut port, 0), 0, "nothing posted: 0 after the idle wait");
        commands.send(1, 0x1_2345_6789);
        assert_eq!(read(&mut port, 0), 1);
        assert_eq!(read(&mut port, 0), 0, "read-to-clear");
        assert_eq!(read(&mut port, 4), 0x2345_6789);
        assert_eq!(read(&mut port, 8), 1);
    }
}
