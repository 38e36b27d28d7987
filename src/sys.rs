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
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

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
    let flags = libc::CLOSE_RANGE_CLOEXEC as libc::c_uint;
    // SAFETY: with CLOSE_RANGE_CLOEXEC the call closes nothing; it only sets a flag that
    // takes effect at the exec.
    if unsafe { libc::syscall(libc::SYS_close_range, 3, libc::c_uint::MAX, flags) } == 0 {
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
const HOLDER_STACK: usize = 64 * 1024;

/// What the holder process is given: leaked, since it lives on in the holder after this
/// process has exec'd.
struct Holder {
    /// The read end of the pipe whose end of file ends the holder.
    pipe: RawFd,
    /// Opened on /dev/null: the holder's standard descriptors.
    null: RawFd,
    /// Every other descriptor the holder inherits and must not keep.
    close: Vec<RawFd>,
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
    let null = OwnedFd::from(
        std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/null")?,
    );
    let keep = [lock.as_raw_fd(), pipe.as_raw_fd(), null.as_raw_fd()];
    let close = match open_descriptors() {
        Ok(open) => open,
        // Without /proc: every number below the descriptor limit.
        Err(_) => {
            let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            let limit = nofile.current.unwrap_or(1 << 20).min(1 << 20);
            (0..limit as RawFd).collect()
        }
    }
    .into_iter()
    .filter(|fd| *fd > 2 && !keep.contains(fd))
    .collect();
    let holder: &'static Holder = Box::leak(Box::new(Holder {
        pipe: pipe.as_raw_fd(),
        null: null.as_raw_fd(),
        close,
    }));
    let stack: &'static mut [std::mem::MaybeUninit<u8>] =
        Box::leak(Box::new_uninit_slice(HOLDER_STACK));
    // The stack grows down from its end, which must be 16-byte aligned.
    let top = stack.as_mut_ptr_range().end;
    let top = top.wrapping_sub(top as usize % 16) as *mut c_void;
    // SAFETY: `holder_main` runs on its own stack (leaked, never used by this process) and
    // touches only the leaked `holder` and that stack; it makes raw system calls (rustix),
    // which neither allocate nor set the C library's errno, so it shares nothing with this
    // process that this process changes.
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
    // The holder has its own copy of /dev/null; this process's goes here.
    drop(null);
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
    // SAFETY: these are this process's own copies of descriptors it was given or must not
    // keep; nothing else in it uses them. One may be closed already (the directory listing's
    // own), which `try_close` reports, harmlessly.
    let null = unsafe { BorrowedFd::borrow_raw(holder.null) };
    rustix::stdio::dup2_stdin(null).ok();
    rustix::stdio::dup2_stdout(null).ok();
    rustix::stdio::dup2_stderr(null).ok();
    for &fd in holder.close.iter().chain([&holder.null]) {
        // SAFETY: as above.
        unsafe { rustix::io::try_close(fd) }.ok();
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
