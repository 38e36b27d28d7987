//! The system calls that the standard library, `rustix` and `libc`'s safe surface do not cover,
//! each wrapped once: the crate's only `unsafe` code outside tests (`[lints]` in Cargo.toml
//! denies it everywhere else).
//!
//! - [`close_on_exec_above_stderr`]: the exec site's guarantee that nothing paude's caller
//!   left open reaches the sandbox;
//! - [`fork`] and [`close_above_stderr_except`]: the holder's start (see `sandbox::holder`);
//! - [`HeldSignals`]: the holder waits for the sandbox with the signals that would end it
//!   blocked and read from a signalfd, to pass them on to bwrap;
//! - [`namespace_owner`]: the user namespace a network helper must join to reach the
//!   sandbox's network namespace (see `sandbox::network`).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// The descriptors this process has open, from `/proc/self/fd`. The list includes the one
/// that read the directory, already closed when the list is returned: callers must take a
/// failure on it (EBADF) in stride.
pub fn open_descriptors() -> io::Result<Vec<RawFd>> {
    Ok(std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect())
}

/// Marks every open descriptor above 2 close-on-exec: in one close_range(2) call where the
/// kernel has `CLOSE_RANGE_CLOEXEC` (Linux 5.11), else one by one from `/proc/self/fd`.
pub fn close_on_exec_above_stderr() -> io::Result<()> {
    // With CLOSE_RANGE_CLOEXEC the call closes nothing; it sets a flag that takes effect at
    // the exec.
    if close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC) {
        return Ok(());
    }
    for fd in open_descriptors()? {
        if fd <= 2 {
            continue;
        }
        // SAFETY: F_GETFD and F_SETFD read and set a flag of a descriptor number and touch no
        // memory; one closed in the meantime (the listing's own) makes them fail harmlessly.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags != -1 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// fork(2): `None` in the child, the child's pid in the parent. The caller must run one thread
/// (a child of a process with more would inherit locks that the other threads held, and could
/// deadlock on them).
pub fn fork() -> io::Result<Option<libc::pid_t>> {
    #[cfg(debug_assertions)]
    {
        let threads = || {
            std::fs::read_dir("/proc/self/task")
                .map(|tasks| tasks.count())
                .ok()
        };
        // A thread joined a moment ago (a build's, say) can still be listed while the kernel
        // reaps it.
        for _ in 0..200 {
            if threads() == Some(1) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(threads(), Some(1), "fork with more than one thread running");
    }
    // SAFETY: with one thread running, the child's copy of the process is consistent (no
    // lock is held by a thread that the child lacks), and each side goes on with its own.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// Closes every descriptor above 2 but those in `keep`: with close_range(2) over the gaps
/// between them (Linux 5.9), else one by one from `/proc/self/fd`. Whatever owns a closed
/// descriptor must never use or close it again: for a process that is about to do one last
/// thing and exit (the holder).
pub fn close_above_stderr_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|fd| *fd > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first: libc::c_uint = 3;
    let mut ranged = true;
    for fd in keep.iter().map(|fd| *fd as libc::c_uint) {
        if fd > first {
            ranged &= close_range(first, fd - 1, 0);
        }
        first = fd + 1;
    }
    ranged &= close_range(first, libc::c_uint::MAX, 0);
    if ranged {
        return Ok(());
    }
    for fd in open_descriptors()? {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing a descriptor number touches no memory; the caller's contract is
            // that nothing uses the closed ones again (one closed already fails harmlessly).
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// close_range(2), through the C library's `syscall`, which sets errno only when the call
/// fails; whether it succeeded. Which descriptors it may close is the caller's concern.
fn close_range(first: libc::c_uint, last: libc::c_uint, flags: libc::c_uint) -> bool {
    // SAFETY: the call touches no memory; its callers either only mark descriptors
    // close-on-exec or close what nothing will use again.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) == 0 }
}

/// Signals blocked for this process and readable from a signalfd instead, so that the holder
/// sees them without a handler (and without dying of them) while it waits for the sandbox.
pub struct HeldSignals {
    previous: libc::sigset_t,
    fd: std::os::fd::OwnedFd,
}

impl HeldSignals {
    /// Blocks `signals` and opens a close-on-exec signalfd for them.
    pub fn hold(signals: &[libc::c_int]) -> io::Result<HeldSignals> {
        use std::os::fd::FromRawFd;
        // SAFETY: the sets are plain values initialized by sigemptyset before use; the calls
        // write only into them, and sigprocmask changes this thread's mask alone.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &signal in signals {
                libc::sigaddset(&mut set, signal);
            }
            let mut previous: libc::sigset_t = std::mem::zeroed();
            if libc::sigprocmask(libc::SIG_BLOCK, &set, &mut previous) != 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
            if fd < 0 {
                let error = io::Error::last_os_error();
                libc::sigprocmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
                return Err(error);
            }
            Ok(HeldSignals {
                previous,
                fd: std::os::fd::OwnedFd::from_raw_fd(fd),
            })
        }
    }

    /// The signalfd, to poll.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    /// The next signal: its number, and whether a process sent it (rather than the kernel,
    /// as for the terminal's Ctrl-C, which reaches the whole foreground process group).
    pub fn next(&self) -> io::Result<(libc::c_int, bool)> {
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        let read = rustix::io::read(&self.fd, &mut info)?;
        if read != info.len() {
            return Err(io::Error::other("a short read from the signalfd"));
        }
        // SAFETY: the kernel wrote one whole signalfd_siginfo, a plain struct of integers;
        // read_unaligned copies it out of the byte buffer whatever its alignment.
        let info: libc::signalfd_siginfo =
            unsafe { std::ptr::read_unaligned(info.as_ptr().cast()) };
        Ok((info.ssi_signo as libc::c_int, info.ssi_code <= 0))
    }

    /// Restores the signal mask there was before [`HeldSignals::hold`] (in a child that goes
    /// on to exec, which would inherit the blocked mask), and closes the signalfd.
    pub fn release(self) -> io::Result<()> {
        // SAFETY: `previous` was filled by sigprocmask in `hold`.
        if unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) }
            != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The user namespace that owns the namespace `namespace` (a `/proc/PID/ns/*` file), opened
/// close-on-exec: the `NS_GET_USERNS` ioctl. bwrap's sandbox runs in a user namespace nested
/// in the one that owns its network namespace (it maps root first, to mount `/dev/pts`), and
/// only the owner grants what joining the network namespace needs.
pub fn namespace_owner(namespace: std::os::fd::BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // _IO(0xb7, 0x1), from linux/nsfs.h.
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: NS_GET_USERNS takes no argument and touches no memory of ours; on success it
    // returns a new descriptor (close-on-exec), which is then owned here alone.
    unsafe {
        let fd = libc::ioctl(namespace.as_raw_fd(), NS_GET_USERNS as _);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(std::os::fd::OwnedFd::from_raw_fd(fd))
    }
}
