//! Platform and DIMM configuration: the values a user chooses, parsed from
//! `--nvdimm key=value,...` strings and validated before anything starts.

use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::health::HealthState;
use crate::interleave::{InterleaveError, InterleaveSetConfig};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// Linux's ND_LABEL_MIN_SIZE: two index blocks plus two 128-byte slots.
pub const MIN_LABEL_AREA: u64 = KIB;
/// Largest label area we accept; Linux has no hard cap, 16 MiB keeps the sidecar small.
pub const MAX_LABEL_AREA: u64 = 16 * MIB;
pub const DEFAULT_LABEL_AREA: u64 = 128 * KIB;
/// DIMM sizes must be a multiple of this so namespaces can be carved with 2 MiB alignment.
pub const DIMM_SIZE_ALIGN: u64 = 2 * MIB;
pub const MIN_DIMM_SIZE: u64 = 16 * MIB;
/// Flush hint addresses per DIMM that we publish at most (one 4 KiB page each).
pub const MAX_FLUSH_HINTS: u16 = 64;
/// Linux's handle layout keeps bits 31:28 reserved.
pub const MAX_NFIT_HANDLE: u32 = 0x0FFF_FFFF;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--nvdimm: `{0}` is not of the form key=value")]
    NotKeyValue(String),
    #[error("--nvdimm: unknown key `{0}` (known: {known})", known = DIMM_KEYS.join(", "))]
    UnknownKey(String),
    #[error("--nvdimm: key `{0}` given twice")]
    DuplicateKey(String),
    #[error("--nvdimm: missing `{0}=`")]
    MissingKey(&'static str),
    #[error("--nvdimm {field}: `{value}` is not valid: {reason}")]
    InvalidValue { field: &'static str, value: String, reason: String },
    #[error("--firmware-activation: `{0}` is not one of live, next-boot")]
    InvalidFirmwareActivation(String),
    #[error("--persistence-domain: `{0}` is not one of cpu_cache, memory_controller, none")]
    InvalidPersistenceDomain(String),
    #[error("nvdimm #{index}: handle {handle:#x} is already used by nvdimm #{other}")]
    DuplicateHandle { index: usize, other: usize, handle: u32 },
    #[error("nvdimm #{index}: serial {serial:#x} is already used by nvdimm #{other}; ndctl tells DIMMs apart by id")]
    DuplicateSerial { index: usize, other: usize, serial: u32 },
    #[error("nvdimm #{index}: backing file {path} is used twice")]
    DuplicatePath { index: usize, path: PathBuf },
    #[error("no nvdimm configured: give at least one --nvdimm")]
    NoDimms,
    #[error("at most {max} nvdimms are supported, {count} given")]
    TooManyDimms { count: usize, max: usize },
    #[error(transparent)]
    Interleave(#[from] InterleaveError),
    #[error("nvdimm #{dimm} is in interleave sets #{first} and #{second}; a DIMM belongs to at most one set")]
    DimmInTwoSets { dimm: usize, first: usize, second: usize },
}

const DIMM_KEYS: &[&str] = &[
    "path",
    "size",
    "label-size",
    "handle",
    "vendor",
    "device",
    "revision",
    "subsystem-vendor",
    "subsystem-device",
    "subsystem-revision",
    "serial",
    "location",
    "date",
    "flush-hints",
    "health",
    "flags",
    "readonly",
    "prealloc",
];

/// Where data is safe once it leaves the CPU (NFIT platform capabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PersistenceDomain {
    /// CPU caches are flushed on power loss (capability bit 0, implies bit 1).
    #[default]
    CpuCache,
    /// Only the memory controller's queues are flushed (capability bit 1).
    MemoryController,
    /// No capability published; Linux hides the attribute and ndctl says "unknown".
    None,
}

impl FromStr for PersistenceDomain {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu_cache" | "cpu-cache" => Ok(Self::CpuCache),
            "memory_controller" | "memory-controller" | "mem-ctrl" => Ok(Self::MemoryController),
            "none" => Ok(Self::None),
            other => Err(ConfigError::InvalidPersistenceDomain(other.to_string())),
        }
    }
}

impl PersistenceDomain {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CpuCache => "cpu_cache",
            Self::MemoryController => "memory_controller",
            Self::None => "none",
        }
    }
}

/// How a staged firmware image is activated (docs/firmware-update.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FirmwareActivation {
    /// At once through the Intel activation functions (`ndctl activate-firmware`), or
    /// at the next power-on.
    #[default]
    Live,
    /// Only at the next power-on: the platform offers no activation functions.
    NextBoot,
}

impl FromStr for FirmwareActivation {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Self::Live),
            "next-boot" | "next_boot" => Ok(Self::NextBoot),
            other => Err(ConfigError::InvalidFirmwareActivation(other.to_string())),
        }
    }
}

/// Identity published in the NFIT control region. ndctl shows
/// `vendor-location-date-serial` as `%04x-%02x-%04x-%08x` of exactly these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimmIdentity {
    pub vendor_id: u16,
    pub device_id: u16,
    pub revision_id: u16,
    pub subsystem_vendor_id: u16,
    pub subsystem_device_id: u16,
    pub subsystem_revision_id: u16,
    pub manufacturing_location: u8,
    pub manufacturing_date: u16,
    pub serial_number: u32,
}

impl DimmIdentity {
    /// The id string `ndctl list -D` prints for this identity.
    pub fn ndctl_id(&self) -> String {
        format!(
            "{:04x}-{:02x}-{:04x}-{:08x}",
            self.vendor_id, self.manufacturing_location, self.manufacturing_date, self.serial_number
        )
    }

    pub fn default_for(index: usize) -> Self {
        DimmIdentity {
            vendor_id: 0x8089,
            device_id: 0x097a,
            revision_id: 0x0018,
            subsystem_vendor_id: 0x8089,
            subsystem_device_id: 0x097a,
            subsystem_revision_id: 0x0018,
            manufacturing_location: 0xa2,
            manufacturing_date: 0x2611,
            serial_number: 0x5600_0001 + index as u32,
        }
    }
}

/// NFIT memory-device-to-SPA-map flags (ACPI 6.x table 5-131).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemdevFlags(pub u16);

impl MemdevFlags {
    pub const SAVE_FAIL: u16 = 1 << 0;
    pub const RESTORE_FAIL: u16 = 1 << 1;
    pub const FLUSH_FAIL: u16 = 1 << 2;
    pub const NOT_ARMED: u16 = 1 << 3;
    pub const SMART_EVENT: u16 = 1 << 4;
    pub const SMART_NOTIFY: u16 = 1 << 5;
    pub const MAP_FAIL: u16 = 1 << 6;

    const NAMES: &'static [(&'static str, u16)] = &[
        ("save-fail", Self::SAVE_FAIL),
        ("restore-fail", Self::RESTORE_FAIL),
        ("flush-fail", Self::FLUSH_FAIL),
        ("not-armed", Self::NOT_ARMED),
        ("smart-event", Self::SMART_EVENT),
        ("smart-notify", Self::SMART_NOTIFY),
        ("map-fail", Self::MAP_FAIL),
    ];

    /// Parses `not-armed+smart-notify` (names joined by `+`) or a number.
    fn parse(value: &str) -> Result<Self, String> {
        if let Ok(n) = parse_u64(value) {
            return u16::try_from(n)
                .ok()
                .filter(|n| n & !0x7f == 0)
                .map(MemdevFlags)
                .ok_or_else(|| "only bits 0-6 are defined".to_string());
        }
        let mut bits = 0;
        for name in value.split('+').filter(|s| !s.is_empty()) {
            let (_, bit) = Self::NAMES.iter().find(|(n, _)| *n == name).ok_or_else(|| {
                let known: Vec<_> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                format!("unknown flag `{name}` (known: {})", known.join(", "))
            })?;
            bits |= bit;
        }
        Ok(MemdevFlags(bits))
    }
}

/// One emulated NVDIMM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimmConfig {
    /// Backing file holding the DIMM's media; the whole file is the persistent memory the guest sees.
    pub path: PathBuf,
    pub size: u64,
    /// Label storage area size in bytes; 0 means label-less.
    pub label_size: u64,
    pub handle: u32,
    pub identity: DimmIdentity,
    pub flush_hints: u16,
    pub health: HealthState,
    pub memdev_flags: MemdevFlags,
    pub readonly: bool,
    /// `prealloc=on`: allocate the whole backing file at start (as QEMU's
    /// memory-backend-file `prealloc=on`), so a full file system is a refused start
    /// rather than guest writes that cannot be stored. Off by default: sparse files
    /// start in milliseconds whatever their size.
    #[serde(default)]
    pub prealloc: bool,
}

impl DimmConfig {
    /// Defaults for the DIMM at `index` of a platform: handle encodes channel `index`
    /// of memory controller 0 on socket 0, serials are distinct.
    pub fn with_defaults(index: usize, path: PathBuf, size: u64) -> Self {
        DimmConfig {
            path,
            size,
            label_size: DEFAULT_LABEL_AREA,
            handle: default_handle(index),
            identity: DimmIdentity::default_for(index),
            flush_hints: 1,
            health: HealthState::Ok,
            memdev_flags: MemdevFlags::default(),
            readonly: false,
            prealloc: false,
        }
    }

    /// Parses the `--nvdimm` syntax: `path=FILE,size=SIZE[,label-size=..,handle=..,...]`.
    /// `index` is this DIMM's position, used for defaults.
    pub fn parse(spec: &str, index: usize) -> Result<Self, ConfigError> {
        let mut seen = HashSet::new();
        let mut pairs = Vec::new();
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let (key, value) =
                item.split_once('=').ok_or_else(|| ConfigError::NotKeyValue(item.to_string()))?;
            let key = DIMM_KEYS
                .iter()
                .copied()
                .find(|k| *k == key)
                .ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
            if !seen.insert(key) {
                return Err(ConfigError::DuplicateKey(key.to_string()));
            }
            pairs.push((key, value));
        }
        let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let path = get("path").ok_or(ConfigError::MissingKey("path"))?;
        if path.is_empty() {
            return Err(invalid("path", path, "must not be empty"));
        }
        let size = get("size").ok_or(ConfigError::MissingKey("size"))?;
        let size = parse_size(size).map_err(|r| invalid("size", size, &r))?;
        let mut dimm = DimmConfig::with_defaults(index, PathBuf::from(path), size);
        for (key, value) in pairs {
            let id = &mut dimm.identity;
            match key {
                "path" | "size" => {}
                "label-size" => dimm.label_size = parse_size(value).map_err(|r| invalid(key, value, &r))?,
                "handle" => dimm.handle = parse_int(key, value)?,
                "vendor" => id.vendor_id = parse_int(key, value)?,
                "device" => id.device_id = parse_int(key, value)?,
                "revision" => id.revision_id = parse_int(key, value)?,
                "subsystem-vendor" => id.subsystem_vendor_id = parse_int(key, value)?,
                "subsystem-device" => id.subsystem_device_id = parse_int(key, value)?,
                "subsystem-revision" => id.subsystem_revision_id = parse_int(key, value)?,
                "serial" => id.serial_number = parse_int(key, value)?,
                "location" => id.manufacturing_location = parse_int(key, value)?,
                "date" => id.manufacturing_date = parse_int(key, value)?,
                "flush-hints" => dimm.flush_hints = parse_int(key, value)?,
                "health" => dimm.health = value.parse().map_err(|r: String| invalid(key, value, &r))?,
                "flags" => dimm.memdev_flags = MemdevFlags::parse(value).map_err(|r| invalid(key, value, &r))?,
                "readonly" => dimm.readonly = parse_bool(value).map_err(|r| invalid(key, value, &r))?,
                "prealloc" => dimm.prealloc = parse_bool(value).map_err(|r| invalid(key, value, &r))?,
                _ => unreachable!("key list and match arms agree"),
            }
        }
        dimm.validate()?;
        Ok(dimm)
    }

    /// Checks the values of one DIMM on their own (not against other DIMMs).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let size = self.size.to_string();
        if self.size < MIN_DIMM_SIZE {
            return Err(invalid("size", &size, "must be at least 16M"));
        }
        if !self.size.is_multiple_of(DIMM_SIZE_ALIGN) {
            return Err(invalid("size", &size, "must be a multiple of 2M so namespaces stay aligned"));
        }
        let label = self.label_size;
        if label != 0 && !(MIN_LABEL_AREA..=MAX_LABEL_AREA).contains(&label) {
            return Err(invalid("label-size", &label.to_string(), "must be 0 (label-less) or 1K..16M"));
        }
        if !label.is_multiple_of(256) {
            return Err(invalid("label-size", &label.to_string(), "must be a multiple of 256 bytes"));
        }
        if self.handle == 0 || self.handle > MAX_NFIT_HANDLE {
            return Err(invalid(
                "handle",
                &format!("{:#x}", self.handle),
                "must be non-zero (0 is the root device) and fit in 28 bits",
            ));
        }
        if self.flush_hints > MAX_FLUSH_HINTS {
            return Err(invalid("flush-hints", &self.flush_hints.to_string(), "at most 64"));
        }
        Ok(())
    }
}

/// Handle for the DIMM at `index`: DIMM 1 of channel `index % 16` on memory controller
/// `index / 16` (bits 3:0 DIMM, 7:4 channel, 11:8 controller). Never 0, which is the root.
pub fn default_handle(index: usize) -> u32 {
    let index = index as u32;
    ((index / 16) << 8) | ((index % 16) << 4) | 1
}

/// Address Range Scrub behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArsConfig {
    /// Scrub speed in bytes per second; a full scrub of N bytes takes N / rate seconds.
    pub scrub_rate: u64,
}

impl Default for ArsConfig {
    fn default() -> Self {
        // 2 GiB/s: a 1 GiB DIMM shows "in progress" for half a second, like a fast real platform.
        ArsConfig { scrub_rate: 2 * GIB }
    }
}

/// Everything the device model needs to know about the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformConfig {
    pub dimms: Vec<DimmConfig>,
    pub persistence_domain: PersistenceDomain,
    pub ars: ArsConfig,
    /// Sets of DIMMs interleaved behind one system-address range (docs/interleave-sets.md).
    #[serde(default)]
    pub interleave_sets: Vec<InterleaveSetConfig>,
    #[serde(default)]
    pub firmware_activation: FirmwareActivation,
}

pub const MAX_DIMMS: usize = 32;

impl PlatformConfig {
    pub fn new(dimms: Vec<DimmConfig>, persistence_domain: PersistenceDomain) -> Result<Self, ConfigError> {
        let config = PlatformConfig { dimms, persistence_domain, ars: ArsConfig::default(),
            interleave_sets: Vec::new(),
            firmware_activation: FirmwareActivation::default(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Parses repeated `--nvdimm` strings.
    pub fn parse(specs: &[String], persistence_domain: &str) -> Result<Self, ConfigError> {
        let dimms = specs
            .iter()
            .enumerate()
            .map(|(index, spec)| DimmConfig::parse(spec, index))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(dimms, persistence_domain.parse()?)
    }

    /// The built-in default: two 1 GiB DIMMs with 128 KiB label areas, backed by
    /// `nvdimm0.img` and `nvdimm1.img` in `dir`.
    pub fn default_in(dir: &std::path::Path) -> Self {
        let dimms = (0..2)
            .map(|i| DimmConfig::with_defaults(i, dir.join(format!("nvdimm{i}.img")), GIB))
            .collect();
        PlatformConfig {
            dimms,
            persistence_domain: PersistenceDomain::CpuCache,
            ars: ArsConfig::default(),
            interleave_sets: Vec::new(),
            firmware_activation: FirmwareActivation::default(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dimms.is_empty() {
            return Err(ConfigError::NoDimms);
        }
        if self.dimms.len() > MAX_DIMMS {
            return Err(ConfigError::TooManyDimms { count: self.dimms.len(), max: MAX_DIMMS });
        }
        for (index, dimm) in self.dimms.iter().enumerate() {
            dimm.validate()?;
            for (other, prev) in self.dimms[..index].iter().enumerate() {
                if prev.handle == dimm.handle {
                    return Err(ConfigError::DuplicateHandle { index, other, handle: dimm.handle });
                }
                if prev.identity.serial_number == dimm.identity.serial_number {
                    return Err(ConfigError::DuplicateSerial {
                        index,
                        other,
                        serial: dimm.identity.serial_number,
                    });
                }
                if prev.path == dimm.path {
                    return Err(ConfigError::DuplicatePath { index, path: dimm.path.clone() });
                }
            }
        }
        if self.ars.scrub_rate == 0 {
            return Err(invalid("ars-rate", "0", "must be positive"));
        }
        for (set, config) in self.interleave_sets.iter().enumerate() {
            config.validate(set, &self.dimms)?;
            for &dimm in &config.dimms {
                if let Some(first) = self.interleave_sets[..set].iter().position(|s| s.dimms.contains(&dimm)) {
                    return Err(ConfigError::DimmInTwoSets { dimm, first, second: set });
                }
            }
        }
        Ok(())
    }

    /// Adds the sets of repeated `--interleave-set` strings and checks the result.
    pub fn with_interleave_sets(mut self, specs: &[String]) -> Result<Self, ConfigError> {
        for spec in specs {
            self.interleave_sets.push(InterleaveSetConfig::parse(spec)?);
        }
        self.validate()?;
        Ok(self)
    }

    /// The interleave set DIMM `dimm` belongs to, if any.
    pub fn set_of_dimm(&self, dimm: usize) -> Option<usize> {
        self.interleave_sets.iter().position(|s| s.dimms.contains(&dimm))
    }
}

fn invalid(field: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue { field, value: value.to_string(), reason: reason.to_string() }
}

fn parse_u64(value: &str) -> Result<u64, String> {
    let parsed = if let Some(hex) = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16)
    } else {
        value.parse::<u64>()
    };
    parsed.map_err(|_| "expected a decimal or 0x-prefixed hexadecimal number".to_string())
}

fn parse_int<T: TryFrom<u64>>(field: &'static str, value: &str) -> Result<T, ConfigError> {
    let n = parse_u64(value).map_err(|r| invalid(field, value, &r))?;
    T::try_from(n).map_err(|_| {
        invalid(field, value, &format!("does not fit in {} bits", std::mem::size_of::<T>() * 8))
    })
}

/// Parses sizes like `4096`, `128K`, `16M`, `1G`, `2T` (binary units, optional `iB`/`B`).
pub fn parse_size(value: &str) -> Result<u64, String> {
    if value.starts_with("0x") || value.starts_with("0X") {
        return parse_u64(value);
    }
    let trimmed = value.trim_end_matches("iB").trim_end_matches('B');
    let (digits, unit) = match trimmed.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((at, _)) => trimmed.split_at(at),
        None => (trimmed, ""),
    };
    let multiplier = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => KIB,
        "M" => MIB,
        "G" => GIB,
        "T" => 1024 * GIB,
        _ => return Err("unknown unit; use K, M, G or T".to_string()),
    };
    let n = parse_u64(digits)?;
    n.checked_mul(multiplier).ok_or_else(|| "too large".to_string())
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err("expected on or off".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_spec() {
        let d = DimmConfig::parse(
            "path=/tmp/a,size=1G,label-size=1K,handle=0x101,vendor=0x8089,location=0xa2,date=0x1740,serial=0x1234,flush-hints=2,readonly=on,flags=not-armed",
            0,
        )
        .unwrap();
        assert_eq!(d.size, GIB);
        assert_eq!(d.label_size, KIB);
        assert_eq!(d.handle, 0x101);
        assert_eq!(d.identity.ndctl_id(), "8089-a2-1740-00001234");
        assert_eq!(d.flush_hints, 2);
        assert!(d.readonly);
        assert_eq!(d.memdev_flags.0, MemdevFlags::NOT_ARMED);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            ("size=1G", "path"),
            ("path=a", "size"),
            ("path=a,size=1G,label-size=512", "label-size"),
            ("path=a,size=1000001", "size"),
            ("path=a,size=1G,handle=0", "handle"),
            ("path=a,size=1G,vendor=0x10000", "vendor"),
            ("path=a,size=1G,colour=red", "colour"),
            ("path=a,size=1G,flags=bogus", "flags"),
            ("path=a,size=1G,health=sad", "health"),
        ];
        for (spec, field) in cases {
            let err = DimmConfig::parse(spec, 0).unwrap_err().to_string();
            assert!(err.contains(field), "{spec}: {err}");
        }
    }

    #[test]
    fn duplicate_handles_refused() {
        let specs = vec!["path=a,size=1G,handle=1".to_string(), "path=b,size=1G,handle=1".to_string()];
        let err = PlatformConfig::parse(&specs, "cpu_cache").unwrap_err();
        assert!(matches!(err, ConfigError::DuplicateHandle { index: 1, other: 0, handle: 1 }));
    }

    #[test]
    fn default_handles_are_distinct() {
        let handles: HashSet<_> = (0..MAX_DIMMS).map(default_handle).collect();
        assert_eq!(handles.len(), MAX_DIMMS);
        assert!(!handles.contains(&0));
        assert_eq!(default_handle(1), 0x11);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128K"), Ok(128 * KIB));
        assert_eq!(parse_size("2GiB"), Ok(2 * GIB));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert!(parse_size("12Q").is_err());
    }
}
