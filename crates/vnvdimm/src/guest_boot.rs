//! What `vnvdimm run` boots, the same for every backend: the user's `--kernel` and
//! `--initramfs`, or else the default guest image (images/build-guest.sh, found or built
//! on first use), and the kernel command line. A `--kernel` without `--initramfs` runs the
//! image's userspace, with the kernel's own modules when `--modules` names them.

use std::io::Write;
use std::path::{Path, PathBuf};

use vnvdimm_tcg::GuestImage;

use crate::cli::Failure;
use crate::run::RunArgs;

/// Kernel, initramfs and command line of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestBoot {
    pub kernel: PathBuf,
    pub initramfs: Option<PathBuf>,
    pub cmdline: String,
}

fn default_image(why: &str) -> Result<GuestImage, Failure> {
    GuestImage::locate_or_build().map_err(|e| {
        Failure::other(format!(
            "{why} the default guest image, which is unavailable: {e}; build it with images/build-guest.sh \
             or pass --kernel and --initramfs"
        ))
    })
}

/// The user's kernel and initramfs; or the default image's ELF vmlinux (booted through
/// PVH under both backends) and its initramfs unless `--initramfs` names another; or
/// the user's kernel with the image's initramfs, plus the kernel's modules from
/// `--modules` packed into `work` (warnings, such as a kernel the image's modules do
/// not fit, go to `err`).
pub fn guest_boot(args: &RunArgs, work: &Path, err: &mut dyn Write) -> Result<GuestBoot, Failure> {
    let cmdline = guest_cmdline(args);
    let (kernel, initramfs) = match (&args.kernel, &args.initramfs) {
        (Some(kernel), Some(initramfs)) => (kernel.clone(), initramfs.clone()),
        (None, initramfs) => {
            let image = default_image("no --kernel given: it boots")?;
            (image.vmlinux, initramfs.clone().unwrap_or(image.initramfs))
        }
        (Some(kernel), None) => {
            let image = default_image("--kernel without --initramfs runs the userspace of")?;
            let initramfs = match &args.modules {
                Some(dir) => crate::modules::initramfs_with_modules(kernel, dir, &image, work, err)?,
                None => {
                    if let Some(warning) = crate::modules::foreign_kernel_warning(kernel, &image) {
                        let _ = writeln!(err, "{warning}");
                    }
                    image.initramfs
                }
            };
            (kernel.clone(), initramfs)
        }
    };
    Ok(GuestBoot { kernel, initramfs: Some(initramfs), cmdline })
}

/// The kernel command line QEMU gets. With the default image's init and `--api-socket`, the
/// guest is there to be driven through the agent (`vnvdimm ctl exec`), so init is told
/// to keep it up (`vnv.agent=hold`) until the API powers it off; without it the default
/// image would list the DIMMs and power off before a user's first `ctl exec`. A
/// `vnv.agent=` the user gave wins; without an API socket nobody could reach the agent,
/// so the image keeps its run-and-power-off behaviour.
pub fn guest_cmdline(args: &RunArgs) -> String {
    // The image's /init runs whenever the user brings no initramfs, whatever the kernel.
    let image_init = args.initramfs.is_none();
    let has_agent_option = args.cmdline.split_whitespace().any(|w| w.starts_with("vnv.agent="));
    if image_init && args.api_socket.is_some() && !has_agent_option {
        format!("{} vnv.agent=hold", args.cmdline.trim_end())
    } else {
        args.cmdline.clone()
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> RunArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let mut v = vec!["vnvdimm", "--nvdimm", "path=a.img,size=256M"];
        v.extend_from_slice(extra);
        Cli::parse_from(v).run
    }

    #[test]
    fn default_image_with_an_api_socket_holds_the_guest_for_the_agent() {
        let a = args(&["--api-socket", "/tmp/s.sock"]);
        assert_eq!(guest_cmdline(&a), format!("{} vnv.agent=hold", a.cmdline));
        // The user's own choice wins.
        let a = args(&["--api-socket", "/tmp/s.sock", "--cmdline", "console=ttyS0 vnv.agent=off"]);
        assert_eq!(guest_cmdline(&a), "console=ttyS0 vnv.agent=off");
        // Nobody could reach the agent without the API, and a user's initramfs is theirs.
        let a = args(&[]);
        assert_eq!(guest_cmdline(&a), a.cmdline);
        let a = args(&["--api-socket", "/tmp/s.sock", "--kernel", "/k", "--initramfs", "/i"]);
        assert_eq!(guest_cmdline(&a), a.cmdline);
        // A user's kernel with the image's init is held like the default image.
        let a = args(&["--api-socket", "/tmp/s.sock", "--kernel", "/k"]);
        assert_eq!(guest_cmdline(&a), format!("{} vnv.agent=hold", a.cmdline));
    }

    #[test]
    fn a_users_kernel_is_booted_as_given() {
        let a = args(&["--kernel", "/k/bzImage", "--initramfs", "/k/initrd", "--cmdline", "console=ttyS0 quiet"]);
        let boot = guest_boot(&a, Path::new("/nonexistent"), &mut Vec::new()).unwrap();
        assert_eq!(
            boot,
            GuestBoot {
                kernel: "/k/bzImage".into(),
                initramfs: Some("/k/initrd".into()),
                cmdline: "console=ttyS0 quiet".into()
            }
        );
    }
}
