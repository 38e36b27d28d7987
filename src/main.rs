//! paude's entry point: parse, dispatch, print errors, map them to exit codes.
//!
//! Exit status, as `podman run` and `env` use it: the sandboxed command's own status passes
//! through (paude execs bwrap, which returns it); paude's own failures are 125; a command that
//! cannot be run is 126, one that is not found 127.
//!
//! Rust's ordinary start-up does the rest: descriptors 0-2 are open (on /dev/null where the
//! caller closed one, so that no file paude opens takes one of their numbers, which bwrap
//! passes on), SIGPIPE is ignored (writing to a closed pipe is an error, not death), and a
//! panic exits with 101.

use clap::Parser;
use paude::cli::{Cli, Command};
use paude::commands::{self, ExitError};
use paude::host::HostFacts;
use std::ffi::OsString;
use std::process::ExitCode;

/// paude's own failures, as podman's.
const EXIT_PAUDE_FAILED: u8 = 125;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // A launch's usual command line is read without building clap's parser (see
    // `quick_venv_args`); every other line, and every mistake, goes to clap.
    let cli = match paude::cli::quick_venv_args(&args) {
        Some(venv) => Cli {
            command: Command::Venv(venv),
        },
        None => match Cli::try_parse_from(&args) {
            Ok(cli) => cli,
            Err(error) if error.use_stderr() => {
                // clap's text starts with "error: "; prefixed, it reads like every other failure.
                eprint!("paude: {}", error.render());
                if let Some(hint) = paude::cli::command_hint(&args, &error) {
                    eprintln!("paude: hint: {hint}");
                }
                return ExitCode::from(EXIT_PAUDE_FAILED);
            }
            Err(help_or_version) => {
                help_or_version.print().ok();
                return ExitCode::SUCCESS;
            }
        },
    };
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!(
                "paude: error: {}",
                paude::text::printable(&format!("{error:#}"))
            );
            ExitCode::from(match error.downcast_ref::<ExitError>() {
                Some(exit) => exit.code,
                None => EXIT_PAUDE_FAILED,
            })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // paude's own helpers need no host facts, and run with an empty environment.
    let host = match cli.command {
        Command::Evaluate => return Ok(paude::manifest::isolated::serve()),
        Command::Completions(args) => return commands::completions(args.shell),
        Command::Man(args) => return commands::man(args.command.as_deref()),
        _ => HostFacts::gather()?,
    };
    match cli.command {
        Command::Venv(args) => commands::venv::run(args, &host),
        Command::List(args) => commands::list::run(args, &host),
        Command::Cleanup(args) => commands::cleanup::run(args, &host),
        Command::Doctor(args) => commands::doctor::run(args, &host),
        Command::Trust(args) => commands::trust::run(args, &host),
        Command::Export(args) => commands::export::run(args, &host),
        Command::Completions(args) => commands::completions(args.shell),
        Command::Man(args) => commands::man(args.command.as_deref()),
        Command::Evaluate => Ok(paude::manifest::isolated::serve()),
    }
}
