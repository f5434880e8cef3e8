//! Builds a KVM VM from a `vnvdimm_machine::Machine`: guest RAM and NVDIMM windows
//! as memslots, the ACPI tables copied to their addresses, the devices on the IO
//! and MMIO buses, and the vCPUs.

use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_MEM_READONLY};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use nvdimm_model::NvdimmPlatform;
use thiserror::Error;
use vnvdimm_machine::acpi::COM1_PORT;
use vnvdimm_machine::Machine;

use crate::bus::{Bus, BusError, SharedDevice};
use crate::debug_port::{DebugPorts, Report, DEBUG_PORTS_LEN, REPORT_PORT};
use crate::doorbell::Doorbell;
use crate::flush_hint::{FlushCounters, FlushHint};
use crate::guest_memory::{GuestMemory, GuestMemoryError};
use crate::power::{
    PcResetControl, PowerPorts, PC_RESET_CONTROL_PORT, POWER_PORTS_LEN, SLEEP_CONTROL_PORT,
};
use crate::serial::{SerialDevice, SERIAL_PORT_LEN};

#[derive(Debug, Error)]
pub enum VmError {
    #[error("cannot use /dev/kvm: {0}; is KVM available and may this user open it?")]
    Kvm(kvm_ioctls::Error),
    #[error("KVM refused {what}: {source}")]
    Ioctl {
        what: String,
        source: kvm_ioctls::Error,
    },
    #[error(transparent)]
    Memory(#[from] GuestMemoryError),
    #[error("device wiring bug: {0}")]
    Bus(#[from] BusError),
    #[error("the platform's layout differs from the machine's memory map (a vnvdimm bug)")]
    LayoutMismatch,
}

pub(crate) fn ioctl(what: impl Into<String>) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Ioctl { what, source }
}

/// A registered KVM memslot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub slot: u32,
    pub gpa: u64,
    pub size: u64,
    pub host_addr: u64,
    pub readonly: bool,
    /// The DIMM whose window this is, or None for RAM.
    pub dimm: Option<usize>,
}

/// Counters and logs the tests, the selftest and the control API read.
#[derive(Clone)]
pub struct VmStats {
    pub flushes: Arc<FlushCounters>,
    pub doorbell_rings: Arc<AtomicU64>,
    pub report: Report,
}

pub struct Vm {
    pub kvm: Kvm,
    pub vm_fd: VmFd,
    pub vcpus: Vec<VcpuFd>,
    pub machine: Machine,
    pub memory: Arc<GuestMemory>,
    pub platform: Arc<Mutex<NvdimmPlatform>>,
    pub io_bus: Bus,
    pub mmio_bus: Bus,
    pub slots: Vec<SlotInfo>,
    pub stats: VmStats,
}

impl Vm {
    /// Sets the whole machine up; the vCPUs are created but their registers are left
    /// for a loader (`boot::bare_metal` or `boot::linux`) to set.
    pub fn new(
        machine: Machine,
        platform: NvdimmPlatform,
        console: Box<dyn Write + Send>,
    ) -> Result<Self, VmError> {
        if platform.layout() != &machine.memory_map.layout {
            return Err(VmError::LayoutMismatch);
        }
        let kvm = Kvm::new().map_err(VmError::Kvm)?;
        let vm_fd = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        let memory = Arc::new(GuestMemory::new(&machine.memory_map, &machine.platform)?);
        let slots = register_memslots(&vm_fd, &memory)?;
        copy_acpi(&machine, &memory)?;

        let platform = Arc::new(Mutex::new(platform));
        let stats = VmStats {
            flushes: Arc::new(FlushCounters::new(machine.platform.dimms.len())),
            doorbell_rings: Arc::new(AtomicU64::new(0)),
            report: Report::default(),
        };
        let mut io_bus = Bus::new("io");
        io_bus.insert(
            u64::from(COM1_PORT),
            SERIAL_PORT_LEN,
            shared(SerialDevice::new(console)),
        )?;
        io_bus.insert(
            u64::from(REPORT_PORT),
            DEBUG_PORTS_LEN,
            shared(DebugPorts::new(stats.report.clone())),
        )?;
        io_bus.insert(
            u64::from(SLEEP_CONTROL_PORT),
            POWER_PORTS_LEN,
            shared(PowerPorts),
        )?;
        io_bus.insert(u64::from(PC_RESET_CONTROL_PORT), 1, shared(PcResetControl))?;

        let mut mmio_bus = Bus::new("mmio");
        let layout = machine.memory_map.layout.clone();
        let doorbell = Doorbell::new(
            platform.clone(),
            memory.clone(),
            stats.doorbell_rings.clone(),
        );
        mmio_bus.insert(
            layout.doorbell,
            nvdimm_model::layout::PAGE_SIZE,
            shared(doorbell),
        )?;
        for (dimm, place) in layout.dimms.iter().enumerate() {
            for &hint in &place.flush_hints {
                let dev = FlushHint::new(
                    dimm,
                    memory.clone(),
                    platform.clone(),
                    stats.flushes.clone(),
                );
                mmio_bus.insert(hint, nvdimm_model::layout::PAGE_SIZE, shared(dev))?;
            }
        }

        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))?;
        let mut vcpus = Vec::with_capacity(usize::from(machine.config.cpus));
        for id in 0..u64::from(machine.config.cpus) {
            let vcpu = vm_fd
                .create_vcpu(id)
                .map_err(ioctl(format!("KVM_CREATE_VCPU {id}")))?;
            let mut cpuid = cpuid.clone();
            crate::cpuid::patch(&mut cpuid, id as u8, machine.config.cpus);
            vcpu.set_cpuid2(&cpuid)
                .map_err(ioctl(format!("KVM_SET_CPUID2 on vCPU {id}")))?;
            vcpus.push(vcpu);
        }
        Ok(Vm {
            kvm,
            vm_fd,
            vcpus,
            machine,
            memory,
            platform,
            io_bus,
            mmio_bus,
            slots,
            stats,
        })
    }

    /// The DIMM window containing `gpa`: (dimm index, offset into the DIMM).
    pub fn pmem_at(&self, gpa: u64) -> Option<(usize, u64)> {
        self.memory
            .pmem
            .iter()
            .find(|w| gpa >= w.gpa && gpa - w.gpa < w.mapping.size())
            .map(|w| (w.dimm, gpa - w.gpa))
    }
}

fn shared<D: crate::bus::BusDevice + 'static>(device: D) -> SharedDevice {
    Arc::new(Mutex::new(device))
}

fn register_memslots(vm_fd: &VmFd, memory: &GuestMemory) -> Result<Vec<SlotInfo>, VmError> {
    let ram = memory.ram.iter().map(|b| (b.gpa, &b.mapping, false, None));
    let pmem = memory
        .pmem
        .iter()
        .map(|w| (w.gpa, &w.mapping, w.readonly, Some(w.dimm)));
    let mut slots = Vec::new();
    for (slot, (gpa, mapping, readonly, dimm)) in ram.chain(pmem).enumerate() {
        let info = SlotInfo {
            slot: slot as u32,
            gpa,
            size: mapping.size(),
            host_addr: mapping.as_ptr() as u64,
            readonly,
            dimm,
        };
        set_slot(vm_fd, &info)?;
        slots.push(info);
    }
    Ok(slots)
}

/// Registers (or with size 0, deletes) one memslot.
pub fn set_slot(vm_fd: &VmFd, info: &SlotInfo) -> Result<(), VmError> {
    let region = kvm_userspace_memory_region {
        slot: info.slot,
        flags: if info.readonly { KVM_MEM_READONLY } else { 0 },
        guest_phys_addr: info.gpa,
        memory_size: info.size,
        userspace_addr: info.host_addr,
    };
    // SAFETY: host_addr..+size is a live mapping owned by the VM's GuestMemory, which
    // outlives the VmFd in every Vm (fields drop in order: vm_fd before memory).
    unsafe { vm_fd.set_user_memory_region(region) }.map_err(ioctl(format!(
        "memslot {} at {:#x} (+{:#x})",
        info.slot, info.gpa, info.size
    )))
}

fn copy_acpi(machine: &Machine, memory: &GuestMemory) -> Result<(), VmError> {
    memory.write_ram(machine.acpi.rsdp_addr, &machine.acpi.rsdp)?;
    for table in &machine.acpi.tables {
        memory.write_ram(table.guest_addr, &table.bytes)?;
    }
    Ok(())
}
