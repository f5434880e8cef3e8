//! Intel-family DIMM `_DSM`. STUB: filled in by the DIMM DSM work.

use crate::dimm::Dimm;
use crate::dsm::no_functions;
use crate::events::Notification;

pub fn call(
    _dimm: &mut Dimm,
    _function: u32,
    _revision: u32,
    _input: &[u8],
    _notifications: &mut Vec<Notification>,
) -> Vec<u8> {
    no_functions()
}
