//! Builds the bare-metal guest programs in firmware/ into flat binaries with the
//! machine's gcc (preprocess + assemble) and objcopy. Only gcc and binutils are
//! needed, which every CI machine building this crate has.

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: [&str; 10] = ["acpi_nfit", "dsm", "pattern", "flush", "poison", "bench", "exit0", "idle", "agent_uart", "pvpanic"];
/// Where the VMM loads every program (crates/selftest/src/bare_metal.rs LOAD_ADDR).
const LOAD_ADDR: &str = "0x100000";

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}; install gcc and binutils"));
    assert!(status.success(), "{cmd:?} failed with {status}");
}

fn main() {
    let firmware = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../firmware");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", firmware.display());
    for name in PROGRAMS {
        let src = firmware.join(format!("{name}.S"));
        let obj = out.join(format!("{name}.o"));
        let elf = out.join(format!("{name}.elf"));
        let bin = out.join(format!("{name}.bin"));
        println!("cargo:rerun-if-changed={}", src.display());
        run(Command::new("gcc")
            .args(["-c", "-nostdlib", "-ffreestanding", "-I"])
            .arg(firmware.join("include"))
            .arg("-o")
            .arg(&obj)
            .arg(&src));
        run(Command::new("ld")
            .args(["-nostdlib", "-static", "--no-dynamic-linker", "-e", "_start", "-Ttext", LOAD_ADDR, "-o"])
            .arg(&elf)
            .arg(&obj));
        run(Command::new("objcopy").args(["-O", "binary", "-j", ".text"]).arg(&elf).arg(&bin));
    }
}
