//! Boots the default guest image under QEMU TCG (the crates/tcg runner, our NFIT/SSDT)
//! and drives it only through the guest agent on ttyS2: `uname -r`, `ndctl list`, every
//! module of the image loads, and an fsdax namespace carries a DAX-mounted ext4 and xfs.
//! Needs qemu-system-x86_64 and the image recipe (images/build-guest.sh). Missing QEMU is
//! a failure, not a skip.
//!
//! Run: `cargo test -p vnvdimm-integration --test agent_tcg -- --nocapture`.
//!
//! `GuestSpec::agent_socket` gives the guest the agent's serial port (ttyS2).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvdimm_model::config::{DimmConfig, PersistenceDomain, PlatformConfig, KIB, MIB};
use nvdimm_model::NvdimmPlatform;
use vnvdimm_agent::{AgentClient, ExecOutput};
use vnvdimm_tcg::{Guest, GuestImage, GuestSpec, TcgLayout, TcgLayoutOptions};

const CMD_TIMEOUT: Duration = Duration::from_secs(120);

fn fail_setup(what: &str, err: impl std::fmt::Display) -> ! {
    panic!("TCG agent test cannot run: {what}: {err}");
}

struct Session {
    agent: AgentClient,
    log: Vec<String>,
}

impl Session {
    fn run(&mut self, cmd: &str) -> ExecOutput {
        let start = Instant::now();
        let out = self.agent.exec(cmd, CMD_TIMEOUT).unwrap_or_else(|e| {
            panic!("agent exec of `{cmd}` failed: {e}\n{}", self.log.join("\n"))
        });
        self.log.push(format!(
            "$ {cmd}    [status {}, {:.2} s]\n{}",
            out.status,
            start.elapsed().as_secs_f64(),
            out.text()
        ));
        out
    }

    /// Runs `cmd` and insists on status 0.
    fn ok(&mut self, cmd: &str) -> String {
        let out = self.run(cmd);
        assert!(
            out.success(),
            "`{cmd}` exited {}:\n{}\n--- session so far:\n{}",
            out.status,
            out.text(),
            self.log.join("\n")
        );
        out.text()
    }
}

#[test]
fn agent_runs_commands_in_the_default_guest() {
    vnvdimm_integration::require_qemu();
    let image = GuestImage::locate_or_build().unwrap_or_else(|e| fail_setup("guest image", e));
    let modules = std::fs::read_to_string(image.dir.join("modules"))
        .unwrap_or_else(|e| fail_setup("reading the image's module list", e));
    let work = tempfile::Builder::new()
        .prefix("vnv-agent-")
        .tempdir()
        .unwrap_or_else(|e| fail_setup("work dir", e));
    let dir = if std::env::var_os("VNV_KEEP_WORK").is_some() {
        work.keep()
    } else {
        work.path().to_path_buf()
    };
    eprintln!("work dir: {}", dir.display());

    // DIMM 1 is big enough for mkfs.xfs (300 MB minimum since xfsprogs 5.19).
    let mut d0 = DimmConfig::with_defaults(0, dir.join("nvdimm0.img"), 256 * MIB);
    d0.label_size = 128 * KIB;
    let mut d1 = DimmConfig::with_defaults(1, dir.join("nvdimm1.img"), 512 * MIB);
    d1.label_size = 128 * KIB;
    let config = PlatformConfig::new(vec![d0, d1], PersistenceDomain::MemoryController)
        .unwrap_or_else(|e| fail_setup("config", e));
    let layout = TcgLayout::new(&config, TcgLayoutOptions::default())
        .unwrap_or_else(|e| fail_setup("layout", e));
    let platform = NvdimmPlatform::ephemeral(config, layout.platform_layout())
        .unwrap_or_else(|e| fail_setup("device model", e));

    let socket = dir.join("agent.sock");
    let mut spec = GuestSpec::new(image.clone(), layout, Arc::new(Mutex::new(platform)), &dir);
    spec.agent_socket = Some(socket.clone());
    // Keep the guest up after its (empty) test script until the agent is told to quit.
    spec.extra_append = "vnv.agent=hold".into();
    let boot = Instant::now();
    let guest = Guest::start(&spec).unwrap_or_else(|e| fail_setup("starting the guest", e));

    let mut agent = AgentClient::connect_unix_within(&socket, Duration::from_secs(30))
        .unwrap_or_else(|e| fail_setup("agent socket", e));
    if let Err(e) = agent.wait_ready(Duration::from_secs(180)) {
        let out = guest.wait(Duration::from_secs(1));
        let console = out.map(|o| o.console).unwrap_or_default();
        panic!("{e}\nconsole:\n{console}");
    }
    let ready = boot.elapsed();
    let mut s = Session {
        agent,
        log: Vec::new(),
    };

    assert_eq!(s.ok("uname -r").trim(), image.kernel_release);

    // A cancelled command (its API client went away) is killed with all it started, in
    // the real guest over the real serial line, and the agent serves the next one.
    let asked = Instant::now();
    let cancelled = s.agent.exec_unless(
        "sleep 600 & echo $! > /tmp/sleeper; wait",
        CMD_TIMEOUT,
        &|| asked.elapsed() > Duration::from_secs(3),
    );
    assert!(
        matches!(cancelled, Err(vnvdimm_agent::AgentError::Cancelled { status: 137, .. })),
        "{cancelled:?}"
    );
    assert_ne!(s.run("kill -0 $(cat /tmp/sleeper)").status, 0, "the command's child outlived the cancel");

    // Every module in the image loads (crc32c-intel needs SSE4.2, which qemu64 lacks;
    // it is only in the image as libcrc32c's optional soft dependency).
    for m in modules.split_whitespace().filter(|m| *m != "crc32c-intel") {
        s.ok(&format!("modprobe {m}"));
    }
    let lsmod = s.ok("cat /proc/modules");
    for m in modules.split_whitespace().filter(|m| *m != "crc32c-intel") {
        let name = m.replace('-', "_");
        assert!(
            lsmod
                .lines()
                .any(|l| l.split(' ').next() == Some(name.as_str())),
            "module {name} not loaded:\n{lsmod}"
        );
    }

    let dimms = s.ok("ndctl list -D");
    assert_eq!(dimms.matches("\"dev\":\"nmem").count(), 2, "{dimms}");
    let out = s.run("ndctl list --no-such-option");
    assert_ne!(out.status, 0, "a failing command reports its status");

    // fsdax namespaces on both regions, then ext4 (4 KiB blocks: DAX needs block size ==
    // page size, and mke2fs picks 1 KiB for small devices) on one and xfs on the other, mounted -o dax.
    s.ok("ndctl disable-region all && ndctl init-labels all && ndctl enable-region all");
    for region in ["region0", "region1"] {
        s.ok(&format!("ndctl create-namespace -m fsdax -r {region}"));
    }
    let pmems = s.ok("ls /dev/ | grep '^pmem'");
    assert_eq!(pmems.split_whitespace().count(), 2, "{pmems}");
    // The xfs goes on the larger device.
    let big = s.ok("for b in /sys/block/pmem*; do echo $(cat $b/size) ${b##*/}; done | sort -n | tail -n1 | cut -d' ' -f2");
    let big = big.trim().to_string();
    let small = if big == "pmem0" { "pmem1" } else { "pmem0" };
    for (dev, mkfs, dir) in [
        (small, "mkfs.ext4 -F -q -b 4096", "/mnt/ext4"),
        (big.as_str(), "mkfs.xfs -f -q -m reflink=0", "/mnt/xfs"),
    ] {
        s.ok(&format!("{mkfs} /dev/{dev}"));
        s.ok(&format!("mkdir -p {dir} && mount -o dax /dev/{dev} {dir}"));
        let mounts = s.ok(&format!("grep ' {dir} ' /proc/mounts"));
        assert!(
            mounts.contains("dax"),
            "{dir} not mounted with dax: {mounts}"
        );
        s.ok(&format!("echo persistent > {dir}/f && sync && cat {dir}/f"));
        s.ok(&format!("umount {dir} && mount -o dax /dev/{dev} {dir} && grep -x persistent {dir}/f && umount {dir}"));
    }
    let dmesg = s.ok("dmesg");
    let mut dax_lines = dmesg
        .lines()
        .filter(|l| l.contains("DAX") || l.contains("dax"));
    assert!(dax_lines.next().is_some(), "no DAX line in dmesg");

    s.agent
        .shutdown(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("agent shutdown: {e}"));
    let out = guest
        .wait(Duration::from_secs(60))
        .unwrap_or_else(|e| fail_setup("waiting for QEMU", e));
    eprintln!("{}", s.log.join("\n"));
    eprintln!("agent ready after {ready:?}; QEMU ran {:?}", out.wall);
    assert!(
        !out.timed_out,
        "guest did not power off after the agent quit"
    );
    assert!(
        out.results.finished(),
        "init did not report DONE: {:?}",
        out.results
    );
    // The step-marker channel still works next to the agent.
    assert!(
        out.results.get("modprobe").is_some_and(|r| r.ok()),
        "{:?}",
        out.results
    );
}
