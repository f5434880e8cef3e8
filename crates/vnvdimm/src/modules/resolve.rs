//! Which module files the image needs from a tree: the modules it names, each with
//! its dependencies (modinfo's `depends`, hard, and `softdep`, taken when the tree has
//! them), minus what the kernel has built in. A module the guest cannot do without
//! (ESSENTIAL) that is missing refuses the run; any other missing one is reported so
//! the caller can warn.

use std::collections::BTreeSet;
use std::path::Path;

use thiserror::Error;

use super::host_tools::{self, ToolError};
use super::tree::{ModuleFile, ModuleTree};

/// Without these the guest sees no NVDIMM at all: the ACPI NFIT driver and the pmem
/// block driver (and, through them, libnvdimm). The rest of the image's list (btt, dax,
/// kmem, file systems, pvpanic) only narrows what the guest can do.
pub const ESSENTIAL: &[&str] = &["nfit", "nd_pmem"];

#[derive(Debug, Error)]
pub enum ResolveError {
    #[error(
        "--modules {dir} (release {release}) lacks modules the guest needs to see its NVDIMMs: {missing}; \
         each is neither a module file there nor listed in modules.builtin. Build them \
         (CONFIG_ACPI_NFIT, CONFIG_LIBNVDIMM, CONFIG_BLK_DEV_PMEM as m or y) and install the modules again"
    )]
    MissingEssential { dir: String, release: String, missing: String },
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// What a module asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deps {
    pub hard: Vec<String>,
    /// Loaded first or after if present; a name may be an alias, which is skipped.
    pub soft: Vec<String>,
}

/// A needed module that the tree does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub name: String,
    /// The module that depends on it, if it was not asked for directly.
    pub needed_by: Option<String>,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.needed_by {
            Some(by) => write!(f, "{} (needed by {by})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[derive(Debug, Default)]
pub struct Resolved {
    /// Files to pack, each after the modules it depends on.
    pub files: Vec<ModuleFile>,
    /// Needed modules the kernel has built in.
    pub builtin: Vec<String>,
    /// Needed modules that are nowhere, none of them essential.
    pub missing: Vec<Missing>,
}

/// Resolves `wanted` in `tree`, reading each module's dependencies with `deps_of`.
pub fn resolve(
    tree: &ModuleTree,
    dir: &Path,
    wanted: &[String],
    mut deps_of: impl FnMut(&ModuleFile) -> Result<Deps, ToolError>,
) -> Result<Resolved, ResolveError> {
    let mut walk = Walk { tree, deps_of: &mut deps_of, seen: BTreeSet::new(), out: Resolved::default(), broken: BTreeSet::new() };
    for name in wanted {
        walk.visit(&name.replace('-', "_"), None, name)?;
    }
    let Walk { out, broken, .. } = walk;
    if ESSENTIAL.iter().any(|e| broken.contains(*e)) {
        let missing = out.missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        return Err(ResolveError::MissingEssential { dir: dir.display().to_string(), release: tree.release.clone(), missing });
    }
    Ok(out)
}

struct Walk<'a, F> {
    tree: &'a ModuleTree,
    deps_of: &'a mut F,
    seen: BTreeSet<String>,
    out: Resolved,
    /// Wanted modules that cannot load (they or a hard dependency are missing).
    broken: BTreeSet<String>,
}

impl<F: FnMut(&ModuleFile) -> Result<Deps, ToolError>> Walk<'_, F> {
    fn visit(&mut self, name: &str, needed_by: Option<&str>, root: &str) -> Result<(), ToolError> {
        if !self.seen.insert(name.to_string()) {
            if self.out.missing.iter().any(|m| m.name == name) {
                self.broken.insert(root.to_string());
            }
            return Ok(());
        }
        if self.tree.builtin.contains(name) {
            self.out.builtin.push(name.to_string());
            return Ok(());
        }
        let Some(file) = self.tree.modules.get(name) else {
            self.out.missing.push(Missing { name: name.to_string(), needed_by: needed_by.map(str::to_string) });
            self.broken.insert(root.to_string());
            return Ok(());
        };
        let deps = (self.deps_of)(file)?;
        for dep in &deps.hard {
            self.visit(&dep.replace('-', "_"), Some(name), root)?;
        }
        for dep in deps.soft.iter().map(|d| d.replace('-', "_")) {
            if self.tree.modules.contains_key(&dep) {
                self.visit(&dep, Some(name), root)?;
            }
        }
        self.out.files.push(file.clone());
        Ok(())
    }
}

/// A module's dependencies as the host's modinfo reads them (it handles compressed
/// modules; the kernel's own format is the .modinfo section).
pub fn modinfo_deps(modinfo: &Path, file: &ModuleFile) -> Result<Deps, ToolError> {
    let text = host_tools::run(modinfo, &[file.source.as_os_str()])?;
    Ok(parse_modinfo(&String::from_utf8_lossy(&text)))
}

/// `depends:  a,b` and `softdep:  pre: x y post: z` lines of modinfo's output.
pub fn parse_modinfo(text: &str) -> Deps {
    let mut deps = Deps::default();
    for line in text.lines() {
        if let Some(list) = line.strip_prefix("depends:") {
            deps.hard.extend(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string));
        } else if let Some(list) = line.strip_prefix("softdep:") {
            deps.soft.extend(list.split_whitespace().filter(|w| !w.ends_with(':')).map(str::to_string));
        }
    }
    deps
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::modules::tree::TreeShape;

    fn tree(files: &[&str], builtin: &[&str]) -> ModuleTree {
        ModuleTree {
            release: "6.12.9-test".into(),
            shape: TreeShape::Installed,
            meta_dir: "/m".into(),
            modules: files
                .iter()
                .map(|n| (n.to_string(), ModuleFile { source: format!("/m/{n}.ko").into(), dest: format!("kernel/{n}.ko") }))
                .collect(),
            builtin: builtin.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn deps(table: &[(&str, &[&str], &[&str])]) -> impl FnMut(&ModuleFile) -> Result<Deps, ToolError> {
        let table: BTreeMap<String, Deps> = table
            .iter()
            .map(|(n, h, s)| {
                let v = |l: &[&str]| l.iter().map(|x| x.to_string()).collect();
                (n.to_string(), Deps { hard: v(h), soft: v(s) })
            })
            .collect();
        move |f: &ModuleFile| Ok(table.get(&f.dest[7..f.dest.len() - 3]).cloned().unwrap_or_default())
    }

    fn names(r: &Resolved) -> Vec<&str> {
        r.files.iter().map(|f| &f.dest[7..f.dest.len() - 3]).collect()
    }

    fn wanted(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependencies_first_each_once_builtin_skipped() {
        let t = tree(&["nfit", "libnvdimm", "nd_pmem", "nd_btt", "ext4", "jbd2", "crc32c_generic"], &["dax"]);
        let d = deps(&[
            ("nfit", &["libnvdimm"], &[]),
            ("nd_pmem", &["nd_btt", "libnvdimm"], &[]),
            ("nd_btt", &["libnvdimm"], &[]),
            // crc32c is an alias, not a module name: skipped; crc32c-generic is a file.
            ("ext4", &["jbd2"], &["crc32c", "crc32c-generic"]),
        ]);
        let r = resolve(&t, Path::new("/m"), &wanted(&["nfit", "nd_pmem", "dax", "ext4"]), d).unwrap();
        assert_eq!(names(&r), ["libnvdimm", "nfit", "nd_btt", "nd_pmem", "jbd2", "crc32c_generic", "ext4"]);
        assert_eq!(r.builtin, ["dax"]);
        assert!(r.missing.is_empty());
    }

    #[test]
    fn missing_optional_modules_are_reported_not_refused() {
        let t = tree(&["nfit", "libnvdimm", "nd_pmem", "xfs"], &[]);
        let d = deps(&[("nfit", &["libnvdimm"], &[]), ("nd_pmem", &["libnvdimm"], &[]), ("xfs", &["libcrc32c"], &[])]);
        let r = resolve(&t, Path::new("/m"), &wanted(&["nfit", "nd_pmem", "pvpanic-mmio", "xfs"]), d).unwrap();
        let missing: Vec<String> = r.missing.iter().map(ToString::to_string).collect();
        assert_eq!(missing, ["pvpanic_mmio", "libcrc32c (needed by xfs)"]);
    }

    #[test]
    fn a_missing_essential_module_or_its_dependency_refuses() {
        let d = || deps(&[("nfit", &["libnvdimm"], &[]), ("nd_pmem", &["libnvdimm"], &[])]);
        let t = tree(&["nfit", "nd_pmem"], &[]);
        let e = resolve(&t, Path::new("/m"), &wanted(&["nfit", "nd_pmem", "xfs"]), d()).unwrap_err().to_string();
        assert!(e.contains("libnvdimm (needed by nfit)") && e.contains("xfs") && e.contains("6.12.9-test"), "{e}");
        let t = tree(&["libnvdimm", "nd_pmem"], &[]);
        let e = resolve(&t, Path::new("/m"), &wanted(&["nfit", "nd_pmem"]), d()).unwrap_err().to_string();
        assert!(e.contains("lacks modules") && e.contains("nfit"), "{e}");
        // Built in is as good as a file.
        let t = tree(&["nd_pmem"], &["nfit", "libnvdimm"]);
        assert!(resolve(&t, Path::new("/m"), &wanted(&["nfit", "nd_pmem"]), d()).is_ok());
    }

    #[test]
    fn modinfo_output() {
        let text = "filename:       /x/ext4.ko.xz\nsoftdep:        pre: crc32c\nsoftdep:        pre: a post: b\n\
                    depends:        mbcache,jbd2,crc16\nretpoline:      Y\nname:           ext4\n";
        let d = parse_modinfo(text);
        assert_eq!(d.hard, ["mbcache", "jbd2", "crc16"]);
        assert_eq!(d.soft, ["crc32c", "a", "b"]);
        assert_eq!(parse_modinfo("depends:        \nname: nfit\n"), Deps::default());
    }
}
