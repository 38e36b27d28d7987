//! The file-system questions a launch asks of the host, asked through one recorder.
//!
//! A launch's bwrap command line is a function of its command line, environment, identity,
//! current directory and terminal, and of the answers to the questions it asks the file
//! system on the way: is there a `.git` here, is this a venv, does this mount source exist,
//! which `bwrap` comes first on `PATH`, what does `/etc/passwd` say. [`Probes`] asks each
//! question and writes down the question with its answer as a [`Check`]. A launch record
//! (`store::record`) keeps the checks beside the command line they produced; a later launch
//! with the same inputs asks every question again ([`Check::holds`]) and, when every answer
//! is the same, runs the recorded command line without working it out again.
//!
//! Invariant: every host path a launch's outcome depends on is looked at through [`Probes`],
//! or lies in the store's content-addressed trees, which never change once published. A check
//! records exactly what the launch learned, not more: `.git` only has to exist (git changes
//! the directory's times all the time), a file that was read has to be the same file with the
//! same size and times. The times of a file read are trusted only once they are older than the
//! caches' settle time ([`Probes::settled`]), as in `store::cache`.

use crate::host::HostFacts;
use crate::store::cache::Stamp;
use std::cell::RefCell;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What `stat` (through links) or `lstat` finds at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link (only without following links).
    Link,
    /// A device, socket or pipe.
    Other,
    /// The system call failed with this errno (`ENOENT`: nothing there).
    Error(i32),
}

impl Kind {
    /// What is at `path`, following links when `follow` is set. (Given a `&CStr`, nothing
    /// is allocated: the launch front asks this before the C library has started.)
    pub fn of<P: rustix::path::Arg>(path: P, follow: bool) -> Kind {
        let result = if follow {
            rustix::fs::stat(path)
        } else {
            rustix::fs::lstat(path)
        };
        match result {
            Ok(stat) => match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
                rustix::fs::FileType::RegularFile => Kind::File,
                rustix::fs::FileType::Directory => Kind::Dir,
                rustix::fs::FileType::Symlink => Kind::Link,
                _ => Kind::Other,
            },
            Err(errno) => Kind::Error(errno.raw_os_error()),
        }
    }

    /// Whether something is there (`Path::exists`, or `symlink_metadata().is_ok()`).
    pub fn exists(self) -> bool {
        !matches!(self, Kind::Error(_))
    }

    pub fn is_file(self) -> bool {
        self == Kind::File
    }

    pub fn is_dir(self) -> bool {
        self == Kind::Dir
    }

    /// The failure, as the standard library would have reported it.
    pub fn error(self) -> Option<io::Error> {
        match self {
            Kind::Error(errno) => Some(io::Error::from_raw_os_error(errno)),
            _ => None,
        }
    }
}

/// One question asked of the file system, with the answer the launch got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// What is at a path ([`Kind::of`]).
    Kind {
        path: PathBuf,
        follow: bool,
        kind: Kind,
    },
    /// A file that was read or a directory that was listed: the same file with the same size
    /// and times, or still nothing there.
    Same(Stamp),
    /// Whether this user may execute the path (`access(X_OK)`, which also depends on the
    /// user's groups and the directories above it).
    Executable { path: PathBuf, allowed: bool },
    /// The path with every link resolved (`realpath`), or nothing when that fails.
    Real {
        path: PathBuf,
        real: Option<PathBuf>,
    },
    /// The names of a directory's subdirectories (links not followed), sorted, or nothing
    /// when it cannot be listed. Unlike a stamp, files coming and going do not change it.
    Subdirectories {
        path: PathBuf,
        names: Option<Vec<OsString>>,
    },
    /// An environment variable's value, or its absence. A launch reads the few it needs
    /// (`PATH`, `HOME`, the manifest's `envKeep`, ...) through [`Probes::var`], so that a
    /// variable it never looked at (a shell's `_`, a benchmark tool's padding) does not stand
    /// between it and its record.
    Env {
        name: OsString,
        value: Option<OsString>,
    },
}

impl Check {
    /// Whether asking again gives the same answer.
    pub fn holds(&self) -> bool {
        match self {
            Check::Kind { path, follow, kind } => Kind::of(path, *follow) == *kind,
            Check::Same(stamp) => stamp.holds(),
            Check::Executable { path, allowed } => executable(path) == *allowed,
            Check::Real { path, real } => real_path(path).ok() == *real,
            Check::Subdirectories { path, names } => subdirectories(path) == *names,
            Check::Env { name, value } => std::env::var_os(name) == *value,
        }
    }
}

/// The questions of one launch, in the order asked (each once), and whether all of them
/// could be written down.
#[derive(Debug, Default)]
pub struct Probes {
    checks: RefCell<Vec<Check>>,
    /// Set when an answer could not be recorded (a file that could not be stamped): such a
    /// launch is not recorded.
    incomplete: std::cell::Cell<bool>,
}

impl Probes {
    /// A recorder with nothing asked yet.
    pub fn new() -> Probes {
        Probes::default()
    }

    fn record(&self, check: Check) {
        let mut checks = self.checks.borrow_mut();
        if !checks.contains(&check) {
            checks.push(check);
        }
    }

    /// What is at `path` (through links when `follow` is set).
    pub fn kind(&self, path: &Path, follow: bool) -> Kind {
        let kind = Kind::of(path, follow);
        self.record(Check::Kind {
            path: path.to_path_buf(),
            follow,
            kind,
        });
        kind
    }

    /// Whether `path` exists, through links (`Path::exists`).
    pub fn exists(&self, path: &Path) -> bool {
        self.kind(path, true).exists()
    }

    /// Stamps `path` before it is read or listed; `None` when it is not there. A path that
    /// cannot be stamped leaves the launch unrecorded.
    pub fn stamp(&self, path: &Path) -> Option<crate::store::cache::Seen> {
        match Stamp::of(path) {
            Ok(stamp) => {
                let seen = stamp.seen;
                self.record(Check::Same(stamp));
                seen
            }
            Err(_) => {
                self.incomplete.set(true);
                None
            }
        }
    }

    /// Reads a whole file, recording what it was.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.stamp(path);
        std::fs::read(path)
    }

    /// Lists a directory, recording what it was (a directory's times change whenever an
    /// entry is added, removed or renamed).
    pub fn read_dir(&self, path: &Path) -> io::Result<std::fs::ReadDir> {
        self.stamp(path);
        std::fs::read_dir(path)
    }

    /// Whether this user may execute `path`.
    pub fn executable(&self, path: &Path) -> bool {
        let allowed = executable(path);
        self.record(Check::Executable {
            path: path.to_path_buf(),
            allowed,
        });
        allowed
    }

    /// `path` with every link resolved.
    pub fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        let real = real_path(path);
        self.record(Check::Real {
            path: path.to_path_buf(),
            real: real.as_ref().ok().cloned(),
        });
        real
    }

    /// The names of `path`'s subdirectories, sorted.
    pub fn subdirectories(&self, path: &Path) -> Option<Vec<OsString>> {
        let names = subdirectories(path);
        self.record(Check::Subdirectories {
            path: path.to_path_buf(),
            names: names.clone(),
        });
        names
    }

    /// The value of a host variable (from `host`, which holds this process's environment).
    pub fn var<'h>(&self, host: &'h HostFacts, name: &str) -> Option<&'h OsString> {
        let value = host.var(name);
        self.record(Check::Env {
            name: name.into(),
            value: value.cloned(),
        });
        value
    }

    /// Adds stamps a launch cache checked (the files a manifest or a closure came from).
    pub fn absorb(&self, stamps: impl IntoIterator<Item = Stamp>) {
        for stamp in stamps {
            self.record(Check::Same(stamp));
        }
    }

    /// Marks the launch as one that cannot be recorded.
    pub fn give_up(&self) {
        self.incomplete.set(true);
    }

    /// The checks, if every answer was written down and every file read had settled by
    /// `began` (see `store::cache::SETTLE`).
    pub fn settled(self, began: SystemTime) -> Option<Vec<Check>> {
        let checks = self.checks.into_inner();
        let settled = checks.iter().all(|check| match check {
            Check::Same(stamp) => stamp.settled(began),
            _ => true,
        });
        (settled && !self.incomplete.get()).then_some(checks)
    }
}

fn subdirectories(path: &Path) -> Option<Vec<OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut names: Vec<OsString> = Vec::new();
    crate::bare::subdirectories(&path, &mut |name| {
        names.push(std::ffi::OsStr::from_bytes(name).to_os_string())
    })
    .ok()?;
    names.sort();
    Some(names)
}

/// `access(path, X_OK)` for this process's user and groups.
pub fn executable<P: rustix::path::Arg>(path: P) -> bool {
    rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}

/// `path` with every link resolved (see `bare::real_path`, which the launch front asks too).
fn real_path(path: &Path) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let not_found = || io::Error::from(io::ErrorKind::NotFound);
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| not_found())?;
    let mut out = [0; crate::bare::PATH_MAX];
    match crate::bare::real_path(&path, &mut out) {
        Ok(Some(real)) => Ok(PathBuf::from(std::ffi::OsStr::from_bytes(real))),
        // A path that cannot be opened gets the C library's error for it. Without /proc (a
        // chroot, some containers) the C library resolves the links one by one; the launch
        // front, which asks only the kernel, takes no answer for an answer and leaves such
        // launches to the full program.
        Ok(None) | Err(_) => std::fs::canonicalize(std::ffi::OsStr::from_bytes(path.to_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn later() -> SystemTime {
        SystemTime::now() + crate::store::cache::SETTLE + Duration::from_secs(1)
    }

    #[test]
    fn every_kind_of_answer_is_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let file = root.join("file");
        let link = root.join("link");
        std::fs::write(&file, "one").unwrap();
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let probes = Probes::new();
        assert_eq!(probes.kind(&link, false), Kind::Link);
        assert_eq!(probes.kind(&link, true), Kind::File);
        assert!(!probes.exists(&root.join("absent")));
        assert_eq!(probes.read(&file).unwrap(), b"one");
        assert!(!probes.executable(&file));
        assert_eq!(probes.canonicalize(&link).unwrap(), file);
        // Asked twice, written down once.
        probes.exists(&root.join("absent"));
        let checks = probes.settled(later()).expect("complete");
        assert_eq!(checks.len(), 6, "{checks:?}");
        assert!(checks.iter().all(Check::holds));

        // Each change fails exactly the checks it should.
        let failing = |checks: &[Check]| checks.iter().filter(|c| !c.holds()).count();
        std::fs::write(root.join("absent"), "").unwrap();
        assert_eq!(failing(&checks), 1);
        std::fs::remove_file(root.join("absent")).unwrap();
        assert_eq!(failing(&checks), 0);
        std::fs::write(&file, "two").unwrap();
        // The file's stamp; its kind and the link are unchanged.
        assert_eq!(failing(&checks), 1);
    }

    #[test]
    fn a_read_too_recent_to_trust_is_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "new").unwrap();
        let probes = Probes::new();
        probes.read(&file).unwrap();
        assert!(probes.settled(SystemTime::now()).is_none());
        // A kind is exact whenever it was asked: nothing to settle.
        let probes = Probes::new();
        probes.kind(&file, true);
        assert!(probes.settled(SystemTime::now()).is_some());
    }

    #[test]
    fn the_reason_a_path_cannot_be_reached_is_part_of_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        // Through a file, as if it were a directory: ENOTDIR, not ENOENT.
        let below = file.join("below");
        assert_eq!(Kind::of(&below, true), Kind::Error(libc::ENOTDIR));
        assert_eq!(
            Kind::of(dir.path().join("absent"), true),
            Kind::Error(libc::ENOENT)
        );
        assert_eq!(
            Kind::Error(libc::ENOENT).error().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
    }
}
