//! Per-DIMM media error (poison) ranges. STUB: filled in by the poison/ARS work.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoisonSet {}
