//! The machine's ACPI tables checked by ACPICA, the interpreter Linux itself uses:
//! every table disassembles with `iasl -d` and recompiles without a single
//! warning, the disassemblies match the golden files in `acpi/`, and `acpiexec`
//! loads the DSDT, SSDT and NFIT and evaluates the NVDIMM objects.
//!
//! Regenerate the golden files after an intended change with
//! `VNVDIMM_BLESS=1 cargo test -p vnvdimm-integration --test acpi_golden`.
//! Needs `iasl` and `acpiexec` from Debian's acpica-tools (scripts/install-deps).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nvdimm_model::PlatformConfig;
use vnvdimm_machine::{Machine, MachineConfig};

/// Tables whose disassembly is a field list ("data tables"), not AML.
const DATA_TABLES: [&str; 5] = ["XSDT", "FACP", "APIC", "NFIT", "SRAT"];
const AML_TABLES: [&str; 2] = ["DSDT", "SSDT"];
/// Every file `vnvdimm acpi dump` writes, in order.
const DUMP_FILES: [&str; 8] = ["RSDP", "XSDT", "FACP", "APIC", "DSDT", "SSDT", "NFIT", "SRAT"];

// ---------------------------------------------------------------------------
// Running ACPICA

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` not found on PATH: install acpica-tools (apt-get install acpica-tools, or scripts/install-deps)"
    );
    Command::new(name)
}

fn run(cmd: &mut Command) -> (String, String) {
    let Output { status, stdout, stderr } = cmd.output().expect("spawn ACPICA tool");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned());
    assert!(status.success(), "{cmd:?} failed with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    (stdout, stderr)
}

/// `iasl -d NAME.dat` in `dir`; returns the .dsl text and iasl's stderr.
fn disassemble(dir: &Path, name: &str) -> (String, String) {
    let (_, stderr) = run(tool("iasl").current_dir(dir).args(["-d", &format!("{name}.dat")]));
    let dsl = std::fs::read_to_string(dir.join(format!("{name}.dsl"))).expect("iasl wrote the .dsl");
    (dsl, stderr)
}

/// Compiles `NAME.dsl` in `dir` to `OUT.aml` and insists on a clean compile.
/// `-oa` turns off iasl's AML optimizations (e.g. `\_SB` shortened to `_SB`) so
/// the recompiled AML can be compared with ours.
fn compile_clean(dir: &Path, name: &str, out: &str) -> Vec<u8> {
    let (stdout, _) = run(tool("iasl").current_dir(dir).args(["-oa", "-p", out, &format!("{name}.dsl")]));
    let verdict = stdout.lines().find(|l| l.starts_with("Compilation")).unwrap_or("<no verdict line>");
    assert!(
        verdict.starts_with("Compilation successful. 0 Errors, 0 Warnings, 0 Remarks"),
        "{name}.dsl did not compile cleanly: {verdict}\n{stdout}"
    );
    std::fs::read(dir.join(format!("{out}.aml"))).expect("iasl wrote the .aml")
}

/// The line iasl prints for a table it accepted, built from the table's own header.
fn expected_acpi_line(table: &[u8]) -> String {
    let text = |r: std::ops::Range<usize>| String::from_utf8_lossy(&table[r]).into_owned();
    let u32_at = |at: usize| u32::from_le_bytes(table[at..at + 4].try_into().unwrap());
    format!(
        "ACPI: {} 0x0000000000000000 {:06X} (v{:02X} {:<6} {:<8} {:08X} {} {:08X})",
        text(0..4),
        table.len(),
        table[8],
        text(10..16),
        text(16..24),
        u32_at(24),
        text(28..32),
        u32_at(32),
    )
}

// ---------------------------------------------------------------------------
// The tables under test

fn default_machine() -> Machine {
    Machine::new(MachineConfig::default(), PlatformConfig::default_in(Path::new("."))).expect("default machine")
}

/// Runs `vnvdimm acpi dump` (the library entry point the binary calls) with `extra` options.
fn cli(args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("vnvdimm").chain(args.iter().copied());
    let code = vnvdimm::cli::run(argv, &mut out, &mut err);
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

fn dump(dir: &Path, extra: &[&str]) {
    let out = dir.to_str().unwrap();
    let mut args = vec!["acpi", "dump", "--out", out];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = cli(&args);
    assert_eq!(code, 0, "acpi dump failed: {stderr}");
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines.len(), DUMP_FILES.len(), "one line per file:\n{stdout}");
    for (line, name) in lines.iter().zip(DUMP_FILES) {
        assert!(line.contains(&format!("{name}.dat")), "{line}");
        assert!(dir.join(format!("{name}.dat")).is_file());
    }
}

/// The RSDP has no SDT header, and iasl 20200925 refuses to disassemble a raw one
/// ("Binary file does not contain a valid ACPI table"), but its data-table compiler
/// knows the RSDP. So the RSDP is rendered in iasl's field-list syntax here and
/// compiled back: iasl recomputes both checksums, and the result must equal our bytes.
fn rsdp_dsl(rsdp: &[u8]) -> String {
    assert_eq!(rsdp.len(), 36, "ACPI 2.0 RSDP");
    let hex = |r: std::ops::Range<usize>| r.rev().map(|i| format!("{:02X}", rsdp[i])).collect::<String>();
    let text = |r: std::ops::Range<usize>| format!("\"{}\"", String::from_utf8_lossy(&rsdp[r]));
    let fields = [
        (8, "Signature", text(0..8)),
        (1, "Checksum", hex(8..9)),
        (6, "Oem ID", text(9..15)),
        (1, "Revision", hex(15..16)),
        (4, "RSDT Address", hex(16..20)),
        (4, "Length", hex(20..24)),
        (8, "XSDT Address", hex(24..32)),
        (1, "Extended Checksum", hex(32..33)),
        (3, "Reserved", hex(33..36)),
    ];
    let mut dsl = String::from("/*\n * RSDP of the default vnvdimm machine, in iasl's data table syntax\n */\n");
    for (size, name, value) in fields {
        dsl += &format!("[{size:04}]{name:>35} : {value}\n");
    }
    dsl
}

/// Disassembles every table of a dump in `dir` and checks iasl's report on each.
/// Returns (name, .dsl text) in dump order, the RSDP rendered by `rsdp_dsl`.
fn disassemble_all(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rsdp = std::fs::read(dir.join("RSDP.dat")).unwrap();
    out.push(("RSDP".to_string(), rsdp_dsl(&rsdp)));
    for name in &DUMP_FILES[1..] {
        let table = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        let (dsl, report) = disassemble(dir, name);
        let mut expected = vec![
            "Binary file appears to be a valid ACPI table, disassembling".to_string(),
            format!("Input file {name}.dat, Length {:#X} ({}) bytes", table.len(), table.len()).replace("0X", "0x"),
            expected_acpi_line(&table),
        ];
        if DATA_TABLES.contains(name) {
            expected.push(format!("Acpi Data Table [{name}] decoded"));
            assert!(dsl.contains(&format!("ACPI Data Table [{name}]")), "{name}.dsl:\n{dsl}");
        } else {
            assert!(AML_TABLES.contains(name), "{name} is neither a data nor an AML table");
            expected.extend(["Parsing completed", "Disassembly completed"].map(String::from));
            assert!(dsl.contains(&format!("DefinitionBlock (\"\", \"{name}\"")), "{name}.dsl:\n{dsl}");
        }
        for line in expected {
            assert!(report.lines().any(|l| l == line), "iasl -d {name}.dat: missing line `{line}` in:\n{report}");
        }
        // iasl flags undecodable data with "****"; "Unknown UUID" comments on the Intel _DSM UUID are fine.
        for bad in ["****", "Error", "Warning", "Unknown ACPI table", "Invalid"] {
            assert!(!dsl.contains(bad), "{name}.dsl contains `{bad}`:\n{dsl}");
        }
        out.push((name.to_string(), dsl));
    }
    out
}

/// The lines of an ASL disassembly that declare named objects, in order.
fn declarations(dsl: &str) -> String {
    const KEYWORDS: [&str; 7] =
        ["DefinitionBlock (", "Scope (", "Device (", "Method (", "Name (", "OperationRegion (", "Mutex ("];
    dsl.lines().map(str::trim).filter(|l| KEYWORDS.iter().any(|k| l.starts_with(k))).map(|l| format!("{l}\n")).collect()
}

// ---------------------------------------------------------------------------
// Golden files

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../acpi")
}

/// Drops the lines of the leading comment that change with the iasl build, the
/// date and the file name; everything else (including the table header) stays.
fn strip_volatile(dsl: &str) -> String {
    let mut in_header = true;
    let mut out = String::new();
    for line in dsl.lines() {
        let volatile = [
            "Intel ACPI Component Architecture",
            "Disassembler version",
            "Compiler/Disassembler",
            "Copyright",
            "Disassembly of ",
        ]
        .iter()
        .any(|marker| line.contains(marker));
        if !(in_header && volatile) {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if line.trim_start().starts_with("*/") {
            in_header = false;
        }
    }
    out
}

/// A minimal line diff (longest common subsequence) for the failure message.
fn line_diff(want: &str, got: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out, mut shown) = (0, 0, String::new(), 0);
    while (i < a.len() || j < b.len()) && shown < 80 {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] > lcs[i + 1][j]) {
            out += &format!("+{:>4}: {}\n", j + 1, b[j]);
            j += 1;
            shown += 1;
        } else {
            out += &format!("-{:>4}: {}\n", i + 1, a[i]);
            i += 1;
            shown += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn every_table_disassembles_and_recompiles_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    dump(dir.path(), &[]);
    for (name, dsl) in disassemble_all(dir.path()) {
        let original = std::fs::read(dir.path().join(format!("{name}.dat"))).unwrap();
        let source = format!("{name}_src");
        std::fs::write(dir.path().join(format!("{source}.dsl")), &dsl).unwrap();
        let recompiled = compile_clean(dir.path(), &source, &format!("{name}_re"));
        if name == "RSDP" {
            assert_eq!(recompiled, original, "iasl's RSDP (checksums recomputed) differs from ours");
        } else if DATA_TABLES.contains(&name.as_str()) {
            // iasl stamps its own compiler id/revision (bytes 28..36), hence a new checksum (byte 9).
            assert_eq!(recompiled.len(), original.len(), "{name}");
            let differing: Vec<usize> = (0..original.len()).filter(|&i| recompiled[i] != original[i]).collect();
            assert!(differing.iter().all(|&i| i == 9 || (28..36).contains(&i)), "{name}: bytes {differing:?} changed");
            assert_eq!(recompiled.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        } else {
            // iasl may encode the same AML differently (e.g. `Store(And(a, b), a)` comes back as
            // `And(a, b, a)`), so compare what the table declares, not every expression.
            std::fs::write(dir.path().join(format!("{name}_re.dat")), &recompiled).unwrap();
            let (again, _) = disassemble(dir.path(), &format!("{name}_re"));
            let (before, after) = (declarations(&dsl), declarations(&again));
            assert!(!before.is_empty(), "{name}: no declarations found in\n{dsl}");
            assert!(before == after, "{name}: recompiled AML declares other objects:\n{}", line_diff(&before, &after));
        }
    }
}

#[test]
fn disassemblies_match_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    dump(dir.path(), &[]);
    let bless = std::env::var_os("VNVDIMM_BLESS").is_some_and(|v| v == "1");
    let golden = golden_dir();
    let mut drifted = Vec::new();
    for (name, dsl) in disassemble_all(dir.path()) {
        let fresh = strip_volatile(&dsl);
        let path = golden.join(format!("{name}.dsl"));
        if bless {
            std::fs::create_dir_all(&golden).unwrap();
            std::fs::write(&path, &fresh).unwrap();
            continue;
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; create it with VNVDIMM_BLESS=1 cargo test -p vnvdimm-integration --test acpi_golden",
                path.display()
            )
        });
        if stored != fresh {
            drifted.push(format!(
                "--- {} (stored)\n+++ fresh disassembly\n{}",
                path.display(),
                line_diff(&stored, &fresh)
            ));
        }
    }
    assert!(
        drifted.is_empty(),
        "ACPI tables drifted from the golden files. If the change is intended, rerun with VNVDIMM_BLESS=1 \
         and commit acpi/*.dsl.\n{}",
        drifted.join("\n")
    );
}

#[test]
fn golden_files_describe_the_default_machine() {
    // Guards against blessing the wrong configuration: the stored files must carry
    // the default machine's addresses.
    let machine = default_machine();
    let xsdt = std::fs::read_to_string(golden_dir().join("XSDT.dsl")).expect("acpi/XSDT.dsl");
    for sig in ["FACP", "APIC", "SSDT", "NFIT", "SRAT"] {
        let addr = format!("{:016X}", machine.acpi.get(sig).unwrap().guest_addr);
        assert!(xsdt.contains(&addr), "acpi/XSDT.dsl lacks {sig} at {addr}");
    }
    let nfit = std::fs::read_to_string(golden_dir().join("NFIT.dsl")).expect("acpi/NFIT.dsl");
    let srat = std::fs::read_to_string(golden_dir().join("SRAT.dsl")).expect("acpi/SRAT.dsl");
    for dimm in &machine.memory_map.layout.dimms {
        let base = format!("{:016X}", dimm.spa_base);
        assert!(nfit.contains(&base), "acpi/NFIT.dsl lacks SPA base {base}");
        assert!(srat.contains(&base), "acpi/SRAT.dsl lacks the window at {base}");
    }
}

#[test]
fn other_configurations_also_compile_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let nvdimms = [
        "--nvdimm=path=a.img,size=2G,flush-hints=4,handle=0x101",
        "--nvdimm=path=b.img,size=18M,label-size=0",
        "--nvdimm=path=c.img,size=1G,label-size=1K,serial=0x77",
    ];
    let mut extra = nvdimms.to_vec();
    extra.extend(["--memory", "6G", "--cpus", "4", "--persistence-domain", "memory_controller"]);
    dump(dir.path(), &extra);
    for (name, dsl) in disassemble_all(dir.path()) {
        let source = format!("{name}_src");
        std::fs::write(dir.path().join(format!("{source}.dsl")), &dsl).unwrap();
        compile_clean(dir.path(), &source, &format!("{name}_re"));
    }
    let apic = std::fs::read_to_string(dir.path().join("APIC.dsl")).unwrap();
    assert_eq!(apic.matches("Processor Local APIC").count(), 4, "{apic}");
    // As ACPICA decodes the SRAT: a CPU entry per vCPU, 2 RAM blocks (3 GiB + 3 GiB
    // above 4 GiB) and one non-volatile entry per DIMM in domains 1..=3.
    let srat = std::fs::read_to_string(dir.path().join("SRAT.dsl")).unwrap();
    let field = |name: &str| -> Vec<String> {
        srat.lines()
            .filter(|l| l.split(" : ").next().is_some_and(|f| f.trim_end().ends_with(name)))
            .map(|l| l.rsplit(" : ").next().unwrap().trim().to_string())
            .collect()
    };
    assert_eq!(srat.matches("[Processor Local APIC/SAPIC Affinity]").count(), 4, "{srat}");
    assert_eq!(field("Non-Volatile"), ["0", "0", "1", "1", "1"], "{srat}");
    assert_eq!(field("Proximity Domain"), ["00000000", "00000000", "00000001", "00000002", "00000003"], "{srat}");
}

/// Parses acpiexec's report of `evaluate PATH`: the lines after "Evaluation of PATH returned".
fn evaluation<'a>(report: &'a str, path: &str) -> &'a str {
    let marker = format!("Evaluation of {path} returned");
    let start = report.find(&marker).unwrap_or_else(|| panic!("acpiexec did not evaluate {path}:\n{report}"));
    let rest = &report[start..];
    let end = rest[marker.len()..].find("Evaluation of ").map_or(rest.len(), |e| e + marker.len());
    &rest[..end]
}

fn integer_of(evaluation: &str) -> u64 {
    let value = evaluation
        .lines()
        .find_map(|l| l.trim().strip_prefix("[Integer] = "))
        .unwrap_or_else(|| panic!("not an integer:\n{evaluation}"));
    let hex = value.split_whitespace().next().unwrap();
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad integer `{value}`"))
}

#[test]
fn acpiexec_loads_the_namespace_and_evaluates_nvdimm_objects() {
    let dir = tempfile::tempdir().unwrap();
    dump(dir.path(), &[]);
    let platform = PlatformConfig::default_in(Path::new("."));
    let root = "\\_SB.NVDR";
    let dimm_path = |i: usize| format!("{root}.{}", nvdimm_model::aml::dimm_device_name(i));

    let mut commands = vec!["methods".to_string()];
    let mut evaluated = vec![format!("{root}._HID"), format!("{root}._STA")];
    for i in 0..platform.dimms.len() {
        evaluated.extend([format!("{}._ADR", dimm_path(i)), format!("{}._STA", dimm_path(i))]);
    }
    commands.extend(evaluated.iter().map(|p| format!("evaluate {p}")));
    let (report, stderr) = run(tool("acpiexec").current_dir(dir.path()).args([
        "-b",
        &commands.join("; "),
        "DSDT.dat",
        "SSDT.dat",
        "NFIT.dat",
    ]));
    let all = format!("{report}\n{stderr}");
    for bad in ["ACPI Error", "ACPI Exception", "AE_"] {
        let hits: Vec<_> = all.lines().filter(|l| l.contains(bad) && !l.contains("AE_OK")).collect();
        assert!(hits.is_empty(), "acpiexec reported `{bad}`: {hits:#?}\n{all}");
    }
    assert!(all.contains("ACPI: 2 ACPI AML tables successfully acquired and loaded"), "{all}");
    for sig in ["DSDT", "SSDT", "NFIT"] {
        assert!(all.lines().any(|l| l.starts_with(&format!("ACPI: {sig} 0x"))), "acpiexec did not take {sig}:\n{all}");
    }

    let methods: BTreeSet<&str> =
        report.lines().filter_map(|l| l.split_whitespace().next()).filter(|t| t.starts_with('\\')).collect();
    let mut want = vec![format!("{root}._DSM"), format!("{root}._STA")];
    for (i, dimm) in platform.dimms.iter().enumerate() {
        want.extend([format!("{}._DSM", dimm_path(i)), format!("{}._STA", dimm_path(i))]);
        if dimm.label_size != 0 {
            want.extend(["_LSI", "_LSR", "_LSW"].map(|m| format!("{}.{m}", dimm_path(i))));
        }
    }
    for method in &want {
        assert!(methods.contains(method.as_str()), "method {method} missing; acpiexec listed {methods:#?}");
    }

    let hid = evaluation(&report, &format!("{root}._HID"));
    assert!(hid.lines().any(|l| l.trim() == "[String] Length 08 = \"ACPI0012\""), "{hid}");
    assert_eq!(integer_of(evaluation(&report, &format!("{root}._STA"))), 0x0F);
    for (i, dimm) in platform.dimms.iter().enumerate() {
        assert_eq!(integer_of(evaluation(&report, &format!("{}._ADR", dimm_path(i)))), u64::from(dimm.handle));
        assert_eq!(integer_of(evaluation(&report, &format!("{}._STA", dimm_path(i)))), 0x0F);
    }
}

#[test]
fn acpi_dump_refuses_bad_options_and_writes_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("never");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--nvdimm", "path=a.img"], "--nvdimm"),
        (&["--nvdimm", "path=a.img,size=1G,colour=red"], "--nvdimm"),
        (&["--persistence-domain", "battery"], "--persistence-domain"),
        (&["--nvdimm", "path=a.img,size=1G", "--persistence-domain", "battery"], "--persistence-domain"),
        (&["--memory", "12Q"], "--memory"),
        (&["--cpus", "0"], "--cpus"),
    ];
    for (extra, option) in cases {
        let mut args = vec!["acpi", "dump", "--out", out];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = cli(&args);
        assert_eq!(code, 2, "{extra:?}: exit code; stderr: {stderr}");
        assert!(stderr.contains(option), "{extra:?}: message must name {option}: {stderr}");
        assert!(stdout.is_empty(), "{extra:?}: printed {stdout}");
        assert!(!Path::new(out).exists(), "{extra:?}: created {out}");
    }
}

#[test]
fn acpi_dump_is_byte_identical_run_to_run_and_matches_the_library() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    dump(a.path(), &[]);
    dump(b.path(), &[]);
    let machine = default_machine();
    for (file, _, bytes) in machine.acpi.dump_files() {
        let first = std::fs::read(a.path().join(&file)).unwrap();
        assert_eq!(first, std::fs::read(b.path().join(&file)).unwrap(), "{file} differs between runs");
        assert_eq!(first, bytes, "{file} differs from vnvdimm_machine's tables");
    }
}
