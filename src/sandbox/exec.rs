//! The single exec site: the launch's child becomes bwrap (the launch itself waits for it as
//! the holder, and exits with its status: see `holder`).
//!
//! bwrap runs with an empty environment: the caller's variables (API keys,
//! tokens) would otherwise be readable inside from bwrap's own `/proc/1/environ`. bwrap passes every descriptor it inherits on to the sandboxed command, so
//! before the exec every descriptor above 2 is marked close-on-exec, and then the flag is
//! cleared on those in `inherit` alone: descriptors paude's own caller leaked to it (a shell's
//! `exec 3<secret`, an editor's or agent's pipes) never reach the sandbox. Rust opens paude's
//! own descriptors close-on-exec already.

use std::ffi::OsString;
use std::os::fd::BorrowedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// What to do about a bwrap command line too long for the kernel (E2BIG).
const TOO_LONG_FIX: &str =
    "shrink large `envSet` values or pass them through `envKeep`, or use fewer mounts";

/// Replaces this process with `program args`, letting only 0-2 and `inherit` survive the
/// exec. Returns only on failure, with the error as paude reports it.
pub fn exec(program: &Path, args: &[OsString], inherit: &[BorrowedFd<'_>]) -> anyhow::Error {
    let error = match prepare_descriptors(inherit) {
        // bwrap itself gets no environment: what the sandbox gets is in `--setenv`, and the
        // sandbox's pid 1 is a bwrap process, whose /proc/1/environ anything inside can read.
        Ok(()) => Command::new(program).env_clear().args(args).exec(),
        Err(error) => error,
    };
    if error.raw_os_error() == Some(rustix::io::Errno::TOOBIG.raw_os_error()) {
        let bytes: usize = args.iter().map(|arg| arg.len() + 1).sum();
        return anyhow::anyhow!(
            "the bwrap command line is too long for the kernel ({bytes} bytes of arguments); {TOO_LONG_FIX}"
        );
    }
    anyhow::Error::new(error).context(format!("running {}", program.display()))
}

/// Marks every descriptor above 2 close-on-exec, then clears the flag on `inherit`.
fn prepare_descriptors(inherit: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    crate::sys::close_on_exec_above_stderr()?;
    for fd in inherit {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
    }
    Ok(())
}
