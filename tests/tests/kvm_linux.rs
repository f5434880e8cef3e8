//! Real Linux under KVM: the default guest image (Debian's kernel, images/build-guest.sh)
//! booted with `vnvdimm run --backend kvm` on two file-backed NVDIMMs, and `ndctl list`
//! in the guest must show both DIMMs and their regions.
//!
//! It runs where Linux can run under KVM (`vnvdimm_integration::kvm_host`): directly on
//! a host with VMX/SVM, else inside the nested host (docs/nested-host.md). The always-on
//! test below checks that the capability check's verdict agrees with the host's CPU.
//!
//! Every end-to-end scenario under KVM is in tests/scenarios_kvm.rs (the same code as
//! tests/scenarios_tcg.rs, `--backend kvm`).

use vnvdimm_integration::kvm_linux_test;

use vnvdimm_vmm::kvm_check::{self, CpuVirtualization};

const GIB: u64 = 1 << 30;

#[test]
fn capability_verdict_matches_the_host() {
    let virt = CpuVirtualization::from_host();
    match kvm_check::probe() {
        Err(e) => {
            // No usable /dev/kvm at all: then the refusal must say so too.
            let refusal = kvm_check::check()
                .expect_err("check cannot pass where probe fails")
                .to_string();
            eprintln!("KVM unusable on this host ({e}); refusal: {refusal}");
            assert!(!refusal.is_empty());
        }
        Ok(caps) => {
            eprintln!(
                "capability check: CPU virtualization {virt}, exception probe: {}, can run Linux: {}",
                caps.exceptions,
                caps.can_run_linux()
            );
            assert_eq!(caps.cpu_virtualization, virt);
            assert_eq!(
                caps.can_run_linux(),
                virt.present(),
                "the probe's verdict ({}) disagrees with the CPU's virtualization flags ({virt})",
                caps.exceptions
            );
            if !caps.can_run_linux() {
                let msg = kvm_check::check()
                    .expect_err("check must refuse")
                    .to_string();
                assert!(
                    msg.contains("--backend tcg"),
                    "the refusal must point to --backend tcg: {msg}"
                );
                eprintln!("kvm_linux scenarios: NOT RUN on this host: {msg}");
            }
        }
    }
}

kvm_linux_test! {
    fn linux_on_kvm_sees_the_nvdimms() {
        let image = vnvdimm_tcg::GuestImage::locate_or_build().unwrap_or_else(|e| panic!("guest image: {e}"));
        let dir = tempfile::tempdir().unwrap();
        // The image's initramfs plus a second archive with /test.sh (images/init sources it).
        let script = b"step ndctl 'ndctl list -DRN'\n";
        let mut initramfs = std::fs::read(&image.initramfs).unwrap();
        vnvdimm_tcg::cpio::append_archive(
            &mut initramfs,
            &[vnvdimm_tcg::cpio::CpioFile {
                name: "test.sh",
                mode: 0o755,
                data: script,
            }],
        );
        let initramfs_path = dir.path().join("initramfs");
        std::fs::write(&initramfs_path, initramfs).unwrap();
        let mut args: Vec<String> = vec![
            "vnvdimm".into(),
            "run".into(),
            "--backend".into(),
            "kvm".into(),
            "--kernel".into(),
            image.vmlinux.display().to_string(),
            "--initramfs".into(),
            initramfs_path.display().to_string(),
            "--cmdline".into(),
            "console=ttyS0 panic=-1 vnv.agent=off".into(),
            "--memory".into(),
            "1G".into(),
        ];
        for i in 0..2 {
            let path = dir.path().join(format!("nvdimm{i}.img"));
            std::fs::File::create(&path).unwrap().set_len(GIB).unwrap();
            args.extend(["--nvdimm".into(), format!("path={},size=1G", path.display())]);
        }
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = vnvdimm::cli::run(args.iter().map(String::as_str), &mut out, &mut err);
        let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
        assert_eq!(code, 0, "vnvdimm run failed:\n{err}\n{out}");
        let begin = out.find("@@VNV-BEGIN ndctl@@").unwrap_or_else(|| panic!("no ndctl step in the console:\n{out}"));
        let listing = &out[begin..];
        assert!(listing.contains("@@VNV-END ndctl rc=0@@"), "{listing}");
        assert_eq!(listing.matches("\"dev\":\"nmem").count(), 2, "both DIMMs:\n{listing}");
        assert_eq!(listing.matches("\"dev\":\"region").count(), 2, "both regions:\n{listing}");
    }
}
