//! Power off and reset. The hardware-reduced FADT names an 8-bit sleep control
//! register at `SLEEP_CONTROL_PORT` (the OS writes SLP_TYP from `\_S5` with SLP_EN)
//! and a reset register at `RESET_PORT`; the PC's 0xCF9 reset control is honoured too.

use crate::bus::{Action, BusDevice};
use crate::outcome::GuestOutcome;

pub const SLEEP_CONTROL_PORT: u16 = 0x600;
pub const SLEEP_STATUS_PORT: u16 = 0x601;
pub const RESET_PORT: u16 = 0x602;
pub const POWER_PORTS_LEN: u64 = 3;
/// `\_S5` package value: SLP_TYP 5.
pub const S5_SLP_TYP: u8 = 5;
pub const RESET_VALUE: u8 = 1;
const SLP_EN: u8 = 1 << 5;
pub const PC_RESET_CONTROL_PORT: u16 = 0xcf9;

pub struct PowerPorts;

impl BusDevice for PowerPorts {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Action {
        match (offset, data) {
            (0, &[value]) if value & SLP_EN != 0 && (value >> 2) & 0x7 == S5_SLP_TYP => {
                Action::Stop(GuestOutcome::PowerOff)
            }
            (2, &[RESET_VALUE]) => Action::Stop(GuestOutcome::Reset),
            _ => {
                crate::debug_log!("power: ignored write {data:?} at offset {offset}");
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
            [value] if value & 0x4 != 0 => Action::Stop(GuestOutcome::Reset),
            _ => Action::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_s5_with_slp_en_powers_off() {
        let mut p = PowerPorts;
        assert_eq!(
            p.write(0, &[(5 << 2) | (1 << 5)]),
            Action::Stop(GuestOutcome::PowerOff)
        );
        assert_eq!(p.write(0, &[5 << 2]), Action::Continue); // no SLP_EN
        assert_eq!(p.write(0, &[(3 << 2) | (1 << 5)]), Action::Continue); // S3: not supported
        assert_eq!(p.write(0, &[0x34, 0]), Action::Continue); // wrong width
        assert_eq!(p.write(2, &[1]), Action::Stop(GuestOutcome::Reset));
        assert_eq!(p.write(2, &[2]), Action::Continue);
        assert_eq!(
            PcResetControl.write(0, &[0x6]),
            Action::Stop(GuestOutcome::Reset)
        );
        assert_eq!(PcResetControl.write(0, &[0x2]), Action::Continue);
    }
}
