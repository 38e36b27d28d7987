//! The exporter: turns a provider's [`ExportPlan`] into a rootfs tree.
//!
//! The tree mirrors the source root (the host's `/`) for exactly the closure's paths:
//!
//! 1. the source root's merged-/usr links (`/bin -> usr/bin`, ...) are recreated first, so
//!    that `/bin/bash` and `/usr/bin/bash` are one file, as on the host;
//! 2. every planned path is located on the source root with [`rootpath::resolve`] on its
//!    parent (so links are followed the way the host follows them, but never out of the
//!    root) and recreated at the same resolved place: directories, symbolic links as they are,
//!    regular files copied (the kernel's `copy_file_range`, reflinks where the filesystem has
//!    them). Set-id bits are dropped; devices, fifos and sockets are skipped. A path that is
//!    missing (excluded by dpkg's `path-exclude`, or removed by an admin) or unreadable to the
//!    user is counted and skipped: a rootless export copies what the user can read;
//! 3. alternatives whose chosen target is in the tree get their `/etc/alternatives` link and
//!    generic link: the host's current choice when it is in the closure, else the
//!    highest-priority choice that is;
//! 4. mount points of the default mounts (`/etc/resolv.conf`, `/etc/hosts`, `/etc/passwd`,
//!    `/etc/group`) are created empty, because the tree is never modified at launch;
//! 5. the manifest's fsEntries are applied last, in order, so they can override files.
//!
//! Invariant: nothing is ever written outside `dest`. Every write goes to a path that was
//! resolved inside the source root (which has no links on it) and whose last component is
//! created exclusively, so a link planted in the tree cannot redirect a write.

use crate::manifest::FsEntry;
use crate::packages::Alternative;
use crate::rootpath;
use std::collections::{BTreeSet, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Default mount targets that must exist in the tree because their parent (`/etc`) is bound
/// read-only from it.
pub const MOUNT_POINT_FILES: [&str; 4] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/passwd",
    "/etc/group",
];

/// What an export did, for `meta.json` and the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub alternatives: u64,
    /// Planned paths that do not exist on the source root.
    pub missing: u64,
    /// Planned files the user cannot read; their paths, for `paude list` and debugging.
    pub unreadable: Vec<String>,
    /// Library directories named by the tree's `/etc/ld.so.conf.d`, in the loader's order;
    /// the sandbox's default `LD_LIBRARY_PATH`, since the tree has no `ld.so.cache`.
    pub library_dirs: Vec<String>,
}

/// Why an export failed: the path and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An fsEntry could not be applied: which one, by its manifest field.
    #[error("fsEntries[{index}] ({path})")]
    Entry {
        index: usize,
        path: PathBuf,
        #[source]
        source: Box<ExportError>,
    },
}

fn fail<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ExportError + 'a {
    move |source| ExportError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Unpacks one package: copies `paths` (the package's planned paths, in order) from
/// `source_root` into the empty directory `dest`, at the places the host resolves them to
/// (step 2 of the module documentation). `copied` counts the bytes copied, for progress.
pub fn unpack(
    paths: &[PathBuf],
    source_root: &Path,
    dest: &Path,
    copied: &AtomicU64,
) -> Result<ExportStats, ExportError> {
    let mut exporter = Exporter::new(source_root, dest);
    exporter.copied = Some(copied);
    for path in paths {
        exporter.entry(path)?;
    }
    Ok(exporter.stats)
}

/// Assembles a rootfs in the empty directory `dest` from unpacked packages (`trees`, in
/// closure order; an earlier package's file wins over a later one's at the same place), by
/// hard links, so that every environment holding a package shares its files: steps 1 and 3–5
/// of the module documentation around linking the trees. The returned statistics count
/// what was linked and made here; the caller adds what the packages' unpacking counted.
pub fn assemble(
    trees: &[PathBuf],
    source_root: &Path,
    alternatives: &[Alternative],
    fs_entries: &[FsEntry],
    dest: &Path,
) -> Result<ExportStats, ExportError> {
    let mut exporter = Exporter::new(source_root, dest);
    exporter.merged_usr_links()?;
    for tree in trees {
        exporter.link_tree(tree, Path::new("/"))?;
    }
    for alternative in alternatives {
        exporter.alternative(alternative)?;
    }
    for file in MOUNT_POINT_FILES {
        exporter.mount_point_file(Path::new(file))?;
    }
    for (index, entry) in fs_entries.iter().enumerate() {
        exporter
            .fs_entry(entry)
            .map_err(|source| ExportError::Entry {
                index,
                path: entry.path().to_path_buf(),
                source: Box::new(source),
            })?;
    }
    exporter.stats.library_dirs = library_dirs(dest);
    Ok(exporter.stats)
}

struct Exporter<'a> {
    source: &'a Path,
    dest: &'a Path,
    stats: ExportStats,
    /// Resolved paths already placed in the tree (a package may list a path twice).
    placed: HashSet<PathBuf>,
    /// Bytes copied so far, shared with whoever shows progress.
    copied: Option<&'a AtomicU64>,
    /// Where fsEntries were made: a later entry there replaces the manifest's own.
    made_by_entries: HashSet<PathBuf>,
}

impl<'a> Exporter<'a> {
    fn new(source: &'a Path, dest: &'a Path) -> Exporter<'a> {
        Exporter {
            source,
            dest,
            stats: ExportStats::default(),
            placed: HashSet::new(),
            copied: None,
            made_by_entries: HashSet::new(),
        }
    }

    /// Step 2 of an assembly: links every entry of the unpacked tree `from` (whose place in
    /// the rootfs is `place`) into the tree. Directories are made, with the unpacked one's
    /// mode, when the tree lacks them; files and links are hard links. Whatever an earlier
    /// package put at a place stays; a place where the tree has a non-directory and `from` a
    /// directory (the host changed between two unpackings) is left out and counted missing.
    fn link_tree(&mut self, from: &Path, place: &Path) -> Result<(), ExportError> {
        let entries = fs::read_dir(from).map_err(fail("listing", from))?;
        for entry in entries {
            let entry = entry.map_err(fail("listing", from))?;
            let kind = entry
                .file_type()
                .map_err(fail("inspecting", &entry.path()))?;
            let inner = place.join(entry.file_name());
            let target = rootpath::under(self.dest, &inner);
            if kind.is_dir() {
                match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        self.stats.missing += 1;
                        continue;
                    }
                    Err(_) => {
                        let meta = entry
                            .metadata()
                            .map_err(fail("inspecting", &entry.path()))?;
                        self.make_dir(&target, meta.permissions().mode() & 0o7777)?;
                    }
                }
                self.link_tree(&entry.path(), &inner)?;
                continue;
            }
            match fs::hard_link(entry.path(), &target) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                // Too many links to one inode (a file shared by very many environments on a
                // file system with a low limit), or the package store on another file system
                // than the tree: this tree gets a copy of its own.
                Err(error) if matches!(error.raw_os_error(), Some(libc::EMLINK | libc::EXDEV)) => {
                    self.copy_entry(&entry.path(), kind.is_symlink(), &target)?;
                }
                Err(error) => {
                    return Err(ExportError::Io {
                        action: "linking",
                        path: target,
                        source: error,
                    });
                }
            }
            if kind.is_symlink() {
                self.stats.symlinks += 1;
            } else {
                self.stats.files += 1;
            }
        }
        Ok(())
    }

    /// Step 1: top-level links of the source root that point into `usr/` (merged /usr).
    fn merged_usr_links(&mut self) -> Result<(), ExportError> {
        let entries = std::fs::read_dir(self.source).map_err(fail("listing", self.source))?;
        let mut links = BTreeSet::new();
        for entry in entries.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let text = target.to_string_lossy();
            if text == "usr" || text.starts_with("usr/") || text.starts_with("/usr/") {
                links.insert((entry.file_name(), target));
            }
        }
        for (name, target) in links {
            let path = self.dest.join(&name);
            symlink(&target, &path).map_err(fail("creating the link", &path))?;
            self.placed.insert(PathBuf::from("/").join(name));
            self.stats.symlinks += 1;
        }
        Ok(())
    }

    /// Copies an unpacked file or link to `target` (where a hard link cannot be made).
    fn copy_entry(&mut self, from: &Path, is_link: bool, target: &Path) -> Result<(), ExportError> {
        if is_link {
            let link = fs::read_link(from).map_err(fail("reading the link", from))?;
            return self.replace_with(target, |path| symlink(&link, path));
        }
        let mut file = fs::File::open(from).map_err(fail("opening", from))?;
        let mode = file
            .metadata()
            .map_err(fail("inspecting", from))?
            .permissions()
            .mode()
            & 0o777;
        write_new(target, mode, Contents::File(&mut file), None).map(|_| ())
    }

    /// Step 2: one planned path.
    fn entry(&mut self, planned: &Path) -> Result<(), ExportError> {
        let (Some(parent), Some(name)) = (planned.parent(), planned.file_name()) else {
            return Ok(());
        };
        let parent = match rootpath::resolve(self.source, parent) {
            Ok(resolved) if resolved.exists() => resolved.path,
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                self.stats.unreadable.push(planned.display().to_string());
                return Ok(());
            }
            Ok(_) | Err(_) => {
                self.stats.missing += 1;
                return Ok(());
            }
        };
        let place = parent.join(name);
        if self.placed.contains(&place) {
            return Ok(());
        }
        let source = rootpath::under(self.source, &place);
        let meta = match fs::symlink_metadata(&source) {
            Ok(meta) => meta,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.stats.missing += 1;
                return Ok(());
            }
            // A directory above it that this user may not search (say a 0700 rules.d):
            // like an unreadable file, left out and counted.
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                self.stats.unreadable.push(place.display().to_string());
                return Ok(());
            }
            Err(error) => {
                return Err(ExportError::Io {
                    action: "inspecting",
                    path: source,
                    source: error,
                });
            }
        };
        self.ensure_dir(&parent)?;
        let target = rootpath::under(self.dest, &place);
        let kind = meta.file_type();
        if kind.is_dir() {
            // Owner rwx always: the tree must stay removable by its owner. The sticky bit
            // stays (a rootfs /var/tmp keeps its meaning); set-group-ID does not.
            let mode = (meta.permissions().mode() & 0o1777) | 0o700;
            self.make_dir(&target, mode)?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(&source).map_err(fail("reading the link", &source))?;
            self.replace_with(&target, |path| symlink(&link, path))?;
            self.stats.symlinks += 1;
        } else if kind.is_file() {
            let mut from = match fs::File::open(&source) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                    self.stats.unreadable.push(place.display().to_string());
                    return Ok(());
                }
                Err(error) => {
                    return Err(ExportError::Io {
                        action: "opening",
                        path: source,
                        source: error,
                    });
                }
            };
            let mode = meta.permissions().mode() & 0o777;
            let bytes = write_new(&target, mode, Contents::File(&mut from), self.copied)?;
            self.stats.files += 1;
            self.stats.bytes += bytes;
        }
        self.placed.insert(place);
        Ok(())
    }

    /// Creates every missing directory of `path` (a resolved path) in the tree, mode 0755.
    fn ensure_dir(&mut self, path: &Path) -> Result<(), ExportError> {
        let target = rootpath::under(self.dest, path);
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(ExportError::Io {
                    action: "creating the directory",
                    path: target,
                    source: io::Error::other("a non-directory is in the way"),
                });
            }
            Err(_) => {}
        }
        if let Some(parent) = path.parent() {
            self.ensure_dir(parent)?;
        }
        self.make_dir(&target, 0o755)
    }

    fn make_dir(&mut self, target: &Path, mode: u32) -> Result<(), ExportError> {
        match std::fs::create_dir(target) {
            Ok(()) => self.stats.dirs += 1,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                if !fs::symlink_metadata(target)
                    .map(|m| m.is_dir())
                    .unwrap_or(false)
                {
                    return Err(ExportError::Io {
                        action: "creating the directory",
                        path: target.to_path_buf(),
                        source: io::Error::other("a non-directory is in the way"),
                    });
                }
            }
            Err(error) => {
                return Err(ExportError::Io {
                    action: "creating the directory",
                    path: target.to_path_buf(),
                    source: error,
                });
            }
        }
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
            .map_err(fail("setting the mode of", target))
    }

    /// Replaces whatever non-directory is at `target` with what `make` creates.
    fn replace_with(
        &mut self,
        target: &Path,
        make: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<(), ExportError> {
        remove_non_dir(target)?;
        make(target).map_err(fail("creating", target))
    }

    /// Step 3: one alternatives group.
    fn alternative(&mut self, alternative: &Alternative) -> Result<(), ExportError> {
        let in_tree = |path: &Path| -> bool {
            rootpath::resolve(self.dest, path)
                .map(|r| r.exists())
                .unwrap_or(false)
        };
        let current = std::fs::read_link(rootpath::under(
            self.source,
            &Path::new("/etc/alternatives").join(&alternative.name),
        ))
        .ok();
        let chosen = current
            .as_deref()
            .and_then(|path| {
                alternative
                    .choices
                    .iter()
                    .find(|choice| choice.path == path)
            })
            .filter(|choice| in_tree(&choice.path))
            .or_else(|| {
                let mut best: Option<&crate::packages::AlternativeChoice> = None;
                for choice in alternative.choices.iter().filter(|c| in_tree(&c.path)) {
                    if best.is_none_or(|b| choice.priority > b.priority) {
                        best = Some(choice);
                    }
                }
                best
            });
        let Some(chosen) = chosen else { return Ok(()) };
        self.alternative_link(&alternative.name, &alternative.link, &chosen.path)?;
        for ((name, link), target) in alternative.slaves.iter().zip(&chosen.slaves) {
            if let Some(target) = target
                && in_tree(target)
            {
                self.alternative_link(name, link, target)?;
            }
        }
        self.stats.alternatives += 1;
        Ok(())
    }

    /// `/etc/alternatives/<name> -> target` and `link -> /etc/alternatives/<name>`.
    fn alternative_link(
        &mut self,
        name: &str,
        link: &Path,
        target: &Path,
    ) -> Result<(), ExportError> {
        if name.contains('/') || name.is_empty() || name == "." || name == ".." {
            return Ok(());
        }
        let directory = Path::new("/etc/alternatives");
        self.ensure_dir(directory)?;
        let entry = directory.join(name);
        let entry_in_tree = rootpath::under(self.dest, &entry);
        self.replace_with(&entry_in_tree, |path| symlink(target, path))?;
        let (Some(parent), Some(file_name)) = (link.parent(), link.file_name()) else {
            return Ok(());
        };
        let Ok(parent) = rootpath::resolve(self.dest, parent) else {
            return Ok(());
        };
        self.ensure_dir(&parent.path)?;
        let link_in_tree = rootpath::under(self.dest, &parent.path.join(file_name));
        if fs::symlink_metadata(&link_in_tree).is_err() {
            symlink(&entry, &link_in_tree).map_err(fail("creating the link", &link_in_tree))?;
            self.stats.symlinks += 1;
        }
        Ok(())
    }

    /// Step 4: an empty file to mount over, unless the closure brought one.
    fn mount_point_file(&mut self, path: &Path) -> Result<(), ExportError> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        self.ensure_dir(parent)?;
        let target = rootpath::under(self.dest, path);
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_file() => Ok(()),
            _ => {
                self.replace_with(&target, |p| std::fs::write(p, b""))?;
                Ok(())
            }
        }
    }

    /// Step 5: one fsEntry. Its parent is resolved inside the tree, so a link in the tree
    /// (even an absolute one) leads where it will lead inside the sandbox, never out.
    fn fs_entry(&mut self, entry: &FsEntry) -> Result<(), ExportError> {
        let path = entry.path();
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(());
        };
        let parent = rootpath::resolve(self.dest, parent)
            .map_err(fail("resolving the fsEntry parent of", path))?;
        self.ensure_dir(&parent.path)?;
        let target = rootpath::under(self.dest, &parent.path.join(name));
        // A file or link of the closure (or a mount point) at the entry's place is replaced only
        // where the manifest says so; an earlier entry's is the manifest's own.
        if !matches!(entry, FsEntry::Dir { .. })
            && !entry.overrides()
            && !self.made_by_entries.contains(&target)
            && let Ok(meta) = fs::symlink_metadata(&target)
            && !meta.is_dir()
        {
            return Err(ExportError::Io {
                action: "creating",
                path: target,
                source: io::Error::other(
                    "a file of the closure is there; add `override: true` to the entry to \
                     replace it, or choose another path",
                ),
            });
        }
        self.made_by_entries.insert(target.clone());
        match entry {
            FsEntry::Dir { mode, .. } => {
                // A package's file is never silently replaced by a directory.
                if fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
                    return Err(ExportError::Io {
                        action: "creating the directory",
                        path: target,
                        source: io::Error::other(
                            "a file or link of the closure is there; a dir entry cannot replace it",
                        ),
                    });
                }
                // Exactly the mode asked for; removal copes with read-only directories.
                self.make_dir(&target, *mode)?;
            }
            FsEntry::File { mode, contents, .. } => {
                write_new(&target, *mode, Contents::Bytes(contents.as_bytes()), None)?;
                self.stats.files += 1;
            }
            FsEntry::Symlink { target: link, .. } => {
                self.replace_with(&target, |p| symlink(link, p))?;
                self.stats.symlinks += 1;
            }
        }
        Ok(())
    }
}

/// What a new file is made of.
enum Contents<'a> {
    Bytes(&'a [u8]),
    /// A file of the source root, copied by reflink where the file system can share blocks
    /// (btrfs, XFS), else by `copy_file_range` (in the kernel, no round trip through paude).
    File(&'a mut fs::File),
}

/// Set once a reflink failed because the file systems cannot do it: not tried again.
static NO_REFLINK: AtomicBool = AtomicBool::new(false);

/// Writes a new regular file at `target` (replacing a file or link there) with `contents`,
/// and gives it `mode`. `create_new` refuses to write through anything already there.
/// `copied`, when given, grows by the bytes written.
fn write_new(
    target: &Path,
    mode: u32,
    contents: Contents<'_>,
    copied: Option<&AtomicU64>,
) -> Result<u64, ExportError> {
    remove_non_dir(target)?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)
        .map_err(fail("creating", target))?;
    let bytes = match contents {
        Contents::Bytes(bytes) => {
            io::Write::write_all(&mut to, bytes).map_err(fail("writing", target))?;
            bytes.len() as u64
        }
        Contents::File(from) => reflink_or_copy(from, &mut to).map_err(fail("writing", target))?,
    };
    to.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(fail("setting the mode of", target))?;
    if let Some(copied) = copied {
        copied.fetch_add(bytes, Ordering::Relaxed);
    }
    Ok(bytes)
}

fn reflink_or_copy(from: &mut fs::File, to: &mut fs::File) -> io::Result<u64> {
    if !NO_REFLINK.load(Ordering::Relaxed) {
        match rustix::fs::ioctl_ficlone(&*to, &*from) {
            Ok(()) => return Ok(from.metadata()?.len()),
            // Not this file system, not across two, or not this kind of file: copy instead.
            Err(
                rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::XDEV
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::NOTTY
                | rustix::io::Errno::PERM,
            ) => NO_REFLINK.store(true, Ordering::Relaxed),
            Err(errno) => return Err(errno.into()),
        }
    }
    io::copy(from, to)
}

/// Removes a file or link at `path` (not a directory); absent is fine.
fn remove_non_dir(path: &Path) -> Result<(), ExportError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(ExportError::Io {
            action: "replacing",
            path: path.to_path_buf(),
            source: io::Error::other("a directory is in the way"),
        }),
        Ok(_) => std::fs::remove_file(path).map_err(fail("removing", path)),
        Err(_) => Ok(()),
    }
}

/// The library directories that `/etc/ld.so.conf` and `/etc/ld.so.conf.d/*.conf` of the tree
/// name and that exist in it, in the order ldconfig would index them.
fn library_dirs(dest: &Path) -> Vec<String> {
    // fsEntries may have put links here: everything is resolved inside the tree, and only
    // regular files are read, a bounded amount each (a link to a fifo or /dev/zero must not
    // hang or exhaust the build).
    const MAX_CONF_BYTES: u64 = 64 * 1024;
    let regular_in_tree = |path: &Path| -> Option<PathBuf> {
        let resolved = rootpath::resolve(dest, path).ok()?;
        let inside = rootpath::under(dest, &resolved.path);
        fs::symlink_metadata(&inside)
            .ok()?
            .is_file()
            .then_some(inside)
    };
    let Ok(conf_dir) = rootpath::resolve(dest, Path::new("/etc/ld.so.conf.d")) else {
        return Vec::new();
    };
    let mut names: Vec<OsString> = fs::read_dir(rootpath::under(dest, &conf_dir.path))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name())
                .filter(|name| Path::new(name).extension() == Some(OsStr::new("conf")))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut dirs: Vec<String> = Vec::new();
    for name in names {
        let Some(conf) = regular_in_tree(&conf_dir.path.join(&name)) else {
            continue;
        };
        let mut text = String::new();
        let read = fs::File::open(&conf).and_then(|file| {
            io::Read::read_to_string(&mut io::Read::take(file, MAX_CONF_BYTES), &mut text)
        });
        if read.is_err() {
            continue;
        }
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if !line.starts_with('/') || line.contains("..") {
                continue;
            }
            let exists = rootpath::resolve(dest, Path::new(line))
                .map(|r| r.exists())
                .unwrap_or(false);
            if exists && !dirs.iter().any(|d| d == line) {
                dirs.push(line.to_string());
            }
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::{AlternativeChoice, ExportEntry, ExportPlan};
    use std::os::unix::fs::MetadataExt;

    /// What a build does: each package unpacked into a tree of its own, then the rootfs
    /// assembled from the trees, with the statistics added up as the store adds them.
    fn export(
        plan: &ExportPlan,
        source: &Path,
        fs_entries: &[FsEntry],
        dest: &Path,
    ) -> Result<ExportStats, ExportError> {
        let unpacked = tempfile::tempdir().unwrap();
        let mut packages: std::collections::BTreeMap<usize, Vec<PathBuf>> = Default::default();
        for entry in &plan.entries {
            packages
                .entry(entry.package)
                .or_default()
                .push(entry.path.clone());
        }
        let (mut trees, mut counted) = (Vec::new(), Vec::new());
        for (package, paths) in packages {
            let tree = unpacked.path().join(package.to_string());
            std::fs::create_dir(&tree).unwrap();
            counted.push(unpack(&paths, source, &tree, &AtomicU64::new(0))?);
            trees.push(tree);
        }
        let mut stats = assemble(&trees, source, &plan.alternatives, fs_entries, dest)?;
        for package in counted {
            stats.bytes += package.bytes;
            stats.missing += package.missing;
            stats.unreadable.extend(package.unreadable);
        }
        Ok(stats)
    }

    /// A small source root: merged /usr, a set-uid program, an unreadable-to-nobody file is
    /// not portable to create as root, so only readable files here.
    fn source() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(root.join("etc/ld.so.conf.d")).unwrap();
        std::fs::create_dir_all(root.join("etc/alternatives")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        // Not a merged-/usr link: must not be mirrored.
        symlink("boot/vmlinuz-6", root.join("vmlinuz")).unwrap();
        std::fs::write(root.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            root.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::fs::write(root.join("usr/bin/nano"), "nano").unwrap();
        std::fs::write(root.join("usr/bin/vim"), "vim").unwrap();
        std::fs::write(root.join("usr/bin/other.distrib"), "diverted").unwrap();
        std::fs::write(root.join("usr/lib/x86_64-linux-gnu/libx.so.1.0"), "lib").unwrap();
        symlink(
            "libx.so.1.0",
            root.join("usr/lib/x86_64-linux-gnu/libx.so.1"),
        )
        .unwrap();
        std::fs::write(
            root.join("etc/ld.so.conf.d/x86_64.conf"),
            "# comment\n/lib/x86_64-linux-gnu\n/usr/lib/nothere\n",
        )
        .unwrap();
        // The host's current editor choice is vim, which the closure does not have.
        symlink("/usr/bin/vim", root.join("etc/alternatives/editor")).unwrap();
        dir
    }

    fn plan(paths: &[&str]) -> ExportPlan {
        ExportPlan {
            entries: paths
                .iter()
                .map(|p| ExportEntry {
                    package: 0,
                    path: PathBuf::from(p),
                })
                .collect(),
            alternatives: vec![Alternative {
                name: "editor".into(),
                link: "/usr/bin/editor".into(),
                slaves: vec![],
                choices: vec![
                    AlternativeChoice {
                        path: "/usr/bin/vim".into(),
                        priority: 30,
                        slaves: vec![],
                    },
                    AlternativeChoice {
                        path: "/bin/nano".into(),
                        priority: 40,
                        slaves: vec![],
                    },
                ],
            }],
            ..ExportPlan::default()
        }
    }

    #[test]
    fn exports_the_planned_paths_through_merged_usr() {
        let source = source();
        let dest = tempfile::tempdir().unwrap();
        let paths = [
            "/bin",
            "/bin/tool",
            "/bin/nano",
            "/lib/x86_64-linux-gnu/libx.so.1.0",
            "/lib/x86_64-linux-gnu/libx.so.1",
            "/etc/ld.so.conf.d/x86_64.conf",
            "/usr/share/doc/excluded",
            "/bin/tool",
        ];
        let stats = export(&plan(&paths), source.path(), &[], dest.path()).unwrap();
        let d = dest.path();
        assert_eq!(
            std::fs::read_link(d.join("bin")).unwrap(),
            PathBuf::from("usr/bin")
        );
        assert!(
            !d.join("vmlinuz").exists() && std::fs::symlink_metadata(d.join("vmlinuz")).is_err()
        );
        assert_eq!(
            std::fs::read_to_string(d.join("usr/bin/tool")).unwrap(),
            "#!/bin/sh\n"
        );
        // Set-id bits are dropped.
        assert_eq!(
            std::fs::metadata(d.join("usr/bin/tool")).unwrap().mode() & 0o7777,
            0o755
        );
        assert_eq!(
            std::fs::read_link(d.join("usr/lib/x86_64-linux-gnu/libx.so.1")).unwrap(),
            PathBuf::from("libx.so.1.0")
        );
        // vim is not in the closure: nano, the best choice that is, becomes the editor.
        assert_eq!(
            std::fs::read_link(d.join("etc/alternatives/editor")).unwrap(),
            PathBuf::from("/bin/nano")
        );
        assert_eq!(
            std::fs::read_link(d.join("usr/bin/editor")).unwrap(),
            PathBuf::from("/etc/alternatives/editor")
        );
        assert!(!d.join("usr/bin/vim").exists());
        // Mount points of the default mounts exist, empty.
        for file in MOUNT_POINT_FILES {
            assert_eq!(
                std::fs::read(rootpath::under(d, Path::new(file))).unwrap(),
                b""
            );
        }
        assert_eq!(stats.files, 4);
        assert_eq!(stats.missing, 1);
        assert_eq!(stats.alternatives, 1);
        assert_eq!(
            stats.library_dirs,
            vec!["/lib/x86_64-linux-gnu".to_string()]
        );
    }

    #[test]
    fn assembled_trees_link_the_unpacked_files_and_the_first_package_wins() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        for (tree, text) in [(one.path(), "one"), (two.path(), "two")] {
            std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
            std::fs::write(tree.join("usr/bin/shared"), text).unwrap();
            symlink("shared", tree.join("usr/bin/link")).unwrap();
        }
        std::fs::write(two.path().join("usr/bin/only-two"), "2").unwrap();
        std::fs::set_permissions(
            two.path().join("usr/bin"),
            fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        let source = source();
        let dest = tempfile::tempdir().unwrap();
        let trees = [one.path().to_path_buf(), two.path().to_path_buf()];
        let stats = assemble(&trees, source.path(), &[], &[], dest.path()).unwrap();
        let d = dest.path();
        assert_eq!(
            std::fs::read_to_string(d.join("usr/bin/shared")).unwrap(),
            "one"
        );
        let linked = std::fs::metadata(d.join("usr/bin/shared")).unwrap();
        let unpacked = std::fs::metadata(one.path().join("usr/bin/shared")).unwrap();
        assert_eq!(linked.ino(), unpacked.ino());
        assert_eq!(
            std::fs::read_to_string(d.join("usr/bin/only-two")).unwrap(),
            "2"
        );
        assert_eq!(
            std::fs::read_link(d.join("usr/bin/link")).unwrap(),
            PathBuf::from("shared")
        );
        // The first package's directory, with its mode, is the one the tree has.
        assert_eq!(
            std::fs::metadata(d.join("usr/bin")).unwrap().mode() & 0o7777,
            0o755
        );
        assert_eq!((stats.files, stats.symlinks), (2, 1 + 2));
    }

    #[test]
    fn the_hosts_choice_wins_when_it_is_in_the_closure() {
        let source = source();
        let dest = tempfile::tempdir().unwrap();
        export(
            &plan(&["/usr/bin/vim", "/usr/bin/nano"]),
            source.path(),
            &[],
            dest.path(),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_link(dest.path().join("etc/alternatives/editor")).unwrap(),
            PathBuf::from("/usr/bin/vim")
        );
    }

    #[test]
    fn an_fs_entry_replaces_a_closure_file_only_when_it_says_so() {
        let source = source();
        for overrides in [false, true] {
            let dest = tempfile::tempdir().unwrap();
            let entries = vec![FsEntry::File {
                path: "/usr/bin/tool".into(),
                mode: 0o755,
                contents: "mine".into(),
                overrides,
            }];
            let built = export(
                &plan(&["/usr/bin/tool"]),
                source.path(),
                &entries,
                dest.path(),
            );
            match built {
                Ok(_) => {
                    assert!(overrides);
                    let tool = dest.path().join("usr/bin/tool");
                    assert_eq!(std::fs::read_to_string(tool).unwrap(), "mine");
                }
                Err(error) => {
                    assert!(!overrides);
                    let text = format!("{:#}", anyhow::Error::new(error));
                    assert!(text.contains("fsEntries[0] (/usr/bin/tool)"), "{text}");
                    assert!(text.contains("override: true"), "{text}");
                }
            }
        }
    }

    #[test]
    fn fs_entries_are_applied_last_and_cannot_escape() {
        let source = source();
        let dest = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let entries = vec![
            // A link in the tree pointing at an absolute path: inside the sandbox it means
            // the tree's own directory, so the next entry must land there, not on the host.
            FsEntry::Symlink {
                path: "/opt/escape".into(),
                target: outside.path().to_path_buf(),
                overrides: false,
            },
            FsEntry::File {
                path: "/opt/escape/planted".into(),
                mode: 0o600,
                contents: "x".into(),
                overrides: false,
            },
            FsEntry::File {
                path: "/usr/bin/tool".into(),
                mode: 0o700,
                contents: "replaced".into(),
                overrides: true,
            },
            FsEntry::Dir {
                path: "/srv/data".into(),
                mode: 0o1777,
            },
        ];
        export(
            &plan(&["/usr/bin/tool"]),
            source.path(),
            &entries,
            dest.path(),
        )
        .unwrap();
        let d = dest.path();
        assert!(
            std::fs::read_dir(outside.path()).unwrap().next().is_none(),
            "wrote outside the tree"
        );
        let planted = rootpath::under(d, &outside.path().join("planted"));
        assert_eq!(std::fs::read_to_string(&planted).unwrap(), "x");
        assert_eq!(
            std::fs::read_to_string(d.join("usr/bin/tool")).unwrap(),
            "replaced"
        );
        assert_eq!(
            std::fs::metadata(d.join("usr/bin/tool")).unwrap().mode() & 0o7777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(d.join("srv/data")).unwrap().mode() & 0o7777,
            0o1777
        );
    }

    #[test]
    fn library_dirs_never_read_through_links_out_of_the_tree() {
        let source = source();
        let dest = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("evil.conf"), "/usr/bin\n").unwrap();
        let fifo = host.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let entries = vec![
            FsEntry::Symlink {
                path: "/etc/ld.so.conf.d/a.conf".into(),
                target: host.path().join("evil.conf"),
                overrides: false,
            },
            FsEntry::Symlink {
                path: "/etc/ld.so.conf.d/b.conf".into(),
                target: fifo.clone(),
                overrides: false,
            },
            FsEntry::Symlink {
                path: "/etc/ld.so.conf.d/c.conf".into(),
                target: "/dev/zero".into(),
                overrides: false,
            },
        ];
        // Would hang on the fifo, or read the host's file, if links were followed out.
        let stats = export(
            &plan(&[
                "/etc/ld.so.conf.d/x86_64.conf",
                "/lib/x86_64-linux-gnu/libx.so.1.0",
            ]),
            source.path(),
            &entries,
            dest.path(),
        )
        .unwrap();
        assert_eq!(
            stats.library_dirs,
            vec!["/lib/x86_64-linux-gnu".to_string()]
        );
    }
}
