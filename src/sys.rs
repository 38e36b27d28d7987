//! The system calls that the standard library, `rustix` and `libc`'s safe surface do not cover,
//! each wrapped once: the crate's only `unsafe` code outside tests (`[lints]` in Cargo.toml
//! denies it everywhere else).
//!
//! - [`close_on_exec_above_stderr`]: the exec site's guarantee that nothing paude's caller
//!   left open reaches the sandbox;
//! - [`spawn_holder`]: the process that keeps an environment's lock while its sandbox runs
//!   (see `store::lock`).

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, RawFd};

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

/// The holder's stack: its code needs a few hundred bytes.
const HOLDER_STACK: usize = 16 * 1024;

/// What the holder process is given: leaked, since it lives on in the holder after this
/// process has exec'd.
struct Holder {
    /// The read end of the pipe whose end of file ends the holder.
    pipe: RawFd,
    /// The locked descriptor.
    lock: RawFd,
    /// The descriptors it closes, listed here, where the kernel has no close_range(2); else
    /// it closes every one but its own by ranges.
    close: Option<Vec<RawFd>>,
}

/// Whether close_range(2) (Linux 5.9) is there: asked to close a range above any descriptor a
/// process can have, which closes nothing. A kernel without it, or a seccomp filter that
/// refuses it, says no.
fn has_close_range() -> bool {
    // No descriptor can be numbered this high, so nothing is closed.
    close_range(libc::c_uint::MAX, libc::c_uint::MAX, 0)
}

/// close_range(2), through the C library's `syscall`, which sets errno only when the call
/// fails; whether it succeeded. Closing descriptors that something in this process still
/// uses is the callers' concern: each says why none in its range is.
fn close_range(first: libc::c_uint, last: libc::c_uint, flags: libc::c_uint) -> bool {
    // SAFETY: the call touches no memory; which descriptors it may close, see above.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) == 0 }
}

/// Starts the process that keeps `lock` (its copy of the descriptor) until the pipe whose read
/// end is `pipe` reports end of file, then exits. It runs in a session of its own, with 0-2 on
/// /dev/null and no other descriptor: not the terminal, not a pipe the caller reads paude's
/// output from, not the pipe's write end (or it would never see end of file).
///
/// The holder shares this process's memory (`CLONE_VM`) instead of copying it: a copied
/// address space costs a page-table copy and a copy-on-write fault for every page either
/// side touches next, which a launch would pay on every run (BENCHMARKS.md). This process
/// execs bwrap right after, which gives it a new address space; the holder keeps the old
/// one. Without `CLONE_FILES` the holder has its own descriptor table; without
/// `CLONE_THREAD` it is a process of its own, which the exec does not end.
pub fn spawn_holder(lock: BorrowedFd<'_>, pipe: BorrowedFd<'_>) -> io::Result<()> {
    let keep = [lock.as_raw_fd(), pipe.as_raw_fd()];
    // Listing descriptors (through /proc) costs a launch more than the rest of this function;
    // only a kernel without close_range(2) needs the list.
    let close = match has_close_range() {
        true => None,
        false => Some(
            open_descriptors()?
                .into_iter()
                .filter(|fd| *fd > 2 && !keep.contains(fd))
                .collect(),
        ),
    };
    let holder: &'static Holder = Box::leak(Box::new(Holder {
        pipe: pipe.as_raw_fd(),
        lock: lock.as_raw_fd(),
        close,
    }));
    let stack: &'static mut [std::mem::MaybeUninit<u8>] =
        Box::leak(Box::new_uninit_slice(HOLDER_STACK));
    // The stack grows down from its end, which must be 16-byte aligned.
    let top = stack.as_mut_ptr_range().end;
    let top = top.wrapping_sub(top as usize % 16) as *mut c_void;
    // SAFETY: `holder_main` runs on its own stack (leaked, never used by this process) and
    // touches only the leaked `holder` and that stack. It makes raw system calls (rustix),
    // which neither allocate nor set the C library's errno, and close_range(2) through
    // `libc::syscall`, which sets errno only on a failure that `has_close_range` ruled out
    // (it is called only when that found the call, `close` being `None`); so it shares
    // nothing with this process that this process changes.
    let pid = unsafe {
        libc::clone(
            holder_main,
            top,
            libc::CLONE_VM | libc::SIGCHLD,
            holder as *const Holder as *mut c_void,
        )
    };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The holder: see [`spawn_holder`]. Its return value is its exit status.
extern "C" fn holder_main(argument: *mut c_void) -> libc::c_int {
    // SAFETY: the argument is the `Holder` that `spawn_holder` leaked for this process.
    let holder = unsafe { &*(argument as *const Holder) };
    // `ps` and `top` show it as what it is.
    rustix::thread::set_name(c"paude-lock").ok();
    // Its own session: Ctrl-C, Ctrl-\ and hang-ups at paude's terminal do not reach it.
    rustix::process::setsid().ok();
    // 0-2 on /dev/null; the descriptor it was opened on is closed with the others. Where it
    // cannot be opened, no standard descriptor stays open either.
    let null = rustix::fs::open(
        c"/dev/null",
        rustix::fs::OFlags::RDWR,
        rustix::fs::Mode::empty(),
    )
    .map(|null| {
        rustix::stdio::dup2_stdin(&null).ok();
        rustix::stdio::dup2_stdout(&null).ok();
        rustix::stdio::dup2_stderr(&null).ok();
        // Not dropped: that would close it through the C library.
        null.into_raw_fd()
    });
    let standard: &[RawFd] = if null.is_ok() { &[] } else { &[0, 1, 2] };
    match &holder.close {
        None => close_all_but(
            &[holder.lock, holder.pipe],
            if null.is_ok() { 3 } else { 0 },
        ),
        Some(listed) => {
            for &fd in listed.iter().chain(standard).chain(null.as_ref().ok()) {
                // SAFETY: this process's own copies of descriptors it must not keep, which
                // nothing else in it uses. One may be closed already (the listing's own),
                // which `try_close` reports, harmlessly.
                unsafe { rustix::io::try_close(fd) }.ok();
            }
        }
    }
    // SAFETY: the pipe's read end, open in this process and closed by nothing in it.
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
    // Returning ends the holder (the C library's `clone` makes the exit call), which
    // releases the lock.
    0
}

/// Closes, in the holder, every descriptor from `first` up but `keep` (two), by ranges around
/// them: the holder uses none of them. Each range is well formed and no flag is set, so where
/// `has_close_range` found the call it cannot fail (and set errno).
fn close_all_but(keep: &[RawFd; 2], first: RawFd) {
    let (low, high) = (keep[0].min(keep[1]), keep[0].max(keep[1]));
    let mut from = first as libc::c_uint;
    for kept in [low as libc::c_uint, high as libc::c_uint] {
        if kept > from {
            close_range(from, kept - 1, 0);
        }
        from = from.max(kept + 1);
    }
    close_range(from, libc::c_uint::MAX, 0);
}
