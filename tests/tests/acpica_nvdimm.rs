//! The NFIT and the NVDIMM SSDT checked by ACPICA, the interpreter Linux itself uses:
//! `iasl` disassembles and recompiles both tables, `acpiexec` loads the SSDT and runs its
//! methods. A test table ("harness", ASL below) drives the `_DSM` transport inside
//! acpiexec: with the doorbell placed on the completion word, ringing the doorbell
//! completes the call at once, so the success path runs without a host.
//!
//! Needs `iasl` and `acpiexec` (Debian package acpica-tools); fails if they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use nvdimm_model::aml::{build_ssdt_with, SsdtOptions};
use nvdimm_model::config::MIB;
use nvdimm_model::mailbox;
use nvdimm_model::{nfit, PlatformConfig, PlatformLayout};

const MAILBOX: u64 = 0x7000_0000;
/// acpiexec simulates SystemMemory regions with zero-filled RAM: a call can only time out.
const SHORT_POLL: u32 = 3;

fn workdir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("acpica_nvdimm")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test directory");
    dir
}

/// Runs an ACPICA tool in `dir`, returning stdout and stderr together.
fn run(dir: &Path, tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{tool}` ({e}): install acpica-tools (apt-get install -y acpica-tools)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`{tool} {}` failed:\n{text}",
        args.join(" ")
    );
    text
}

/// The default two-DIMM platform; `doorbell` is where the AML rings.
fn platform(dir: &Path, doorbell: u64) -> (PlatformConfig, PlatformLayout) {
    let config = PlatformConfig::default_in(dir);
    let layout = PlatformLayout::packed(
        &config,
        0x1_0000_0000,
        2 * MIB,
        0xfe00_0000,
        MAILBOX,
        doorbell,
    );
    layout.validate(&config).expect("test layout is valid");
    (config, layout)
}

fn write_ssdt(dir: &Path, doorbell: u64, poll_limit: u32) -> PlatformConfig {
    let (config, layout) = platform(dir, doorbell);
    let options = SsdtOptions {
        poll_limit,
        ..SsdtOptions::default()
    };
    std::fs::write(
        dir.join("ssdt.aml"),
        build_ssdt_with(&config, &layout, &options),
    )
    .unwrap();
    config
}

/// Output of `acpiexec -b COMMANDS` over the given tables, checked for interpreter errors.
fn acpiexec(dir: &Path, commands: &str, tables: &[&str]) -> String {
    let mut args = vec!["-b", commands];
    args.extend_from_slice(tables);
    let out = run(dir, "acpiexec", &args);
    for bad in [
        "ACPI Error",
        "ACPI Exception",
        "failed with status",
        "ACPI Warning",
    ] {
        assert!(!out.contains(bad), "acpiexec reported `{bad}`:\n{out}");
    }
    out
}

/// The text acpiexec prints for the object returned by `Evaluate path`.
fn evaluation<'a>(out: &'a str, path: &str) -> &'a str {
    let start = out
        .find(&format!("Evaluating {path}\n"))
        .unwrap_or_else(|| panic!("{path} was not evaluated:\n{out}"));
    let rest = &out[start..];
    let end = rest[1..]
        .find("\nEvaluating ")
        .map_or(rest.len(), |at| at + 1);
    &rest[..end]
}

/// The bytes of a Buffer in acpiexec's hex dump ("    0010: 79 D3 ...  // text").
fn dumped_bytes(evaluation: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in evaluation.lines() {
        let Some((offset, rest)) = line.trim_start().split_once(": ") else {
            continue;
        };
        if offset.len() != 4 || u16::from_str_radix(offset, 16).is_err() {
            continue;
        }
        let hex = rest.split("//").next().unwrap_or_default();
        bytes.extend(
            hex.split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).expect("hex byte")),
        );
    }
    bytes
}

fn uuid_arg(uuid: &[u8; 16]) -> String {
    let bytes: Vec<String> = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!("({})", bytes.join(" "))
}

#[test]
fn ssdt_disassembles_and_recompiles_without_errors_or_warnings() {
    let dir = workdir("ssdt_iasl");
    write_ssdt(
        &dir,
        MAILBOX + mailbox::DOORBELL_SLOT as u64,
        mailbox::AML_POLL_LIMIT,
    );
    run(&dir, "iasl", &["-d", "ssdt.aml"]);
    let dsl = std::fs::read_to_string(dir.join("ssdt.dsl")).unwrap();
    for needle in [
        "Device (NVDR)",
        "Method (NCAL, 5, Serialized)",
        "Stall (0x0A)",
        "Device (NV01)",
        "_LSW",
    ] {
        assert!(dsl.contains(needle), "disassembly lacks `{needle}`");
    }
    let compiled = run(&dir, "iasl", &["ssdt.dsl"]);
    assert!(
        compiled.contains("0 Errors, 0 Warnings"),
        "iasl recompile:\n{compiled}"
    );
}

#[test]
fn the_tcg_kick_port_is_written_right_after_the_doorbell() {
    let dir = workdir("ssdt_kick");
    let (config, layout) = platform(&dir, MAILBOX + mailbox::DOORBELL_SLOT as u64);
    let options = SsdtOptions { kick_port: Some(0x0a28), ..SsdtOptions::default() };
    std::fs::write(dir.join("ssdt.aml"), build_ssdt_with(&config, &layout, &options)).unwrap();
    run(&dir, "iasl", &["-d", "ssdt.aml"]);
    let dsl = std::fs::read_to_string(dir.join("ssdt.dsl")).unwrap();
    assert!(dsl.contains("OperationRegion (NKIK, SystemIO, 0x0A28, One)"), "{dsl}");
    let ring = dsl.find("DBEL = SEQN").expect("doorbell store");
    let kick = dsl.find("KICK = One").expect("kick store");
    let wait = dsl.find("While (").expect("completion loop");
    assert!(ring < kick && kick < wait, "the kick must follow the doorbell and precede the wait:\n{dsl}");
    let compiled = run(&dir, "iasl", &["ssdt.dsl"]);
    assert!(compiled.contains("0 Errors, 0 Warnings"), "iasl recompile:\n{compiled}");
    // Calls still complete through the mailbox with the kick in place.
    std::fs::write(dir.join("harness.asl"), HARNESS).unwrap();
    assert!(run(&dir, "iasl", &["harness.asl"]).contains("0 Errors"));
    let doorbell_on_completion = platform(&dir, MAILBOX + mailbox::COMPLETION as u64);
    let (config, layout) = doorbell_on_completion;
    let options = SsdtOptions { kick_port: Some(0x0a28), poll_limit: SHORT_POLL, ..SsdtOptions::default() };
    std::fs::write(dir.join("ssdt.aml"), build_ssdt_with(&config, &layout, &options)).unwrap();
    let out = acpiexec(&dir, "Evaluate \\HDSM", &["ssdt.aml", "harness.aml"]);
    assert!(evaluation(&out, "\\HDSM").contains("[Buffer] Length 05 =     0000: AA BB CC DD EE"), "{out}");
}

#[test]
fn nfit_disassembles_and_recompiles_to_the_same_bytes() {
    let dir = workdir("nfit_iasl");
    let (config, layout) = platform(&dir, MAILBOX + mailbox::DOORBELL_SLOT as u64);
    let table = nfit::build(&config, &layout);
    std::fs::write(dir.join("nfit.dat"), &table).unwrap();
    run(&dir, "iasl", &["-d", "nfit.dat"]);
    let dsl = std::fs::read_to_string(dir.join("nfit.dsl")).unwrap();
    assert_eq!(dsl.matches("[System Physical Address Range]").count(), 2);
    assert_eq!(dsl.matches("[NVDIMM Control Region]").count(), 2);
    assert_eq!(dsl.matches("[Platform Capabilities]").count(), 1);
    let compiled = run(&dir, "iasl", &["nfit.dsl"]);
    assert!(
        compiled.contains("0 Errors, 0 Warnings"),
        "iasl recompile:\n{compiled}"
    );
    let again = std::fs::read(dir.join("nfit.aml")).unwrap();
    assert_eq!(again.len(), table.len());
    // iasl writes its own checksum (byte 9) and compiler id/revision (28..36).
    let differing: Vec<usize> = (0..table.len()).filter(|&i| again[i] != table[i]).collect();
    assert!(
        differing.iter().all(|&i| i == 9 || (28..36).contains(&i)),
        "bytes differ at {differing:?}"
    );
}

#[test]
fn acpiexec_lists_every_method_and_evaluates_identity_objects() {
    let dir = workdir("acpiexec_identity");
    let config = write_ssdt(&dir, MAILBOX + mailbox::DOORBELL_SLOT as u64, SHORT_POLL);
    let (_, layout) = platform(&dir, MAILBOX + mailbox::DOORBELL_SLOT as u64);
    let mut commands = vec![
        "Methods".to_string(),
        "Evaluate \\_SB.NVDR._STA".into(),
        "Evaluate \\_SB.NVDR._HID".into(),
        "Evaluate \\_SB.NVDR._FIT".into(),
    ];
    for i in 0..config.dimms.len() {
        commands.push(format!("Evaluate \\_SB.NVDR.NV{i:02X}._ADR"));
        commands.push(format!("Evaluate \\_SB.NVDR.NV{i:02X}._STA"));
    }
    let out = acpiexec(&dir, &commands.join("; "), &["ssdt.aml"]);
    let mut methods = vec![
        "\\_SB.NVDR._STA".to_string(),
        "\\_SB.NVDR._DSM".into(),
        "\\_SB.NVDR._FIT".into(),
        "\\_SB.NVDR.NCAL".into(),
        "\\_SB.NVDR.NEVT".into(),
    ];
    for i in 0..config.dimms.len() {
        for m in ["_STA", "_DSM", "_LSI", "_LSR", "_LSW"] {
            methods.push(format!("\\_SB.NVDR.NV{i:02X}.{m}"));
        }
    }
    for m in &methods {
        assert!(
            out.contains(&format!("{m} Method")),
            "method {m} not listed:\n{out}"
        );
    }
    assert!(evaluation(&out, "\\_SB.NVDR._STA").contains("[Integer] = 000000000000000F"));
    assert!(evaluation(&out, "\\_SB.NVDR._HID").contains("\"ACPI0012\""));
    // Linux prefers _FIT over the NFIT: both must describe the same platform.
    let fit = dumped_bytes(evaluation(&out, "\\_SB.NVDR._FIT"));
    assert_eq!(fit, nfit::structures(&config, &layout));
    for (i, dimm) in config.dimms.iter().enumerate() {
        let adr = evaluation(&out, &format!("\\_SB.NVDR.NV{i:02X}._ADR"));
        assert!(
            adr.contains(&format!("[Integer] = {:016X}", dimm.handle)),
            "{adr}"
        );
        assert!(
            evaluation(&out, &format!("\\_SB.NVDR.NV{i:02X}._STA")).contains("000000000000000F")
        );
    }
}

#[test]
fn unanswered_calls_time_out_with_hardware_error_status() {
    let dir = workdir("acpiexec_timeout");
    write_ssdt(&dir, MAILBOX + mailbox::DOORBELL_SLOT as u64, SHORT_POLL);
    let root_uuid = uuid_arg(&nvdimm_model::dsm::ROOT_UUID);
    // acpiexec drops an empty Package argument, so Arg3 is a Package without a Buffer.
    let commands = format!(
        "Evaluate \\_SB.NVDR._DSM {root_uuid} 1 0 [0]; Evaluate \\_SB.NVDR.NV00._LSI; Evaluate \\_SB.NVDR.NV00._LSR 0 128; \
         Evaluate \\_SB.NVDR.NV00._LSW 0 2 (01 02)"
    );
    let out = acpiexec(&dir, &commands, &["ssdt.aml"]);
    assert!(
        evaluation(&out, "\\_SB.NVDR._DSM").contains("[Buffer] Length 04 =     0000: 04 00 00 00"),
        "{out}"
    );
    let lsi = evaluation(&out, "\\_SB.NVDR.NV00._LSI");
    assert!(
        lsi.contains("Contains 3 Elements") && lsi.contains("[Integer] = 0000000000000001"),
        "{lsi}"
    );
    let lsw = evaluation(&out, "\\_SB.NVDR.NV00._LSW");
    assert!(lsw.contains("[Integer] = 0000000000000001"), "{lsw}");
    let lsr = evaluation(&out, "\\_SB.NVDR.NV00._LSR");
    assert!(
        lsr.contains("Contains 2 Elements") && lsr.contains("[Buffer] Length 00"),
        "{lsr}"
    );
}

/// Presets answers in the mailbox, calls the methods and shows what NCAL wrote.
const HARNESS: &str = r#"DefinitionBlock ("", "SSDT", 2, "VNVDMM", "HARNESS", 1)
{
    External (\_SB.NVDR.OLEN, FieldUnitObj)
    External (\_SB.NVDR.OBUF, FieldUnitObj)
    External (\_SB.NVDR.HDLE, FieldUnitObj)
    External (\_SB.NVDR.REVN, FieldUnitObj)
    External (\_SB.NVDR.FUNC, FieldUnitObj)
    External (\_SB.NVDR.ILEN, FieldUnitObj)
    External (\_SB.NVDR.UUID, FieldUnitObj)
    External (\_SB.NVDR.IBUF, FieldUnitObj)
    External (\_SB.NVDR.CMPL, FieldUnitObj)
    External (\_SB.NVDR.FITR, FieldUnitObj)
    External (\_SB.NVDR.ERRR, FieldUnitObj)
    External (\_SB.NVDR.HR01, FieldUnitObj)
    External (\_SB.NVDR.FITS, FieldUnitObj)
    External (\_SB.NVDR.ERRS, FieldUnitObj)
    External (\_SB.NVDR.HS00, FieldUnitObj)
    External (\_SB.NVDR.HS01, FieldUnitObj)
    External (\_SB.NVDR.SEQN, IntObj)
    External (\_SB.NVDR.NEVT, MethodObj)
    External (\_SB.NVDR._DSM, MethodObj)
    External (\_SB.NVDR.NV01._DSM, MethodObj)
    External (\_SB.NVDR.NV01._LSI, MethodObj)
    External (\_SB.NVDR.NV01._LSR, MethodObj)
    External (\_SB.NVDR.NV01._LSW, MethodObj)

    Method (SHOW, 0, Serialized)
    {
        Debug = Concatenate ("HDLE=", ToHexString (\_SB.NVDR.HDLE))
        Debug = Concatenate ("REVN=", ToHexString (\_SB.NVDR.REVN))
        Debug = Concatenate ("FUNC=", ToHexString (\_SB.NVDR.FUNC))
        Debug = Concatenate ("ILEN=", ToHexString (\_SB.NVDR.ILEN))
        Debug = Concatenate ("SEQN=", ToHexString (\_SB.NVDR.SEQN))
        Debug = Concatenate ("UUID=", ToHexString (\_SB.NVDR.UUID))
        Debug = Concatenate ("IBUF=", ToHexString (Mid (\_SB.NVDR.IBUF, 0, 12)))
    }

    Method (HDSM, 0, Serialized)
    {
        \_SB.NVDR.OLEN = 5
        \_SB.NVDR.OBUF = Buffer () {0xAA, 0xBB, 0xCC, 0xDD, 0xEE}
        Local0 = \_SB.NVDR.NV01._DSM (ToUUID ("4309ac30-0d11-11e4-9191-0800200c9a66"), 2, 9, Package () {Buffer () {1, 2, 3}})
        SHOW ()
        Return (Local0)
    }

    Method (HSTL, 0, Serialized)
    {
        \_SB.NVDR.CMPL = 1
        \_SB.NVDR.OLEN = 1
        \_SB.NVDR.OBUF = Buffer () {0x77}
        Local0 = \_SB.NVDR._DSM (ToUUID ("2f10e7a4-9e91-11e4-89d3-123b93f75cba"), 1, 0, Package () {})
        SHOW ()
        Return (Local0)
    }

    Method (HKEP, 0, Serialized)
    {
        \_SB.NVDR.CMPL = 0x1234
        Local0 = \_SB.NVDR._DSM (ToUUID ("2f10e7a4-9e91-11e4-89d3-123b93f75cba"), 1, 0, Package () {})
        Debug = Concatenate ("CMPL=", ToHexString (\_SB.NVDR.CMPL))
        SHOW ()
        Return (Local0)
    }

    Method (HBIG, 0, Serialized)
    {
        \_SB.NVDR.OLEN = 0x2000
        Local0 = \_SB.NVDR._DSM (ToUUID ("2f10e7a4-9e91-11e4-89d3-123b93f75cba"), 1, 3, Package () {})
        SHOW ()
        Return (SizeOf (Local0))
    }

    Method (HLSI, 0, Serialized)
    {
        \_SB.NVDR.OLEN = 12
        \_SB.NVDR.OBUF = Buffer () {0, 0, 0, 0, 0, 0, 2, 0, 0xEC, 0x0F, 0, 0}
        Local0 = \_SB.NVDR.NV01._LSI ()
        SHOW ()
        Return (Local0)
    }

    Method (HLSR, 0, Serialized)
    {
        \_SB.NVDR.OLEN = 7
        \_SB.NVDR.OBUF = Buffer () {0, 0, 0, 0, 0x11, 0x22, 0x33}
        Local0 = \_SB.NVDR.NV01._LSR (0x100, 3)
        SHOW ()
        Return (Local0)
    }

    Method (HLSW, 0, Serialized)
    {
        \_SB.NVDR.OLEN = 4
        \_SB.NVDR.OBUF = Buffer () {3, 0, 0, 0}
        Local0 = \_SB.NVDR.NV01._LSW (0x80, 2, Buffer () {0x5A, 0xA5})
        SHOW ()
        Return (Local0)
    }

    Method (PATN, 1, Serialized)
    {
        Local0 = Buffer (Arg0) {}
        Local1 = 0
        While (Local1 < Arg0)
        {
            Local0 [Local1] = (((Local1 * 7) + 1) & 0xFF)
            Local1++
        }
        Return (Local0)
    }

    // One call with Arg0 bytes of input and of output: "ok", or what differed.
    Method (HTIO, 1, Serialized)
    {
        Local2 = PATN (0x1000)
        \_SB.NVDR.OBUF = Local2
        \_SB.NVDR.OLEN = Arg0
        Local3 = PATN (Arg0)
        Local3 [0] = 0xC3
        Local4 = Package (1) {}
        Local4 [0] = Local3
        Local0 = \_SB.NVDR._DSM (ToUUID ("2f10e7a4-9e91-11e4-89d3-123b93f75cba"), 1, 3, Local4)
        If (SizeOf (Local0) != Arg0) { Return ("output length") }
        If (Local0 != Mid (Local2, 0, Arg0)) { Return ("output bytes") }
        If (\_SB.NVDR.ILEN != Arg0) { Return ("ILEN") }
        If (Mid (\_SB.NVDR.IBUF, 0, Arg0) != Local3) { Return ("input bytes") }
        Return ("ok")
    }

    // Lengths on both sides of every buffer tier.
    Method (HTIR, 0, Serialized)
    {
        Local0 = Package () {1, 63, 64, 65, 255, 256, 257, 4095, 4096}
        Local1 = 0
        Local2 = ""
        While (Local1 < SizeOf (Local0))
        {
            Local3 = DerefOf (Local0 [Local1])
            Local2 = Concatenate (Local2, Concatenate (ToDecimalString (Local3), Concatenate (":", Concatenate (HTIO (Local3), " "))))
            Local1++
        }
        Return (Local2)
    }

    // The host raised root 0x80 once, root 0x81 twice and DIMM 1's health once; the
    // second NEVT must notify nothing more.
    Method (HEVT, 0, Serialized)
    {
        \_SB.NVDR.FITR = 1
        \_SB.NVDR.ERRR = 2
        \_SB.NVDR.HR01 = 1
        \_SB.NVDR.NEVT ()
        Debug = "second NEVT"
        \_SB.NVDR.NEVT ()
        Return (Package () {\_SB.NVDR.FITS, \_SB.NVDR.ERRS, \_SB.NVDR.HS00, \_SB.NVDR.HS01})
    }
}
"#;

/// Builds the SSDT with the doorbell on the completion word (calls complete at once)
/// and compiles the harness.
fn harness_dir(test: &str) -> PathBuf {
    harness_dir_with_doorbell(test, MAILBOX + mailbox::COMPLETION as u64)
}

fn harness_dir_with_doorbell(test: &str, doorbell: u64) -> PathBuf {
    let dir = workdir(test);
    write_ssdt(&dir, doorbell, SHORT_POLL);
    std::fs::write(dir.join("harness.asl"), HARNESS).unwrap();
    let compiled = run(&dir, "iasl", &["harness.asl"]);
    assert!(compiled.contains("0 Errors"), "{compiled}");
    dir
}

/// How `ToHexString` shows an Integer in acpiexec's Debug output.
fn int_debug(key: &str, value: u64) -> String {
    format!("{key}={value:016X}")
}

fn debug_line<'a>(out: &'a str, key: &str) -> &'a str {
    let at = out
        .find(&format!("\"{key}="))
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"));
    out[at..].lines().next().unwrap_or_default()
}

#[test]
fn dimm_dsm_writes_the_request_and_returns_the_host_output() {
    let dir = harness_dir("harness_dsm");
    let out = acpiexec(&dir, "Evaluate \\HDSM", &["ssdt.aml", "harness.aml"]);
    let result = evaluation(&out, "\\HDSM");
    assert!(
        result.contains("[Buffer] Length 05 =     0000: AA BB CC DD EE"),
        "{result}"
    );
    assert!(
        debug_line(result, "HDLE").contains(&int_debug("HDLE", 0x11)),
        "{result}"
    );
    assert!(
        debug_line(result, "REVN").contains(&int_debug("REVN", 0x2)),
        "{result}"
    );
    assert!(
        debug_line(result, "FUNC").contains(&int_debug("FUNC", 0x9)),
        "{result}"
    );
    assert!(
        debug_line(result, "ILEN").contains(&int_debug("ILEN", 0x3)),
        "{result}"
    );
    assert!(
        debug_line(result, "SEQN").contains(&int_debug("SEQN", 0x1)),
        "{result}"
    );
    let uuid: Vec<String> = nvdimm_model::dsm::INTEL_UUID
        .iter()
        .map(|b| format!("0x{b:02X}"))
        .collect();
    assert!(
        debug_line(result, "UUID").contains(&uuid.join(",")),
        "{result}"
    );
    assert!(
        debug_line(result, "IBUF").contains("0x01,0x02,0x03,0x00"),
        "{result}"
    );
}

#[test]
fn a_stale_completion_word_is_skipped_by_the_sequence_number() {
    let dir = harness_dir("harness_stale");
    let out = acpiexec(&dir, "Evaluate \\HSTL", &["ssdt.aml", "harness.aml"]);
    let result = evaluation(&out, "\\HSTL");
    // SEQN 1 would equal the leftover completion 1, so the call uses 2.
    assert!(
        debug_line(result, "SEQN").contains(&int_debug("SEQN", 2)),
        "{result}"
    );
    assert!(
        result.contains("[Buffer] Length 01 =     0000: 77"),
        "{result}"
    );
}

#[test]
fn the_completion_word_is_left_to_the_host() {
    // A polling host serves whenever doorbell != completion: if the AML cleared the
    // completion word, the host would serve one request twice.
    let dir = harness_dir_with_doorbell("harness_keep", MAILBOX + mailbox::DOORBELL_SLOT as u64);
    let out = acpiexec(&dir, "Evaluate \\HKEP", &["ssdt.aml", "harness.aml"]);
    let result = evaluation(&out, "\\HKEP");
    assert!(
        debug_line(result, "CMPL").contains(&int_debug("CMPL", 0x1234)),
        "{result}"
    );
    assert!(
        result.contains("[Buffer] Length 04 =     0000: 04 00 00 00"),
        "{result}"
    );
}

#[test]
fn oversized_output_length_is_clamped_and_empty_input_is_not_copied() {
    let dir = harness_dir("harness_clamp");
    let out = acpiexec(&dir, "Evaluate \\HBIG", &["ssdt.aml", "harness.aml"]);
    let result = evaluation(&out, "\\HBIG");
    assert!(
        result.contains(&format!("[Integer] = {:016X}", mailbox::MAX_OUTPUT)),
        "{result}"
    );
    assert!(
        debug_line(result, "HDLE").contains(&int_debug("HDLE", 0x0)),
        "{result}"
    );
    assert!(
        debug_line(result, "ILEN").contains(&int_debug("ILEN", 0x0)),
        "{result}"
    );
}

#[test]
fn label_methods_use_intel_functions_and_return_linux_shapes() {
    let dir = harness_dir("harness_labels");
    let out = acpiexec(
        &dir,
        "Evaluate \\HLSI; Evaluate \\HLSR; Evaluate \\HLSW",
        &["ssdt.aml", "harness.aml"],
    );

    let lsi = evaluation(&out, "\\HLSI");
    assert!(
        debug_line(lsi, "FUNC").contains(&int_debug("FUNC", 0x4)),
        "{lsi}"
    );
    assert!(
        debug_line(lsi, "REVN").contains(&int_debug("REVN", 0x1)),
        "{lsi}"
    );
    let want = ["0000000000000000", "0000000000020000", "0000000000000FEC"]
        .map(|v| format!("[Integer] = {v}"));
    assert!(
        lsi.contains("Contains 3 Elements") && want.iter().all(|w| lsi.contains(w.as_str())),
        "{lsi}"
    );

    let lsr = evaluation(&out, "\\HLSR");
    assert!(
        debug_line(lsr, "FUNC").contains(&int_debug("FUNC", 0x5)),
        "{lsr}"
    );
    assert!(
        debug_line(lsr, "IBUF").contains("0x00,0x01,0x00,0x00,0x03,0x00,0x00,0x00"),
        "{lsr}"
    );
    assert!(
        lsr.contains("Contains 2 Elements") && lsr.contains("[Integer] = 0000000000000000"),
        "{lsr}"
    );
    assert!(
        lsr.contains("[Buffer] Length 03 =     0000: 11 22 33"),
        "{lsr}"
    );

    let lsw = evaluation(&out, "\\HLSW");
    assert!(
        debug_line(lsw, "FUNC").contains(&int_debug("FUNC", 0x6)),
        "{lsw}"
    );
    assert!(
        debug_line(lsw, "ILEN").contains(&int_debug("ILEN", 0xA)),
        "{lsw}"
    );
    assert!(
        debug_line(lsw, "IBUF").contains("0x80,0x00,0x00,0x00,0x02,0x00,0x00,0x00,0x5A,0xA5"),
        "{lsw}"
    );
    // Intel status 3 (invalid input) becomes _LSW status 2.
    assert!(lsw.contains("[Integer] = 0000000000000002"), "{lsw}");
}

#[test]
fn inputs_and_outputs_cross_every_buffer_tier_intact() {
    // NCAL copies through the smallest of several overlapping buffer fields
    // (aml::INPUT_TIERS / OUTPUT_TIERS); a length one byte either side of each tier
    // must still move every byte.
    let dir = harness_dir("harness_tiers");
    let out = acpiexec(&dir, "Evaluate \\HTIR", &["ssdt.aml", "harness.aml"]);
    let result = evaluation(&out, "\\HTIR");
    for tier in nvdimm_model::aml::INPUT_TIERS.iter().chain(&nvdimm_model::aml::OUTPUT_TIERS) {
        assert!(result.contains(&format!(" {}:ok", tier.1)) || result.contains(&format!("\"{}:ok", tier.1)), "tier {tier:?} untested: {result}");
    }
    let want = "1:ok 63:ok 64:ok 65:ok 255:ok 256:ok 257:ok 4095:ok 4096:ok";
    assert!(result.contains(want), "{result}");
}

#[test]
fn nevt_notifies_once_per_raised_counter_and_records_what_it_saw() {
    let dir = harness_dir("harness_nevt");
    let out = acpiexec(&dir, "Evaluate \\HEVT", &["ssdt.aml", "harness.aml"]);
    let result = evaluation(&out, "\\HEVT");
    assert!(result.contains("Contains 4 Elements"), "{result}");
    for seen in ["[Integer] = 0000000000000001", "[Integer] = 0000000000000002", "[Integer] = 0000000000000000"] {
        assert!(result.contains(seen), "seen counters (FITS 1, ERRS 2, HS00 0, HS01 1): {result}");
    }
    // acpiexec runs Notify handlers deferred, so their lines do not interleave with the
    // Debug output in order; over both NEVT calls each raised counter notifies once.
    let notifies = |device: &str, value: &str| {
        out.lines()
            .filter(|l| l.contains("Notify") && l.contains(&format!("[{device}]")) && l.contains(value))
            .count()
    };
    for (device, value) in [("NVDR", "0x80"), ("NVDR", "0x81"), ("NV01", "0x81")] {
        assert_eq!(notifies(device, value), 1, "Notify({device}, {value}) once over two NEVT calls:\n{out}");
    }
    assert_eq!(notifies("NV00", "0x81"), 0, "DIMM 0 was never raised:\n{out}");
}
