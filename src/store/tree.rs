//! Measuring and removing cached trees, relative to directory descriptors.
//!
//! Both walks open each directory with `O_NOFOLLOW` relative to its parent's descriptor and
//! look at entries with `AT_SYMLINK_NOFOLLOW`, so a link in a tree is never followed: a tree
//! holding `lib -> /usr/lib` or a link to the user's home is measured and removed as the link
//! it is. A rootfs has read-only directories (packages ship some, fsEntries may ask for
//! them); removal gives the owner write and search permission on a directory it cannot empty
//! or enter, and only then.
//!
//! Sizes are blocks on disk. An inode with several links is counted once in `total`, and in
//! `exclusive` only when every one of its links is in the tree (so removing the tree frees it).

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Bytes on disk of a tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSize {
    /// Every inode in the tree, once.
    pub total: u64,
    /// The inodes whose every link is in the tree: what removing it frees.
    pub exclusive: u64,
}

/// The size of the tree at `path`; zero when there is none.
pub fn size(path: &Path) -> io::Result<TreeSize> {
    walk(path, false)
}

/// Removes the tree at `path` (a directory, a file or a link; nothing when it is absent) and
/// returns what it held.
pub fn remove(path: &Path) -> io::Result<TreeSize> {
    walk(path, true)
}

struct Walk {
    remove: bool,
    /// Files with several links: how many of them this walk has seen.
    linked: HashMap<(u64, u64), u64>,
    size: TreeSize,
    /// Where the walk is, relative to the tree (for error messages): left at the failing
    /// entry when a step fails.
    inside: PathBuf,
    /// The tree's filesystem: the walk does not cross into another.
    device: Option<u64>,
}

/// Error messages name at most this much of a path inside a tree (its end).
const PATH_SHOWN: usize = 300;

fn walk(path: &Path, remove: bool) -> io::Result<TreeSize> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a removable path", path.display()),
            ));
        }
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let parent_fd = match rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(TreeSize::default()),
        Err(errno) => return Err(errno.into()),
    };
    let name = CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // One descriptor stays open per level of depth: allow as many as the hard limit lets a
    // tree be deep (fsEntries may be nested as deep as PATH_MAX allows).
    let mut limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).ok();
    }
    let mut state = Walk {
        remove,
        linked: HashMap::new(),
        size: TreeSize::default(),
        inside: PathBuf::new(),
        device: None,
    };
    match state.entry(parent_fd.as_fd(), &name) {
        Ok(()) => Ok(state.size),
        // Name the entry inside the tree that failed (its end, if it is very deep); the
        // caller names the tree.
        Err(error) if !state.inside.as_os_str().is_empty() => {
            let inside = state.inside.display().to_string();
            let shown = match inside.char_indices().rev().nth(PATH_SHOWN) {
                Some((cut, _)) => format!("…{}", &inside[cut..]),
                None => inside,
            };
            Err(io::Error::new(error.kind(), format!("{shown}: {error}")))
        }
        Err(error) => Err(error),
    }
}

impl Walk {
    /// Measures (and removes) the entry `name` of the directory `dir`.
    fn entry(&mut self, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
        self.step(dir, name)?;
        self.inside.pop();
        Ok(())
    }

    fn step(&mut self, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
        let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            // Gone already (another remover of the same leftover): nothing to do.
            Err(Errno::NOENT) => return Ok(()),
            // Below a directory this user may not search: measuring counts what it can see.
            Err(Errno::ACCESS) if !self.remove => return Ok(()),
            Err(errno) => return Err(errno.into()),
        };
        let bytes = (stat.st_blocks as u64).saturating_mul(512);
        let is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
        let device = *self.device.get_or_insert(stat.st_dev);
        if is_dir && stat.st_dev != device {
            // Something is mounted here; it is not part of the tree.
            if self.remove {
                return Err(io::Error::other(
                    "a file system is mounted here; unmount it first",
                ));
            }
            return Ok(());
        }
        self.count(&stat, bytes);
        if is_dir && let Some(child) = self.open_dir(dir, name)? {
            self.contents(child)?;
        }
        if self.remove {
            let flags = if is_dir {
                AtFlags::REMOVEDIR
            } else {
                AtFlags::empty()
            };
            match rustix::fs::unlinkat(dir, name, flags) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(errno @ (Errno::ACCESS | Errno::PERM)) => {
                    // The parent is read-only: open it up, once, and try again. If that is
                    // not allowed either (another owner), the first refusal is the cause.
                    writable(dir).map_err(|_| io::Error::from(errno))?;
                    rustix::fs::unlinkat(dir, name, flags)?;
                }
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(())
    }

    fn count(&mut self, stat: &rustix::fs::Stat, bytes: u64) {
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            self.size.total += bytes;
            self.size.exclusive += bytes;
            return;
        }
        let inode = (stat.st_dev, stat.st_ino);
        let seen = self.linked.get(&inode).copied().unwrap_or(0) + 1;
        if seen == 1 {
            self.size.total += bytes;
        }
        // Exclusive once no link is left outside what this walk has seen. A removal has
        // already unlinked the links it saw, so the count it reads is what remains.
        let last = if self.remove {
            stat.st_nlink <= 1
        } else {
            seen >= stat.st_nlink
        };
        if last {
            self.size.exclusive += bytes;
        }
        if stat.st_nlink > 1 || seen > 1 {
            self.linked.insert(inode, seen);
        }
    }

    /// Opens the directory `name` of `dir` to read it; a removal first gives the owner read,
    /// write and search permission on it. `None`: a measurement may not enter it.
    fn open_dir(&self, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<OwnedFd>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ACCESS) if self.remove => {
                // Not even readable by its owner. The chmod goes through a descriptor of what
                // is there now, opened without following a link, and only if it is a
                // directory: a sandbox can write in the store's kept venvs, and could have
                // swapped a link to a host file in since `statat` looked.
                let path_flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let held = rustix::fs::openat(dir, name, path_flags, Mode::empty())?;
                let kind = rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&held)?.st_mode);
                if kind != rustix::fs::FileType::Directory {
                    return Err(Errno::NOTDIR.into());
                }
                let through = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held));
                rustix::fs::chmod(through.as_str(), Mode::from_raw_mode(0o700))?;
                rustix::fs::openat(dir, name, flags, Mode::empty())?
            }
            Err(Errno::ACCESS) => return Ok(None),
            Err(errno) => return Err(errno.into()),
        };
        if self.remove {
            // Readable but not searchable or writable (0444, 0555, ...): its entries could be
            // neither looked at nor unlinked.
            writable(fd.as_fd())?;
        }
        Ok(Some(fd))
    }

    fn contents(&mut self, dir: OwnedFd) -> io::Result<()> {
        // Read the whole directory before changing it.
        let mut names = Vec::new();
        let mut stream = Dir::new(rustix::io::dup(&dir)?)?;
        while let Some(entry) = stream.read() {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_bytes() != b"." && name.to_bytes() != b".." {
                names.push(name.to_owned());
            }
        }
        drop(stream);
        for name in names {
            self.inside.push(OsStr::from_bytes(name.to_bytes()));
            self.entry(dir.as_fd(), &name)?;
        }
        Ok(())
    }
}

/// Gives the owner read, write and search permission on the directory `dir`, if it lacks any.
fn writable(dir: BorrowedFd<'_>) -> io::Result<()> {
    let mode = rustix::fs::fstat(dir)?.st_mode & 0o7777;
    if mode & 0o700 != 0o700 {
        rustix::fs::fchmod(dir, Mode::from_raw_mode(mode | 0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn removes_read_only_directories_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "precious").unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/share/locked/deeper")).unwrap();
        std::fs::write(
            tree.join("usr/share/locked/deeper/file"),
            "x".repeat(10_000),
        )
        .unwrap();
        std::fs::create_dir(tree.join("usr/closed")).unwrap();
        std::fs::write(tree.join("usr/closed/f"), "y").unwrap();
        symlink(&outside, tree.join("usr/link-out")).unwrap();
        symlink(outside.join("keep"), tree.join("file-link")).unwrap();
        chmod(&tree.join("usr/share/locked/deeper"), 0o555);
        chmod(&tree.join("usr/share/locked"), 0o500);
        chmod(&tree.join("usr/closed"), 0o000);
        for (name, mode) in [("readable-only", 0o444), ("rw-no-search", 0o644)] {
            let dir = tree.join("usr").join(name);
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            std::fs::write(dir.join("file"), "z").unwrap();
            chmod(&dir, mode);
        }
        let before = size(&tree);
        let removed = remove(&tree).unwrap();
        assert!(!tree.exists() && tree.symlink_metadata().is_err());
        assert_eq!(
            std::fs::read_to_string(outside.join("keep")).unwrap(),
            "precious"
        );
        assert!(removed.total >= 10_000, "{removed:?}");
        assert_eq!(removed.total, removed.exclusive);
        // As root, the closed directories were measured too; as a user, `size` counts what
        // it may see.
        let before = before.unwrap();
        if rustix::process::getuid().is_root() {
            assert_eq!(before, removed);
        } else {
            assert!(before.total <= removed.total);
        }
    }

    #[test]
    fn hard_links_are_counted_once_and_exclusive_only_when_all_are_inside() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("a"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::hard_link(tree.join("a"), tree.join("b")).unwrap();
        std::fs::write(dir.path().join("shared"), vec![2u8; 64 * 1024]).unwrap();
        std::fs::hard_link(dir.path().join("shared"), tree.join("c")).unwrap();
        let measured = size(&tree).unwrap();
        let dir_blocks = std::fs::symlink_metadata(&tree).unwrap();
        let dir_bytes = std::os::unix::fs::MetadataExt::blocks(&dir_blocks) * 512;
        let file_bytes =
            std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(tree.join("a")).unwrap())
                * 512;
        assert_eq!(measured.total, dir_bytes + 2 * file_bytes);
        assert_eq!(measured.exclusive, dir_bytes + file_bytes);
        assert_eq!(remove(&tree).unwrap(), measured);
        assert!(dir.path().join("shared").exists());
    }

    #[test]
    fn absent_tree_is_empty_and_a_single_file_or_link_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            remove(&dir.path().join("none")).unwrap(),
            TreeSize::default()
        );
        assert_eq!(
            size(&dir.path().join("none/deeper")).unwrap(),
            TreeSize::default()
        );
        std::fs::write(dir.path().join("f"), "x").unwrap();
        remove(&dir.path().join("f")).unwrap();
        symlink("/", dir.path().join("l")).unwrap();
        remove(&dir.path().join("l")).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
