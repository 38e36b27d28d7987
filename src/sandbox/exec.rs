//! The single exec site: paude becomes bwrap.
//!
//! No supervisor process stays behind: the sandboxed command's exit status is bwrap's, which
//! is paude's. Rust opens every descriptor close-on-exec, so bwrap receives only 0-2 from us.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Replaces this process with `program args`. Returns only on failure.
pub fn exec(program: &OsStr, args: &[OsString]) -> std::io::Error {
    Command::new(program).args(args).exec()
}
