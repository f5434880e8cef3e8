//! Root device `_DSM` (ARS, clear error, translate SPA, error injection).
//! STUB: filled in by the poison/ARS work.

use crate::ars::ArsEngine;
use crate::clock::Clock;
use crate::config::PlatformConfig;
use crate::dimm::Dimm;
use crate::dsm::no_functions;
use crate::events::Notification;

/// Everything a root `_DSM` call may look at or change.
pub struct RootContext<'a> {
    pub config: &'a PlatformConfig,
    pub dimms: &'a mut [Dimm],
    pub ars: &'a mut ArsEngine,
    pub clock: &'a dyn Clock,
    pub notifications: &'a mut Vec<Notification>,
}

pub fn call(_ctx: RootContext<'_>, _function: u32, _revision: u32, _input: &[u8]) -> Vec<u8> {
    no_functions()
}
