//! Per-key locks: `venv/<key>.lock`, taken with `flock`.
//!
//! - **shared** while a launch looks the tree up and for as long as its sandbox runs;
//! - **exclusive** to build the tree, or to delete it.
//!
//! A sandbox outlives paude, which becomes bwrap through exec: right before the exec, the
//! launch hands the locked descriptor to a holder process that keeps it while the sandbox
//! runs (see `sandbox::holder`).
//!
//! The file is opened read-only (flock needs no more) and never through a link.
//!
//! An exclusive holder may unlink the lock file (a deleted venv, a failed build). Whoever was
//! waiting on the old file then holds a lock nobody else can see, so every acquisition ends with
//! [`KeyLock::is_current`]: the locked file must still be the one at the path, else the caller
//! opens the path again.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a launch polls for a contended lock before saying that it waits: brief holds
/// (`paude list` probing whether a venv is in use, a cleanup renaming one) pass silently.
const QUIET_WAIT: Duration = Duration::from_millis(250);

/// An open lock file; locked or not, as the methods leave it.
#[derive(Debug)]
pub struct KeyLock {
    file: File,
    path: PathBuf,
}

/// Whether a non-blocking attempt got the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Locked,
    Busy,
}

impl KeyLock {
    /// Opens `path`, creating it (mode 0600) when `create` is set. `Ok(None)`: it does not
    /// exist and `create` is not set.
    pub fn open(path: &Path, create: bool) -> io::Result<Option<KeyLock>> {
        let mut options = OpenOptions::new();
        options.read(true);
        let mut flags = rustix::fs::OFlags::NOFOLLOW;
        if create {
            // O_CREAT without write access is allowed: the descriptor stays read-only.
            flags |= rustix::fs::OFlags::CREATE;
            options.mode(0o600);
        }
        options.custom_flags(flags.bits() as i32);
        match options.open(path) {
            Ok(file) => Ok(Some(KeyLock {
                file,
                path: path.to_path_buf(),
            })),
            Err(error) if !create && error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Takes the lock shared, waiting for an exclusive holder; `waiting` is called once if
    /// the wait is long enough to mention.
    pub fn shared(&self, waiting: &mut dyn FnMut()) -> io::Result<()> {
        self.wait_for(false, waiting)
    }

    /// Takes the lock exclusively, waiting for every other holder.
    pub fn exclusive(&self, waiting: &mut dyn FnMut()) -> io::Result<()> {
        self.wait_for(true, waiting)
    }

    fn wait_for(&self, exclusive: bool, waiting: &mut dyn FnMut()) -> io::Result<()> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match self.attempt(exclusive)? {
                Attempt::Locked => return Ok(()),
                Attempt::Busy if started.elapsed() < QUIET_WAIT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Attempt::Busy => break,
            }
        }
        waiting();
        if exclusive {
            self.file.lock()
        } else {
            self.file.lock_shared()
        }
    }

    /// Tries the lock without waiting: exclusive or shared.
    pub fn attempt(&self, exclusive: bool) -> io::Result<Attempt> {
        use rustix::fs::FlockOperation::{NonBlockingLockExclusive, NonBlockingLockShared};
        let operation = if exclusive {
            NonBlockingLockExclusive
        } else {
            NonBlockingLockShared
        };
        match rustix::fs::flock(&self.file, operation) {
            Ok(()) => Ok(Attempt::Locked),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(Attempt::Busy),
            Err(errno) => Err(errno.into()),
        }
    }

    pub fn unlock(&self) -> io::Result<()> {
        self.file.unlock()
    }

    /// Whether the open file is still the one at the path (not unlinked or replaced by an
    /// exclusive holder while this one waited).
    pub fn is_current(&self) -> io::Result<bool> {
        let open = rustix::fs::fstat(&self.file)?;
        match rustix::fs::lstat(&self.path) {
            Ok(at_path) => Ok((at_path.st_dev, at_path.st_ino) == (open.st_dev, open.st_ino)),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Removes the lock file; only an exclusive holder may (see the module documentation).
    pub fn unlink(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path) -> KeyLock {
        KeyLock::open(path, true).unwrap().unwrap()
    }

    #[test]
    fn shared_holders_coexist_and_exclude_an_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let (a, b, c) = (open(&path), open(&path), open(&path));
        assert_eq!(a.attempt(false).unwrap(), Attempt::Locked);
        assert_eq!(b.attempt(false).unwrap(), Attempt::Locked);
        assert_eq!(c.attempt(true).unwrap(), Attempt::Busy);
        a.unlock().unwrap();
        assert_eq!(c.attempt(true).unwrap(), Attempt::Busy);
        b.unlock().unwrap();
        assert_eq!(c.attempt(true).unwrap(), Attempt::Locked);
        assert_eq!(a.attempt(false).unwrap(), Attempt::Busy);
    }

    #[test]
    fn descriptor_is_read_only_and_file_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let lock = open(&path);
        let flags = rustix::fs::fcntl_getfl(lock.fd()).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::WRONLY));
        assert!(!flags.contains(rustix::fs::OFlags::RDWR));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn unlinked_or_replaced_file_is_not_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let waiter = open(&path);
        assert!(waiter.is_current().unwrap());
        let holder = open(&path);
        holder.unlink().unwrap();
        assert!(!waiter.is_current().unwrap());
        let fresh = open(&path);
        assert!(fresh.is_current().unwrap());
        assert!(!waiter.is_current().unwrap());
        assert!(
            KeyLock::open(&dir.path().join("none"), false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_waiter_gets_the_lock_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let holder = open(&path);
        holder.exclusive(&mut || {}).unwrap();
        let waiter = open(&path);
        let (said, heard) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            waiter.shared(&mut || said.send(()).unwrap()).unwrap();
            waiter
        });
        // The waiter says that it waits once the quiet polling is over; only then let go.
        heard.recv().unwrap();
        holder.unlock().unwrap();
        let waiter = thread.join().unwrap();
        assert_eq!(holder.attempt(true).unwrap(), Attempt::Busy);
        waiter.unlock().unwrap();
        assert_eq!(holder.attempt(true).unwrap(), Attempt::Locked);
    }
}
