//! What `vnvdimm run` boots, the same for every backend: the user's `--kernel` and
//! `--initramfs`, or else the default guest image (images/build-guest.sh, found or built
//! on first use), and the kernel command line.

use std::path::PathBuf;

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

/// The user's kernel, or the default image's ELF vmlinux (booted through PVH under both
/// backends) with its initramfs unless `--initramfs` names another.
pub fn guest_boot(args: &RunArgs) -> Result<GuestBoot, Failure> {
    let (kernel, initramfs) = match &args.kernel {
        Some(kernel) => (kernel.clone(), args.initramfs.clone()),
        None => {
            let image = GuestImage::locate_or_build().map_err(|e| {
                Failure::other(format!(
                    "no --kernel given and the default guest image is unavailable: {e}; \
                     build it with images/build-guest.sh or pass --kernel"
                ))
            })?;
            (image.vmlinux, Some(args.initramfs.clone().unwrap_or(image.initramfs)))
        }
    };
    Ok(GuestBoot { kernel, initramfs, cmdline: guest_cmdline(args) })
}

/// The kernel command line QEMU gets. With the default image and `--api-socket`, the
/// guest is there to be driven through the agent (`vnvdimm ctl exec`), so init is told
/// to keep it up (`vnv.agent=hold`) until the API powers it off; without it the default
/// image would list the DIMMs and power off before a user's first `ctl exec`. A
/// `vnv.agent=` the user gave wins; without an API socket nobody could reach the agent,
/// so the image keeps its run-and-power-off behaviour.
pub fn guest_cmdline(args: &RunArgs) -> String {
    let default_image = args.kernel.is_none();
    let has_agent_option = args.cmdline.split_whitespace().any(|w| w.starts_with("vnv.agent="));
    if default_image && args.api_socket.is_some() && !has_agent_option {
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
        // Nobody could reach the agent without the API, and a user's kernel is theirs.
        let a = args(&[]);
        assert_eq!(guest_cmdline(&a), a.cmdline);
        let a = args(&["--api-socket", "/tmp/s.sock", "--kernel", "/k"]);
        assert_eq!(guest_cmdline(&a), a.cmdline);
    }

    #[test]
    fn a_users_kernel_is_booted_as_given() {
        let a = args(&["--kernel", "/k/bzImage", "--initramfs", "/k/initrd", "--cmdline", "console=ttyS0 quiet"]);
        let boot = guest_boot(&a).unwrap();
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
