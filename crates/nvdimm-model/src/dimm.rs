//! One emulated DIMM: its configuration, placement, live state and storage.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::config::DimmConfig;
use crate::health::HealthState;
use crate::layout::DimmPlacement;
use crate::poison::PoisonSet;

/// State that survives VMM restarts (everything but the label bytes, which have their own file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimmState {
    pub poison: PoisonSet,
    pub health: HealthState,
}

pub struct Dimm {
    pub config: DimmConfig,
    pub placement: DimmPlacement,
    pub state: DimmState,
    /// Label storage area (`config.label_size` bytes).
    pub labels: Vec<u8>,
}

impl Dimm {
    /// A DIMM with fresh state that is never written to disk (table generation, tests).
    pub fn ephemeral(config: DimmConfig, placement: DimmPlacement) -> Self {
        let labels = vec![0; config.label_size as usize];
        let state = DimmState { health: config.health, ..DimmState::default() };
        Dimm { config, placement, state, labels }
    }

    pub fn handle(&self) -> u32 {
        self.config.handle
    }

    /// The DIMM's window in system physical address space.
    pub fn spa_range(&self) -> Range<u64> {
        self.placement.spa_base..self.placement.spa_base + self.config.size
    }
}
