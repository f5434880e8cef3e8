//! `--modules DIR`: where a kernel's modules are and which release they are for. DIR
//! may be any of the trees a kernel developer or a distribution leaves behind:
//! - an install tree, `make modules_install INSTALL_MOD_PATH=DIR` or an unpacked kernel
//!   package: DIR/lib/modules/<release>/ (or DIR/usr/lib/modules/<release>/);
//! - such a `lib/modules` or `lib/modules/<release>` directory itself;
//! - a kernel build tree: DIR/include/config/kernel.release, DIR/modules.order, each
//!   module's .ko next to its sources.
//!
//! Nothing under DIR is written: the modules are copied out (pack.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TreeError {
    #[error("--modules {dir}: cannot read {path}: {source}")]
    Read { dir: PathBuf, path: PathBuf, source: std::io::Error },
    #[error(
        "--modules {dir}: no kernel modules found; give a `make modules_install INSTALL_MOD_PATH=DIR` \
         tree or an unpacked kernel package (DIR/lib/modules/<release>), a lib/modules/<release> \
         directory, or a kernel build tree (DIR/include/config/kernel.release)"
    )]
    NotAModuleTree { dir: PathBuf },
    #[error(
        "--modules {dir}: the modules are for release {found}, but --kernel is release {kernel}; \
         give the modules built with that kernel"
    )]
    Mismatch { dir: PathBuf, kernel: String, found: String },
    #[error(
        "--modules {dir}: build tree of release {release} has no modules.order; build the modules \
         first (make modules)"
    )]
    NoModulesOrder { dir: PathBuf, release: String },
}

/// Which of the accepted shapes DIR had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeShape {
    /// lib/modules/<release>, as installed (by make modules_install or a package).
    Installed,
    /// A kernel build tree.
    BuildTree,
}

/// One loadable module of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Where it is now.
    pub source: PathBuf,
    /// Where it goes below lib/modules/<release>/ (e.g. kernel/drivers/acpi/nfit/nfit.ko.xz).
    pub dest: String,
}

/// The modules of one release.
#[derive(Debug, Clone)]
pub struct ModuleTree {
    pub release: String,
    pub shape: TreeShape,
    /// The directory holding modules.builtin and modules.builtin.modinfo (if any).
    pub meta_dir: PathBuf,
    /// Module name (dashes as underscores) → its file.
    pub modules: BTreeMap<String, ModuleFile>,
    /// Names of the modules built into the kernel (modules.builtin).
    pub builtin: BTreeSet<String>,
}

/// The name the kernel and modprobe use for a module file: no directory, no `.ko[.xz]`,
/// dashes as underscores.
pub fn module_name(file: &str) -> Option<String> {
    let base = file.rsplit('/').next()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|ext| base.strip_suffix(ext))?;
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

impl ModuleTree {
    /// Finds the modules in `dir` for `kernel_release`. Several releases side by side
    /// (one lib/modules with many kernels) are fine as long as one matches.
    pub fn discover(dir: &Path, kernel_release: &str) -> Result<ModuleTree, TreeError> {
        let read_err = |path: &Path, source| TreeError::Read { dir: dir.to_path_buf(), path: path.to_path_buf(), source };
        let release_file = dir.join("include/config/kernel.release");
        if release_file.is_file() {
            let release = std::fs::read_to_string(&release_file).map_err(|e| read_err(&release_file, e))?;
            let release = release.trim().to_string();
            if release != kernel_release {
                return Err(TreeError::Mismatch { dir: dir.to_path_buf(), kernel: kernel_release.into(), found: release });
            }
            return Self::build_tree(dir, release);
        }
        let candidates = release_dirs(dir);
        if candidates.is_empty() {
            return Err(TreeError::NotAModuleTree { dir: dir.to_path_buf() });
        }
        let Some((release, path)) = candidates.iter().find(|(r, _)| r == kernel_release) else {
            let found = candidates.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>().join(", ");
            return Err(TreeError::Mismatch { dir: dir.to_path_buf(), kernel: kernel_release.into(), found });
        };
        let mut modules = BTreeMap::new();
        index_installed(path, path, &mut modules).map_err(|(p, e)| read_err(&p, e))?;
        Ok(ModuleTree {
            release: release.clone(),
            shape: TreeShape::Installed,
            meta_dir: path.clone(),
            builtin: read_builtin(path).map_err(|e| read_err(&path.join("modules.builtin"), e))?,
            modules,
        })
    }

    /// modules.order names every module the build made (`dir/x/y.o` or `.ko`, by
    /// kernel version); the .ko lies next to it. Walking the whole source tree instead
    /// would take seconds.
    fn build_tree(dir: &Path, release: String) -> Result<ModuleTree, TreeError> {
        let order_path = dir.join("modules.order");
        let order = match std::fs::read_to_string(&order_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TreeError::NoModulesOrder { dir: dir.to_path_buf(), release })
            }
            Err(source) => return Err(TreeError::Read { dir: dir.to_path_buf(), path: order_path, source }),
        };
        let mut modules = BTreeMap::new();
        for line in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let line = line.strip_prefix("kernel/").unwrap_or(line);
            let ko = match line.strip_suffix(".o") {
                Some(stem) => format!("{stem}.ko"),
                None => line.to_string(),
            };
            let source = dir.join(&ko);
            // A module listed but not built (an interrupted build) is simply absent.
            if let (Some(name), true) = (module_name(&ko), source.is_file()) {
                modules.insert(name, ModuleFile { source, dest: format!("kernel/{ko}") });
            }
        }
        let builtin = read_builtin(dir)
            .map_err(|source| TreeError::Read { dir: dir.to_path_buf(), path: dir.join("modules.builtin"), source })?;
        Ok(ModuleTree { release, shape: TreeShape::BuildTree, meta_dir: dir.to_path_buf(), modules, builtin })
    }
}

/// A directory that holds one release's modules.
fn is_release_dir(path: &Path) -> bool {
    ["modules.order", "modules.builtin", "modules.dep", "kernel"].iter().any(|f| path.join(f).exists())
}

/// (release, directory) of every release below `dir` in the accepted places.
fn release_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut add = |path: PathBuf| {
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            if is_release_dir(&path) && !found.iter().any(|(r, _): &(String, PathBuf)| r == name) {
                found.push((name.to_string(), path));
            }
        }
    };
    if is_release_dir(dir) {
        add(dir.to_path_buf());
    }
    for parent in [dir.join("lib/modules"), dir.join("usr/lib/modules"), dir.to_path_buf()] {
        let Ok(entries) = std::fs::read_dir(&parent) else { continue };
        let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        children.sort();
        children.into_iter().for_each(&mut add);
    }
    found
}

/// Every module file below `root`, keyed by name. Symbolic links are not followed: an
/// installed tree's `build` and `source` point into the kernel sources.
fn index_installed(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, ModuleFile>,
) -> Result<(), (PathBuf, std::io::Error)> {
    let entries = std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e))?;
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Ok(kind) = entry.file_type() else { continue };
        let path = entry.path();
        if kind.is_dir() {
            index_installed(root, &path, out)?;
        } else if kind.is_file() {
            let Ok(rel) = path.strip_prefix(root) else { continue };
            let rel = rel.to_string_lossy().into_owned();
            if let Some(name) = module_name(&rel) {
                // depmod's rule: the first one found wins; keep that, deterministically.
                out.entry(name).or_insert(ModuleFile { source: path, dest: rel });
            }
        }
    }
    Ok(())
}

/// Names in `dir/modules.builtin`; no such file means nothing is known to be built in.
fn read_builtin(dir: &Path) -> std::io::Result<BTreeSet<String>> {
    match std::fs::read_to_string(dir.join("modules.builtin")) {
        Ok(text) => Ok(text.lines().filter_map(module_name).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn touch(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// lib/modules/<release> as modules_install or a package leaves it.
    pub(crate) fn installed(root: &Path, release: &str) -> PathBuf {
        let dir = root.join("lib/modules").join(release);
        touch(&dir.join("kernel/drivers/acpi/nfit/nfit.ko.xz"), "nfit");
        touch(&dir.join("kernel/drivers/nvdimm/libnvdimm.ko"), "libnvdimm");
        touch(&dir.join("kernel/arch/x86/crypto/crc32c-intel.ko.xz"), "crc");
        touch(&dir.join("modules.order"), "kernel/drivers/acpi/nfit/nfit.ko\n");
        touch(&dir.join("modules.builtin"), "kernel/drivers/dax/dax.ko\nkernel/fs/ext4/ext4.ko\n");
        std::os::unix::fs::symlink("/nonexistent/sources", dir.join("build")).unwrap();
        dir
    }

    #[test]
    fn names_as_modprobe_sees_them() {
        assert_eq!(module_name("kernel/arch/x86/crypto/crc32c-intel.ko.xz").as_deref(), Some("crc32c_intel"));
        assert_eq!(module_name("nd_pmem.ko").as_deref(), Some("nd_pmem"));
        assert_eq!(module_name("a/b.ko.zst").as_deref(), Some("b"));
        for not in ["nfit.o", "modules.order", ".ko", "x.ko.bz2"] {
            assert_eq!(module_name(not), None, "{not}");
        }
    }

    #[test]
    fn install_tree_and_unpacked_package() {
        let root = tempfile::tempdir().unwrap();
        installed(root.path(), "6.1.0-57-amd64");
        let release_dir = installed(root.path(), "6.12.9-test");
        let tree = ModuleTree::discover(root.path(), "6.12.9-test").unwrap();
        assert_eq!(tree.shape, TreeShape::Installed);
        assert_eq!(tree.meta_dir, release_dir);
        assert_eq!(tree.modules.keys().collect::<Vec<_>>(), ["crc32c_intel", "libnvdimm", "nfit"]);
        assert_eq!(tree.modules["nfit"].dest, "kernel/drivers/acpi/nfit/nfit.ko.xz");
        assert_eq!(tree.modules["nfit"].source, release_dir.join("kernel/drivers/acpi/nfit/nfit.ko.xz"));
        assert!(tree.builtin.contains("dax") && tree.builtin.contains("ext4"));
        // The same tree named by its lib/modules or its release directory.
        for dir in [root.path().join("lib/modules"), release_dir.clone()] {
            let t = ModuleTree::discover(&dir, "6.12.9-test").unwrap();
            assert_eq!((t.release.as_str(), t.meta_dir.as_path()), ("6.12.9-test", release_dir.as_path()));
        }
    }

    #[test]
    fn merged_usr_package() {
        let root = tempfile::tempdir().unwrap();
        installed(&root.path().join("usr"), "6.15.0-1-amd64");
        let tree = ModuleTree::discover(root.path(), "6.15.0-1-amd64").unwrap();
        assert_eq!(tree.meta_dir, root.path().join("usr/lib/modules/6.15.0-1-amd64"));
    }

    #[test]
    fn build_tree() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path();
        touch(&d.join("include/config/kernel.release"), "6.13.0-rc1-dirty\n");
        // Kernels since 6.x list objects, older ones .ko files (with or without kernel/).
        touch(&d.join("modules.order"), "drivers/acpi/nfit/nfit.o\nkernel/drivers/nvdimm/nd_pmem.ko\nfs/xfs/xfs.o\n");
        touch(&d.join("drivers/acpi/nfit/nfit.ko"), "nfit");
        touch(&d.join("drivers/acpi/nfit/nfit.o"), "object");
        touch(&d.join("drivers/nvdimm/nd_pmem.ko"), "pmem");
        touch(&d.join("modules.builtin"), "kernel/drivers/nvdimm/libnvdimm.ko\n");
        let tree = ModuleTree::discover(d, "6.13.0-rc1-dirty").unwrap();
        assert_eq!(tree.shape, TreeShape::BuildTree);
        // xfs is listed but was not built.
        assert_eq!(tree.modules.keys().collect::<Vec<_>>(), ["nd_pmem", "nfit"]);
        assert_eq!(tree.modules["nfit"].dest, "kernel/drivers/acpi/nfit/nfit.ko");
        assert_eq!(tree.modules["nd_pmem"].source, d.join("drivers/nvdimm/nd_pmem.ko"));
        assert!(tree.builtin.contains("libnvdimm"));

        std::fs::remove_file(d.join("modules.order")).unwrap();
        let e = ModuleTree::discover(d, "6.13.0-rc1-dirty").unwrap_err().to_string();
        assert!(e.contains("no modules.order") && e.contains("make modules"), "{e}");
    }

    #[test]
    fn mismatch_names_both_releases() {
        let root = tempfile::tempdir().unwrap();
        installed(root.path(), "6.1.0-57-amd64");
        let e = ModuleTree::discover(root.path(), "6.12.9-test").unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, TreeError::Mismatch { .. }));
        assert!(text.contains("6.1.0-57-amd64") && text.contains("6.12.9-test"), "{text}");

        let build = tempfile::tempdir().unwrap();
        touch(&build.path().join("include/config/kernel.release"), "6.13.0\n");
        let text = ModuleTree::discover(build.path(), "6.12.9-test").unwrap_err().to_string();
        assert!(text.contains("6.13.0") && text.contains("6.12.9-test"), "{text}");
    }

    #[test]
    fn something_else_is_not_a_module_tree() {
        let root = tempfile::tempdir().unwrap();
        touch(&root.path().join("README"), "hello");
        let e = ModuleTree::discover(root.path(), "6.1.0").unwrap_err();
        assert!(matches!(e, TreeError::NotAModuleTree { .. }), "{e}");
        let e = ModuleTree::discover(&root.path().join("missing"), "6.1.0").unwrap_err();
        assert!(matches!(e, TreeError::NotAModuleTree { .. }), "{e}");
    }
}
