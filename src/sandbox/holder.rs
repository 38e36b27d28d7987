//! The holder: the process that outlives paude's exec into bwrap for as long as the sandbox
//! runs, and does what must happen after it.
//!
//! Right before the exec, the launch starts paude again as `paude __hold`, handing it two
//! descriptors (everything else paude has open is close-on-exec by then): the environment's
//! lock, held shared, and the read end of a pipe whose write end bwrap gets with `--sync-fd`.
//! bwrap's pid 1 keeps that end open until the last process of the sandbox has exited, so
//! the holder's read of the pipe returns end of file exactly when the sandbox is over. The
//! sandbox holds only a pipe: nothing in it can reach the store's lock file, change its mode
//! or learn its path, and the most it can do is end its own lease early.
//!
//! When the sandbox is over the holder brings back what git changed in the sandbox's copy of
//! the repository's files (see `git`), names the git repositories the sandbox made in the
//! workspace, and exits, which lets the lock go. It runs in a session of its own, so Ctrl-C
//! at the terminal does not end it before its work is done; its stdout is /dev/null and its
//! stderr paude's, for those lines.
//!
//! The work is handed over as JSON on the holder's stdin; the descriptors by number.

use super::git;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The hidden subcommand the holder runs as.
pub const SUBCOMMAND: &str = "__hold";

/// What the holder is given.
#[derive(Debug, Serialize, Deserialize)]
struct Work {
    /// The locks it keeps: the environment's, and the launch directory's.
    lock_fds: Vec<RawFd>,
    pipe_fd: RawFd,
    /// The repositories whose sandbox copies to bring back, and the launch directory they
    /// are in, removed once they came back.
    git: Vec<git::Private>,
    launch_dir: Option<PathBuf>,
    /// The workspace, to name the repositories the sandbox made in it.
    workspace: PathBuf,
    /// When the launch began (seconds and nanoseconds since the epoch): a `.git` changed
    /// since then was made by the sandbox.
    began: (i64, i64),
}

/// Starts the holder (`program`, paude itself) for `locks`; returns the pipe's write end,
/// close-on-exec, for bwrap's `--sync-fd`. Every descriptor of this process above 2 must be
/// close-on-exec already (the exec site's rule): the holder gets only the locks and the pipe.
pub fn start(
    program: &Path,
    locks: &[BorrowedFd<'_>],
    git: Vec<git::Private>,
    launch_dir: Option<&Path>,
    workspace: &Path,
    began: std::time::SystemTime,
) -> io::Result<OwnedFd> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let since = began
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let work = Work {
        lock_fds: locks.iter().map(|lock| lock.as_raw_fd()).collect(),
        pipe_fd: read.as_raw_fd(),
        git,
        launch_dir: launch_dir.map(Path::to_path_buf),
        workspace: workspace.to_path_buf(),
        began: (since.as_secs() as i64, i64::from(since.subsec_nanos())),
    };
    let work = serde_json::to_vec(&work).map_err(io::Error::other)?;
    let mut inherited = locks.to_vec();
    inherited.push(read.as_fd());
    for fd in &inherited {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
    }
    let spawned = Command::new(program)
        .arg(SUBCOMMAND)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn();
    // This process's copies go back to close-on-exec whatever happened: bwrap must not get
    // the lock.
    for fd in &inherited {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    }
    let mut child = spawned?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&work)?;
    }
    // The holder has its own copies of the lock and the read end; this process's read end
    // closes as it drops, and the lock's with the lease.
    Ok(write)
}

/// `paude __hold`: see the module documentation.
pub fn serve() -> ExitCode {
    // Its own session: Ctrl-C, Ctrl-\ and hang-ups at the terminal do not reach it.
    rustix::process::setsid().ok();
    let mut input = Vec::new();
    if io::stdin().read_to_end(&mut input).is_err() {
        return ExitCode::FAILURE;
    }
    let Ok(work) = serde_json::from_slice::<Work>(&input) else {
        return ExitCode::FAILURE;
    };
    // The pipe the work came on is read out; stdin is /dev/null from here.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        rustix::stdio::dup2_stdin(&null).ok();
    }
    let locks: Option<Vec<OwnedFd>> = work
        .lock_fds
        .iter()
        .map(|fd| crate::sys::take_inherited(*fd))
        .collect();
    let (Some(locks), Some(pipe)) = (locks, crate::sys::take_inherited(work.pipe_fd)) else {
        return ExitCode::FAILURE;
    };
    wait_for_end_of_file(&pipe);
    for private in &work.git {
        for line in git::bring_back(private) {
            eprintln!("paude: {line}");
        }
    }
    // Empty unless something could not come back, which was said.
    if let Some(dir) = &work.launch_dir {
        std::fs::remove_dir(dir).ok();
    }
    let began =
        std::time::UNIX_EPOCH + std::time::Duration::new(work.began.0 as u64, work.began.1 as u32);
    for repository in git::made_since(&work.workspace, began) {
        eprintln!(
            "paude: the sandbox made the git repository {} in the workspace: its config and \
             hooks are the sandbox's, and host git obeys them when it works there (a submodule \
             update, a cd into it); look at them, or remove it",
            repository.display()
        );
    }
    // The launch directory is empty now (or kept, its copies said above); dropping the locks
    // lets them go.
    drop(locks);
    ExitCode::SUCCESS
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
