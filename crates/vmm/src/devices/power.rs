//! Power off and reset: the registers the hardware-reduced FADT names
//! (`vnvdimm_machine::acpi::power` has their addresses and bit layout), plus the PC's
//! 0xCF9 reset control. What Linux writes, and what happens:
//!
//! | port | Linux writes | effect |
//! |---|---|---|
//! | 0x600 sleep control | `SLP_TYP(5) << 2 \| SLP_EN` (`acpi_hw_extended_sleep`, from `\_S5`) | power off |
//! | 0x601 sleep status | `WAK_STS` (0x80) to clear it, before sleeping | none; reads 0 |
//! | 0x602 reset | `RESET_VALUE` (1), from `acpi_reboot()` | reset |
//! | 0xCF9 | bit 2 (`reboot=pci`) | reset |
//!
//! Any other sleep type (S1-S4) is refused the way a platform without it would: the
//! write is ignored and the vCPU continues (Linux only asks for states `\_Sx` lists).

use crate::devices::bus::{Action, BusDevice};
use crate::outcome::GuestOutcome;

pub use vnvdimm_machine::acpi::power::{
    requested_sleep_type, POWER_PORTS_LEN, RESET_PORT, RESET_VALUE, S5_SLP_TYP, SLEEP_CONTROL_PORT, SLEEP_STATUS_PORT,
    SLP_EN, WAK_STS,
};
pub const PC_RESET_CONTROL_PORT: u16 = 0xcf9;
const PC_RESET_CPU: u8 = 1 << 2;

const CONTROL_OFFSET: u64 = 0;
const STATUS_OFFSET: u64 = (SLEEP_STATUS_PORT - SLEEP_CONTROL_PORT) as u64;
const RESET_OFFSET: u64 = (RESET_PORT - SLEEP_CONTROL_PORT) as u64;

/// The three FADT registers at `SLEEP_CONTROL_PORT..+POWER_PORTS_LEN`.
pub struct PowerPorts;

impl BusDevice for PowerPorts {
    /// Every register reads 0: WAK_STS is never set because the machine never wakes
    /// from a sleep state (it has none but S5).
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Action {
        match (offset, data) {
            (CONTROL_OFFSET, &[value]) if requested_sleep_type(value) == Some(S5_SLP_TYP) => {
                Action::Stop(GuestOutcome::PowerOff)
            }
            (STATUS_OFFSET, &[_]) => Action::Continue,
            (RESET_OFFSET, &[RESET_VALUE]) => Action::Stop(GuestOutcome::Reset),
            _ => {
                log::debug!("power: ignored write {data:?} at offset {offset}");
                Action::Continue
            }
        }
    }
}

/// 0xCF9: bit 2 starts the reset the other bits describe.
pub struct PcResetControl;

impl BusDevice for PcResetControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Action {
        match data {
            [value] if value & PC_RESET_CPU != 0 => Action::Stop(GuestOutcome::Reset),
            _ => Action::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte `acpi_hw_extended_sleep()` writes for `sleep_type_a`.
    fn linux_sleep_control(sleep_type_a: u8) -> u8 {
        ((sleep_type_a << 2) & 0x1C) | 0x20
    }

    #[test]
    fn linux_power_off_sequence_powers_off() {
        let mut p = PowerPorts;
        // First the status register is cleared, then SLP_TYP|SLP_EN is written.
        assert_eq!(p.write(STATUS_OFFSET, &[WAK_STS]), Action::Continue);
        assert_eq!(p.write(CONTROL_OFFSET, &[linux_sleep_control(S5_SLP_TYP)]), Action::Stop(GuestOutcome::PowerOff));
    }

    #[test]
    fn other_sleep_writes_are_ignored() {
        let mut p = PowerPorts;
        assert_eq!(p.write(CONTROL_OFFSET, &[S5_SLP_TYP << 2]), Action::Continue, "no SLP_EN");
        assert_eq!(p.write(CONTROL_OFFSET, &[linux_sleep_control(3)]), Action::Continue, "S3: not supported");
        assert_eq!(p.write(CONTROL_OFFSET, &[linux_sleep_control(S5_SLP_TYP), 0]), Action::Continue, "wrong width");
        let mut byte = [0xAA];
        p.read(STATUS_OFFSET, &mut byte);
        assert_eq!(byte, [0], "WAK_STS never set");
    }

    #[test]
    fn reset_registers_reset() {
        let mut p = PowerPorts;
        assert_eq!(p.write(RESET_OFFSET, &[RESET_VALUE]), Action::Stop(GuestOutcome::Reset));
        assert_eq!(p.write(RESET_OFFSET, &[2]), Action::Continue);
        assert_eq!(PcResetControl.write(0, &[0x6]), Action::Stop(GuestOutcome::Reset));
        assert_eq!(PcResetControl.write(0, &[0x2]), Action::Continue);
    }
}
