//! Flush hint stores driven without KVM: every store of any width is one flush of its
//! DIMM, counted and logged; a read-only DIMM has nothing to sync but still counts.

use nvdimm_model::event_log::EventKind;

use super::*;
use crate::test_rig::rig;

fn flushes_logged(platform: &Mutex<NvdimmPlatform>) -> Vec<usize> {
    platform
        .lock_unpoisoned()
        .events_since(0)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Flush { dimm, .. } => Some(dimm),
            _ => None,
        })
        .collect()
}

#[test]
fn every_store_is_one_counted_and_logged_flush_of_its_dimm() {
    let rig = rig(true);
    let counters = Arc::new(FlushCounters::new(2));
    let mut hint0 = FlushHint::new(0, rig.memory.clone(), rig.platform.clone(), counters.clone());
    let mut hint1 = FlushHint::new(1, rig.memory.clone(), rig.platform.clone(), counters.clone());
    assert_eq!(hint0.write(0, &1u64.to_le_bytes()), Action::Continue);
    hint0.write(0x40, &[1]);
    hint1.write(0, &1u32.to_le_bytes());
    assert_eq!(counters.all(), vec![2, 1]);
    assert_eq!(flushes_logged(&rig.platform), vec![0, 0, 1]);
    let mut data = [0xAAu8; 8];
    hint0.read(0, &mut data);
    assert_eq!(data, [0; 8], "hint pages read as zero");
}

#[test]
fn stores_to_a_window_reach_the_backing_file_by_the_flush() {
    let rig = rig(false);
    let window = &rig.memory.pmem[0];
    // What the guest's store through its mapping does: the shared page of the file.
    vm_memory::VolatileMemory::get_slice(&window.region, 4096, 5).unwrap().copy_from(b"flush");
    let mut hint = FlushHint::new(0, rig.memory.clone(), rig.platform.clone(), Arc::new(FlushCounters::new(2)));
    hint.write(0, &1u64.to_le_bytes());
    let path = &rig.machine.platform.dimms[0].path;
    let mut buf = [0u8; 5];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(path).unwrap(), &mut buf, 4096).unwrap();
    assert_eq!(&buf, b"flush");
}
