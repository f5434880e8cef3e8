//! What the device model tells its VMM: notifications to raise and a log of calls.

use serde::Serialize;

/// Which ACPI device a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NotifyTarget {
    Root,
    Dimm { handle: u32 },
}

/// An ACPI `Notify` the VMM should raise (root 0x80 = table change, root 0x81 =
/// new uncorrectable errors, DIMM 0x81 = health event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub target: NotifyTarget,
    pub code: u8,
}

pub const NOTIFY_ROOT_FIT_CHANGED: u8 = 0x80;
pub const NOTIFY_ROOT_NEW_ERRORS: u8 = 0x81;
pub const NOTIFY_DIMM_HEALTH: u8 = 0x81;

/// One answered `_DSM` call, for the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DsmCallRecord {
    pub handle: u32,
    pub family: &'static str,
    pub function: u32,
    pub revision: u32,
    /// First output dword (the status word), when the answer has one.
    pub status: Option<u32>,
}
