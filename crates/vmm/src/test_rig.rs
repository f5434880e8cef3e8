//! A VM's device side without KVM, for the hermetic device tests: the machine, its
//! guest memory (vm-memory, nothing registered with KVM) and the opened platform, so a
//! test drives a device with fabricated bus accesses and reads back what the guest sees.

use std::sync::{Arc, Mutex};

use nvdimm_model::clock::SystemClock;
use nvdimm_model::config::{DimmConfig, GIB};
use nvdimm_model::{NvdimmPlatform, PersistenceDomain, PlatformConfig};
use vnvdimm_machine::{Machine, MachineConfig};

use crate::memory::guest_memory::GuestMemory;

pub struct Rig {
    pub machine: Machine,
    pub memory: Arc<GuestMemory>,
    pub platform: Arc<Mutex<NvdimmPlatform>>,
    pub _dir: tempfile::TempDir,
}

/// Two sparse 1 GiB DIMMs (the second `readonly=on` when asked) and 256 MiB of RAM.
pub fn rig(second_readonly: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let dimms = (0..2)
        .map(|i| {
            let path = dir.path().join(format!("d{i}.img"));
            std::fs::File::create(&path).unwrap().set_len(GIB).unwrap();
            let mut dimm = DimmConfig::with_defaults(i, path, GIB);
            dimm.readonly = second_readonly && i == 1;
            dimm
        })
        .collect();
    let config = PlatformConfig::new(dimms, PersistenceDomain::CpuCache).unwrap();
    let machine = Machine::new(MachineConfig { memory: 256 << 20, cpus: 1 }, config).unwrap();
    let memory = Arc::new(GuestMemory::new(&machine.memory_map, &machine.platform).unwrap());
    let platform = NvdimmPlatform::open(
        machine.platform.clone(),
        machine.memory_map.layout.clone(),
        Arc::new(SystemClock::new()),
    )
    .unwrap();
    Rig { machine, memory, platform: Arc::new(Mutex::new(platform)), _dir: dir }
}
