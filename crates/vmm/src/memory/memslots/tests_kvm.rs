//! Real KVM: a memslot hole makes a bare-metal guest's load exit at the right address,
//! stores reach the backing memory, cleared poison is mapped again, and a poisoned load
//! answered with an SRAR machine check reaches the guest's #MC handler.

use kvm_ioctls::{Kvm, VcpuExit};
use nvdimm_model::event_log::{EventKind, MachineCheckKind};

use super::*;
use super::test_memory::TestMemory;
use crate::kvm_check::longmode::{self, asm, LongModeSetup, LongModeVm};
use crate::arch::x86_64::mce;

const P: u64 = PAGE_SIZE;
/// Inside the 4 GiB the bare-metal page tables map.
const WINDOW: u64 = 0x4000_0000;
const PAGES: u64 = 16;
const MC_PORT: u16 = 0x530;

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Access {
        gpa: u64,
        write: bool,
        what: WindowAccess,
    },
    Out(u16),
    Hlt,
    Shutdown,
    Other(String),
}

/// Runs to the next hlt (or a final exit), serving window MMIO through `slots`.
fn run(vm: &mut LongModeVm, slots: &PoisonSlots) -> Vec<Seen> {
    let mut seen = Vec::new();
    for _ in 0..32 {
        let event = match vm.vcpu.run().expect("KVM_RUN") {
            VcpuExit::MmioRead(gpa, data) => {
                let what = slots
                    .on_mmio_read(gpa, data)
                    .expect("MMIO read outside the window");
                Seen::Access {
                    gpa,
                    write: false,
                    what,
                }
            }
            VcpuExit::MmioWrite(gpa, data) => {
                let what = slots
                    .on_mmio_write(gpa, data)
                    .expect("MMIO write outside the window");
                Seen::Access {
                    gpa,
                    write: true,
                    what,
                }
            }
            VcpuExit::IoOut(port, _) => Seen::Out(port),
            VcpuExit::Hlt => Seen::Hlt,
            VcpuExit::Shutdown => Seen::Shutdown,
            other => Seen::Other(format!("{other:?}")),
        };
        let stop = matches!(event, Seen::Hlt | Seen::Shutdown | Seen::Other(_));
        seen.push(event);
        if stop {
            break;
        }
    }
    seen
}

fn set(ranges: &[(u64, u64)]) -> PoisonSet {
    let mut s = PoisonSet::new();
    for &(o, l) in ranges {
        s.insert(o, l).unwrap();
    }
    s
}

struct Rig {
    kvm_slots: KvmSlots,
    slots: PoisonSlots,
    vm: LongModeVm,
    // Dropped last: the VM's slots point into it.
    mem: TestMemory,
}

fn rig(code: &[u8], handlers: &[(u8, &[u8])]) -> Rig {
    let kvm = Kvm::new().expect("/dev/kvm must open on the project's machines");
    let vm = LongModeVm::new(
        &kvm,
        &LongModeSetup {
            code,
            handlers,
            cr4_mce: true,
        },
    )
    .unwrap();
    let mem = TestMemory::new((PAGES * P) as usize);
    let pattern: Vec<u8> =
        (0..PAGES * P / 8).flat_map(|i| (0xA000_0000_0000_0000u64 | i).to_le_bytes()).collect();
    mem.write(0, &pattern);
    // SAFETY: `mem` outlives `slots` and the VM (Rig field order).
    let window = unsafe { DimmWindow::new(WINDOW, PAGES * P, mem.host_addr(), false) };
    let slots = PoisonSlots::new(vec![window], 1000);
    Rig {
        kvm_slots: KvmSlots::new(1, kvm.get_nr_memslots() as u32),
        slots,
        vm,
        mem,
    }
}

impl Rig {
    fn update(&mut self, poison: &PoisonSet) -> ApplyStats {
        let mut sink = self.kvm_slots.bind(&self.vm.vm);
        self.slots.update(&[poison], &mut sink).unwrap()
    }
}

fn pattern(offset: u64) -> u64 {
    0xA000_0000_0000_0000 | (offset / 8)
}

#[test]
fn a_memslot_hole_traps_loads_and_stores_until_the_poison_is_cleared() {
    let hit = WINDOW + 5 * P + 8;
    let stored = 0x1122_3344_5566_7788u64;
    let mut code = asm::load64(WINDOW + 3 * P);
    code.extend_from_slice(&asm::HLT);
    code.extend(asm::load64(hit));
    code.extend_from_slice(&asm::HLT);
    code.extend(asm::store64(hit, stored));
    code.extend_from_slice(&asm::HLT);
    code.extend(asm::load64(hit));
    code.extend_from_slice(&asm::HLT);
    let mut r = rig(&code, &[]);
    let stats = r.update(&set(&[(5 * P + 100, 1)]));
    assert_eq!(
        stats,
        ApplyStats {
            removed: 0,
            added: 2,
            slots: 2,
            holes: 1
        }
    );
    assert_eq!(r.kvm_slots.len(), 2);

    // A mapped page: no exit, the backing memory's value.
    assert_eq!(run(&mut r.vm, &r.slots), vec![Seen::Hlt]);
    assert_eq!(r.vm.vcpu.get_regs().unwrap().rax, pattern(3 * P));

    // The poisoned page: KVM_EXIT_MMIO at exactly the loaded address.
    let what = WindowAccess::Poisoned {
        dimm: 0,
        offset: 5 * P + 8,
    };
    assert_eq!(
        run(&mut r.vm, &r.slots),
        vec![
            Seen::Access {
                gpa: hit,
                write: false,
                what
            },
            Seen::Hlt
        ]
    );
    assert_eq!(
        r.vm.vcpu.get_regs().unwrap().rax,
        u64::MAX,
        "a poisoned load reads all ones"
    );

    // A store to it exits too and lands in the backing memory.
    assert_eq!(
        run(&mut r.vm, &r.slots),
        vec![
            Seen::Access {
                gpa: hit,
                write: true,
                what
            },
            Seen::Hlt
        ]
    );
    assert_eq!(
        &r.mem.read(5 * P + 8, 8)[..],
        &stored.to_le_bytes()
    );

    // Cleared: one slot again, the load runs without an exit and sees the store.
    let stats = r.update(&PoisonSet::new());
    assert_eq!(
        stats,
        ApplyStats {
            removed: 2,
            added: 1,
            slots: 1,
            holes: 0
        }
    );
    assert_eq!(run(&mut r.vm, &r.slots), vec![Seen::Hlt]);
    assert_eq!(r.vm.vcpu.get_regs().unwrap().rax, stored);
}

/// The whole consumption path a guest OS would see, on a bare-metal guest: the load
/// exits, the VMM injects SRAR for that address and logs it, the #MC handler runs.
#[test]
fn a_poisoned_load_becomes_an_srar_machine_check_in_the_guest() {
    let hit = WINDOW + 9 * P + 0x40;
    let mut handler = asm::rdmsr_out(0x400 + 4 * 9 + 2, MC_PORT); // MC9_ADDR
    handler.extend_from_slice(&asm::HLT);
    let mut code = asm::load64(hit);
    code.extend(asm::out8(0x511, 1)); // only if no #MC
    code.extend_from_slice(&asm::HLT);
    let handlers: [(u8, &[u8]); 1] = [(longmode::VECTOR_MC, &handler)];
    let mut r = rig(&code, &handlers);
    let kvm = Kvm::new().unwrap();
    let cap = mce::guest_mcg_cap(
        mce::supported_mcg_cap(&kvm).unwrap(),
        mce::supported_banks(&kvm),
    )
    .unwrap();
    mce::setup_vcpu(&r.vm.vcpu, cap).unwrap();
    r.update(&set(&[(9 * P, P)]));
    let mut platform = crate::arch::x86_64::mce::tests_support::platform();

    let mut addr = [0u32; 2];
    let mut steps = Vec::new();
    for _ in 0..16 {
        match r.vm.vcpu.run().expect("KVM_RUN") {
            VcpuExit::MmioRead(gpa, data) => {
                let what = r.slots.on_mmio_read(gpa, data).unwrap();
                assert!(
                    matches!(what, WindowAccess::Poisoned { dimm: 0, offset } if offset == 9 * P + 0x40)
                );
                steps.push(format!("mmio read {gpa:#x}"));
                mce::deliver_and_log(
                    &r.vm.vcpu,
                    gpa,
                    MachineCheckKind::ActionRequired,
                    mce::McaVendor::Intel,
                    &mut platform,
                )
                .unwrap();
            }
            VcpuExit::IoOut(port, data) => {
                steps.push(format!("out {port:#x}"));
                if let Some(i) = port.checked_sub(MC_PORT).filter(|i| *i < 2) {
                    addr[usize::from(i)] = u32::from_le_bytes(data[..4].try_into().unwrap());
                }
            }
            VcpuExit::Hlt => break,
            other => panic!("unexpected exit {other:?} after {steps:?}"),
        }
    }
    eprintln!("poison consumption on a bare-metal guest: {steps:?}");
    assert_eq!(
        steps,
        vec![
            format!("mmio read {hit:#x}"),
            format!("out {MC_PORT:#x}"),
            format!("out {:#x}", MC_PORT + 1)
        ]
    );
    assert_eq!(
        u64::from(addr[0]) | u64::from(addr[1]) << 32,
        hit,
        "MC9_ADDR as the guest's handler read it"
    );
    let last = platform.events_since(0).pop().unwrap().kind;
    assert_eq!(
        last,
        EventKind::MachineCheck {
            gpa: hit,
            kind: MachineCheckKind::ActionRequired,
            delivered: true
        }
    );
}

#[test]
fn ten_thousand_holes_in_real_kvm_slots() {
    let kvm = Kvm::new().unwrap();
    let vm = kvm.create_vm().unwrap();
    let pages = 20_000u64;
    let mem = TestMemory::new((pages * P) as usize);
    // SAFETY: `mem` outlives `vm` (declared before it, dropped after).
    let window = unsafe { DimmWindow::new(WINDOW, pages * P, mem.host_addr(), false) };
    let mut slots = PoisonSlots::new(vec![window], kvm.get_nr_memslots() - 1);
    let mut kvm_slots = KvmSlots::new(1, kvm.get_nr_memslots() as u32);
    let mut every_other = PoisonSet::new();
    for i in 0..pages / 2 {
        every_other.insert(2 * i * P, 1).unwrap();
    }
    let start = std::time::Instant::now();
    let stats = slots
        .update(&[&every_other], &mut kvm_slots.bind(&vm))
        .unwrap();
    eprintln!(
        "10,000 holes: {stats:?} in {:?} (see benches/memslots.rs for timings)",
        start.elapsed()
    );
    assert_eq!(stats.slots, 10_000);
    assert_eq!(stats.holes, 10_000);
    let stats = slots
        .update(&[&PoisonSet::new()], &mut kvm_slots.bind(&vm))
        .unwrap();
    assert_eq!((stats.removed, stats.slots), (10_000, 1));
    assert_eq!(kvm_slots.len(), 1);
    drop(vm);
}

/// Like `run`, but registers the piece of every access that exited in an unregistered
/// piece, as `PmemSlots` does.
fn run_lazy(r: &mut Rig) -> Vec<Seen> {
    let mut seen = Vec::new();
    for _ in 0..32 {
        let (event, gpa) = match r.vm.vcpu.run().expect("KVM_RUN") {
            VcpuExit::MmioRead(gpa, data) => {
                let what = r.slots.on_mmio_read(gpa, data).expect("outside the window");
                (
                    Seen::Access {
                        gpa,
                        write: false,
                        what,
                    },
                    Some(gpa),
                )
            }
            VcpuExit::MmioWrite(gpa, data) => {
                let what = r
                    .slots
                    .on_mmio_write(gpa, data)
                    .expect("outside the window");
                (
                    Seen::Access {
                        gpa,
                        write: true,
                        what,
                    },
                    Some(gpa),
                )
            }
            VcpuExit::Hlt => (Seen::Hlt, None),
            other => (Seen::Other(format!("{other:?}")), None),
        };
        if let Some(gpa) = gpa.filter(|g| r.slots.is_unregistered(*g)) {
            r.slots
                .activate(gpa, &mut r.kvm_slots.bind(&r.vm.vm))
                .unwrap();
        }
        let stop = !matches!(event, Seen::Access { .. });
        seen.push(event);
        if stop {
            break;
        }
    }
    seen
}

#[test]
fn a_first_touch_reads_the_backing_data_and_registers_the_piece() {
    const PIECE: u64 = 4 * P;
    let first = WINDOW + 5 * P + 8;
    let stored = 0x0123_4567_89AB_CDEFu64;
    let mut code = asm::load64(first);
    code.extend_from_slice(&asm::HLT);
    code.extend(asm::load64(first + 8));
    code.extend_from_slice(&asm::HLT);
    code.extend(asm::store64(WINDOW + 7 * P, stored));
    code.extend_from_slice(&asm::HLT);
    code.extend(asm::load64(WINDOW + 9 * P)); // poisoned, piece 2 unregistered
    code.extend_from_slice(&asm::HLT);
    code.extend(asm::load64(WINDOW + 10 * P)); // same piece, registered by now
    code.extend_from_slice(&asm::HLT);
    code.extend(asm::store64(WINDOW + 13 * P, stored)); // piece 3: a store first
    code.extend_from_slice(&asm::HLT);
    code.extend(asm::load64(WINDOW + 13 * P));
    code.extend_from_slice(&asm::HLT);
    let mut r = rig(&code, &[]);
    let window = r.slots.windows()[0];
    r.slots = PoisonSlots::lazy(vec![window], 1000, PIECE);
    let stats = r.update(&set(&[(9 * P, 1)]));
    assert_eq!((stats.added, stats.slots, stats.holes), (0, 0, 1));
    assert_eq!(
        r.kvm_slots.len(),
        0,
        "nothing registered before the guest runs"
    );

    // First touch: an MMIO exit served from the backing memory, then the piece is registered.
    let what = WindowAccess::Unregistered {
        dimm: 0,
        offset: 5 * P + 8,
    };
    assert_eq!(
        run_lazy(&mut r),
        vec![
            Seen::Access {
                gpa: first,
                write: false,
                what
            },
            Seen::Hlt
        ]
    );
    assert_eq!(r.vm.vcpu.get_regs().unwrap().rax, pattern(5 * P + 8));
    assert_eq!(r.kvm_slots.len(), 1);
    // Second touch of the piece: no exit, the backing memory's value.
    assert_eq!(run_lazy(&mut r), vec![Seen::Hlt]);
    assert_eq!(r.vm.vcpu.get_regs().unwrap().rax, pattern(5 * P + 16));
    // A store in the registered piece goes straight to the backing memory.
    assert_eq!(run_lazy(&mut r), vec![Seen::Hlt]);
    assert_eq!(
        &r.mem.read(7 * P, 8)[..],
        &stored.to_le_bytes()
    );

    // A poisoned page in an unregistered piece: still a poisoned load (all ones).
    let what = WindowAccess::Poisoned {
        dimm: 0,
        offset: 9 * P,
    };
    assert_eq!(
        run_lazy(&mut r),
        vec![
            Seen::Access {
                gpa: WINDOW + 9 * P,
                write: false,
                what
            },
            Seen::Hlt
        ]
    );
    assert_eq!(r.vm.vcpu.get_regs().unwrap().rax, u64::MAX);
    assert_eq!(
        r.kvm_slots.len(),
        3,
        "piece 2 registered minus its hole: two slots"
    );
    assert_eq!(
        run_lazy(&mut r),
        vec![Seen::Hlt],
        "the rest of piece 2 is mapped"
    );
    assert_eq!(r.vm.vcpu.get_regs().unwrap().rax, pattern(10 * P));

    // A store as the first touch is written through, then the piece is registered.
    let what = WindowAccess::Unregistered {
        dimm: 0,
        offset: 13 * P,
    };
    assert_eq!(
        run_lazy(&mut r),
        vec![
            Seen::Access {
                gpa: WINDOW + 13 * P,
                write: true,
                what
            },
            Seen::Hlt
        ]
    );
    assert_eq!(
        &r.mem.read(13 * P, 8)[..],
        &stored.to_le_bytes()
    );
    assert_eq!(run_lazy(&mut r), vec![Seen::Hlt]);
    assert_eq!(r.vm.vcpu.get_regs().unwrap().rax, stored);
    assert_eq!(r.kvm_slots.len(), 4);

    // Clearing the poison re-plans the registered piece 2 into one slot.
    let stats = r.update(&PoisonSet::new());
    assert_eq!((stats.removed, stats.added, stats.slots), (2, 1, 3));
}
