//! The platform `vnvdimm run` describes with --nvdimm, --interleave-set,
//! --firmware-activation and --persistence-domain, parsed the same way for both backends.

use nvdimm_model::config::ConfigError;
use nvdimm_model::PlatformConfig;

use crate::cli::Failure;
use crate::run::RunArgs;

/// Parses and validates the platform options; a usage error names the option at fault.
pub fn platform_config(args: &RunArgs) -> Result<PlatformConfig, Failure> {
    let platform = PlatformConfig::parse(&args.nvdimm, &args.persistence_domain)
        .map_err(|e| Failure::usage(format!("--nvdimm/--persistence-domain: {e}")))?;
    let mut platform = platform
        .with_interleave_sets(&args.interleave_sets)
        .map_err(|e| Failure::usage(format!("--interleave-set: {e}")))?;
    platform.firmware_activation = args.firmware_activation.parse().map_err(|e: ConfigError| Failure::usage(e.to_string()))?;
    Ok(platform)
}
