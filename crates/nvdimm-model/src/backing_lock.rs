//! One VM per backing file. Two VMs on one file corrupt each other's media and, through
//! the sidecars, each other's dirty-shutdown accounting (issue 10, point 5), so a DIMM
//! holds an exclusive `flock` on its backing file for as long as it is open, as QEMU
//! locks its images. The lock belongs to the inode, so a second VM is refused whatever
//! path, symlink or hard link it names the file by.
//!
//! `flock` rather than POSIX record locks: a POSIX lock is dropped when the process
//! closes *any* descriptor of the file (the VMM opens the backing file again to map it).
//! `flock` rather than OFD locks: it can be taken on a read-only descriptor (a
//! `readonly=on` DIMM still owns its sidecars and must be exclusive too), and
//! /proc/locks names the pid that took it, so the refusal can say who has the file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LockError {
    #[error("backing file {path} is in use by {holder}; stop that VM first, or give this one its own file")]
    InUse { path: PathBuf, holder: String },
    #[error("backing file {path} cannot be opened for writing: {source}; make it writable, or give readonly=on")]
    NotWritable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("backing file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("backing file {path}: cannot lock it: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The open backing file and its exclusive lock, released when dropped.
#[derive(Debug)]
pub struct BackingLock {
    file: File,
}

impl BackingLock {
    /// Opens `path` (for writing unless `readonly`, so a file the VM could not write is
    /// refused now rather than by QEMU later) and locks it, without waiting.
    pub fn acquire(path: &Path, readonly: bool) -> Result<BackingLock, LockError> {
        let file = OpenOptions::new().read(true).write(!readonly).open(path).map_err(|source| {
            match (readonly, source.kind()) {
                (false, io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem) => {
                    LockError::NotWritable { path: path.to_path_buf(), source }
                }
                _ => LockError::Open { path: path.to_path_buf(), source },
            }
        })?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let source = io::Error::last_os_error();
            if source.kind() == io::ErrorKind::WouldBlock {
                let holder = file.metadata().ok().and_then(|m| holder_pid(m.dev(), m.ino()));
                return Err(LockError::InUse { path: path.to_path_buf(), holder: describe(holder) });
            }
            return Err(LockError::Lock { path: path.to_path_buf(), source });
        }
        Ok(BackingLock { file })
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

/// "another VM (pid N: its command line)", as much of it as can be found.
fn describe(pid: Option<u32>) -> String {
    let Some(pid) = pid else {
        return "another process".to_string();
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> =
        cmdline.split(|&b| b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
    if pid == std::process::id() {
        return format!("this VM itself (pid {pid}): the same file is given twice");
    }
    match words.is_empty() {
        true => format!("another process (pid {pid})"),
        false => format!("another process (pid {pid}: {})", words.join(" ")),
    }
}

/// The pid that took the `flock` on (dev, ino), from /proc/locks
/// (`1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF`, device as hex major:minor).
fn holder_pid(dev: u64, ino: u64) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    // (pid, "maj:min:ino") of every granted flock; waiters are listed as "1: -> FLOCK ...".
    let held: Vec<(u32, &str)> = locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let at = fields.iter().position(|f| *f == "FLOCK")?;
            if fields.get(1) == Some(&"->") {
                return None;
            }
            Some((fields.get(at + 3)?.parse().ok()?, *fields.get(at + 4)?))
        })
        .collect();
    if let Some((pid, _)) = held.iter().find(|(_, id)| *id == want) {
        return Some(*pid);
    }
    // Some file systems (overlayfs, btrfs) report another device number to stat than
    // the kernel prints here; then the inode alone decides, if it is unambiguous.
    let suffix = format!(":{ino}");
    let mut by_inode = held.iter().filter(|(_, id)| id.ends_with(&suffix));
    match (by_inode.next(), by_inode.next()) {
        (Some((pid, _)), None) => Some(*pid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_inode_is_refused_by_any_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.img");
        std::fs::write(&file, b"x").unwrap();
        let link = dir.path().join("link.img");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let hard = dir.path().join("hard.img");
        std::fs::hard_link(&file, &hard).unwrap();
        let held = BackingLock::acquire(&file, false).unwrap();
        for other in [&file, &link, &hard] {
            for readonly in [false, true] {
                let err = BackingLock::acquire(other, readonly).unwrap_err();
                let msg = err.to_string();
                assert!(matches!(err, LockError::InUse { .. }), "{msg}");
                assert!(msg.contains(&other.display().to_string()), "{msg}");
                assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
            }
        }
        drop(held);
        BackingLock::acquire(&hard, true).unwrap();
    }

    #[test]
    fn a_missing_file_is_an_open_error() {
        let err = BackingLock::acquire(Path::new("/nonexistent/d.img"), false).unwrap_err();
        assert!(matches!(err, LockError::Open { .. }), "{err}");
    }
}
