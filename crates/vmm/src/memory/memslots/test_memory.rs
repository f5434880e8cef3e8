//! Anonymous memory standing in for a DIMM's mapped backing file in the memslot
//! tests, read and written through vm-memory as the VMM does.

use vm_memory::{MmapRegion, VolatileMemory};

pub struct TestMemory(MmapRegion);

impl TestMemory {
    pub fn new(len: usize) -> Self {
        TestMemory(MmapRegion::new(len).expect("anonymous NORESERVE mapping for a test"))
    }

    pub fn host_addr(&self) -> u64 {
        self.0.as_ptr() as u64
    }

    pub fn write(&self, offset: u64, bytes: &[u8]) {
        self.0.get_slice(offset as usize, bytes.len()).unwrap().copy_from(bytes);
    }

    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.0.get_slice(offset as usize, len).unwrap().copy_to(&mut buf);
        buf
    }
}
