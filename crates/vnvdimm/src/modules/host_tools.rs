//! Host programs `--modules` uses: kmod's depmod and modinfo (in /usr/sbin or /sbin,
//! which a normal user's PATH on Debian does not include, so those are tried too) and
//! the decompressors of compressed modules.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ToolError {
    #[error("--modules needs {tool} on the host (Debian: apt-get install {package}); not found in PATH, /usr/sbin or /sbin")]
    Missing { tool: &'static str, package: &'static str },
    #[error("--modules: cannot run {tool}: {source}")]
    Spawn { tool: PathBuf, source: std::io::Error },
    #[error("--modules: `{command}` failed ({status}): {stderr}")]
    Failed { command: String, status: std::process::ExitStatus, stderr: String },
}

/// The path of `tool` (from Debian's `package`): PATH first, then the sbin directories.
pub fn find(tool: &'static str, package: &'static str) -> Result<PathBuf, ToolError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .ok_or(ToolError::Missing { tool, package })
}

/// Runs `tool args...`; its stdout on success.
pub fn run(tool: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, ToolError> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|source| ToolError::Spawn { tool: tool.to_path_buf(), source })?;
    if !out.status.success() {
        let command = std::iter::once(tool.as_os_str())
            .chain(args.iter().copied())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        return Err(ToolError::Failed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}
