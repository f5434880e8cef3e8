//! Where a test that needs Linux under KVM runs (docs/nested-host.md).
//!
//! - On a host whose KVM can boot Linux (VMX/SVM, `kvm_check::check` passes), or inside
//!   the nested host itself, the test body runs here.
//! - Elsewhere, when QEMU is installed, the test runs one level down: this same test
//!   binary is started, for this one test, inside an L1 Linux booted under QEMU TCG with
//!   an emulated AMD CPU with SVM (see [`crate::nested`]), whose own KVM boots the guest.
//!   The L1's output (the test's own output, with the L2 console and session log on
//!   failure) is shown here, and the test passes or fails as it did there.
//! - Where neither is possible, the test fails, saying why: never a silent pass.
//!
//! `VNV_KVM_HOST=direct|nested` forces one way (e.g. `nested` on a VMX host, to check
//! the nested host itself); `VNV_NESTED_L1=1` is set by the nested host for the test it
//! runs.

use vnvdimm_vmm::kvm_check;

use crate::nested::{NestedHost, NESTED_L1_ENV};

/// The environment variable that forces where KVM Linux tests run.
pub const KVM_HOST_ENV: &str = "VNV_KVM_HOST";

/// How this process runs tests that need Linux under KVM.
#[derive(Debug)]
pub enum KvmLinuxHost {
    /// This host's own KVM boots Linux.
    Direct,
    /// Through an L1 under QEMU TCG (this host's KVM cannot boot Linux).
    Nested { why_not_direct: String },
}

impl KvmLinuxHost {
    /// Decides, or returns why no KVM Linux test can run here.
    pub fn detect() -> Result<KvmLinuxHost, String> {
        let inside_l1 = std::env::var_os(NESTED_L1_ENV).is_some();
        let forced = std::env::var(KVM_HOST_ENV).ok();
        let direct = kvm_check::check().map_err(|e| e.to_string());
        match (inside_l1, forced.as_deref(), direct) {
            (true, _, Ok(_)) | (false, Some("direct") | None, Ok(_)) => Ok(KvmLinuxHost::Direct),
            (true, _, Err(e)) => Err(format!(
                "inside the nested host, yet its KVM cannot boot Linux: {e}"
            )),
            (false, Some("direct"), Err(e)) => Err(format!(
                "{KVM_HOST_ENV}=direct, but this host's KVM cannot boot Linux: {e}"
            )),
            (false, Some("nested") | None, direct) => {
                let why_not_direct = match direct {
                    Ok(_) => format!("{KVM_HOST_ENV}=nested"),
                    Err(e) => e,
                };
                NestedHost::available().map_err(|e| {
                    format!("this host's KVM cannot boot Linux ({why_not_direct}), and no nested host either: {e}")
                })?;
                Ok(KvmLinuxHost::Nested { why_not_direct })
            }
            (false, Some(other), _) => Err(format!(
                "{KVM_HOST_ENV}={other}: expected `direct` or `nested`"
            )),
        }
    }
}

/// Runs the test `name` (its full name in this test binary, as `--exact` takes it):
/// `body` here when this host's KVM boots Linux, else the same test inside the nested
/// host. Panics (fails the test) with the reason when neither can run it.
pub fn kvm_linux_test(name: &str, body: impl FnOnce()) {
    match KvmLinuxHost::detect() {
        Ok(KvmLinuxHost::Direct) => body(),
        Ok(KvmLinuxHost::Nested { why_not_direct }) => {
            println!("running `{name}` in the nested host (L1 under QEMU TCG): this host's KVM cannot boot Linux: {why_not_direct}");
            if let Err(failure) = NestedHost::run_test(name) {
                panic!("{failure}");
            }
        }
        Err(reason) => {
            println!("NOT RUN under KVM: {reason}");
            panic!("NOT RUN under KVM: {reason}");
        }
    }
}

/// Declares `#[test] fn NAME() { BODY }` as a KVM Linux test (see [`kvm_linux_test`]).
#[macro_export]
macro_rules! kvm_linux_test {
    ($(#[$attr:meta])* fn $name:ident() $body:block) => {
        $(#[$attr])*
        #[test]
        fn $name() {
            // libtest's name for it: the module path without the crate's own name.
            let path = concat!(module_path!(), "::", stringify!($name));
            let name = path.split_once("::").map_or(path, |(_, rest)| rest);
            $crate::kvm_host::kvm_linux_test(name, || $body);
        }
    };
}
