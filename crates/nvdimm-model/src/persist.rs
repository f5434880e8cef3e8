//! Crash-safe storage of a DIMM's sidecar files (label area and JSON state).
//!
//! Every write replaces the whole file: write `<name>.tmp` in the same directory,
//! fsync it, rename it over `<name>`, fsync the directory. A crash at any point
//! leaves either the old or the new file under `<name>`, never a mix; a leftover
//! `.tmp` is ignored on read and overwritten by the next write.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PersistError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not valid DIMM state ({source}); fix or delete it to start from fresh state")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("poison journal {path}: {message}")]
    Journal { path: PathBuf, message: String },
}

/// Where a DIMM's sidecars live: next to its backing file, named after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarPaths {
    /// `<backing file>.labels`: the raw label storage area, exactly `label_size` bytes.
    pub labels: PathBuf,
    /// `<backing file>.state.json`: poison, SMART, thresholds, injection, shutdown marker.
    pub state: PathBuf,
    /// `<backing file>.poison.journal`: poison changes since the state file was written.
    pub poison_journal: PathBuf,
}

impl SidecarPaths {
    pub fn for_backing_file(backing: &Path) -> Self {
        SidecarPaths {
            labels: with_suffix(backing, ".labels"),
            state: with_suffix(backing, ".state.json"),
            poison_journal: with_suffix(backing, ".poison.journal"),
        }
    }
}

/// `path` with `suffix` appended to its file name (not replacing an extension).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Where an interrupted write of `path` leaves its data.
pub fn temp_path(path: &Path) -> PathBuf {
    with_suffix(path, ".tmp")
}

/// Test hook: where an atomic write stops, to simulate a crash.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The temp file is written and synced but never renamed.
    BeforeRename,
}

/// Replaces `path` with `data` atomically and durably.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), PersistError> {
    write_atomic_until(path, data, None)
}

#[doc(hidden)]
pub fn write_atomic_until(path: &Path, data: &[u8], crash: Option<CrashPoint>) -> Result<(), PersistError> {
    let tmp = temp_path(path);
    fn io<'a>(op: &'static str, p: &'a Path) -> impl FnOnce(io::Error) -> PersistError + 'a {
        move |source| PersistError::Io { op, path: p.to_path_buf(), source }
    }
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(io("create", &tmp))?;
    // A failed write (a full disk) must not leave a partial temp file behind for good.
    let discard = |e: PersistError| {
        let _ = fs::remove_file(&tmp);
        e
    };
    file.write_all(data).map_err(io("write", &tmp)).map_err(discard)?;
    file.sync_all().map_err(io("fsync", &tmp)).map_err(discard)?;
    drop(file);
    if crash == Some(CrashPoint::BeforeRename) {
        return Ok(());
    }
    fs::rename(&tmp, path).map_err(io("rename into place", path)).map_err(discard)?;
    sync_parent(path)
}

/// Removes `path` if it exists, durably (the directory is synced).
pub fn remove(path: &Path) -> Result<(), PersistError> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PersistError::Io { op: "remove", path: path.to_path_buf(), source }),
    }
}

/// Makes a rename in `path`'s directory durable.
pub(crate) fn sync_parent(path: &Path) -> Result<(), PersistError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| PersistError::Io {
        op: "fsync directory",
        path: dir.to_path_buf(),
        source,
    })
}

/// Reads `path`, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, PersistError> {
    match fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PersistError::Io { op: "read", path: path.to_path_buf(), source }),
    }
}

/// Reads a JSON sidecar, or `None` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, PersistError> {
    match read_optional(path)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| PersistError::Corrupt { path: path.to_path_buf(), source }),
    }
}

/// Writes a JSON sidecar atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), PersistError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|source| PersistError::Corrupt { path: path.to_path_buf(), source })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_are_named_after_the_backing_file() {
        let p = SidecarPaths::for_backing_file(Path::new("/data/nvdimm0.img"));
        assert_eq!(p.labels, PathBuf::from("/data/nvdimm0.img.labels"));
        assert_eq!(p.state, PathBuf::from("/data/nvdimm0.img.state.json"));
    }

    #[test]
    fn a_failed_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way makes the rename fail, even as root.
        let path = dir.path().join("f");
        fs::create_dir_all(path.join("blocker")).unwrap();
        assert!(write_atomic(&path, b"data").is_err());
        assert!(!temp_path(&path).exists(), "the temp file was left behind");
    }

    #[test]
    fn atomic_write_replaces_and_interrupted_write_keeps_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(read_optional(&path).unwrap(), None);
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(read_optional(&path).unwrap().as_deref(), Some(&b"two"[..]));
        assert!(!temp_path(&path).exists());
        write_atomic_until(&path, b"three", Some(CrashPoint::BeforeRename)).unwrap();
        assert_eq!(read_optional(&path).unwrap().as_deref(), Some(&b"two"[..]));
        assert!(temp_path(&path).exists());
        // The next write goes through despite the leftover.
        write_atomic(&path, b"four").unwrap();
        assert_eq!(read_optional(&path).unwrap().as_deref(), Some(&b"four"[..]));
    }

    #[test]
    fn corrupt_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        fs::write(&path, b"{not json").unwrap();
        let err = read_json::<serde_json::Value>(&path).unwrap_err().to_string();
        assert!(err.contains("s.json"), "{err}");
    }

    #[test]
    fn write_into_missing_directory_fails_with_path() {
        let err = write_atomic(Path::new("/nonexistent-dir-vnvdimm/x"), b"x").unwrap_err().to_string();
        assert!(err.contains("/nonexistent-dir-vnvdimm/x.tmp"), "{err}");
    }
}
