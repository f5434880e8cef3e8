//! `vnvdimm firmware-image`: writes a firmware image the emulated DIMMs accept, for
//! `ndctl update-firmware -f FILE` in a guest (docs/firmware-update.md).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use nvdimm_model::config::parse_size;
use nvdimm_model::firmware::{build_image, MIN_IMAGE_LEN, STORAGE_SIZE};

use crate::cli::Failure;

#[derive(Debug, Args)]
pub struct FirmwareImageArgs {
    /// The version the DIMM reports once the image runs: a non-zero number, e.g. 0x0002000000000001.
    #[arg(long, value_name = "VERSION")]
    pub version: String,
    /// Where to write the image.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Payload bytes between header and checksum (any content the DIMM carries along).
    #[arg(long, value_name = "SIZE", default_value = "16K")]
    pub payload: String,
}

pub fn run(args: &FirmwareImageArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let version = parse_version(&args.version).map_err(|e| Failure::usage(format!("--version {}: {e}", args.version)))?;
    let payload = parse_size(&args.payload).map_err(|e| Failure::usage(format!("--payload {}: {e}", args.payload)))?;
    let max = u64::from(STORAGE_SIZE) - MIN_IMAGE_LEN as u64;
    if payload > max {
        return Err(Failure::usage(format!(
            "--payload {}: the DIMMs store images of at most {STORAGE_SIZE} bytes, so the payload is at most {max}",
            args.payload
        )));
    }
    // A recognisable, version-dependent payload: two images of different versions differ throughout.
    let bytes: Vec<u8> = (0..payload).map(|i| (i as u8) ^ (version as u8)).collect();
    let image = build_image(version, &bytes);
    std::fs::write(&args.out, &image)
        .map_err(|e| Failure::other(format!("--out {}: {e}", args.out.display())))?;
    let _ = writeln!(out, "{}: firmware image, version {version:#018x}, {} bytes", args.out.display(), image.len());
    Ok(())
}

fn parse_version(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    match parsed {
        Ok(0) => Err("must not be 0 (0 means \"no firmware\" to ndctl)".into()),
        Ok(v) => Ok(v),
        Err(_) => Err("expected a decimal or 0x-prefixed hexadecimal number".into()),
    }
}
