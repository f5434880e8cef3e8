//! The machine's power registers, shared by the FADT (which tells the guest where they
//! are) and the VMM's power device (which acts on them), so the two cannot disagree.
//!
//! Hardware-reduced ACPI (ACPI 6.5 §4.8.3.7): the OS powers off by writing
//! `SLP_TYP << 2 | SLP_EN` to the 8-bit sleep control register, SLP_TYP being the
//! first element of `\_S5`; before that it writes WAK_STS to the sleep status register
//! to clear it. Linux does exactly this in `acpi_hw_extended_sleep()`. Reset is the
//! FADT reset register: one byte, `RESET_VALUE`, written to `RESET_PORT`.

/// Sleep control register (FADT SLEEP_CONTROL_REG), I/O port, 8 bits.
pub const SLEEP_CONTROL_PORT: u16 = 0x600;
/// Sleep status register (FADT SLEEP_STATUS_REG), I/O port, 8 bits.
pub const SLEEP_STATUS_PORT: u16 = 0x601;
/// Reset register (FADT RESET_REG), I/O port, 8 bits.
pub const RESET_PORT: u16 = 0x602;
/// Ports from `SLEEP_CONTROL_PORT` the power device claims.
pub const POWER_PORTS_LEN: u64 = 3;
/// The value the OS writes to `RESET_PORT` (FADT RESET_VALUE).
pub const RESET_VALUE: u8 = 1;
/// SLP_TYP of S5 as the `\_S5` package in the DSDT announces it.
pub const S5_SLP_TYP: u8 = 5;
/// Sleep control register: SLP_TYP field (bits 4:2) and SLP_EN (bit 5).
pub const SLP_TYP_SHIFT: u8 = 2;
pub const SLP_TYP_MASK: u8 = 0x7 << SLP_TYP_SHIFT;
pub const SLP_EN: u8 = 1 << 5;
/// Sleep status register: WAK_STS (bit 7), written as 1 to clear.
pub const WAK_STS: u8 = 1 << 7;

/// The sleep type a sleep control register value requests, if SLP_EN is set.
pub fn requested_sleep_type(value: u8) -> Option<u8> {
    (value & SLP_EN != 0).then_some((value & SLP_TYP_MASK) >> SLP_TYP_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_s5_write_requests_s5() {
        // acpi_hw_extended_sleep: ((SLP_TYPa << 2) & 0x1C) | 0x20.
        let linux = ((S5_SLP_TYP << 2) & 0x1C) | 0x20;
        assert_eq!(requested_sleep_type(linux), Some(S5_SLP_TYP));
        assert_eq!(requested_sleep_type(S5_SLP_TYP << 2), None, "no SLP_EN, no sleep");
        assert_eq!(requested_sleep_type(SLP_EN | (3 << 2)), Some(3));
    }
}
