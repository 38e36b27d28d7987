//! The single exec site: paude becomes bwrap.
//!
//! No supervisor process stays behind: the sandboxed command's exit status is bwrap's, which
//! is paude's. bwrap passes every descriptor it inherits on to the sandboxed command, so
//! before the exec every descriptor above 2 is marked close-on-exec, and then the flag is
//! cleared on those in `inherit` alone: descriptors paude's own caller leaked to it (a shell's
//! `exec 3<secret`, an editor's or agent's pipes) never reach the sandbox. Rust opens paude's
//! own descriptors close-on-exec already.

use std::ffi::{OsStr, OsString};
use std::os::fd::BorrowedFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// What to do about a bwrap command line too long for the kernel (E2BIG).
pub const TOO_LONG_FIX: &str =
    "shrink large `envSet` values or pass them through `envKeep`, or use fewer mounts";

/// Replaces this process with `program args`, letting only 0-2 and `inherit` survive the
/// exec. Returns only on failure.
pub fn exec(program: &OsStr, args: &[OsString], inherit: &[BorrowedFd<'_>]) -> std::io::Error {
    if let Err(error) = close_on_exec_above_stderr() {
        return error;
    }
    for fd in inherit {
        if let Err(errno) = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()) {
            return errno.into();
        }
    }
    Command::new(program).args(args).exec()
}

/// Marks every open descriptor above 2 close-on-exec: in one close_range(2) call where the
/// kernel has `CLOSE_RANGE_CLOEXEC` (Linux 5.11), else one by one from `/proc/self/fd`.
fn close_on_exec_above_stderr() -> std::io::Result<()> {
    // SAFETY: marking descriptors close-on-exec changes nothing before the exec.
    if unsafe { crate::bare::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) }.is_ok() {
        return Ok(());
    }
    for fd in crate::host::open_descriptors()? {
        if fd <= 2 {
            continue;
        }
        // SAFETY: the descriptor is only borrowed for the fcntl; one that was closed in the
        // meantime (the directory listing's own) makes the call fail, which is ignored.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = rustix::io::fcntl_getfd(borrowed) {
            rustix::io::fcntl_setfd(borrowed, flags | rustix::io::FdFlags::CLOEXEC).ok();
        }
    }
    Ok(())
}
