//! The guest RAM file QEMU maps with `memory-backend-file,share=on`: file offset =
//! guest physical address. We map only the mailbox, and copy DIMM contents in and out
//! with positioned reads/writes (the windows are large and mostly untouched).
//!
//! `vnvdimm run` keeps guest RAM in a memfd, not on disk: on a disk filesystem every
//! first touch of a guest page allocates blocks and every dirty page is written back,
//! which made boot ~0.5 s slower; and a memfd is freed when we and QEMU are gone, even
//! after a kill. QEMU opens it as `/proc/self/fd/N`, the descriptor inherited across
//! exec (see [`RamFile::inherited_fd`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nvdimm_model::mailbox::{MailboxMemory, MAILBOX_SIZE};
use nvdimm_model::volatile_mailbox::VolatileMailbox;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{FileOffset, MmapRegion, VolatileMemory};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RamError {
    #[error(
        "guest RAM file {path}: {source} (it needs {size:#x} bytes, sparse, on a filesystem that allows shared mmap)"
    )]
    Create {
        path: PathBuf,
        size: u64,
        source: io::Error,
    },
    #[error("cannot map the DSM mailbox at {offset:#x} of {path}: {source}")]
    Map {
        path: PathBuf,
        offset: u64,
        source: io::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("copy of {len:#x} bytes at {offset:#x} does not fit in the {size:#x}-byte RAM file")]
    OutOfRange { offset: u64, len: u64, size: u64 },
}

/// The shared guest RAM file.
pub struct RamFile {
    path: PathBuf,
    file: File,
    size: u64,
    /// Set for a memfd: QEMU must inherit this descriptor to open `path`.
    inherited_fd: Option<RawFd>,
}

impl RamFile {
    /// Creates (or truncates) a sparse file of `size` bytes.
    pub fn create(path: &Path, size: u64) -> Result<Self, RamError> {
        let err = |source| RamError::Create {
            path: path.to_path_buf(),
            size,
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(err)?;
        file.set_len(size).map_err(err)?;
        Ok(RamFile {
            path: path.to_path_buf(),
            file,
            size,
            inherited_fd: None,
        })
    }

    /// Anonymous shared memory of `size` bytes (a memfd named `name`, close-on-exec in
    /// this process). Its `path` is `/proc/self/fd/N`, valid in a child that inherits
    /// descriptor N: pass [`RamFile::inherited_fd`] to `QemuCommand::inherit_fds`.
    pub fn create_memfd(name: &str, size: u64) -> Result<Self, RamError> {
        let err = |source| RamError::Create {
            path: PathBuf::from(format!("memfd:{name}")),
            size,
            source,
        };
        let cname = CString::new(name).map_err(|_| err(io::Error::from(io::ErrorKind::InvalidInput)))?;
        // SAFETY: a valid NUL-terminated name and flags; the result is checked.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(size).map_err(err)?;
        Ok(RamFile {
            path: PathBuf::from(format!("/proc/self/fd/{fd}")),
            inherited_fd: Some(file.as_raw_fd()),
            file,
            size,
        })
    }

    /// The descriptor a child process must inherit for `path()` to name this memory.
    pub fn inherited_fd(&self) -> Option<RawFd> {
        self.inherited_fd
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), RamError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(RamError::OutOfRange {
                offset,
                len,
                size: self.size,
            }),
        }
    }

    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), RamError> {
        self.check(offset, data.len() as u64)?;
        self.file.write_all_at(data, offset).map_err(|source| RamError::Io {
            what: "writing guest RAM file",
            path: self.path.clone(),
            source,
        })
    }

    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), RamError> {
        self.check(offset, buf.len() as u64)?;
        self.file.read_exact_at(buf, offset).map_err(|source| RamError::Io {
            what: "reading guest RAM file",
            path: self.path.clone(),
            source,
        })
    }

    /// Copies `len` bytes of `src` (from its start) into the RAM file at `offset`. A
    /// shorter source leaves the rest as it is (zero in a fresh file); holes stay holes.
    pub fn load_from(&self, src: &Path, offset: u64, len: u64) -> Result<u64, RamError> {
        self.check(offset, len)?;
        let io_err = |what, source| RamError::Io {
            what,
            path: src.to_path_buf(),
            source,
        };
        let file = File::open(src).map_err(|e| io_err("opening DIMM content", e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            let n = file
                .read_at(&mut buf[..want], done)
                .map_err(|e| io_err("reading DIMM content", e))?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().any(|&b| b != 0) {
                self.write_at(offset + done, &buf[..n])?;
            }
            done += n as u64;
        }
        Ok(done)
    }

    /// Writes `len` bytes of the RAM file at `offset` to `dst` (created or truncated).
    pub fn store_to(&self, dst: &Path, offset: u64, len: u64) -> Result<(), RamError> {
        self.check(offset, len)?;
        let io_err = |source| RamError::Io {
            what: "writing DIMM content",
            path: dst.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dst)
            .map_err(io_err)?;
        file.set_len(len).map_err(io_err)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            self.read_at(offset + done, &mut buf[..n])?;
            if buf[..n].iter().any(|&b| b != 0) {
                file.write_all_at(&buf[..n], done).map_err(io_err)?;
            }
            done += n as u64;
        }
        Ok(())
    }

    /// Maps the mailbox (`MAILBOX_SIZE` bytes at `offset`) shared with QEMU.
    pub fn map_mailbox(&self, offset: u64) -> Result<MailboxMapping, RamError> {
        self.check(offset, MAILBOX_SIZE)?;
        let map_err = |source| RamError::Map { path: self.path.clone(), offset, source };
        let file = self.file.try_clone().map_err(map_err)?;
        let region = MmapRegionBuilder::new(MAILBOX_SIZE as usize)
            .with_file_offset(FileOffset::new(file, offset))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_SHARED)
            .build()
            .map_err(|e| map_err(io::Error::other(e.to_string())))?;
        Ok(MailboxMapping { region })
    }
}

/// The mailbox as the host sees it: QEMU's guest writes it concurrently, so every
/// access goes through the device model's [`VolatileMailbox`].
pub struct MailboxMapping {
    region: MmapRegion,
}

impl MailboxMapping {
    fn view(&self) -> VolatileMailbox<'_> {
        VolatileMailbox::new(self.region.as_volatile_slice())
    }

    /// Atomic load of a 32-bit mailbox word (doorbell, completion).
    pub fn load_u32(&self, offset: usize) -> u32 {
        self.view().load_u32(offset)
    }

    /// Atomic store of a 32-bit mailbox word.
    pub fn store_u32(&self, offset: usize, value: u32) {
        self.view().store_u32(offset, value)
    }

    /// Atomic increment (wrapping) of a 32-bit mailbox word: a notification's raised
    /// counter, which only the host writes.
    pub fn increment_u32(&self, offset: usize) {
        self.view().increment_u32(offset);
    }
}

impl MailboxMemory for MailboxMapping {
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        self.view().read_bytes(offset, buf)
    }

    fn write_bytes(&mut self, offset: usize, data: &[u8]) {
        self.view().write_bytes(offset, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_mapping_sees_file_writes_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let ram = RamFile::create(&dir.path().join("ram"), 8 << 20).unwrap();
        let mut mb = ram.map_mailbox(4 << 20).unwrap();
        ram.write_at((4 << 20) + 0x1000, b"hello").unwrap();
        let mut buf = [0u8; 5];
        mb.read_bytes(0x1000, &mut buf);
        assert_eq!(&buf, b"hello");
        mb.write_bytes(0x2000, b"world");
        mb.store_u32(0x24, 0xdead_beef);
        let mut back = [0u8; 5];
        ram.read_at((4 << 20) + 0x2000, &mut back).unwrap();
        assert_eq!(&back, b"world");
        let mut word = [0u8; 4];
        ram.read_at((4 << 20) + 0x24, &mut word).unwrap();
        assert_eq!(u32::from_le_bytes(word), 0xdead_beef);
        // Out of range: zeros, no panic.
        let mut far = [1u8; 4];
        mb.read_bytes(MAILBOX_SIZE as usize - 2, &mut far);
        assert_eq!(far, [0; 4]);
        assert_eq!(mb.load_u32(MAILBOX_SIZE as usize), 0);
        assert!(ram.map_mailbox(8 << 20).is_err());
    }

    #[test]
    fn memfd_ram_is_shared_with_a_child_that_inherits_it() {
        let ram = RamFile::create_memfd("vnv-test-ram", 1 << 20).unwrap();
        let fd = ram.inherited_fd().expect("a memfd is passed by descriptor");
        assert_eq!(ram.path(), Path::new(&format!("/proc/self/fd/{fd}")));
        let mb = ram.map_mailbox(0).unwrap();
        // A child writes through the path it inherited; we see it in our mapping.
        let mut child = std::process::Command::new("sh");
        child.args(["-c", &format!("printf 'kick' | dd of=/proc/self/fd/{fd} bs=1 seek=64 conv=notrunc 2>/dev/null")]);
        crate::qemu::inherit_fds(&mut child, vec![fd]);
        assert!(child.status().unwrap().success());
        let mut buf = [0u8; 4];
        mb.read_bytes(64, &mut buf);
        assert_eq!(&buf, b"kick");
        // Without inheriting, the child cannot reach it (close-on-exec).
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("test -e /proc/self/fd/{fd}")])
            .status()
            .unwrap();
        assert!(!status.success(), "the memfd leaked into a child that did not ask for it");
    }

    #[test]
    fn dimm_content_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ram = RamFile::create(&dir.path().join("ram"), 8 << 20).unwrap();
        let src = dir.path().join("dimm");
        let mut content = vec![0u8; 3 << 20];
        content[5] = 7;
        content[(2 << 20) + 9] = 9;
        std::fs::write(&src, &content).unwrap();
        assert_eq!(ram.load_from(&src, 1 << 20, 4 << 20).unwrap(), 3 << 20);
        let out = dir.path().join("out");
        ram.store_to(&out, 1 << 20, 3 << 20).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), content);
        assert!(ram.load_from(&src, 6 << 20, 4 << 20).is_err());
    }
}
