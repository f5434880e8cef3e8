//! Owned host mappings for guest memory: anonymous RAM and shared file windows.
//! Mapping never reads or touches a page: a terabyte sparse file maps instantly.

use std::fs::File;
use std::os::fd::AsRawFd;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MmapError {
    #[error("cannot map {size:#x} bytes of {what}: {source}")]
    Map {
        what: String,
        size: u64,
        source: std::io::Error,
    },
}

/// A mapping unmapped on drop. The VMM shares it with KVM (memslots) and with
/// device threads, which copy through raw pointers while the guest may run.
pub struct Mapping {
    ptr: *mut u8,
    size: usize,
}

// SAFETY: the mapping is plain memory owned by this value; concurrent access is
// the guest's business, as on real hardware.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Private anonymous memory, zero-filled on first touch, not reserved up front.
    pub fn anonymous(size: u64, what: &str) -> Result<Self, MmapError> {
        Self::map(
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            what,
        )
    }

    /// `size` bytes of `file` from offset 0, shared so guest stores land in the file.
    pub fn shared_file(
        file: &File,
        size: u64,
        writable: bool,
        what: &str,
    ) -> Result<Self, MmapError> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        Self::map(size, prot, libc::MAP_SHARED, file.as_raw_fd(), what)
    }

    fn map(size: u64, prot: i32, flags: i32, fd: i32, what: &str) -> Result<Self, MmapError> {
        let len = usize::try_from(size).map_err(|_| MmapError::Map {
            what: what.to_string(),
            size,
            source: std::io::Error::from_raw_os_error(libc::EOVERFLOW),
        })?;
        // SAFETY: a fresh mapping at an address the kernel picks; nothing aliases it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                flags | libc::MAP_NORESERVE,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(MmapError::Map {
                what: what.to_string(),
                size,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            size: len,
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn size(&self) -> u64 {
        self.size as u64
    }

    /// Copies `data` to `offset`; false (nothing copied) when it does not fit.
    pub fn write(&self, offset: u64, data: &[u8]) -> bool {
        if !self.fits(offset, data.len()) {
            return false;
        }
        // SAFETY: range checked above; the mapping lives as long as self.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset as usize), data.len())
        };
        true
    }

    /// Copies from `offset` into `buf`; false (buf untouched) when it does not fit.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        if !self.fits(offset, buf.len()) {
            return false;
        }
        // SAFETY: range checked above; the mapping lives as long as self.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.add(offset as usize),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        true
    }

    fn fits(&self, offset: u64, len: usize) -> bool {
        offset
            .checked_add(len as u64)
            .is_some_and(|end| end <= self.size as u64)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/size came from a successful mmap and are unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.size) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_bounds_checked() {
        let m = Mapping::anonymous(4096, "test").unwrap();
        assert!(m.write(4092, &[1, 2, 3, 4]));
        assert!(!m.write(4093, &[1, 2, 3, 4]));
        assert!(!m.write(u64::MAX, &[1]));
        let mut buf = [0u8; 4];
        assert!(m.read(4092, &mut buf));
        assert_eq!(buf, [1, 2, 3, 4]);
        assert!(!m.read(4096, &mut [0u8; 1]));
    }
}
