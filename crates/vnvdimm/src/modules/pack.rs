//! The initramfs a run boots with `--modules`: the image's archive followed by a
//! second one holding lib/modules/<release>/ with the resolved module files and a
//! depmod index built for them. The kernel unpacks concatenated archives in order, and
//! both backends take one initramfs file (QEMU `-initrd`, the KVM loader), so the two
//! are written as one file into the run's work directory.
//!
//! Compressed modules (.ko.xz, .ko.zst, .ko.gz) are stored decompressed: a kernel
//! without in-kernel decompression gets them from the guest's kmod only after a failed
//! first attempt ("Invalid ELF header magic" on the console for each), and the image's
//! kmod need not know the format at all.

use std::path::{Path, PathBuf};

use thiserror::Error;
use vnvdimm_tcg::cpio::{archive_entries, CpioEntry, CpioFile};

use super::host_tools::{self, ToolError};
use super::tree::{ModuleFile, ModuleTree};

/// Index files the guest's modprobe reads besides depmod's own output.
const KEPT_INDEXES: &[&str] = &["modules.builtin", "modules.builtin.modinfo"];

struct Decompressor {
    suffix: &'static str,
    tool: &'static str,
    package: &'static str,
}

const DECOMPRESSORS: &[Decompressor] = &[
    Decompressor { suffix: ".ko.xz", tool: "xz", package: "xz-utils" },
    Decompressor { suffix: ".ko.zst", tool: "zstd", package: "zstd" },
    Decompressor { suffix: ".ko.gz", tool: "gzip", package: "gzip" },
];

#[derive(Debug, Error)]
pub enum PackError {
    #[error("--modules: cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("--modules: cannot write {path} in the run's work directory: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// Writes `base` + the modules archive to `work`/initramfs-with-modules; returns its path.
pub fn pack(
    tree: &ModuleTree,
    files: &[ModuleFile],
    base: &Path,
    work: &Path,
    depmod: &Path,
) -> Result<PathBuf, PackError> {
    let stage = work.join("modules");
    let release_dir = stage.join("lib/modules").join(&tree.release);
    let write_err = |path: &Path, source| PackError::Write { path: path.to_path_buf(), source };
    let mut dests = Vec::with_capacity(files.len());
    for file in files {
        let (plain, decompressor) = match DECOMPRESSORS.iter().find(|d| file.dest.ends_with(d.suffix)) {
            Some(d) => (format!("{}.ko", &file.dest[..file.dest.len() - d.suffix.len()]), Some(d)),
            None => (file.dest.clone(), None),
        };
        let dest = release_dir.join(&plain);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| write_err(parent, e))?;
        }
        match decompressor {
            Some(d) => {
                let tool = host_tools::find(d.tool, d.package)?;
                let bytes = host_tools::run(&tool, &["-dc".as_ref(), file.source.as_os_str()])?;
                std::fs::write(&dest, bytes).map_err(|e| write_err(&dest, e))?;
            }
            None => {
                std::fs::copy(&file.source, &dest)
                    .map_err(|source| PackError::Read { path: file.source.clone(), source })?;
            }
        }
        dests.push(plain);
    }
    std::fs::create_dir_all(&release_dir).map_err(|e| write_err(&release_dir, e))?;
    for index in KEPT_INDEXES {
        let from = tree.meta_dir.join(index);
        if from.is_file() {
            std::fs::copy(&from, release_dir.join(index)).map_err(|source| PackError::Read { path: from, source })?;
        }
    }
    // depmod orders modules.dep by it; the tree's own lists files we do not carry.
    let order: String = dests.iter().map(|d| format!("{d}\n")).collect();
    let order_path = release_dir.join("modules.order");
    std::fs::write(&order_path, order).map_err(|e| write_err(&order_path, e))?;
    // -C /dev/null: the host's depmod.d (search orders, overrides) is not the guest's.
    host_tools::run(
        depmod,
        &["-C".as_ref(), "/dev/null".as_ref(), "-b".as_ref(), stage.as_os_str(), tree.release.as_ref()],
    )?;

    let archive = archive_dir(&stage)?;
    let mut initramfs = std::fs::read(base).map_err(|source| PackError::Read { path: base.to_path_buf(), source })?;
    // Linux looks for the next archive at a 4-byte boundary after a compressed one.
    initramfs.resize(initramfs.len().next_multiple_of(4), 0);
    initramfs.extend(archive);
    let out = work.join("initramfs-with-modules");
    std::fs::write(&out, initramfs).map_err(|e| write_err(&out, e))?;
    Ok(out)
}

/// A newc archive of everything below `root` (directories before their contents),
/// owned by root as in the image's own archive.
fn archive_dir(root: &Path) -> Result<Vec<u8>, PackError> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    collect(root, root, &mut dirs, &mut files)?;
    let mut entries: Vec<CpioEntry<'_>> = dirs.iter().map(|d| CpioEntry::Dir { name: d, mode: 0o755 }).collect();
    entries.extend(files.iter().map(|(name, data)| CpioEntry::File(CpioFile { name, mode: 0o644, data })));
    Ok(archive_entries(&entries))
}

fn collect(root: &Path, dir: &Path, dirs: &mut Vec<String>, files: &mut Vec<(String, Vec<u8>)>) -> Result<(), PackError> {
    let read_err = |path: &Path, source| PackError::Read { path: path.to_path_buf(), source };
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(|e| read_err(dir, e))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        if path.is_dir() {
            dirs.push(name);
            collect(root, &path, dirs, files)?;
        } else {
            files.push((name, std::fs::read(&path).map_err(|e| read_err(&path, e))?));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tree::TreeShape;

    #[test]
    fn archive_follows_the_base_and_carries_the_index() {
        let depmod = host_tools::find("depmod", "kmod").unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("kernel/x")).unwrap();
        // Not real modules: depmod indexes what it can and keeps going.
        std::fs::write(src.join("kernel/x/a.ko"), b"not elf").unwrap();
        let xz = std::process::Command::new("xz").args(["-zk"]).arg(src.join("kernel/x/a.ko")).status();
        assert!(xz.expect("xz (apt-get install xz-utils)").success());
        std::fs::rename(src.join("kernel/x/a.ko.xz"), src.join("kernel/x/b.ko.xz")).unwrap();
        std::fs::write(src.join("modules.builtin"), "kernel/drivers/dax/dax.ko\n").unwrap();
        let tree = ModuleTree {
            release: "6.12.9-test".into(),
            shape: TreeShape::Installed,
            meta_dir: src.clone(),
            modules: Default::default(),
            builtin: Default::default(),
        };
        let base = dir.path().join("base");
        std::fs::write(&base, b"\x1f\x8b\x08gzipped-image!").unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let files = [
            ModuleFile { source: src.join("kernel/x/a.ko"), dest: "kernel/x/a.ko".into() },
            ModuleFile { source: src.join("kernel/x/b.ko.xz"), dest: "kernel/x/b.ko.xz".into() },
        ];
        let out = pack(&tree, &files, &base, &work, &depmod).unwrap();
        let bytes = std::fs::read(out).unwrap();
        // 17 bytes, then zeros up to the 4-byte boundary.
        assert!(bytes.starts_with(b"\x1f\x8b\x08gzipped-image!\0\0\0"));
        let second = &bytes[20..];
        assert!(second.starts_with(b"070701"));

        let unpacked = dir.path().join("unpacked");
        std::fs::create_dir(&unpacked).unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-idm", "--quiet"])
            .current_dir(&unpacked)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("cpio (apt-get install cpio)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(second).unwrap();
        assert!(child.wait().unwrap().success());
        let rel = unpacked.join("lib/modules/6.12.9-test");
        assert_eq!(std::fs::read(rel.join("kernel/x/a.ko")).unwrap(), b"not elf");
        // Stored decompressed, under the plain name.
        assert_eq!(std::fs::read(rel.join("kernel/x/b.ko")).unwrap(), b"not elf");
        assert!(!rel.join("kernel/x/b.ko.xz").exists());
        assert_eq!(std::fs::read_to_string(rel.join("modules.order")).unwrap(), "kernel/x/a.ko\nkernel/x/b.ko\n");
        for index in ["modules.builtin", "modules.builtin.bin", "modules.dep", "modules.dep.bin"] {
            assert!(rel.join(index).is_file(), "{index} missing");
        }
    }
}
