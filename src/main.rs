//! paude's entry point: parse, dispatch, print errors, map them to exit codes.
//!
//! Exit status, as `podman run` and `env` use it: the sandboxed command's own status passes
//! through (paude execs bwrap, which returns it); paude's own failures are 125; a command that
//! cannot be run is 126, one that is not found 127.
//!
//! paude starts at the C `main`, not at Rust's: the start-up Rust runs before its `main`
//! installs a stack-overflow handler, and to find the main thread's stack it reads and parses
//! `/proc/self/maps`. That costs a launch about fifteen system calls and two dozen page faults,
//! a sizeable part of what paude spends before it becomes bwrap. The rest of that start-up
//! paude does itself, in [`main`]: descriptors 0-2 are made open (on /dev/null where the
//! caller closed one), SIGPIPE is ignored (writing to a closed pipe is an error, not death),
//! a panic exits with 101, and stdout is flushed before returning. What differs: a stack
//! overflow stops at the kernel's guard gap as a plain SIGSEGV instead of Rust's message, and
//! a panic message names the thread `<unnamed>` instead of `main`.

// The test build of this binary runs the test harness's `main` (it has no tests of its own).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

use clap::Parser;
use paude::cli::{Cli, Command};
use paude::commands::{self, ExitError};
use paude::host::HostFacts;
use std::ffi::{OsString, c_int};
use std::process::ExitCode;

/// paude's own failures, as podman's.
const EXIT_PAUDE_FAILED: u8 = 125;

/// A panic, as Rust's own start-up reports it.
const EXIT_PANICKED: c_int = 101;

/// The C entry point; see the module documentation for what it does in place of Rust's.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const std::ffi::c_char) -> c_int {
    use std::io::Write;
    use std::os::unix::ffi::OsStringExt;
    open_standard_descriptors();
    // SAFETY: setting a signal's disposition to "ignore" involves no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let args: Vec<OsString> = (0..usize::try_from(argc).unwrap_or(0))
        .map(|index| {
            // SAFETY: the C runtime passes `argc` valid, NUL-terminated strings in `argv`.
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(index)) };
            OsString::from_vec(arg.to_bytes().to_vec())
        })
        .collect();
    let status = match std::panic::catch_unwind(move || paude_main(args)) {
        Ok(status) => c_int::from(status),
        // The panic hook has printed the message.
        Err(_) => EXIT_PANICKED,
    };
    std::io::stdout().flush().ok();
    status
}

fn paude_main(args: Vec<OsString>) -> u8 {
    // A launch's usual command line is read without building clap's parser (see
    // `quick_venv_args`); every other line, and every mistake, goes to clap.
    let cli = match paude::cli::quick_venv_args(&args) {
        Some(venv) => Cli {
            command: Command::Venv(venv),
        },
        None => match Cli::try_parse_from(args) {
            Ok(cli) => cli,
            Err(error) if error.use_stderr() => {
                // clap's text starts with "error: "; prefixed, it reads like every other failure.
                eprint!("paude: {}", error.render());
                return EXIT_PAUDE_FAILED;
            }
            Err(help_or_version) => {
                help_or_version.print().ok();
                return 0;
            }
        },
    };
    match run(cli) {
        Ok(code) => status_of(code),
        Err(error) => {
            eprintln!("paude: error: {error:#}");
            match error.downcast_ref::<ExitError>() {
                Some(exit) => exit.code,
                None => EXIT_PAUDE_FAILED,
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let host = HostFacts::gather()?;
    match cli.command {
        Command::Venv(args) => commands::venv::run(args, &host),
        Command::List(args) => commands::list::run(args, &host),
        Command::Cleanup(args) => commands::cleanup::run(args, &host),
        Command::Doctor(args) => commands::doctor::run(args, &host),
    }
}

/// The status an `ExitCode` stands for, which the standard library gives no way to read back.
fn status_of(code: ExitCode) -> u8 {
    (0..=u8::MAX)
        .find(|status| ExitCode::from(*status) == code)
        .unwrap_or(EXIT_PAUDE_FAILED)
}

/// Makes sure descriptors 0-2 are open, on /dev/null where the caller closed one, so that no
/// file paude opens takes one of their numbers: bwrap passes 0-2 on to the sandboxed command.
fn open_standard_descriptors() {
    let mut standard = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `standard` is an array of three pollfd; a zero timeout does not wait.
    let polled = unsafe { libc::poll(standard.as_mut_ptr(), 3, 0) } != -1;
    for pollfd in standard {
        let closed = if polled {
            pollfd.revents & libc::POLLNVAL != 0
        } else {
            // SAFETY: F_GETFD only reads the descriptor's flags.
            let flags = unsafe { libc::fcntl(pollfd.fd, libc::F_GETFD) };
            flags == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
        };
        // The lowest free number is this one: those below it are open by now.
        // SAFETY: opening /dev/null has no effect but the new descriptor.
        if closed && unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } == -1 {
            std::process::abort();
        }
    }
}
