//! The holder: the process that outlives paude's exec into bwrap for as long as the sandbox
//! runs, and does what must happen after it.
//!
//! Right before the exec, the launch forks. The child, the holder, keeps three descriptors
//! and closes every other one it inherited: the environment's lock, held shared, the launch
//! directory's lock, and the read end of a pipe whose write end bwrap gets with `--sync-fd`.
//! bwrap's pid 1 keeps that end open until the last process of the sandbox has exited, so
//! the holder's read of the pipe returns end of file exactly when the sandbox is over. The
//! sandbox holds only a pipe: nothing in it can reach the store's lock file, change its mode
//! or learn its path, and the most it can do is end its own lease early.
//!
//! When the sandbox is over the holder brings back what git changed in the sandbox's copy of
//! the repository's files (see `git`), names the git repositories the sandbox made in the
//! workspace, and exits, which lets the locks go. It runs in a session of its own, so Ctrl-C
//! at the terminal does not end it before its work is done; its stdin and stdout are
//! /dev/null and its stderr paude's, for those lines.
//!
//! A fork, not a new program: the launch runs one thread when it forks (the evaluator runs in
//! a process of its own, and the build's threads have ended), so the child may do anything
//! the parent could, and it costs the launch neither an exec nor a second start-up of paude on
//! a machine's other core while bwrap sets the sandbox up. The child never returns into the
//! launch's code: it exits once its work is done, also when that work panics.

use super::git;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

/// What the holder does once the sandbox is over.
pub struct Work {
    /// The repositories whose sandbox copies to bring back, and the launch directory they
    /// are in, removed once they came back.
    pub git: Vec<git::Private>,
    /// The `.git` paths where host git would obey a repository the sandbox put there.
    pub nested: Vec<git::Guarded>,
    pub launch_dir: Option<PathBuf>,
    /// The workspace, to name the repositories the sandbox made in it.
    pub workspace: PathBuf,
    /// When the launch began: a `.git` changed since then was made by the sandbox.
    pub began: std::time::SystemTime,
}

/// Starts the holder for `locks`; returns the pipe's write end, close-on-exec, for bwrap's
/// `--sync-fd`. Call it with one thread running.
pub fn start(locks: &[BorrowedFd<'_>], work: Work) -> std::io::Result<OwnedFd> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    if crate::sys::fork()?.is_some() {
        // The holder has its own copies of the locks and the read end; this process's read
        // end closes here, the locks' at the exec (they are close-on-exec).
        return Ok(write);
    }
    // The holder. Whatever happens, it never returns into the launch.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut keep: Vec<i32> = locks.iter().map(|lock| lock.as_raw_fd()).collect();
        keep.push(read.as_raw_fd());
        keep.extend(
            work.git
                .iter()
                .flat_map(|private| [private.held.as_raw_fd(), private.copy_held.as_raw_fd()]),
        );
        // Above all the write end of the pipe, whose copy here would keep it open for ever;
        // and the launch's other descriptors, which the holder has no business with.
        if crate::sys::close_above_stderr_except(&keep).is_err() {
            return;
        }
        // Its own session: Ctrl-C, Ctrl-\ and hang-ups at the terminal do not reach it.
        rustix::process::setsid().ok();
        if let Ok(null) = std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            rustix::stdio::dup2_stdin(&null).ok();
            rustix::stdio::dup2_stdout(&null).ok();
        }
        wait_for_end_of_file(&read);
        finish(&work);
    }));
    std::process::exit(if outcome.is_ok() { 0 } else { 1 })
}

/// What the holder does once the sandbox is over; the locks go as it exits.
fn finish(work: &Work) {
    for private in &work.git {
        for line in git::bring_back(private)
            .into_iter()
            .chain(git::sweep(private, work.began))
        {
            eprintln!("paude: {}", crate::text::printable(&line));
        }
    }
    for line in git::move_aside_planted(&work.workspace, &work.nested) {
        eprintln!("paude: {}", crate::text::printable(&line));
    }
    // Empty unless something could not come back, which was said.
    if let Some(dir) = &work.launch_dir {
        std::fs::remove_dir(dir).ok();
    }
    let (made, unseen) = git::made_since(&work.workspace, work.began);
    for line in unseen {
        eprintln!("paude: {}", crate::text::printable(&line));
    }
    for repository in made {
        let line = format!(
            "the sandbox made or changed the git repository {} in the workspace: its config \
             and hooks may be the sandbox's, and host git obeys them when it works there (a cd \
             into it, a submodule update, or a `git status` that recurses into it as a \
             submodule); look at them, or remove it",
            repository.display()
        );
        eprintln!("paude: {}", crate::text::printable(&line));
    }
}

/// Reads the pipe until every copy of its write end is closed (what the sandbox writes into
/// it is ignored).
fn wait_for_end_of_file(pipe: &OwnedFd) {
    let mut buffer = [0u8; 64];
    loop {
        match rustix::io::read(pipe, &mut buffer) {
            Ok(0) => break,
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
}
