//! The platform rows only the KVM backend has (docs/poison-consumption.md,
//! docs/running.md), proven under a real kernel: a load of poisoned pmem is a real
//! action-required machine check the guest recovers from, flush hints reach the host,
//! the GED carries notifications, a panicking guest ends the run. Run by
//! tests/kvm_platform.rs (directly where KVM boots Linux, else in the nested host).

use super::*;

const KVM: GuestBackend = GuestBackend::Kvm;

/// A DIMM without labels in fsdax mode, ext4 mounted with `-o dax` on /mnt/d and a 4 MiB
/// file /mnt/d/f written through: its pages are the DIMM's pages.
fn fsdax_file(vm: &mut Vm) {
    vm.ok("ndctl create-namespace -f -e namespace0.0 -m fsdax");
    let dev = vm.blockdev_of(1);
    vm.ok(&format!(
        "mkdir -p /mnt/d && mkfs.ext4 -F -q -b 4096 /dev/{dev} && mount -t ext4 -o dax /dev/{dev} /mnt/d \
         && dd if=/dev/zero of=/mnt/d/f bs=1M count=4 2>/dev/null && sync"
    ));
}

/// What `vnv-mmap-probe` (images/vnv-mmap-probe.c) printed once it finished.
struct ProbeResult {
    phys: u64,
    virt: u64,
    outcome: String,
}

/// Maps `len` bytes of `file`, stores into the page at `offset`, lets `between` poison
/// it (given its guest-physical address), then loads it.
fn probe(
    vm: &mut Vm,
    file: &str,
    offset: u64,
    len: u64,
    between: impl FnOnce(&mut Vm, u64),
) -> ProbeResult {
    vm.ok("rm -f /tmp/go /tmp/probe.out");
    vm.ok(&format!(
        "vnv-mmap-probe {file} {offset} {len} /tmp/go </dev/null >/tmp/probe.out 2>&1 &"
    ));
    let wait_for = |vm: &mut Vm, what: &str| -> String {
        for _ in 0..100 {
            let out = vm.ok("cat /tmp/probe.out");
            if out.contains(what) || out.contains("SIGBUS") {
                return out;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the probe never printed `{what}`:\n{}\n{}",
            vm.ok("cat /tmp/probe.out"),
            vm.context()
        );
    };
    let started = wait_for(vm, "phys=");
    let field = |text: &str, key: &str| -> u64 {
        let at = text
            .find(key)
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            + key.len();
        hex(text[at..].split_whitespace().next().unwrap())
    };
    let (phys, virt) = (field(&started, "phys="), field(&started, "virt="));
    assert_ne!(phys, 0, "pagemap gave no frame (not root?): {started}");
    between(vm, phys);
    vm.ok("touch /tmp/go");
    let done = wait_for(vm, "read ok");
    let outcome = done.lines().last().unwrap_or_default().to_string();
    ProbeResult {
        phys,
        virt,
        outcome,
    }
}

/// Waits for `want` in the guest's kernel log.
fn dmesg_line(vm: &mut Vm, want: &str) -> String {
    let mut dmesg = String::new();
    for _ in 0..40 {
        // Filtered in the guest: the agent's line is a UART, slow to move a whole log.
        dmesg = vm.ok(&format!("dmesg | grep -F '{want}' || true"));
        if let Some(line) = dmesg.lines().find(|l| l.contains(want)) {
            return line.to_string();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("no `{want}` in the guest log:\n{dmesg}\n{}", vm.context());
}

/// The SIGBUS a poisoned load must give: BUS_MCEERR_AR (4) at the mapped address, with
/// a 4 KiB granule (si_addr_lsb 12).
fn assert_sigbus_ar(r: &ProbeResult) {
    let want = format!(
        "SIGBUS code=4 addr={:#x} expected={:#x} lsb=12",
        r.virt, r.virt
    );
    assert_eq!(r.outcome, want, "the probe's load of the poisoned page");
}

pub fn poison_consumed_through_an_fsdax_mapping_is_recovered() {
    let work = Work::new("mce-ar-fsdax", KVM);
    let a = work.dimm("a.img", 256 * MIB);
    let mut vm = boot(&work, &[nvdimm(&a, ",label-size=0,handle=1")], &[]);
    fsdax_file(&mut vm);
    let r = probe(&mut vm, "/mnt/d/f", 2 * 4096, 4 * MIB, |vm, phys| {
        // Latent poison, as a real media error: nothing tells the guest until it loads.
        let answer = vm.api(
            "POST",
            "/poison",
            Some(json!({ "spa": phys, "length": 4096 })),
        );
        assert_eq!(answer["dimm"], 0, "{answer}");
    });
    assert_sigbus_ar(&r);
    let pfn = r.phys / 4096;
    let line = dmesg_line(&mut vm, &format!("{pfn:#x}: recovery action for dax page"));
    assert!(line.trim_end().ends_with("Recovered"), "{line}");
    let events = vm.api("GET", "/events", None);
    assert!(
        events.to_string().contains("machine_check"),
        "the VMM logged the machine check it delivered: {events}"
    );
    // read() of the same range goes through the kernel's machine-check-safe copy: an
    // error, not a crash.
    let (status, out) = vm.exec("dd if=/mnt/d/f of=/dev/null bs=4096 skip=2 count=1");
    assert_ne!(status, 0, "reading the poisoned block succeeded: {out}");
    assert!(out.contains("Input/output error"), "{out}");
    // Other processes and the rest of the file live on.
    vm.ok("dd if=/mnt/d/f of=/dev/null bs=4096 skip=3 count=100");
    assert!(vm.ok("echo alive").contains("alive"));
    // A write of the whole page repairs it: the pmem driver's recovery write clears the
    // error through the Clear Uncorrectable Error _DSM, the host's poison list empties,
    // and the page reads and maps again.
    vm.ok("dd if=/dev/zero of=/mnt/d/f bs=4096 seek=2 count=1 conv=notrunc,fsync");
    assert_eq!(vm.host_poison(0), vec![], "the recovery write cleared the host's poison");
    vm.ok("dd if=/mnt/d/f of=/dev/null bs=4096 skip=2 count=1");
    let again = probe(&mut vm, "/mnt/d/f", 2 * 4096, 4 * MIB, |_, _| {});
    assert!(again.outcome.starts_with("read ok"), "mapped again after the repair: {}", again.outcome);
    vm.stop();
}

/// SRAR on a 2-way interleave set (4 KiB lines): the page the guest maps is poisoned by
/// its system address; the VMM must find it in the member and at the offset the
/// interleave gives, leave exactly that page out of the memslots, and raise the machine
/// check at the address the guest loaded. The recovery write then clears it in that member.
pub fn poison_consumed_on_an_interleave_set_is_recovered() {
    const LINE: u64 = 4096;
    let work = Work::new("mce-ar-interleave", KVM);
    let m0 = work.dimm("m0.img", 256 * MIB);
    let m1 = work.dimm("m1.img", 256 * MIB);
    let mut vm = boot(
        &work,
        &[nvdimm(&m0, ",label-size=0,handle=1"), nvdimm(&m1, ",label-size=0,handle=2")],
        &["--interleave-set", "dimms=0,1,line=4K"],
    );
    fsdax_file(&mut vm);
    let base = vm.api("GET", "/dimms/0", None)["spa_base"].as_u64().expect("spa_base");
    let mut member = None;
    let r = probe(&mut vm, "/mnt/d/f", 2 * 4096, 4 * MIB, |vm, phys| {
        // Line n of the set is line n / 2 of member n % 2.
        let line = (phys - base) / LINE;
        let (dimm, offset) = (line % 2, line / 2 * LINE);
        let answer = vm.api("POST", "/poison", Some(json!({ "spa": phys, "length": 4096 })));
        assert_eq!((answer["dimm"].as_u64(), answer["offset"].as_u64()), (Some(dimm), Some(offset)), "{answer}");
        assert_eq!(vm.host_poison(dimm as usize), vec![(offset, 4096)]);
        assert_eq!(vm.host_poison(1 - dimm as usize), vec![], "the other member is clean");
        member = Some(dimm as usize);
    });
    assert_sigbus_ar(&r);
    let pfn = r.phys / 4096;
    let line = dmesg_line(&mut vm, &format!("{pfn:#x}: recovery action for dax page"));
    assert!(line.trim_end().ends_with("Recovered"), "{line}");
    let member = member.expect("the probe poisoned its page");
    vm.ok("dd if=/dev/zero of=/mnt/d/f bs=4096 seek=2 count=1 conv=notrunc,fsync");
    assert_eq!(vm.host_poison(member), vec![], "the recovery write cleared the member's poison");
    let again = probe(&mut vm, "/mnt/d/f", 2 * 4096, 4 * MIB, |_, _| {});
    assert!(again.outcome.starts_with("read ok"), "mapped again after the repair: {}", again.outcome);
    vm.stop();
}

pub fn poison_consumed_through_a_devdax_mapping_is_recovered() {
    let work = Work::new("mce-ar-devdax", KVM);
    let a = work.dimm("a.img", 256 * MIB);
    let mut vm = boot(&work, &[nvdimm(&a, ",label-size=0,handle=1")], &[]);
    let ns = vm.json("ndctl create-namespace -f -e namespace0.0 -m devdax");
    let chardev = ns["daxregion"]["devices"][0]["chardev"]
        .as_str()
        .unwrap_or_else(|| panic!("no dax chardev in {ns}"))
        .to_string();
    // Device-dax maps whole 2 MiB pages by default.
    let r = probe(
        &mut vm,
        &format!("/dev/{chardev}"),
        5 * 4096,
        2 * MIB,
        |vm, phys| {
            vm.api(
                "POST",
                "/poison",
                Some(json!({ "spa": phys, "length": 4096 })),
            );
        },
    );
    // Device-dax maps the namespace with 2 MiB pages: Linux reports the whole huge page,
    // its start and a 2 MiB granule (si_addr_lsb 21), as on real hardware.
    let huge = r.virt & !(2 * MIB - 1);
    assert_eq!(
        r.outcome,
        format!("SIGBUS code=4 addr={huge:#x} expected={:#x} lsb=21", r.virt),
        "the probe's load of the poisoned page"
    );
    let pfn = r.phys / 4096;
    let line = dmesg_line(&mut vm, &format!("{pfn:#x}: recovery action for dax page"));
    assert!(line.trim_end().ends_with("Recovered"), "{line}");
    assert!(vm.ok("echo alive").contains("alive"));
    vm.stop();
}

/// An action-optional machine check from the API: on an Intel guest CPU it reaches the
/// guest's memory_failure, which with early kill signals the process mapping the page
/// (BUS_MCEERR_AO) before it loads anything. An AMD CPU has no such machine check
/// (docs/poison-consumption.md): there the API refuses it (501) and the guest runs on.
pub fn action_optional_machine_check_reaches_memory_failure() {
    let work = Work::new("mce-ao", KVM);
    let a = work.dimm("a.img", 256 * MIB);
    let mut vm = boot(&work, &[nvdimm(&a, ",label-size=0,handle=1")], &[]);
    let amd = vm.ok("grep -m1 vendor_id /proc/cpuinfo").contains("AuthenticAMD");
    fsdax_file(&mut vm);
    vm.ok("echo 1 > /proc/sys/vm/memory_failure_early_kill");
    let r = probe(&mut vm, "/mnt/d/f", 4096, 4 * MIB, |vm, phys| {
        let body = json!({ "spa": phys, "length": 4096, "machine_check": "action_optional" });
        if amd {
            let r = vm.api.post("/poison", &body).unwrap();
            assert_eq!(r.status, 501, "AMD guest: action-optional refused: {}", r.body);
            assert!(r.body.to_string().contains("action-optional"), "{}", r.body);
            // A refused request changes nothing: the page is not poisoned either.
            assert_eq!(vm.host_poison(0), vec![], "poison recorded by a refused request");
            return;
        }
        vm.api("POST", "/poison", Some(body));
        let pfn = phys / 4096;
        let line = dmesg_line(vm, &format!("{pfn:#x}: recovery action for dax page"));
        assert!(line.trim_end().ends_with("Recovered"), "{line}");
    });
    if amd {
        // Nothing was raised: the page is clean and reads.
        assert!(r.outcome.starts_with("read ok"), "{}", r.outcome);
    } else {
        assert!(r.outcome.starts_with("SIGBUS code=5"), "early kill: {}", r.outcome);
    }
    vm.stop();
}

pub fn flush_hints_and_fsync_reach_the_backing_file() {
    let work = Work::new("flush", KVM);
    let a = work.dimm("a.img", 256 * MIB);
    let mut vm = boot(
        &work,
        &[nvdimm(&a, ",label-size=0,handle=1,flush-hints=1")],
        &[],
    );
    let flushes = |vm: &mut Vm| {
        vm.api("GET", "/dimms/0", None)["flush_count"]
            .as_u64()
            .unwrap()
    };
    let region = vm
        .ok("ls /sys/bus/nd/devices | grep region | head -1")
        .trim()
        .to_string();
    let before = flushes(&mut vm);
    vm.ok(&format!("echo 1 > /sys/bus/nd/devices/{region}/deep_flush"));
    let after_deep = flushes(&mut vm);
    assert!(
        after_deep > before,
        "deep_flush: flush count {before} -> {after_deep}"
    );
    fsdax_file(&mut vm);
    let marker = "vnvdimm-fsync-marker-0123456789";
    let before = flushes(&mut vm);
    // busybox dd's conv=fsync: write, then fsync, which on fs-dax flushes the DIMM.
    vm.ok(&format!(
        "echo {marker} > /tmp/m && dd if=/tmp/m of=/mnt/d/g conv=fsync 2>/dev/null"
    ));
    let after_fsync = flushes(&mut vm);
    assert!(
        after_fsync > before,
        "fsync: flush count {before} -> {after_fsync}"
    );
    let data = std::fs::read(&a).unwrap();
    assert!(
        data.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "the fsync'd data is not in the backing file"
    );
    vm.stop();
}

pub fn notification_through_the_ged_updates_badblocks_without_a_scrub() {
    let work = Work::new("ged-notify", KVM);
    let a = work.dimm("a.img", 256 * MIB);
    let mut vm = boot(&work, &[nvdimm(&a, ",label-size=0,handle=1")], &[]);
    let dmesg = vm.ok("dmesg | grep -i acpi-ged || true");
    assert!(
        !dmesg.contains("acpi-ged"),
        "the GED did not bind cleanly:\n{dmesg}"
    );
    let ged_irqs = |vm: &mut Vm| -> u64 {
        let text = vm.ok("grep -i ged /proc/interrupts || true");
        text.split_whitespace()
            .skip(1)
            .take_while(|w| w.parse::<u64>().is_ok())
            .map(|w| w.parse::<u64>().unwrap())
            .sum()
    };
    let before = ged_irqs(&mut vm);
    let dev = vm.blockdev_of(1);
    let t = Instant::now();
    vm.api(
        "POST",
        "/poison",
        Some(json!({ "dimm": 0, "offset": 64 * 1024, "length": 4096, "notify": true })),
    );
    let mut badblocks = String::new();
    for _ in 0..100 {
        badblocks = vm.ok(&format!("cat /sys/block/{dev}/badblocks"));
        if !badblocks.trim().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t.elapsed();
    assert_eq!(
        parse_badblocks(&badblocks),
        vec![(128, 8)],
        "badblocks after the notification"
    );
    let after = ged_irqs(&mut vm);
    assert!(after > before, "GED interrupts {before} -> {after}");
    println!("[ged-notify] poison add --notify to badblocks in {took:?} (nested timings are not KVM timings)");
    vm.stop();
}

pub fn two_vcpus_boot_and_run() {
    let work = Work::new("cpus2", KVM);
    let a = work.dimm("a.img", 256 * MIB);
    let mut vm = boot(&work, &[nvdimm(&a, "")], &["--cpus", "2"]);
    assert_eq!(vm.ok("nproc").trim(), "2");
    assert_eq!(
        vm.ok("taskset -c 1 cat /proc/self/stat | cut -d' ' -f39")
            .trim(),
        "1"
    );
    vm.stop();
}

/// A guest kernel panic without the pvpanic driver (`panic=-1` reboots at once) ends the
/// run; the exit status is the reset's.
pub fn panic_without_pvpanic_ends_the_run() {
    let work = Work::new("panic", KVM);
    let a = work.dimm("a.img", 256 * MIB);
    let mut vm = boot(
        &work,
        &[nvdimm(&a, "")],
        &[
            "--cmdline",
            "console=ttyS0 reboot=acpi panic=-1 vnv.modules=nfit,nd_pmem",
        ],
    );
    assert!(
        vm.ok("ls /sys/bus/platform/drivers | grep -c pvpanic || true")
            .trim()
            == "0"
    );
    let _ = vm.api.post(
        "/exec",
        &json!({ "command": "echo c > /proc/sysrq-trigger", "timeout_secs": 10 }),
    );
    let handle = vm.handle.take().unwrap();
    let t = Instant::now();
    while !handle.is_finished() && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        handle.is_finished(),
        "the run went on for 2 minutes after the guest panicked\n{}",
        vm.context()
    );
    let code = handle.join().unwrap();
    println!(
        "[panic] run ended {:?} after the panic, exit {code}",
        t.elapsed()
    );
    assert!(
        vm.console.text().contains("Kernel panic"),
        "{}",
        vm.context()
    );
    assert_eq!(
        code,
        0,
        "a panic with panic=-1 resets the machine, which ends the run like a reboot\n{}",
        vm.context()
    );
}
