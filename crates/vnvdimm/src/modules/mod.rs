//! `vnvdimm run --kernel K --modules DIR`: the user's kernel with the default image's
//! userspace (busybox, ndctl, daxctl, the agent, /init). The image's own modules are
//! for its kernel, so the ones it loads are taken from DIR instead: checked against K's
//! release before anything starts (`check`), then resolved with their dependencies and
//! packed behind the image's initramfs in the run's work directory
//! (`initramfs_with_modules`). docs/kernels.md.

pub mod host_tools;
pub mod pack;
pub mod release;
pub mod resolve;
pub mod tree;

use std::io::Write;
use std::path::{Path, PathBuf};

use vnvdimm_tcg::GuestImage;

use crate::cli::Failure;
use tree::ModuleTree;

/// DIR holds modules for the release of the kernel image K; a mismatch or an
/// unreadable release is a bad option (exit 2) naming both.
pub fn check(kernel: &Path, dir: &Path) -> Result<ModuleTree, Failure> {
    let release = release::kernel_release(kernel).map_err(|e| Failure::usage(e.to_string()))?;
    ModuleTree::discover(dir, &release).map_err(|e| match e {
        tree::TreeError::Read { .. } => Failure::start_host(e.to_string()),
        _ => Failure::usage(format!("{e} (--kernel {})", kernel.display())),
    })
}

/// The image's initramfs followed by the modules it wants from DIR, written into
/// `work`. Modules the guest can do without but DIR lacks are named on `err`.
pub fn initramfs_with_modules(
    kernel: &Path,
    dir: &Path,
    image: &GuestImage,
    work: &Path,
    err: &mut dyn Write,
) -> Result<PathBuf, Failure> {
    let tree = check(kernel, dir)?;
    let wanted = image.wanted_modules().map_err(|e| Failure::other(format!("--modules: {e}")))?;
    let host = |e: host_tools::ToolError| Failure::start_host(e.to_string());
    let modinfo = host_tools::find("modinfo", "kmod").map_err(host)?;
    let depmod = host_tools::find("depmod", "kmod").map_err(host)?;
    let resolved = resolve::resolve(&tree, dir, &wanted, |f| resolve::modinfo_deps(&modinfo, f)).map_err(|e| match e {
        resolve::ResolveError::MissingEssential { .. } => Failure::usage(e.to_string()),
        // modinfo ran but could not read a file of DIR: the tree is at fault, not the host.
        resolve::ResolveError::Tool(e @ host_tools::ToolError::Failed { .. }) => Failure::usage(e.to_string()),
        resolve::ResolveError::Tool(e) => host(e),
    })?;
    if !resolved.missing.is_empty() {
        let list = resolved.missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            err,
            "vnvdimm: warning: --modules {} (release {}) has no {list}: neither a module file nor built in; \
             the guest runs without them (modprobe reports each)",
            dir.display(),
            tree.release
        );
    }
    let packed = pack::pack(&tree, &resolved.files, &image.initramfs, work, &depmod).map_err(|e| match e {
        pack::PackError::Tool(e) => host(e),
        e => Failure::start_host(e.to_string()),
    })?;
    let _ = writeln!(
        err,
        "vnvdimm: --modules: {} module files for {} from {} ({} built in)",
        resolved.files.len(),
        tree.release,
        dir.display(),
        resolved.builtin.len()
    );
    Ok(packed)
}

/// The warning for `--kernel K` without `--modules` booting the image's initramfs:
/// its modules only load into the kernel they were built for. None when K is that
/// kernel. Not a refusal: a kernel with the drivers built in needs no modules.
pub fn foreign_kernel_warning(kernel: &Path, image: &GuestImage) -> Option<String> {
    let advice = "give its modules with --modules DIR (docs/kernels.md), unless the NVDIMM drivers are built in";
    match release::kernel_release(kernel) {
        Ok(release) if release == image.kernel_release => None,
        Ok(release) => Some(format!(
            "vnvdimm: warning: --kernel {} is release {release}, but the default image's modules are for {}: \
             they will not load (nfit, nd_pmem, ...); {advice}",
            kernel.display(),
            image.kernel_release
        )),
        Err(e) => Some(format!(
            "vnvdimm: warning: {e}; the default image's modules are for {} and load only into that kernel; {advice}",
            image.kernel_release
        )),
    }
}
