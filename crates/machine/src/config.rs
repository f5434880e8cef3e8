//! The machine-level choices a user makes: how much RAM and how many vCPUs.

use nvdimm_model::config::{GIB, MIB};
use thiserror::Error;

/// Smallest guest RAM accepted: a Linux kernel plus initramfs needs more than this anyway.
pub const MIN_MEMORY: u64 = 64 * MIB;
/// Largest guest RAM accepted; keeps every address the map hands out far below
/// the 46-bit guest physical limit of current KVM hosts.
pub const MAX_MEMORY: u64 = 1024 * GIB;
/// RAM is handed out in 2 MiB units so both RAM blocks stay huge-page aligned.
pub const MEMORY_ALIGN: u64 = 2 * MIB;
/// xAPIC ids are 8 bits, 0xFF is broadcast, and the IO APIC takes the id after the last CPU.
pub const MAX_CPUS: u8 = 254;

pub const DEFAULT_MEMORY: u64 = 512 * MIB;
pub const DEFAULT_CPUS: u8 = 1;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MachineConfigError {
    #[error("--memory: {got} bytes is too small; give at least 64M")]
    MemoryTooSmall { got: u64 },
    #[error("--memory: {got} bytes is too large; at most 1T is supported")]
    MemoryTooLarge { got: u64 },
    #[error("--memory: {got} bytes is not a multiple of 2M; round it (e.g. 512M, 2G)")]
    MemoryUnaligned { got: u64 },
    #[error("--cpus: {got} is out of range; give 1..=254")]
    CpuCount { got: u8 },
}

/// Guest RAM size and vCPU count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineConfig {
    /// Guest RAM in bytes (not counting NVDIMMs).
    pub memory: u64,
    pub cpus: u8,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig { memory: DEFAULT_MEMORY, cpus: DEFAULT_CPUS }
    }
}

impl MachineConfig {
    pub fn new(memory: u64, cpus: u8) -> Result<Self, MachineConfigError> {
        let config = MachineConfig { memory, cpus };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), MachineConfigError> {
        let got = self.memory;
        if got < MIN_MEMORY {
            return Err(MachineConfigError::MemoryTooSmall { got });
        }
        if got > MAX_MEMORY {
            return Err(MachineConfigError::MemoryTooLarge { got });
        }
        if !got.is_multiple_of(MEMORY_ALIGN) {
            return Err(MachineConfigError::MemoryUnaligned { got });
        }
        if self.cpus == 0 || self.cpus > MAX_CPUS {
            return Err(MachineConfigError::CpuCount { got: self.cpus });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(MachineConfig::default().validate(), Ok(()));
    }

    #[test]
    fn refusals_name_the_option() {
        let cases = [
            (MachineConfig { memory: MIB, cpus: 1 }, "--memory"),
            (MachineConfig { memory: 2048 * GIB, cpus: 1 }, "--memory"),
            (MachineConfig { memory: 512 * MIB + 4096, cpus: 1 }, "--memory"),
            (MachineConfig { memory: 512 * MIB, cpus: 0 }, "--cpus"),
            (MachineConfig { memory: 512 * MIB, cpus: 255 }, "--cpus"),
        ];
        for (config, option) in cases {
            let err = config.validate().expect_err("must be refused").to_string();
            assert!(err.starts_with(option), "{config:?}: {err}");
        }
        assert!(MachineConfig::new(64 * MIB, 254).is_ok());
    }
}
