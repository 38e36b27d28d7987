//! The single exec site: paude becomes bwrap.
//!
//! No supervisor process stays behind: the sandboxed command's exit status is bwrap's, which
//! is paude's. Rust opens every descriptor close-on-exec, so bwrap receives from us only 0-2
//! and the descriptors passed in `inherit` (the venv's lock, which bwrap's `--sync-fd` keeps
//! out of the sandboxed command).

use std::ffi::{OsStr, OsString};
use std::os::fd::BorrowedFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Replaces this process with `program args`, letting `inherit` survive the exec. Returns
/// only on failure.
pub fn exec(program: &OsStr, args: &[OsString], inherit: &[BorrowedFd<'_>]) -> std::io::Error {
    for fd in inherit {
        if let Err(errno) = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()) {
            return errno.into();
        }
    }
    Command::new(program).args(args).exec()
}
