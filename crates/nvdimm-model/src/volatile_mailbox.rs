//! The `_DSM` mailbox as guest-shared memory: the one `MailboxMemory` both backends
//! use (guest RAM under KVM, QEMU's RAM file under TCG). The guest writes the same
//! bytes while the host reads them, so every access is volatile or atomic through
//! vm-memory, never a Rust reference to the bytes.

use std::sync::atomic::{AtomicU32, Ordering};

use vm_memory::{VolatileMemory, VolatileSlice};

use crate::mailbox::MailboxMemory;

pub struct VolatileMailbox<'a> {
    bytes: VolatileSlice<'a>,
}

impl<'a> VolatileMailbox<'a> {
    /// The mailbox over `bytes` (`MAILBOX_SIZE` of them, in the caller's layout).
    pub fn new(bytes: VolatileSlice<'a>) -> Self {
        VolatileMailbox { bytes }
    }

    /// None for an offset outside the mailbox or not 4-aligned (a device-model bug,
    /// never guest-controlled: offsets come from the fixed ABI).
    fn word(&self, offset: usize) -> Option<&AtomicU32> {
        self.bytes.get_atomic_ref::<AtomicU32>(offset).ok()
    }

    /// Atomic load of a 32-bit word (doorbell, completion); 0 when out of range.
    pub fn load_u32(&self, offset: usize) -> u32 {
        self.word(offset).map_or(0, |w| w.load(Ordering::Acquire))
    }

    /// Atomic store of a 32-bit word; dropped when out of range.
    pub fn store_u32(&self, offset: usize, value: u32) {
        if let Some(w) = self.word(offset) {
            w.store(value, Ordering::Release);
        }
    }

    /// Atomic, wrapping increment of a 32-bit word (a notification's raised counter,
    /// which only the host writes); false when out of range.
    pub fn increment_u32(&self, offset: usize) -> bool {
        self.word(offset).map(|w| w.fetch_add(1, Ordering::AcqRel)).is_some()
    }
}

impl MailboxMemory for VolatileMailbox<'_> {
    /// Out-of-range reads read zeros.
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        match self.bytes.get_slice(offset, buf.len()) {
            Ok(src) => {
                src.copy_to(buf);
            }
            Err(_) => buf.fill(0),
        }
    }

    /// Out-of-range writes are dropped.
    fn write_bytes(&mut self, offset: usize, data: &[u8]) {
        if let Ok(dst) = self.bytes.get_slice(offset, data.len()) {
            dst.copy_from(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_mailbox(len: usize, f: impl FnOnce(&mut VolatileMailbox<'_>, &mut [u8])) {
        let mut backing = vec![0u8; len];
        let ptr = backing.as_mut_ptr();
        // SAFETY: `backing` outlives the slice and is only read back after `f` returns.
        let bytes = unsafe { VolatileSlice::new(ptr, len) };
        let mut out = vec![0u8; len];
        f(&mut VolatileMailbox::new(bytes), &mut out);
        assert_eq!(backing, out, "the mailbox wrote what the closure expected");
    }

    #[test]
    fn words_and_bytes_land_where_the_abi_says() {
        with_mailbox(64, |mb, expect| {
            mb.store_u32(8, 0xdead_beef);
            expect[8..12].copy_from_slice(&0xdead_beefu32.to_le_bytes());
            assert_eq!(mb.load_u32(8), 0xdead_beef);
            assert!(mb.increment_u32(16));
            assert!(mb.increment_u32(16));
            expect[16] = 2;
            mb.write_bytes(20, b"hi");
            expect[20..22].copy_from_slice(b"hi");
            let mut back = [0u8; 2];
            mb.read_bytes(20, &mut back);
            assert_eq!(&back, b"hi");
        });
    }

    #[test]
    fn out_of_range_and_unaligned_accesses_change_nothing() {
        with_mailbox(64, |mb, _expect| {
            mb.store_u32(62, 7);
            mb.store_u32(9, 7);
            assert!(!mb.increment_u32(64));
            assert_eq!(mb.load_u32(64), 0);
            mb.write_bytes(60, &[1; 8]);
            let mut far = [1u8; 8];
            mb.read_bytes(60, &mut far);
            assert_eq!(far, [0; 8]);
        });
    }
}
