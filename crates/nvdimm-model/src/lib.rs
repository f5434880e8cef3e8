//! vnvdimm's emulated NVDIMM platform as plain Rust: configuration, NFIT and AML
//! generation, the `_DSM` mailbox, labels, poison, health and Address Range Scrub.
//! Nothing here touches KVM; backends feed it mailbox requests and host commands.

pub mod aml;
pub mod ars;
pub mod backing_lock;
pub mod clock;
pub mod config;
pub mod dimm;
pub mod dsm;
pub mod dsm_intel;
pub mod dsm_firmware;
pub mod dsm_root;
pub mod dsm_security;
pub mod event_log;
pub mod firmware;
pub mod events;
pub mod health;
pub mod interleave;
pub mod labels;
pub mod layout;
pub mod mailbox;
pub mod nfit;
pub mod persist;
pub mod platform;
pub mod platform_firmware;
pub mod platform_health;
pub mod platform_open;
pub mod platform_poison;
pub mod platform_security;
pub mod poison;
pub mod poison_journal;
pub mod spa_map;
pub mod security;
pub mod sync;
pub mod writeback;
pub mod volatile_mailbox;
pub mod writeback_watch;

pub use config::{DimmConfig, PersistenceDomain, PlatformConfig};
pub use layout::{DimmPlacement, PlatformLayout};
pub use platform::NvdimmPlatform;
