//! The bare-metal guest programs of firmware/, built by build.rs.

pub const ACPI_NFIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/acpi_nfit.bin"));
pub const DSM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dsm.bin"));
pub const PATTERN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pattern.bin"));
pub const FLUSH: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/flush.bin"));
pub const POISON: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/poison.bin"));
pub const BENCH: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bench.bin"));
pub const EXIT0: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/exit0.bin"));
/// Reports a panic on the pvpanic port; exits 7 if that did not end the run.
pub const PVPANIC: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pvpanic.bin"));
/// Greets on COM3 (the agent line), echoes one line back with a '>' prefix, exits 0.
pub const AGENT_UART: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agent_uart.bin"));
pub const AGENT_UART_GREETING: &[u8] = b"hello from COM3\n";

/// Values the programs write (kept equal to the .S sources).
pub const PATTERN_VALUE: u64 = 0x766e_7664_6d6d_2d70;
pub const PATTERN_OFFSET: u64 = 0x2000;
pub const PATTERN_WORDS: u64 = 512;
pub const FLUSH_STAMP: u64 = 0x4853_554c_4621_4e56;
pub const FLUSH_STAMP_OFFSET: u64 = 0x1000;
pub const POISON_OFFSET: u64 = 0x3000;
pub const LABEL_PATTERN: &[u8; 16] = b"vnvdimm label!!\n";
pub const BENCH_ITERATIONS: u32 = 200;

/// The idling program the control-API tests drive through the command port.
pub const IDLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/idle.bin"));
/// Report tags of firmware/idle.S.
pub const IDLE_TAG_READ: u32 = 0x5244_0001;
pub const IDLE_TAG_NOTIFY: u32 = 0x4E54_0002;
pub const IDLE_TAG_MACHINE_CHECK: u32 = 0x4D43_0003;
/// Commands of firmware/idle.S.
pub const IDLE_CMD_READ: u32 = 1;
pub const IDLE_CMD_NOTIFY: u32 = 2;
pub const IDLE_CMD_EXIT: u32 = 3;
