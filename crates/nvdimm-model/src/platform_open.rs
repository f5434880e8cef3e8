//! Opening a platform whose DIMMs keep their state on disk (labels and SMART
//! sidecars next to each backing file), as the VMM runs it.

use std::sync::Arc;

use thiserror::Error;

use crate::clock::Clock;
use crate::config::{ConfigError, PlatformConfig};
use crate::dimm::{Dimm, DimmError};
use crate::layout::{LayoutError, PlatformLayout};
use crate::platform::NvdimmPlatform;

#[derive(Debug, Error)]
pub enum PlatformOpenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("memory layout: {0}")]
    Layout(#[from] LayoutError),
    #[error("--nvdimm #{index} ({path}): {source}")]
    Dimm { index: usize, path: String, source: DimmError },
}

impl NvdimmPlatform {
    /// Opens every DIMM with [`Dimm::open`]: backing file sizes are checked without
    /// reading them, sidecars are loaded, and an unclean previous run is counted.
    pub fn open(
        config: PlatformConfig,
        layout: PlatformLayout,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PlatformOpenError> {
        config.validate()?;
        layout.validate(&config)?;
        let mut dimms = Vec::with_capacity(config.dimms.len());
        for (index, (c, p)) in config.dimms.iter().zip(&layout.dimms).enumerate() {
            let dimm = Dimm::open(c.clone(), p.clone()).map_err(|source| PlatformOpenError::Dimm {
                index,
                path: c.path.display().to_string(),
                source,
            })?;
            dimms.push(dimm);
        }
        Ok(NvdimmPlatform::assemble(config, layout, dimms, clock))
    }
}
