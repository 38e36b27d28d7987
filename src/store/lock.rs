//! Per-key locks: `venv/<key>.lock`, taken with `flock`.
//!
//! - **shared** while a launch looks the tree up and for as long as its sandbox runs;
//! - **exclusive** to build the tree, or to delete it.
//!
//! A sandbox outlives paude, which becomes bwrap through exec. Right before the exec, the
//! launch starts a *holder* ([`KeyLock::hold_while_open`]): a tiny process, in a session of its
//! own, that keeps the locked descriptor until the write end of a pipe is closed everywhere.
//! bwrap gets that write end with `--sync-fd`; its pid 1 inside the sandbox keeps it until the
//! last sandboxed process has exited, and closes it in the sandboxed command before exec. So
//! the sandbox holds only a pipe: nothing in it can reach the store's lock file (through
//! `/proc/1/fd` or otherwise), write to it, change its mode or learn its path. The most a
//! sandboxed program can do is end its own sandbox's lease early.
//!
//! The file is opened read-only (flock needs no more) and never through a link.
//!
//! An exclusive holder may unlink the lock file (a deleted venv, a failed build). Whoever was
//! waiting on the old file then holds a lock nobody else can see, so every acquisition ends with
//! [`KeyLock::is_current`]: the locked file must still be the one at the path, else the caller
//! opens the path again.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
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

    /// Hands the lock to a holder process that keeps it until every copy of the returned
    /// descriptor (the write end of a pipe, close-on-exec) is closed; see the module
    /// documentation. This process's own descriptor is closed.
    pub fn hold_while_open(self) -> io::Result<OwnedFd> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let keep = [self.file.as_raw_fd(), read.as_raw_fd()];
        // The holder keeps only the lock and the read end: not the terminal, not a pipe the
        // caller reads paude's output from, not the write end (or it would never see EOF).
        // Where the kernel has close_range(2) it closes the others by ranges; elsewhere it
        // closes the ones listed here, since it cannot list them itself without allocating.
        let close = if crate::host::has_close_range() {
            Close::AllBut(keep)
        } else {
            let listed: Vec<RawFd> = crate::host::open_descriptors()?
                .into_iter()
                .filter(|fd| *fd > 2 && !keep.contains(fd))
                .collect();
            Close::These(listed.leak())
        };
        let holder: &'static Holder = Box::leak(Box::new(Holder {
            pipe: read.as_raw_fd(),
            close,
        }));
        spawn_holder(holder)?;
        // The holder has its own copies of the lock and the read end.
        Ok(write)
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
        Ok(attempt(self.file.as_fd(), exclusive)?)
    }

    pub fn unlock(&self) -> io::Result<()> {
        self.file.unlock()
    }

    /// Whether the open file is still the one at the path (not unlinked or replaced by an
    /// exclusive holder while this one waited).
    pub fn is_current(&self) -> io::Result<bool> {
        Ok(is_current(self.file.as_fd(), &self.path)?)
    }

    /// Removes the lock file; only an exclusive holder may (see the module documentation).
    pub fn unlink(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

/// The holder's stack: its code needs a few hundred bytes.
/// Tries the lock on `fd` without waiting (flock(2)); the launch front takes it this way too,
/// before the C library has started.
pub(crate) fn attempt(fd: BorrowedFd<'_>, exclusive: bool) -> Result<Attempt, rustix::io::Errno> {
    use rustix::fs::FlockOperation::{NonBlockingLockExclusive, NonBlockingLockShared};
    let operation = if exclusive {
        NonBlockingLockExclusive
    } else {
        NonBlockingLockShared
    };
    match rustix::fs::flock(fd, operation) {
        Ok(()) => Ok(Attempt::Locked),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(Attempt::Busy),
        Err(errno) => Err(errno),
    }
}

/// Whether the file open at `fd` is still the one at `path` (not unlinked or replaced by an
/// exclusive holder while this one waited).
pub(crate) fn is_current<P: rustix::path::Arg>(
    fd: BorrowedFd<'_>,
    path: P,
) -> Result<bool, rustix::io::Errno> {
    let open = rustix::fs::fstat(fd)?;
    match rustix::fs::lstat(path) {
        Ok(at_path) => Ok((at_path.st_dev, at_path.st_ino) == (open.st_dev, open.st_ino)),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(errno) => Err(errno),
    }
}

const HOLDER_STACK: usize = 64 * 1024;

/// Starts the holder process for `holder` (see [`KeyLock::hold_while_open`]); also called by
/// the launch front before the C library has started, so it makes raw system calls only.
///
/// The holder shares this process's memory (CLONE_VM) instead of copying it: a copy costs a
/// page-table copy and a copy-on-write fault for every page either side then touches, a few
/// hundred microseconds of every launch. So it runs on a stack of its own, reads only
/// `Holder`, and makes only raw system calls (no allocation, no lock, no errno). Both are
/// leaked: this process execs bwrap next, and the holder keeps the old address space alive by
/// itself. Without CLONE_FILES the holder gets its own copy of the descriptor table; without
/// CLONE_THREAD it is a process of its own, which an exec of this one does not end; SIGCHLD
/// makes it a child like any other.
pub(crate) fn spawn_holder(holder: &'static Holder) -> io::Result<()> {
    use crate::bare::raw;
    // A fresh mapping rather than a zeroed allocation, which would fault in every page of it
    // here: the kernel gives the holder the pages its stack actually reaches.
    // SAFETY: an anonymous private mapping at an address the kernel chooses aliases nothing.
    let stack = unsafe {
        raw::syscall(
            raw::MMAP,
            [
                0,
                HOLDER_STACK,
                (libc::PROT_READ | libc::PROT_WRITE) as usize,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK) as usize,
                usize::MAX,
                0,
            ],
        )
    };
    if stack < 0 {
        return Err(io::Error::from_raw_os_error(-stack as i32));
    }
    // The stack grows down from its end, which is page-aligned, as it must be (16 bytes).
    let top = stack as usize + HOLDER_STACK;
    // SAFETY: `holder_main` touches only `holder` and its own stack (see above).
    let pid = unsafe {
        clone_vm(
            (libc::CLONE_VM | libc::SIGCHLD) as usize,
            top,
            holder_main,
            holder as *const Holder as usize,
        )
    };
    if pid < 0 {
        return Err(io::Error::from_raw_os_error(-pid as i32));
    }
    Ok(())
}

/// clone(2) with a new stack at `top`, the child running `main(argument)` and exiting with
/// its result; the child's pid, or a negative errno.
///
/// # Safety
/// `main` must run on the new stack alone and touch nothing the parent changes.
#[cfg(target_arch = "x86_64")]
unsafe fn clone_vm(
    flags: usize,
    top: usize,
    main: extern "C" fn(usize) -> i32,
    argument: usize,
) -> isize {
    let result: isize;
    // SAFETY: the child pops `main` and its argument from its own stack, calls it with the
    // stack aligned as the ABI wants, and exits; the parent returns the kernel's answer.
    unsafe {
        core::arch::asm!(
            "sub rsi, 16",
            "mov [rsi], {main}",
            "mov [rsi + 8], {argument}",
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "pop rax",
            "pop rdi",
            "call rax",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            main = in(reg) main,
            argument = in(reg) argument,
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone as isize => result,
            in("rdi") flags,
            inlateout("rsi") top => _,
            in("rdx") 0usize,
            in("r10") 0usize,
            in("r8") 0usize,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    result
}

/// See the x86-64 version; elsewhere the C library's `clone`, which only runs once the C
/// library has started.
///
/// # Safety
/// `main` must run on the new stack alone and touch nothing the parent changes.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone_vm(
    flags: usize,
    top: usize,
    main: extern "C" fn(usize) -> i32,
    argument: usize,
) -> isize {
    extern "C" fn trampoline(argument: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `argument` is the pair below, leaked.
        let (main, argument) =
            unsafe { *(argument as *const (extern "C" fn(usize) -> i32, usize)) };
        main(argument)
    }
    let pair = Box::leak(Box::new((main, argument)));
    // SAFETY: as the caller vouches.
    let pid = unsafe {
        libc::clone(
            trampoline,
            top as *mut libc::c_void,
            flags as libc::c_int,
            pair as *mut _ as *mut libc::c_void,
        )
    };
    if pid == -1 {
        -(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO) as isize)
    } else {
        pid as isize
    }
}

/// What the holder needs, prepared by [`KeyLock::hold_while_open`] (or the launch front).
pub(crate) struct Holder {
    /// The read end of the pipe whose end of file ends the holder.
    pub(crate) pipe: RawFd,
    /// The descriptors it closes.
    pub(crate) close: Close,
}

/// Which descriptors the holder closes: every one but the standard three, the lock and the
/// pipe's read end.
pub(crate) enum Close {
    /// By ranges around these two, with close_range(2) (Linux 5.9).
    AllBut([RawFd; 2]),
    /// These, listed before it started (older kernels).
    These(&'static [RawFd]),
}

/// The holder: keeps the lock open until the pipe reports end of file, then exits. It runs in the
/// launch's address space (see [`KeyLock::hold_while_open`]): raw system calls only.
extern "C" fn holder_main(argument: usize) -> i32 {
    // SAFETY: the argument is the leaked `Holder` that `hold_while_open` passed.
    let holder = unsafe { &*(argument as *const Holder) };
    // `ps` and `top` show it as what it is.
    rustix::thread::set_name(c"paude-lock").ok();
    // Its own session: Ctrl-C, Ctrl-\ and hang-ups at paude's terminal do not reach it.
    rustix::process::setsid().ok();
    if let Ok(null) = rustix::fs::open(
        c"/dev/null",
        rustix::fs::OFlags::RDWR,
        rustix::fs::Mode::empty(),
    ) {
        rustix::stdio::dup2_stdin(&null).ok();
        rustix::stdio::dup2_stdout(&null).ok();
        rustix::stdio::dup2_stderr(&null).ok();
        // SAFETY: the descriptor was just opened here and is not used again; closed raw, as
        // dropping it would close it through the C library.
        unsafe { rustix::io::try_close(null.into_raw_fd()) }.ok();
    }
    match holder.close {
        Close::AllBut(keep) => close_all_above_stderr_but(keep),
        Close::These(list) => {
            for &fd in list {
                // SAFETY: these are this process's copies of descriptors it does not use. One
                // may be closed already (the one that listed them): `try_close` reports that,
                // harmlessly.
                unsafe { rustix::io::try_close(fd) }.ok();
            }
        }
    }
    // SAFETY: `pipe` is the read end created for this holder, open in this process.
    let pipe = unsafe { BorrowedFd::borrow_raw(holder.pipe) };
    let mut buffer = [0u8; 64];
    loop {
        match rustix::io::read(pipe, &mut buffer) {
            // Someone wrote into the pipe from the sandbox: ignore it.
            Ok(n) if n > 0 => continue,
            Err(rustix::io::Errno::INTR) => continue,
            _ => break,
        }
    }
    // Returning ends the holder (`clone_vm` calls exit) and releases the lock.
    0
}

/// Closes every descriptor above 2 but `keep`, in at most three close_range(2) calls. Each
/// range is well formed and no flag is set, so the call cannot fail once
/// [`crate::host::has_close_range`] has found it; it is a raw system call either way.
fn close_all_above_stderr_but(keep: [RawFd; 2]) {
    let close_range = |first: libc::c_uint, last: libc::c_uint| {
        // SAFETY: the holder uses none of the descriptors in the range.
        unsafe { crate::bare::close_range(first, last, 0) }.ok();
    };
    let (low, high) = (keep[0].min(keep[1]), keep[0].max(keep[1]));
    let mut first: libc::c_uint = 3;
    for kept in [low, high] {
        let kept = kept as libc::c_uint;
        if kept > first {
            close_range(first, kept - 1);
        }
        first = first.max(kept + 1);
    }
    close_range(first, libc::c_uint::MAX);
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
