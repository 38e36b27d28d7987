//! Bind sources a sandbox could have changed, held by descriptor from the check to the mount.
//!
//! bwrap binds a source by its name, following links, when it sets the sandbox up. A path
//! paude checked a moment earlier may by then be a link to the home directory: another
//! sandbox still running in the same workspace (or in a workspace that holds this one) can
//! swap any name it can write, over and over, until a launch catches the swap between the
//! check and the mount. So every bind source that lies where a sandbox can write — the
//! workspace, its repository's directories, its protected paths and their directories, a
//! manifest mount taken from the workspace — is opened here, walking its real path from `/`
//! one name at a time without following any link, and bwrap is handed the descriptor
//! (`--bind-fd`, `--ro-bind-fd`): it mounts what was opened and checked, whatever the name
//! means by then. bwrap closes these descriptors before the command starts.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

/// What [`open`] found at a path.
#[derive(Debug)]
pub enum Opened {
    /// The path, every directory on the way a directory and no link anywhere: an `O_PATH`
    /// descriptor of it, and what kind of file it is.
    Found(OwnedFd, FileType),
    /// Some component does not exist.
    Missing,
    /// This prefix of the path is a symbolic link.
    Link(PathBuf),
    /// This prefix of the path, short of the end, is not a directory.
    NotDirectory(PathBuf),
}

/// Opens `path` (absolute, with no `.` or `..`) from `/` one name at a time, following no
/// link, not even the last.
pub fn open(path: &Path) -> io::Result<Opened> {
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    open_from(root.as_fd(), Path::new("/"), path, &mut |_, _| {})
}

/// [`open`], starting from `start`, a directory opened the same way, which is `start_path`
/// (an ancestor of `path`); each directory opened on the way is handed to `passed` with its
/// path.
fn open_from(
    start: BorrowedFd<'_>,
    start_path: &Path,
    path: &Path,
    passed: &mut dyn FnMut(&Path, OwnedFd),
) -> io::Result<Opened> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(below) = path.strip_prefix(start_path) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not below {}", path.display(), start_path.display()),
        ));
    };
    let mut names = Vec::new();
    for component in below.components() {
        match component {
            Component::Normal(name) => names.push(name),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not an absolute, normal path", path.display()),
                ));
            }
        }
    }
    if !path.has_root() || names.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not an absolute path below {}",
                path.display(),
                start_path.display()
            ),
        ));
    }
    let mut current: Option<OwnedFd> = None;
    let mut prefix = start_path.to_path_buf();
    for (at, name) in names.iter().enumerate() {
        prefix.push(name);
        let dir = current.as_ref().map_or(start, |fd| fd.as_fd());
        let next = match rustix::fs::openat(dir, *name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(Opened::Missing),
            Err(error) => return Err(with_path(error.into(), &prefix)),
        };
        let kind = FileType::from_raw_mode(
            rustix::fs::fstat(&next)
                .map_err(|error| with_path(error.into(), &prefix))?
                .st_mode,
        );
        if kind == FileType::Symlink {
            return Ok(Opened::Link(prefix));
        }
        if at + 1 == names.len() {
            if let (Some(dir), Some(dir_path)) = (current, prefix.parent()) {
                passed(dir_path, dir);
            }
            return Ok(Opened::Found(next, kind));
        }
        if kind != FileType::Directory {
            return Ok(Opened::NotDirectory(prefix));
        }
        if let Some(done) = current.replace(next) {
            passed(prefix.parent().unwrap_or(&prefix), done);
        }
    }
    unreachable!("the last name returns")
}

fn with_path(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// The descriptors of the bind sources a launch holds, by the path the plan names, and the
/// directories opened on the way to them (kept to start later walks from, never bound).
#[derive(Debug, Default)]
pub struct Pins {
    held: Vec<(PathBuf, OwnedFd, FileType)>,
    passed: Vec<(PathBuf, OwnedFd)>,
}

impl Pins {
    /// Opens `path` with [`open`] and holds it; `what` names it in the error, which says what
    /// the path is now.
    pub fn hold(&mut self, path: &Path, what: &str) -> Result<FileType, String> {
        if let Some(kind) = self.kind_of(path) {
            return Ok(kind);
        }
        match self.open(path) {
            Ok(Opened::Found(fd, kind)) => {
                self.held.push((path.to_path_buf(), fd, kind));
                Ok(kind)
            }
            Ok(Opened::Link(link)) => Err(format!(
                "{what}: {} is now a symbolic link; paude binds paths without following links \
                 (something, perhaps a sandbox still running, changed it while paude looked): \
                 remove the link, and run again",
                link.display()
            )),
            Ok(Opened::Missing) => Err(format!(
                "{what}: {} is gone (something changed it while paude looked); run again",
                path.display()
            )),
            Ok(Opened::NotDirectory(dir)) => Err(format!(
                "{what}: {} is no longer a directory (something changed it while paude \
                 looked); run again",
                dir.display()
            )),
            Err(error) => Err(format!("{what}: {error}")),
        }
    }

    /// [`open`], from the nearest directory held or passed above `path` (from `/` when there
    /// is none): what was checked to be reached without links need not be walked again.
    pub fn open(&mut self, path: &Path) -> io::Result<Opened> {
        let held = self
            .held
            .iter()
            .filter(|(_, _, kind)| *kind == FileType::Directory)
            .map(|(held, fd, _)| (held, fd));
        let passed = self.passed.iter().map(|(held, fd)| (held, fd));
        let nearest = held
            .chain(passed)
            .filter(|(held, _)| path.starts_with(held) && held.as_path() != path)
            .max_by_key(|(held, _)| held.as_os_str().len());
        let mut on_the_way = Vec::new();
        let opened = match nearest {
            Some((held, fd)) => open_from(fd.as_fd(), held, path, &mut |dir, fd| {
                on_the_way.push((dir.to_path_buf(), fd))
            }),
            None => open(path),
        };
        self.passed.extend(on_the_way);
        opened
    }

    /// Holds `fd`, opened by [`open`], as `path`'s.
    pub fn insert(&mut self, path: &Path, fd: OwnedFd, kind: FileType) {
        if self.kind_of(path).is_none() {
            self.held.push((path.to_path_buf(), fd, kind));
        }
    }

    fn kind_of(&self, path: &Path) -> Option<FileType> {
        let (_, _, kind) = self.held.iter().find(|(held, _, _)| held == path)?;
        Some(*kind)
    }

    /// The paths and descriptor numbers, for the plan.
    pub fn numbers(&self) -> Vec<(PathBuf, RawFd)> {
        self.held
            .iter()
            .map(|(path, fd, _)| (path.clone(), fd.as_raw_fd()))
            .collect()
    }

    /// The descriptors, for bwrap to inherit.
    pub fn descriptors(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.held.iter().map(|(_, fd, _)| fd.as_fd())
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// `name`'s file in the directory `dir` held by descriptor, opened to read without following a
/// link at `name` and without waiting on a FIFO; `None` when it is not a regular file.
pub fn read_in(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<std::fs::File>> {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let file = std::fs::File::from(fd);
    Ok(file.metadata()?.is_file().then_some(file))
}

/// `/proc/self/fd/N`: a path through which the directory held by `fd` is reached by the
/// kernel's own link to it, not by its name.
pub fn through(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
}

/// [`read_in`] for a path: the file at `path`, opened to read without following a link at its
/// last name and without waiting on a FIFO; `None` when it is not a regular file.
pub fn read_regular(path: &Path) -> io::Result<Option<std::fs::File>> {
    read_in(rustix::fs::CWD, path.as_os_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_link_anywhere_on_the_way_is_found_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/file"), "x").unwrap();
        symlink(root.join("a"), root.join("link")).unwrap();
        symlink("file", root.join("a/b/last")).unwrap();
        assert!(matches!(
            open(&root.join("a/b/file")).unwrap(),
            Opened::Found(_, FileType::RegularFile)
        ));
        assert!(matches!(
            open(&root.join("a/b")).unwrap(),
            Opened::Found(_, FileType::Directory)
        ));
        match open(&root.join("link/b/file")).unwrap() {
            Opened::Link(at) => assert_eq!(at, root.join("link")),
            other => panic!("{other:?}"),
        }
        match open(&root.join("a/b/last")).unwrap() {
            Opened::Link(at) => assert_eq!(at, root.join("a/b/last")),
            other => panic!("{other:?}"),
        }
        match open(&root.join("a/b/file/deeper")).unwrap() {
            Opened::NotDirectory(at) => assert_eq!(at, root.join("a/b/file")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            open(&root.join("a/none/file")).unwrap(),
            Opened::Missing
        ));
        assert!(open(Path::new("relative")).is_err());
        assert!(open(&root.join("a/../a")).is_err());
    }

    #[test]
    fn a_held_path_is_the_one_opened_whatever_its_name_means_later() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("deep")).unwrap();
        std::fs::write(root.join("deep/f"), "mine").unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::write(root.join("other/f"), "theirs").unwrap();
        let mut pins = Pins::default();
        assert_eq!(
            pins.hold(&root.join("deep"), "test"),
            Ok(FileType::Directory)
        );
        std::fs::rename(root.join("deep"), root.join("moved")).unwrap();
        symlink(root.join("other"), root.join("deep")).unwrap();
        let (path, fd) = &pins.numbers()[0];
        assert_eq!(path, &root.join("deep"));
        let through = std::fs::read_to_string(format!("/proc/self/fd/{fd}/f")).unwrap();
        assert_eq!(through, "mine");
        // Held once per path; a second hold of a path now a link says so.
        assert_eq!(
            pins.hold(&root.join("deep"), "test"),
            Ok(FileType::Directory)
        );
        let mut fresh = Pins::default();
        let refused = fresh.hold(&root.join("deep"), "protect[0]").unwrap_err();
        assert!(
            refused.starts_with("protect[0]: ") && refused.contains("is now a symbolic link"),
            "{refused}"
        );
        assert!(fresh.is_empty());
    }

    #[test]
    fn a_walk_from_a_held_directory_follows_no_link_either() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        symlink(root.join("a"), root.join("link")).unwrap();
        let mut pins = Pins::default();
        pins.hold(&root, "test").unwrap();
        assert!(matches!(
            pins.open(&root.join("a/b")).unwrap(),
            Opened::Found(_, FileType::Directory)
        ));
        match pins.open(&root.join("link/b")).unwrap() {
            Opened::Link(at) => assert_eq!(at, root.join("link")),
            other => panic!("{other:?}"),
        }
        // A directory passed on the way is kept: what was checked is reached through it by
        // descriptor, whatever its name means now. Looked up afresh, a directory renamed away
        // is missing.
        std::fs::rename(root.join("a"), root.join("moved")).unwrap();
        assert!(matches!(
            pins.open(&root.join("a/b")).unwrap(),
            Opened::Found(_, FileType::Directory)
        ));
        let mut fresh = Pins::default();
        fresh.hold(&root, "test").unwrap();
        assert!(matches!(
            fresh.open(&root.join("a/b")).unwrap(),
            Opened::Missing
        ));
    }

    #[test]
    fn files_are_read_in_a_held_directory_without_links_or_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("HEAD"), "ref: x\n").unwrap();
        symlink("/etc/passwd", root.join("index")).unwrap();
        crate::sandbox::testing::fifo(&root.join("fifo"));
        let Opened::Found(held, _) = open(&root).unwrap() else {
            panic!()
        };
        let mut text = String::new();
        use std::io::Read;
        read_in(held.as_fd(), "HEAD".as_ref())
            .unwrap()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "ref: x\n");
        assert!(read_in(held.as_fd(), "index".as_ref()).unwrap().is_none());
        assert!(read_in(held.as_fd(), "fifo".as_ref()).unwrap().is_none());
    }
}
