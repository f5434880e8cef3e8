//! `vnvdimm selftest`: the firmware/ programs run under KVM on this host, each
//! result compared with what the VMM generated or should have done.

use nvdimm_model::sync::LockUnpoisoned;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nvdimm_model::event_log::EventKind;
use vnvdimm_machine::Machine;

use crate::firmware;
use crate::harness::{self, HarnessError, RunResult};
use vnvdimm_vmm::outcome::GuestOutcome;
use vnvdimm_vmm::vm::Vm;

/// Size of each test DIMM: small, sparse.
pub const DIMM_SIZE: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail(String),
    NotRun(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What was observed (for the PASS line too).
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.status {
            Status::Pass => write!(f, "PASS    {:<14} {}", self.name, self.detail),
            Status::Fail(why) => write!(f, "FAIL    {:<14} {why} ({})", self.name, self.detail),
            Status::NotRun(why) => write!(f, "NOT RUN {:<14} {why}", self.name),
        }
    }
}

/// Every check, each on a fresh machine with backing files in a fresh directory under `dir`.
pub fn run_all(dir: &Path) -> Vec<Check> {
    let checks: [(&'static str, CheckFn); 5] = [
        ("acpi-nfit", check_acpi_nfit),
        ("dsm-mailbox", check_dsm),
        ("pmem-store", check_pattern),
        ("flush-hint", check_flush),
        ("poison-read", check_poison),
    ];
    checks.iter().map(|&(name, f)| run_check(dir, name, f)).collect()
}

type CheckFn = fn(&mut Vm, &RunResult, &Machine) -> Result<String, String>;

fn program(name: &str) -> &'static [u8] {
    match name {
        "acpi-nfit" => firmware::ACPI_NFIT,
        "dsm-mailbox" => firmware::DSM,
        "pmem-store" => firmware::PATTERN,
        "flush-hint" => firmware::FLUSH,
        _ => firmware::POISON,
    }
}

pub fn run_check(dir: &Path, name: &'static str, f: CheckFn) -> Check {
    let result = (|| -> Result<(Vm, RunResult, Machine), HarnessError> {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).map_err(|source| HarnessError::Backing { path: sub.display().to_string(), source })?;
        let machine = harness::sparse_machine(&sub, 2, DIMM_SIZE)?;
        let mut vm = harness::boot(machine.clone(), program(name), Box::new(std::io::sink()))?;
        if name == "poison-read" {
            poison_page(&vm)?;
        }
        let run = harness::run(&mut vm)?;
        Ok((vm.vm, run, machine))
    })();
    let (status, detail) = match result {
        Err(HarnessError::Vm(vnvdimm_vmm::vm::VmError::Kvm(e))) => {
            (Status::NotRun(format!("/dev/kvm is not usable here: {e}")), String::new())
        }
        Err(e) => (Status::Fail(e.to_string()), String::new()),
        Ok((_, run, _)) if run.outcome != GuestOutcome::DebugExit(0) => {
            (Status::Fail(format!("{} (report {:x?})", run.outcome, run.report)), String::new())
        }
        Ok((mut vm, run, machine)) => match f(&mut vm, &run, &machine) {
            Ok(detail) => (Status::Pass, detail),
            Err(why) => (Status::Fail(why), format!("report {:x?}", run.report)),
        },
    };
    Check { name, status, detail }
}

fn expect(what: &str, got: Option<u64>, want: u64) -> Result<(), String> {
    match got {
        Some(got) if got == want => Ok(()),
        got => Err(format!("{what}: guest saw {got:x?}, VMM generated {want:#x}")),
    }
}

fn table_addr(machine: &Machine, signature: &str) -> u64 {
    machine.acpi.tables.iter().find(|t| t.signature == signature).map_or(0, |t| t.guest_addr)
}

pub fn check_acpi_nfit(_vm: &mut Vm, run: &RunResult, machine: &Machine) -> Result<String, String> {
    let dimm0 = &machine.memory_map.layout.dimms[0];
    expect("XSDT address", run.u64_at(0), table_addr(machine, "XSDT"))?;
    expect("NFIT address", run.u64_at(2), table_addr(machine, "NFIT"))?;
    expect("DIMM 0 SPA base", run.u64_at(4), dimm0.spa_base)?;
    expect("DIMM 0 SPA length", run.u64_at(6), machine.platform.dimms[0].size)?;
    expect("DIMM 0 flush hint", run.u64_at(8), dimm0.flush_hints.first().copied().unwrap_or(0))?;
    Ok(format!("RSDP->XSDT->NFIT: SPA base {:#x}, flush hint {:#x}", dimm0.spa_base, dimm0.flush_hints[0]))
}

/// Report layout of firmware/dsm.S.
pub fn check_dsm(vm: &mut Vm, run: &RunResult, _machine: &Machine) -> Result<String, String> {
    let w = |i: usize| run.report.get(i).copied();
    let want = |what: &str, i: usize, v: u32| match w(i) {
        Some(got) if got == v => Ok(()),
        got => Err(format!("{what}: got {got:x?}, want {v:#x}")),
    };
    want("Intel F6 label write status", 0, 0)?;
    want("Intel F5 label read status", 2, 0)?;
    want("Intel F5 output length", 3, 4 + 16)?;
    want("Intel F5 data equals what F6 wrote", 4, 1)?;
    want("root F2 Start ARS status", 5, 0)?;
    // Query ARS: success, possibly with the "in progress" extended status.
    match w(7) {
        Some(s) if s & 0xffff == 0 && (s >> 16 == 0 || s >> 16 == 1) => {}
        got => return Err(format!("root F3 Query ARS status: got {got:x?}")),
    }
    want("Intel F1 SMART status", 9, 0)?;
    want("Intel F1 output length", 10, 4 + 128)?;
    let platform = vm.platform().lock_unpoisoned();
    if platform.dimms()[0].read_labels(0, 16) != Some(&firmware::LABEL_PATTERN[..]) {
        return Err("the label area of DIMM 0 does not hold what the guest wrote with F6".into());
    }
    let calls: Vec<(u32, u32)> = platform
        .events_since(0)
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Dsm(r) => Some((r.handle, r.function)),
            _ => None,
        })
        .collect();
    let handle = platform.dimms()[0].handle();
    let expected = vec![(handle, 6), (handle, 5), (0, 2), (0, 3), (handle, 1)];
    if calls != expected {
        return Err(format!("event log has DSM calls {calls:x?}, expected {expected:x?}"));
    }
    Ok(format!(
        "F6/F5 labels round trip, ARS start ok, ARS status {:#x}, SMART flags {:#x}",
        w(7).unwrap_or(0),
        w(11).unwrap_or(0)
    ))
}

pub fn check_pattern(_vm: &mut Vm, run: &RunResult, machine: &Machine) -> Result<String, String> {
    expect("reported SPA base", run.u64_at(0), machine.memory_map.layout.dimms[0].spa_base)?;
    let path = &machine.platform.dimms[0].path;
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut buf = vec![0u8; (firmware::PATTERN_WORDS * 8) as usize];
    file.read_exact_at(&mut buf, firmware::PATTERN_OFFSET).map_err(|e| format!("read backing file: {e}"))?;
    for (i, chunk) in buf.chunks_exact(8).enumerate() {
        let got = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let want = firmware::PATTERN_VALUE ^ i as u64;
        if got != want {
            return Err(format!("backing file word {i} at {:#x}: {got:#x}, want {want:#x}", firmware::PATTERN_OFFSET + 8 * i as u64));
        }
    }
    Ok(format!("{} guest quadwords found in {}", firmware::PATTERN_WORDS, path.display()))
}

pub fn check_flush(vm: &mut Vm, run: &RunResult, machine: &Machine) -> Result<String, String> {
    expect("reported flush hint", run.u64_at(0), machine.memory_map.layout.dimms[0].flush_hints[0])?;
    let counts = vm.stats().flushes.all();
    if counts != [1, 0] {
        return Err(format!("flush counts per DIMM {counts:?}, want [1, 0]"));
    }
    let logged = vm
        .platform()
        .lock_unpoisoned()
        .events_since(0)
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Flush { dimm: 0, .. }))
        .count();
    if logged != 1 {
        return Err(format!("{logged} flush events for DIMM 0 in the event log, want 1"));
    }
    let path = &machine.platform.dimms[0].path;
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut buf = [0u8; 8];
    file.read_exact_at(&mut buf, firmware::FLUSH_STAMP_OFFSET).map_err(|e| format!("read backing file: {e}"))?;
    if u64::from_le_bytes(buf) != firmware::FLUSH_STAMP {
        return Err("the quadword stored before the flush is not in the backing file".into());
    }
    Ok("flush count 0 -> 1 (fdatasync done before the vCPU resumed), event logged, data in the file".into())
}

/// Host-side injection, as `POST /poison` does: DIMM 0's page at `POISON_OFFSET` is
/// recorded in the device model and taken out of the memslots before the guest starts.
fn poison_page(vm: &Vm) -> Result<(), HarnessError> {
    vm.platform()
        .lock_unpoisoned()
        .add_poison(0, firmware::POISON_OFFSET, 8)
        .map_err(|e| HarnessError::Backing { path: "DIMM 0 poison".into(), source: std::io::Error::other(e.to_string()) })?;
    vm.pmem().sync(vm.platform()).map_err(|e| HarnessError::Vm(e.into()))?;
    Ok(())
}

/// Report layout of firmware/poison.S: address loaded, then from the #MC handler
/// MC9_ADDR, MC9_STATUS, MCG_STATUS.
pub fn check_poison(vm: &mut Vm, run: &RunResult, machine: &Machine) -> Result<String, String> {
    let gpa = machine.memory_map.layout.dimms[0].spa_base + firmware::POISON_OFFSET;
    expect("address the guest loaded", run.u64_at(0), gpa)?;
    expect("MC9_ADDR in the guest's #MC handler", run.u64_at(2), gpa)?;
    expect("MC9_STATUS in the guest's #MC handler", run.u64_at(4), vnvdimm_vmm::arch::x86_64::mce::SRAR_STATUS)?;
    expect("MCG_STATUS in the guest's #MC handler", run.u64_at(6), vnvdimm_vmm::arch::x86_64::mce::SRAR_MCG_STATUS)?;
    let logged = vm.platform().lock_unpoisoned().events_since(0).iter().any(|e| {
        e.kind
            == EventKind::MachineCheck {
                gpa,
                kind: nvdimm_model::event_log::MachineCheckKind::ActionRequired,
                delivered: true,
            }
    });
    if !logged {
        return Err(format!("no MachineCheck {{ gpa: {gpa:#x}, action_required, delivered }} in the event log"));
    }
    Ok(format!(
        "load at {gpa:#x} exited (page out of the memslots), SRAR injected and logged, guest #MC handler read MC9_ADDR {gpa:#x}, MC9_STATUS {:#x}",
        vnvdimm_vmm::arch::x86_64::mce::SRAR_STATUS
    ))
}
