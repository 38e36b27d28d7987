//! The system calls that the standard library, `rustix` and `libc`'s safe surface do not cover,
//! each wrapped once: the crate's only `unsafe` code outside tests (`[lints]` in Cargo.toml
//! denies it everywhere else).
//!
//! - [`close_on_exec_above_stderr`]: the exec site's guarantee that nothing paude's caller
//!   left open reaches the sandbox;
//! - [`take_inherited`]: the holder's ownership of the descriptors its parent left it (see
//!   `sandbox::holder`).

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

/// Takes ownership of descriptor `fd`, which this process's parent left open for it alone
/// (the holder's lock and pipe, passed by number); `None` when no such descriptor is open.
/// Call it once per number.
pub fn take_inherited(fd: RawFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if fd < 3 {
        return None;
    }
    // SAFETY: F_GETFD reads a flag of a descriptor number and touches no memory.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return None;
    }
    // SAFETY: the descriptor is open (just checked), was handed to this process for this
    // use alone, and nothing else in the process owns or closes it.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// close_range(2), through the C library's `syscall`, which sets errno only when the call
/// fails; whether it succeeded. Which descriptors it may close is the caller's concern.
fn close_range(first: libc::c_uint, last: libc::c_uint, flags: libc::c_uint) -> bool {
    // SAFETY: the call touches no memory; its one caller only marks descriptors
    // close-on-exec.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) == 0 }
}
