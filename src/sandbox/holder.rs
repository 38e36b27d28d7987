//! The holder: the launch itself, once bwrap runs, for as long as the sandbox runs, and what
//! must happen after it before the user gets the shell back.
//!
//! Right before the exec, the launch forks. The child goes on to exec bwrap (the one exec
//! site, `exec`); the launch becomes the holder. It keeps the environment's lock, held
//! shared, the launch directory's lock, and the read end of a pipe whose write end bwrap
//! gets with `--sync-fd`, and closes every other descriptor it had. bwrap's pid 1 keeps that
//! end open until the last process of the sandbox has exited, so the holder's read of the
//! pipe returns end of file exactly when the sandbox is over. The sandbox holds only a pipe:
//! nothing in it can reach the store's lock file, change its mode or learn its path, and the
//! most it can do is end its own lease early.
//!
//! When the sandbox is over the holder moves aside what the sandbox put where host git would
//! obey it, brings back what git changed in the sandbox's copy of the repository's files (see
//! `git`), names the git repositories the sandbox made in the workspace, and exits with
//! bwrap's status. Its parent (the user's shell) waits for it, so the user's next command,
//! a `git status` say, starts only once that is done: a holder that ran beside the shell
//! left a window in which host git obeyed what the sandbox planted. While it waits it has
//! SIGINT, SIGQUIT, SIGTERM and SIGHUP blocked and read from a signalfd: the terminal's reach
//! bwrap too (the same process group), and those a process sent the holder alone are passed
//! on to bwrap. Its stdin and stdout are /dev/null; its stderr is paude's, for those lines,
//! written so that a closed stderr does not end it.
//!
//! A fork, not a new program: the launch runs one thread when it forks (the evaluator runs in
//! a process of its own, and the build's threads have ended), so either side may do anything
//! the launch could, and it costs the launch neither an exec nor a second start-up of paude.
//! The holder never returns into the launch's code: it exits once its work is done, also when
//! that work panics.

use super::{git, network};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

/// What the holder does once the sandbox is over.
pub struct Work {
    /// The repositories whose sandbox copies to bring back, and the launch directory they
    /// are in, removed once they came back.
    pub git: Vec<git::Private>,
    /// The `.git` paths where host git would obey a repository the sandbox put there.
    pub nested: Vec<git::Guarded>,
    /// Where the venvs the sandbox makes in the workspace are kept (`venvPersist`).
    pub venvs: Option<KeptVenvs>,
    pub launch_dir: Option<PathBuf>,
    /// The workspace, to name the repositories the sandbox made in it.
    pub workspace: PathBuf,
    /// When the launch began: a `.git` changed since then was made by the sandbox.
    pub began: std::time::SystemTime,
}

/// Where the venvs the sandbox makes in the workspace go when it ends: into paude's state,
/// from where the next run binds each at the same place. A venv in the workspace is the
/// host's (the host can run it, so the sandbox gets an empty shadow or its own over it); one
/// the sandbox made is the sandbox's, and stays out of the host's reach.
#[derive(Debug, Clone)]
pub struct KeptVenvs {
    /// `$PAUDE_HOME/state/<workspace>/venvs`.
    pub state: PathBuf,
    /// The directories that may hold one, relative to the workspace; `None`: each top-level
    /// directory (`venv: "auto"`).
    pub listed: Option<Vec<PathBuf>>,
    /// The venv directories bound at launch: the host's, and those kept before.
    pub bound: Vec<PathBuf>,
    /// The candidates that were there at launch and not empty, which are the user's and never
    /// move (a `pyvenv.cfg` the sandbox writes into `conf/` does not make `conf/`, which holds
    /// a protected file, the sandbox's venv).
    pub existing: Vec<PathBuf>,
}

impl KeptVenvs {
    /// The directories that may come to hold a venv the sandbox makes: each top-level one
    /// (`listed` none), or the listed ones.
    pub fn candidates(workspace: &std::path::Path, listed: Option<&[PathBuf]>) -> Vec<PathBuf> {
        match listed {
            None => crate::sandbox::workspace::subdirectories(workspace),
            Some(dirs) => dirs.iter().map(|dir| workspace.join(dir)).collect(),
        }
    }
}

/// Signals that would end the holder before its work is done: blocked while it waits, and
/// passed on to bwrap when a process sent them to the holder alone (the terminal's reach the
/// foreground process group, which is bwrap's).
const PASSED_ON: [libc::c_int; 14] = [
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGPROF,
    libc::SIGVTALRM,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGIO,
    libc::SIGPWR,
    libc::SIGSTKFLT,
];

/// Signals the holder takes from the signalfd for its own ends: bwrap stopped or ended
/// (SIGCHLD), and the terminal's complaint when a process of a background group sets its
/// foreground group (SIGTTOU).
const OWN: [libc::c_int; 2] = [libc::SIGCHLD, libc::SIGTTOU];

/// What the child that goes on to exec bwrap gets: the write end of the pipe for bwrap's
/// `--sync-fd`, and where the sandbox has a network helper, bwrap's ends of `--info-fd` and
/// `--block-fd`; all close-on-exec.
pub struct ForBwrap {
    pub keep_open: OwnedFd,
    pub network: Option<network::BwrapEnds>,
}

/// Forks: the child returns [`ForBwrap`] and goes on to exec bwrap; this process becomes the
/// holder of `locks`, starts `helper` for the sandbox's network (see `network`), waits for
/// the sandbox to end, does `work`, and exits with bwrap's status. Call it with one thread
/// running.
pub fn start(
    locks: &[BorrowedFd<'_>],
    work: Work,
    helper: Option<&network::Helper>,
) -> std::io::Result<ForBwrap> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (holder_ends, bwrap_ends) = match helper {
        Some(_) => {
            let (holder, bwrap) = network::pipes()?;
            (Some(holder), Some(bwrap))
        }
        None => (None, None),
    };
    // Blocked before the fork, so that no signal finds the holder unprepared; the child
    // unblocks them before it execs.
    let held: Vec<libc::c_int> = PASSED_ON.iter().chain(&OWN).copied().collect();
    let signals = crate::sys::HeldSignals::hold(&held)?;
    // At a terminal, bwrap runs in a process group of its own, the terminal's foreground one
    // (as a shell runs a job): bwrap has no `--new-session` there (an interactive shell inside
    // needs the terminal), and a `kill -KILL 0` inside would otherwise end the holder too,
    // before its work.
    let terminal = foreground_terminal();
    let child = match crate::sys::fork() {
        Ok(None) => {
            if terminal {
                // With SIGTTOU still blocked: this group is not the foreground one yet.
                rustix::process::setpgid(None, None)?;
                rustix::termios::tcsetpgrp(std::io::stdin(), rustix::process::getpid())?;
            }
            signals.release()?;
            drop(read);
            drop(holder_ends);
            return Ok(ForBwrap {
                keep_open: write,
                network: bwrap_ends,
            });
        }
        Ok(Some(child)) => child,
        Err(error) => {
            signals.release().ok();
            return Err(error);
        }
    };
    drop(write);
    drop(bwrap_ends);
    if terminal && let Some(pid) = rustix::process::Pid::from_raw(child) {
        // Also from here, as a shell does, so that neither side waits for the other.
        rustix::process::setpgid(Some(pid), Some(pid)).ok();
        rustix::termios::tcsetpgrp(std::io::stdin(), pid).ok();
    }
    // The holder. Whatever happens, it never returns into the launch.
    // The terminal, kept past stdin's going to /dev/null, to hand its foreground on.
    let tty: Option<OwnedFd> = terminal
        .then(|| rustix::io::fcntl_dupfd_cloexec(std::io::stdin(), 3).ok())
        .flatten();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut keep: Vec<i32> = locks.iter().map(|lock| lock.as_raw_fd()).collect();
        keep.push(read.as_raw_fd());
        keep.push(signals.fd().as_raw_fd());
        keep.extend(tty.as_ref().map(|tty| tty.as_raw_fd()));
        keep.extend(holder_ends.iter().flat_map(network::HolderEnds::raw));
        keep.extend(
            work.git
                .iter()
                .flat_map(|private| [private.held.as_raw_fd(), private.copy_held.as_raw_fd()]),
        );
        // The launch's other descriptors (the bind sources held for bwrap, the seccomp
        // filter), which the holder has no business with.
        if crate::sys::close_above_stderr_except(&keep).is_err() {
            return None;
        }
        if let Ok(null) = std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            rustix::stdio::dup2_stdin(&null).ok();
            rustix::stdio::dup2_stdout(&null).ok();
        }
        let running = match (holder_ends, helper, rustix::process::Pid::from_raw(child)) {
            (Some(ends), Some(helper), Some(pid)) => match network::bring_up(ends, helper, pid) {
                Ok(network::Started::Up(running)) => Some(running),
                Ok(network::Started::BwrapGone) => None,
                Err(message) => {
                    // bwrap was killed while it waited at `--block-fd`: the command never ran.
                    say(&format!("network: {message}"));
                    wait_for(child);
                    return Some(125);
                }
            },
            _ => None,
        };
        let status = wait_for_end_of_file(&read, &signals, child);
        if let Some(running) = running {
            running.end();
        }
        status
    }));
    let status = match outcome {
        Ok(Some(status)) => status,
        _ => wait_for(child),
    };
    if let Some(tty) = &tty {
        // The terminal back to the holder's group (the shell's job) before it says anything;
        // and its output resumed, should the sandbox have suspended it (`tcflow`), which would
        // leave the holder blocked on its first line.
        rustix::termios::tcsetpgrp(tty, rustix::process::getpgrp()).ok();
    }
    if rustix::termios::isatty(std::io::stderr()) {
        rustix::termios::tcflow(std::io::stderr(), rustix::termios::Action::OOn).ok();
    }
    if outcome.is_ok() {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| finish(&work))).ok();
    }
    std::process::exit(status)
}

/// Whether stdin is a terminal whose foreground process group is this process's (a job a
/// shell runs in the foreground).
fn foreground_terminal() -> bool {
    rustix::termios::isatty(std::io::stdin())
        && rustix::termios::tcgetpgrp(std::io::stdin())
            .is_ok_and(|group| group == rustix::process::getpgrp())
}

/// Moves each venv the sandbox made in the workspace (a directory holding `pyvenv.cfg` where
/// none was bound at launch) into paude's state, leaving an empty directory for the next run
/// to bind it on; a line for each.
fn keep_made_venvs(workspace: &std::path::Path, kept: &KeptVenvs) -> Vec<String> {
    use std::os::unix::fs::DirBuilderExt;
    let candidates = KeptVenvs::candidates(workspace, kept.listed.as_deref());
    let mut lines = Vec::new();
    for dir in candidates {
        if kept.bound.contains(&dir) || kept.existing.contains(&dir) {
            continue;
        }
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            continue;
        };
        // Reached without following a link (a listed `a/b/.venv` whose `a` the sandbox made a
        // link would lead elsewhere on the host), and moved from the directory so reached.
        let Ok(crate::sandbox::pin::Opened::Found(held, rustix::fs::FileType::Directory)) =
            crate::sandbox::pin::open(parent)
        else {
            continue;
        };
        let is_dir = rustix::fs::statat(&held, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| {
                rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory
            });
        let through = crate::sandbox::pin::through(std::os::fd::AsFd::as_fd(&held)).join(name);
        if !is_dir || !crate::sandbox::workspace::is_venv(&through) {
            continue;
        }
        let Ok(relative) = dir.strip_prefix(workspace) else {
            continue;
        };
        let target = kept.state.join(relative);
        let moved = (|| {
            if let Some(parent) = target.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)?;
            }
            if target.symlink_metadata().is_ok() {
                let old = kept.state.join(format!(
                    ".old-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos()
                ));
                std::fs::rename(&target, &old)?;
                crate::store::tree::remove(&old).ok();
            }
            let (Some(target_parent), Some(target_name)) = (target.parent(), target.file_name())
            else {
                return Err(std::io::ErrorKind::InvalidInput.into());
            };
            let into = std::fs::File::open(target_parent)?;
            rustix::fs::renameat(&held, name, &into, target_name)?;
            // What was moved must be the directory looked at: a sandbox still running in the
            // workspace could have swapped a link in meanwhile, which must not be kept (the
            // next run would bind where it leads).
            let moved =
                rustix::fs::statat(&into, target_name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
            if rustix::fs::FileType::from_raw_mode(moved.st_mode) != rustix::fs::FileType::Directory
            {
                rustix::fs::unlinkat(&into, target_name, rustix::fs::AtFlags::empty())?;
                return Err(std::io::Error::other(
                    "it was swapped for something else than a directory",
                ));
            }
            rustix::fs::mkdirat(&held, name, rustix::fs::Mode::from_raw_mode(0o755))?;
            Ok::<(), std::io::Error>(())
        })();
        lines.push(match moved {
            Ok(()) => format!(
                "kept the venv {} that the sandbox made in paude's state ({}): the next run \
                 uses it there, and the workspace keeps an empty {} for it",
                dir.display(),
                target.display(),
                relative.display()
            ),
            Err(error) => format!(
                "could not keep the venv {} that the sandbox made in paude's state ({error}): \
                 it stays in the workspace, and the next run shadows it as the host's",
                dir.display()
            ),
        });
    }
    lines
}

/// bwrap's exit status, as the holder exits with it: its own, or 128 and the signal that
/// ended it, as a shell reports that.
fn wait_for(child: libc::pid_t) -> i32 {
    let Some(pid) = rustix::process::Pid::from_raw(child) else {
        return 125;
    };
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                if let Some(code) = status.exit_status() {
                    return code;
                }
                if let Some(signal) = status.terminating_signal() {
                    return 128 + signal;
                }
            }
            Err(rustix::io::Errno::INTR) => continue,
            _ => return 125,
        }
    }
}

/// A line on stderr, if it can still be written: a closed pipe (`paude venv ... 2>&1 | head`)
/// must not end the holder before its work is done, as `eprintln!` would.
fn say(line: &str) {
    use std::io::Write;
    writeln!(std::io::stderr(), "paude: {}", crate::text::printable(line)).ok();
}

/// What the holder does once the sandbox is over; the locks go as it exits.
fn finish(work: &Work) {
    // First what host git would obey: the user's next command may be `git status`.
    for line in git::move_aside_planted(&work.workspace, &work.nested) {
        say(&line);
    }
    for private in &work.git {
        for line in git::bring_back(private)
            .into_iter()
            .chain(git::sweep(private, work.began))
        {
            say(&line);
        }
    }
    if let Some(kept) = &work.venvs {
        for line in keep_made_venvs(&work.workspace, kept) {
            say(&line);
        }
    }
    // Empty unless something could not come back, which was said.
    if let Some(dir) = &work.launch_dir {
        std::fs::remove_dir(dir).ok();
    }
    // The walk of the whole workspace: here while it is short, else in a process of its own
    // once paude has exited (the shell would otherwise wait a walk of 100,000 files first;
    // what host git obeys without a `cd` was moved aside above).
    let (made, unseen) = match git::made_since_within(&work.workspace, work.began, QUICK_WALK) {
        Some(found) => found,
        None => match crate::sys::fork() {
            Ok(None) => {
                // The locks are not this walk's to keep.
                crate::sys::close_above_stderr_except(&[]).ok();
                let (made, unseen) = git::made_since(&work.workspace, work.began);
                name_made(made, unseen);
                std::process::exit(0);
            }
            Ok(Some(_)) => return,
            Err(_) => git::made_since(&work.workspace, work.began),
        },
    };
    name_made(made, unseen);
}

/// The most entries of the workspace the holder walks before the user gets the shell back.
const QUICK_WALK: usize = 20_000;

/// The lines for the repositories the sandbox made, and for what was not looked into.
fn name_made(made: Vec<PathBuf>, unseen: Vec<String>) {
    for line in unseen {
        say(&line);
    }
    for repository in made {
        say(&format!(
            "the sandbox made or changed the git repository {} in the workspace: its config \
             and hooks may be the sandbox's, and host git obeys them when it works there (a cd \
             into it, a submodule update, or a `git status` that recurses into it as a \
             submodule); look at them, or remove it",
            repository.display()
        ));
    }
}

/// Reads the pipe until every copy of its write end is closed (what the sandbox writes into
/// it is ignored), passing on to bwrap the signals a process sent the holder; bwrap's status,
/// where it ended meanwhile. A bwrap stopped (Ctrl-Z, or the sandbox's own `kill -STOP 0`) is
/// continued: paude does not suspend with its work undone.
fn wait_for_end_of_file(
    pipe: &OwnedFd,
    signals: &crate::sys::HeldSignals,
    child: libc::pid_t,
) -> Option<i32> {
    use rustix::event::{PollFd, PollFlags};
    use rustix::process::{Pid, Signal, WaitOptions};
    let pid = Pid::from_raw(child)?;
    let mut status = None;
    let mut buffer = [0u8; 64];
    let signal_fd = signals.fd();
    loop {
        let mut fds = [
            PollFd::new(pipe, PollFlags::IN),
            PollFd::new(&signal_fd, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
        let (pipe_ready, signal_ready) =
            (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
        if signal_ready && let Ok((signal, sent)) = signals.next() {
            if signal == libc::SIGCHLD {
                let options = WaitOptions::NOHANG | WaitOptions::UNTRACED;
                while let Ok(Some((_, wait))) = rustix::process::waitpid(Some(pid), options) {
                    if wait.stopped() {
                        // Continued at once: a sandbox that stops itself (`kill -STOP 0`) would
                        // otherwise look like a Ctrl-Z and give the shell back with its work
                        // not done. A shell inside has job control of its own.
                        rustix::process::kill_process_group(pid, Signal::CONT).ok();
                    } else if let Some(code) = wait.exit_status() {
                        status = Some(code);
                        break;
                    } else if let Some(signal) = wait.terminating_signal() {
                        status = Some(128 + signal);
                        break;
                    }
                }
            } else if sent
                && PASSED_ON.contains(&signal)
                && let Some(signal) = Signal::from_named_raw(signal)
            {
                rustix::process::kill_process(pid, signal).ok();
            }
        }
        if pipe_ready {
            match rustix::io::read(pipe, &mut buffer) {
                Ok(0) => break,
                Ok(_) | Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
        }
    }
    status
}
