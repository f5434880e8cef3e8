//! DIMM windows above 4 GiB under `vnvdimm run --backend tcg` (issue 9, item 1), through
//! the same code path as the command (`vnvdimm::cli::run`) with the default guest image
//! and commands run in the guest through `POST /exec`:
//!
//! - `--memory 1G` with two 2 GiB DIMMs (refused while the windows had to fit below
//!   4 GiB): ndctl sees two 2 GiB regions at the layout's windows above 4 GiB, and a
//!   store through `/dev/pmem1` lands in the second backing file;
//! - `--memory 2G` with four sparse 64 GiB DIMMs: four 64 GiB regions, a 60 GiB fs-dax
//!   namespace formatted with ext4 and mounted with `-o dax`, a whole-region device-dax
//!   namespace with 1 GiB alignment; a DIMM the guest never wrote stays unallocated.
//!
//! Needs qemu-system-x86_64 and the guest image (images/build-guest.sh); their absence
//! is a failure. Work files stay in the printed directory with VNV_KEEP_WORK=1.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nvdimm_model::config::{parse_size, GIB};
use serde_json::{json, Value};
use vnvdimm_control::ApiClient;
use vnvdimm_integration::SharedBuf;
use vnvdimm_tcg::TcgLayout;

struct Work {
    dir: PathBuf,
}

impl Work {
    fn new(name: &str) -> Work {
        vnvdimm_integration::require_qemu();
        vnvdimm_tcg::GuestImage::locate_or_build().unwrap_or_else(|e| panic!("guest image: {e}"));
        let dir = tempfile::Builder::new().prefix(&format!("vnv-large-{name}-")).tempdir().unwrap().keep();
        println!("[{name}] work dir: {}", dir.display());
        Work { dir }
    }

    /// `count` sparse backing files of `size` and their `--nvdimm` values.
    fn dimms(&self, count: usize, size: &str) -> (Vec<PathBuf>, Vec<String>) {
        let bytes = parse_size(size).unwrap();
        let paths: Vec<PathBuf> = (0..count).map(|i| self.dir.join(format!("d{i}.img"))).collect();
        for p in &paths {
            std::fs::File::create(p).unwrap().set_len(bytes).unwrap();
        }
        let specs = paths.iter().map(|p| format!("path={},size={size},label-size=128K", p.display())).collect();
        (paths, specs)
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if std::env::var_os("VNV_KEEP_WORK").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The windows `vnvdimm run` computes for these options (the code path under test).
fn windows(memory: &str, specs: &[String]) -> Vec<std::ops::Range<u64>> {
    let config = nvdimm_model::PlatformConfig::parse(specs, "cpu-cache").unwrap();
    let opts = vnvdimm::run_tcg::layout_options(parse_size(memory).unwrap()).unwrap();
    TcgLayout::new(&config, opts).unwrap().windows
}

/// One running `vnvdimm run --backend tcg`, default image, agent held for `POST /exec`.
struct Vm {
    api: ApiClient,
    console: SharedBuf,
    stderr: SharedBuf,
    handle: Option<std::thread::JoinHandle<u8>>,
    log: Vec<String>,
}

fn boot(work: &Work, memory: &str, specs: &[String]) -> Vm {
    let socket = work.dir.join("api.sock");
    let mut args: Vec<String> =
        ["vnvdimm", "run", "--backend", "tcg", "--memory", memory].iter().map(|s| s.to_string()).collect();
    for s in specs {
        args.extend(["--nvdimm".into(), s.clone()]);
    }
    args.extend(["--api-socket".into(), socket.display().to_string()]);
    let (console, stderr) = (SharedBuf::default(), SharedBuf::default());
    let (mut o, mut e) = (console.clone(), stderr.clone());
    let handle = std::thread::spawn(move || vnvdimm::cli::run(args, &mut o, &mut e));
    let started = Instant::now();
    while !socket.exists() {
        if handle.is_finished() || started.elapsed() > Duration::from_secs(60) {
            let code = handle.join().ok();
            panic!(
                "vnvdimm run ended or never served its API (exit {code:?}); stderr:\n{}\nconsole:\n{}",
                stderr.text(),
                console.text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Vm {
        api: ApiClient::new(&socket).with_timeout(Duration::from_secs(400)),
        console,
        stderr,
        handle: Some(handle),
        log: Vec::new(),
    }
}

impl Vm {
    fn context(&self) -> String {
        let console = self.console.text();
        let lines: Vec<&str> = console.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!(
            "--- guest session so far:\n{}\n--- vnvdimm stderr:\n{}\n--- console (last 40 lines):\n{tail}",
            self.log.join("\n"),
            self.stderr.text()
        )
    }

    /// Runs `cmd` in the guest and insists on status 0; returns its output.
    fn ok(&mut self, cmd: &str) -> String {
        let t = Instant::now();
        let r = self
            .api
            .post("/exec", &json!({ "command": cmd, "timeout_secs": 300 }))
            .unwrap_or_else(|e| panic!("POST /exec `{cmd}`: {e}\n{}", self.context()));
        assert!(r.is_success(), "POST /exec `{cmd}`: HTTP {} {}\n{}", r.status, r.body, self.context());
        let status = r.body["status"].as_i64().unwrap_or_else(|| panic!("no status in {}", r.body));
        let output = r.body["output"].as_str().unwrap_or_default().to_string();
        self.log.push(format!("$ {cmd}   [status {status}, {:.1} s]\n{output}", t.elapsed().as_secs_f64()));
        assert_eq!(status, 0, "`{cmd}` exited {status}:\n{output}\n{}", self.context());
        output
    }

    fn json(&mut self, cmd: &str) -> Value {
        let out = self.ok(cmd);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("`{cmd}` printed no JSON ({e}):\n{out}"))
    }

    /// Powers off through the API and checks `vnvdimm run` ends with status 0.
    fn power_off(mut self) {
        let r = self.api.request("PUT", "/vm/power-off", None::<&Value>).unwrap();
        assert!(r.is_success(), "power-off: {r:?}");
        let code = self.handle.take().unwrap().join().unwrap();
        assert_eq!(code, 0, "exit status\n{}", self.context());
        println!("{}", self.log.join("\n"));
    }
}

/// The regions as (resource, size), sorted: the resource from sysfs (ndctl prints none
/// without -v), the size as ndctl reports it.
fn regions(vm: &mut Vm) -> Vec<(u64, u64)> {
    let list = vm.json("ndctl list -R");
    let list = match list {
        Value::Array(a) => a,
        one => vec![one],
    };
    let out = vm.ok("for r in /sys/bus/nd/devices/region*; do echo ${r##*/} $(cat $r/resource); done");
    let mut got: Vec<(u64, u64)> = list
        .iter()
        .map(|r| {
            let name = r["dev"].as_str().unwrap_or_default();
            let resource = out
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|h| u64::from_str_radix(h.trim().trim_start_matches("0x"), 16).ok())
                .unwrap_or_else(|| panic!("no resource for {name} in:\n{out}"));
            (resource, r["size"].as_u64().unwrap_or(0))
        })
        .collect();
    got.sort();
    got
}

#[test]
fn two_2g_dimms_with_1g_of_memory() {
    let work = Work::new("2x2g");
    let (paths, specs) = work.dimms(2, "2G");
    let windows = windows("1G", &specs);
    assert!(windows[0].start >= 4 * GIB, "{windows:x?}");
    let mut vm = boot(&work, "1G", &specs);
    let got = regions(&mut vm);
    let want: Vec<(u64, u64)> = windows.iter().map(|w| (w.start, 2 * GIB)).collect();
    assert_eq!(got, want, "regions (resource, size)\n{}", vm.context());
    // Label-less: one raw namespace per region, /dev/pmemN in region N.
    let marker = "VNV-ABOVE-4G";
    vm.ok(&format!(
        "dev=$(basename /sys/bus/nd/devices/region1/namespace1.0/block/pmem*) && \
         printf '{marker}' | dd of=/dev/$dev bs=4096 seek=262144 conv=sync,fsync 2>/dev/null"
    ));
    vm.power_off();
    let data = std::fs::read(&paths[1]).unwrap();
    let at = GIB as usize;
    assert!(
        data[at..].starts_with(marker.as_bytes()),
        "DIMM 1's file at 1 GiB: {:?}",
        String::from_utf8_lossy(&data[at..at + 16])
    );
}

#[test]
fn four_sparse_64g_dimms_fsdax_and_devdax() {
    let work = Work::new("4x64g");
    let (paths, specs) = work.dimms(4, "64G");
    let windows = windows("2G", &specs);
    let mut vm = boot(&work, "2G", &specs);
    let got = regions(&mut vm);
    let want: Vec<(u64, u64)> = windows.iter().map(|w| (w.start, 64 * GIB)).collect();
    assert_eq!(got, want, "regions (resource, size)\n{}", vm.context());
    for w in &windows {
        assert_eq!(w.start % GIB, 0, "{w:x?} not on a GiB boundary");
    }

    vm.ok("ndctl disable-region all && ndctl init-labels all && ndctl enable-region all");
    let ns = vm.json("ndctl create-namespace -r region0 -m fsdax -s 60G");
    assert_eq!(ns["mode"], "fsdax", "{ns}");
    let dev = ns["blockdev"].as_str().unwrap_or_else(|| panic!("no blockdev: {ns}")).to_string();
    // The usable size is 60 GiB less the struct pages kept on the device (map=dev).
    let size = ns["size"].as_u64().unwrap_or(0);
    assert!(size > 58 * GIB && size <= 60 * GIB, "{ns}");
    vm.ok(&format!("mkfs.ext4 -F -q -b 4096 /dev/{dev}"));
    let mounted = vm.ok(&format!(
        "mkdir -p /mnt/d && mount -t ext4 -o dax /dev/{dev} /mnt/d && grep ' /mnt/d ' /proc/mounts && \
         echo hello > /mnt/d/f && sync && df -k /mnt/d | tail -1"
    ));
    assert!(mounted.contains("dax=always") || mounted.contains(",dax"), "not a dax mount:\n{mounted}");
    let df_kib: u64 = mounted.lines().last().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(df_kib > 55 * 1024 * 1024, "file system size {df_kib} KiB:\n{mounted}");

    let dd = vm.json("ndctl create-namespace -r region3 -m devdax -a 1G");
    assert_eq!(dd["mode"], "devdax", "{dd}");
    assert_eq!(dd["align"].as_u64(), Some(GIB), "{dd}");
    let dev = &dd["daxregion"]["devices"][0];
    assert_eq!(dev["align"].as_u64(), Some(GIB), "{dd}");
    assert!(dev["size"].as_u64().unwrap_or(0) > 60 * GIB, "{dd}");
    let chardev = dev["chardev"].as_str().unwrap_or_default().to_string();
    vm.ok(&format!("test -c /dev/{chardev}"));
    vm.ok("umount /mnt/d");
    vm.power_off();

    // The guest never wrote DIMM 2: its file is still a hole (nothing read or
    // preallocated it), and no file changed size.
    let d2 = std::fs::metadata(&paths[2]).unwrap();
    assert_eq!(d2.len(), 64 * GIB);
    assert!(d2.blocks() * 512 < 1 << 20, "DIMM 2 has {} bytes allocated", d2.blocks() * 512);
    for p in &paths {
        assert_eq!(std::fs::metadata(p).unwrap().len(), 64 * GIB, "{}", p.display());
    }
}
