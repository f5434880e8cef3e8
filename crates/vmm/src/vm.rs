//! Builds a KVM VM from a `vnvdimm_machine::Machine`: guest RAM and NVDIMM windows
//! as memslots, the ACPI tables copied to their addresses, the devices on the IO
//! and MMIO buses, the in-kernel interrupt controller, and the vCPUs.
//!
//! Interrupts: KVM_CREATE_IRQCHIP gives every vCPU a local APIC and the VM an IO APIC
//! (plus the two 8259s, which the hardware-reduced guest never programs) with KVM's
//! default GSI routing: GSI 0-23 to IO APIC pins 0-23, so the MADT's IO APIC at GSI base 0
//! matches. No PIT: a hardware-reduced ACPI Linux skips `timer_init` and uses the local
//! APIC timer (TSC deadline) and kvmclock. COM1 raises IRQ 4 through an irqfd; the GED
//! is pulsed on GSI 5 with KVM_IRQ_LINE (backend.rs). Where KVM refuses the irqchip the
//! VM is built without one (`Vm::irqchip` says why) and runs vCPU 0 only, as before.

use nvdimm_model::sync::LockUnpoisoned;
use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_MEM_READONLY};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use nvdimm_model::event_log::MachineCheckKind;
use nvdimm_model::NvdimmPlatform;
use thiserror::Error;
use vnvdimm_machine::acpi::{COM1_IRQ, COM1_PORT};
use vnvdimm_machine::Machine;

use crate::arch::x86_64::mce;
use crate::devices::agent_port::{AgentPort, AGENT_IRQ, AGENT_PORT, RESULTS_IRQ, RESULTS_PORT};
use crate::devices::buffered_uart::BufferedUart;
use crate::devices::bus::{Bus, BusError, SharedDevice};
use crate::devices::console_escape::ConsoleEscape;
use crate::devices::doorbell::Doorbell;
use crate::devices::flush_hint::{FlushCounters, FlushHint};
use crate::devices::ged::{Ged, GED_MMIO_BASE, GED_MMIO_SIZE};
use crate::devices::power::{PcResetControl, PowerPorts, PC_RESET_CONTROL_PORT, POWER_PORTS_LEN, SLEEP_CONTROL_PORT};
use crate::devices::serial::{SerialDevice, SharedWriter, SERIAL_PORT_LEN};
use crate::devices::uart_feed::UartFeed;
use crate::host_io::HostIo;
use crate::memory::guest_memory::{GuestMemory, GuestMemoryError};
use crate::memory::memslots::MemslotError;
use crate::memory::pmem_slots::PmemSlots;
use crate::vcpu::vcpu_control::VcpuControl;

#[derive(Debug, Error)]
pub enum VmError {
    #[error("cannot use /dev/kvm: {0}; is KVM available and may this user open it?")]
    Kvm(kvm_ioctls::Error),
    #[error("KVM refused {what}: {source}")]
    Ioctl { what: String, source: kvm_ioctls::Error },
    #[error(transparent)]
    Memory(#[from] GuestMemoryError),
    #[error("device wiring bug: {0}")]
    Bus(#[from] BusError),
    #[error("the platform's layout differs from the machine's memory map (a vnvdimm bug)")]
    LayoutMismatch,
    #[error("vCPU machine-check setup: {0}")]
    Mce(#[from] mce::MceError),
    #[error("NVDIMM window memory slots: {0}")]
    Memslots(#[from] MemslotError),
    #[error("the VM has no vCPU to run (--cpus must be at least 1)")]
    NoVcpus,
    #[error("cannot set up the guest agent's serial line (COM3): {0}")]
    AgentPort(std::io::Error),
    #[error(transparent)]
    HostIo(#[from] crate::host_io::HostIoError),
    #[error("cannot set up the console's input queue: {0}")]
    ConsoleInput(std::io::Error),
    #[error("cannot start a vCPU thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Three pages KVM needs for the TSS it uses to run real-mode code (Linux's AP
/// trampoline after SIPI) on Intel hosts without unrestricted guest: in the MMIO hole,
/// above the local APIC, where no device and no memslot is.
pub const KVM_TSS_ADDR: u64 = 0xFFFB_D000;

/// Maps a failed KVM ioctl to a `VmError` that names it (also for bare-metal loaders).
pub fn ioctl(what: impl Into<String>) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
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
}

pub struct Vm {
    pub(crate) kvm: Kvm,
    /// Shared with `pmem` (memslot changes from the control API's thread).
    pub(crate) vm_fd: Arc<VmFd>,
    pub(crate) vcpus: Vec<VcpuFd>,
    pub(crate) machine: Machine,
    pub(crate) memory: Arc<GuestMemory>,
    pub(crate) platform: Arc<Mutex<NvdimmPlatform>>,
    pub(crate) io_bus: Bus,
    pub(crate) mmio_bus: Bus,
    /// The NVDIMM windows' memslots, with poisoned pages left out.
    pub(crate) pmem: Arc<PmemSlots>,
    pub(crate) stats: VmStats,
    /// Generic Event Device at `GED_MMIO_BASE` (ACPI notifications).
    pub(crate) ged: Arc<Ged>,
    /// Requests from other threads to the vCPU thread.
    pub(crate) control: Arc<VcpuControl>,
    /// The guest's MCG_CAP, or why KVM cannot give the guest machine checks.
    pub(crate) mce: Result<u64, mce::MceError>,
    /// How machine checks are laid out for the guest CPU's vendor.
    pub(crate) mca_vendor: mce::McaVendor,
    /// Ok when the in-kernel interrupt controller exists, or why KVM refused it.
    pub(crate) irqchip: Result<(), VmError>,
    /// Run vCPUs 1.. in threads of their own (Linux boots; needs `irqchip`). Off for
    /// bare-metal programs, which run on vCPU 0 alone.
    pub(crate) run_aps: bool,
    /// COM3 (ttyS2), the guest agent's line; `KvmBackend` takes its host end.
    pub(crate) agent: Arc<AgentPort>,
    /// COM1 (ttyS0), the console; [`Vm::attach_console_input`] feeds it.
    pub(crate) console_uart: Arc<Mutex<BufferedUart>>,
    /// Serves the host side of COM1 and COM3. Declared after `agent`: it stops after
    /// the agent line was hung up.
    pub(crate) host_io: HostIo,
}

/// How a [`Vm`] is made: the machine and its device model, then what differs between
/// runs (the console, a Linux guest's other vCPUs, test machinery on the I/O bus); the
/// VM's parts are then fixed, and read through its accessors.
pub struct VmBuilder {
    machine: Machine,
    platform: Arc<Mutex<NvdimmPlatform>>,
    console: Box<dyn Write + Send>,
    run_aps: bool,
    mca_vendor: Option<mce::McaVendor>,
    io_devices: Vec<(u64, u64, SharedDevice)>,
}

impl VmBuilder {
    /// `platform` is shared with the caller, who keeps it when the VM cannot be built
    /// (to put the DIMMs' state back: a start that failed).
    pub fn new(machine: Machine, platform: Arc<Mutex<NvdimmPlatform>>) -> VmBuilder {
        VmBuilder {
            machine,
            platform,
            console: Box::new(std::io::sink()),
            run_aps: false,
            mca_vendor: None,
            io_devices: Vec::new(),
        }
    }

    /// Where COM1 and COM2 (the console and the image's step results) write; nowhere
    /// by default.
    pub fn console(mut self, console: Box<dyn Write + Send>) -> VmBuilder {
        self.console = console;
        self
    }

    /// Runs vCPUs 1.. in threads of their own, started by the guest with INIT/SIPI
    /// (a Linux guest; needs the in-kernel irqchip). Bare-metal programs run on vCPU 0
    /// alone, the default.
    pub fn run_aps(mut self, run_aps: bool) -> VmBuilder {
        self.run_aps = run_aps;
        self
    }

    /// Lays machine checks out for `vendor` instead of the host CPU's (the bare-metal
    /// programs read them where QEMU reports them on any host).
    pub fn mca_vendor(mut self, vendor: mce::McaVendor) -> VmBuilder {
        self.mca_vendor = Some(vendor);
        self
    }

    /// A device beyond the machine's own on the I/O bus at `base..base+len`: test
    /// machinery (the selftest's debug and command ports), never on a Linux guest's bus.
    pub fn io_device(mut self, base: u64, len: u64, device: SharedDevice) -> VmBuilder {
        self.io_devices.push((base, len, device));
        self
    }

    /// Sets the whole machine up; the vCPUs are created but their registers are left
    /// for a loader (`bare_metal` or `linux_boot`) to set.
    pub fn build(self) -> Result<Vm, VmError> {
        let VmBuilder { machine, platform, console, run_aps, mca_vendor, io_devices } = self;
        let mut vm = Vm::assemble(machine, platform, console)?;
        vm.run_aps = run_aps;
        if let Some(vendor) = mca_vendor {
            vm.mca_vendor = vendor;
        }
        for (base, len, device) in io_devices {
            vm.io_bus.insert(base, len, device)?;
        }
        Ok(vm)
    }
}

impl Vm {
    fn assemble(
        machine: Machine,
        platform: Arc<Mutex<NvdimmPlatform>>,
        console: Box<dyn Write + Send>,
    ) -> Result<Self, VmError> {
        if platform.lock_unpoisoned().layout() != &machine.memory_map.layout {
            return Err(VmError::LayoutMismatch);
        }
        let kvm = Kvm::new().map_err(VmError::Kvm)?;
        let vm_fd = Arc::new(kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?);
        // Before any vCPU exists: KVM gives each vCPU created after it a local APIC.
        let irqchip = create_irqchip(&vm_fd);
        if let Err(e) = &irqchip {
            log::debug!("no in-kernel interrupt controller ({e}): vCPU 0 only, no guest interrupts");
        }
        let memory = Arc::new(GuestMemory::new(&machine.memory_map, &machine.platform)?);
        let slots = register_memslots(&vm_fd, &memory)?;
        copy_acpi(&machine, &memory)?;

        // The windows are installed by the first sync, with any poison the DIMMs
        // already carry (from their sidecar files) left out.
        let pmem =
            Arc::new(PmemSlots::new(vm_fd.clone(), memory.clone(), slots.len() as u32, kvm.get_nr_memslots() as u32));
        pmem.sync(&platform)?;
        let stats = VmStats {
            flushes: Arc::new(FlushCounters::new(machine.platform.dimms.len())),
            doorbell_rings: Arc::new(AtomicU64::new(0)),
        };
        let mut io_bus = Bus::new("io");
        // ttyS0 and ttyS1 (the image's step results) share the console.
        let console = SharedWriter::new(console);
        let host_io = HostIo::start()?;
        let console_uart = Arc::new(Mutex::new(
            BufferedUart::new(serial(&vm_fd, irqchip.is_ok(), COM1_IRQ, Box::new(console.clone())))
                .map_err(VmError::ConsoleInput)?,
        ));
        io_bus.insert(u64::from(COM1_PORT), SERIAL_PORT_LEN, console_uart.clone())?;
        io_bus.insert(
            u64::from(RESULTS_PORT),
            SERIAL_PORT_LEN,
            shared(serial(&vm_fd, irqchip.is_ok(), RESULTS_IRQ, Box::new(console))),
        )?;
        let agent = Arc::new(
            AgentPort::new(&host_io, |out| serial(&vm_fd, irqchip.is_ok(), AGENT_IRQ, out))
                .map_err(VmError::AgentPort)?,
        );
        io_bus.insert(u64::from(AGENT_PORT), SERIAL_PORT_LEN, agent.uart.clone())?;
        io_bus.insert(u64::from(SLEEP_CONTROL_PORT), POWER_PORTS_LEN, shared(PowerPorts))?;
        io_bus.insert(u64::from(PC_RESET_CONTROL_PORT), 1, shared(PcResetControl))?;
        io_bus.insert(u64::from(crate::devices::pvpanic::PVPANIC_PORT), 1, shared(crate::devices::pvpanic::PvPanic))?;

        let mut mmio_bus = Bus::new("mmio");
        let layout = machine.memory_map.layout.clone();
        let doorbell = Doorbell::new(platform.clone(), memory.clone(), stats.doorbell_rings.clone());
        mmio_bus.insert(layout.doorbell, nvdimm_model::layout::PAGE_SIZE, shared(doorbell))?;
        for (dimm, place) in layout.dimms.iter().enumerate() {
            for &hint in &place.flush_hints {
                let dev = FlushHint::new(dimm, memory.clone(), platform.clone(), stats.flushes.clone());
                mmio_bus.insert(hint, nvdimm_model::layout::PAGE_SIZE, shared(dev))?;
            }
        }

        let ged = Arc::new(Ged::new());
        mmio_bus.insert(GED_MMIO_BASE, GED_MMIO_SIZE, shared(GedDevice(ged.clone())))?;

        let mce = mce::supported_mcg_cap(&kvm).and_then(|cap| mce::guest_mcg_cap(cap, mce::supported_banks(&kvm)));
        let mut cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))?;
        if mce.is_ok() {
            mce::advertise_mce(&mut cpuid);
        }
        let mca_vendor = mce::McaVendor::of(&cpuid);
        let mut vcpus = Vec::with_capacity(usize::from(machine.config.cpus));
        for id in 0..u64::from(machine.config.cpus) {
            let vcpu = vm_fd.create_vcpu(id).map_err(ioctl(format!("KVM_CREATE_VCPU {id}")))?;
            let mut cpuid = cpuid.clone();
            crate::arch::x86_64::cpuid::patch(&mut cpuid, id as u8, machine.config.cpus);
            vcpu.set_cpuid2(&cpuid).map_err(ioctl(format!("KVM_SET_CPUID2 on vCPU {id}")))?;
            if let Ok(&mcg_cap) = mce.as_ref() {
                mce::setup_vcpu(&vcpu, mcg_cap)?;
            }
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
            pmem,
            stats,
            ged,
            control: Arc::new(VcpuControl::new()),
            mce,
            mca_vendor,
            irqchip,
            run_aps: false,
            agent,
            console_uart,
            host_io,
        })
    }

    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    pub fn vm_fd(&self) -> &Arc<VmFd> {
        &self.vm_fd
    }

    pub fn vcpus(&self) -> &[VcpuFd] {
        &self.vcpus
    }

    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    pub fn memory(&self) -> &Arc<GuestMemory> {
        &self.memory
    }

    pub fn platform(&self) -> &Arc<Mutex<NvdimmPlatform>> {
        &self.platform
    }

    /// The I/O port bus (tests write to it as a guest's `out` would).
    pub fn io_bus(&self) -> &Bus {
        &self.io_bus
    }

    /// The NVDIMM windows' memslots, with poisoned pages left out.
    pub fn pmem(&self) -> &Arc<PmemSlots> {
        &self.pmem
    }

    pub fn stats(&self) -> &VmStats {
        &self.stats
    }

    /// The Generic Event Device (ACPI notifications).
    pub fn ged(&self) -> &Arc<Ged> {
        &self.ged
    }

    /// Ok when the in-kernel interrupt controller exists, or why KVM refused it.
    pub fn irqchip(&self) -> &Result<(), VmError> {
        &self.irqchip
    }

    /// COM3 (ttyS2), the guest agent's line.
    pub fn agent(&self) -> &Arc<AgentPort> {
        &self.agent
    }

    /// Makes `input` the console's keyboard: its bytes go to COM1 (ttyS0). With
    /// `escape`, Ctrl-A x powers the guest off (a terminal in raw mode, where Ctrl-C
    /// is the guest's).
    pub fn attach_console_input<R>(&self, input: R, escape: bool) -> Result<(), VmError>
    where
        R: std::io::Read + std::os::fd::AsRawFd + Send + 'static,
    {
        let escape = escape.then(|| {
            let control = self.control.clone();
            ConsoleEscape::new(Box::new(move || {
                let _ = control.request(crate::vcpu::vcpu_control::Request::PowerOff);
            }))
        });
        let feed =
            UartFeed::new("console input", input, self.console_uart.clone(), escape).map_err(VmError::ConsoleInput)?;
        self.host_io.add(Box::new(feed))?;
        Ok(())
    }

    /// Whether the guest can be sent machine checks of `kind`.
    pub fn can_deliver(&self, kind: MachineCheckKind) -> bool {
        self.mce.is_ok() && mce::unsupported_for(self.mca_vendor, kind).is_none()
    }
}

fn create_irqchip(vm_fd: &VmFd) -> Result<(), VmError> {
    vm_fd.set_tss_address(KVM_TSS_ADDR as usize).map_err(ioctl(format!("KVM_SET_TSS_ADDR {KVM_TSS_ADDR:#x}")))?;
    // KVM_CREATE_IRQCHIP also installs the default GSI routing (GSI n -> IO APIC pin n,
    // and to the 8259s for n < 16), which is what the MADT describes.
    vm_fd.create_irq_chip().map_err(ioctl("KVM_CREATE_IRQCHIP"))
}

/// A UART with its IRQ on an irqfd when there is an irqchip, else polled only. Two
/// irqfds on one GSI (COM1 and COM3 on 4) are allowed: each pulses the line.
fn serial(vm_fd: &VmFd, irqchip: bool, irq: u32, console: Box<dyn Write + Send>) -> SerialDevice {
    if irqchip {
        match SerialDevice::with_irq(vm_fd, irq, console) {
            Ok(device) => return device,
            Err((e, console)) => {
                log::debug!("UART interrupt {irq} not wired ({e}): the guest must poll the UART");
                return SerialDevice::new(console);
            }
        }
    }
    SerialDevice::new(console)
}

fn shared<D: crate::devices::bus::BusDevice + 'static>(device: D) -> SharedDevice {
    Arc::new(Mutex::new(device))
}

/// The GED's register on the MMIO bus.
struct GedDevice(Arc<Ged>);

impl crate::devices::bus::BusDevice for GedDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.0.mmio_read(offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> crate::devices::bus::Action {
        self.0.mmio_write(offset, data);
        crate::devices::bus::Action::Continue
    }
}

/// RAM only: the NVDIMM windows are `PmemSlots`'s.
fn register_memslots(vm_fd: &VmFd, memory: &GuestMemory) -> Result<Vec<SlotInfo>, VmError> {
    let mut slots = Vec::new();
    for (slot, (gpa, size, host_addr)) in memory.ram_regions().enumerate() {
        let info = SlotInfo { slot: slot as u32, gpa, size, host_addr, readonly: false, dimm: None };
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
    unsafe { vm_fd.set_user_memory_region(region) }
        .map_err(ioctl(format!("memslot {} at {:#x} (+{:#x})", info.slot, info.gpa, info.size)))
}

fn copy_acpi(machine: &Machine, memory: &GuestMemory) -> Result<(), VmError> {
    memory.write_ram(machine.acpi.rsdp_addr, &machine.acpi.rsdp)?;
    for table in &machine.acpi.tables {
        memory.write_ram(table.guest_addr, &table.bytes)?;
    }
    Ok(())
}
