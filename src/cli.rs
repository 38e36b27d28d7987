//! Command-line definitions, and nothing else: no I/O happens here.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// Run commands in a rootless bubblewrap sandbox built from host packages.
#[derive(Debug, Parser)]
#[command(name = "paude", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command (default: an interactive shell) in the environment a manifest describes.
    Venv(VenvArgs),
    /// Show the cached environments: key, size, created, last used, in use, packages.
    List(ListArgs),
    /// Remove cached environments not used recently, and leftovers of interrupted builds.
    Cleanup(CleanupArgs),
    /// Check that this machine can run paude's sandboxes, and say how to fix what is wrong.
    Doctor(DoctorArgs),
}

/// `paude doctor`.
#[derive(Debug, Args)]
#[command(after_help = "\
Checks, one line each (ok, warning or problem, with the fix): bwrap (found, its version, \
whether it is setuid), user namespaces (the kernel's settings, and a trial), a trial sandbox \
set up as paude sets one up, the dpkg database, PAUDE_HOME (writable by this user, free \
space) and the cached environments in it. The exit status is 0 when nothing is a problem \
(warnings allowed), 125 when something is.

Examples:
  paude doctor                           the report
  paude doctor --json                    one JSON document for scripts
  PAUDE_HOME=/srv/paude paude doctor     check another cache location")]
pub struct DoctorArgs {
    /// Print one JSON document instead of the report.
    #[arg(long)]
    pub json: bool,
}

/// `paude list`.
#[derive(Debug, Args)]
#[command(after_help = "\
Columns: the environment's key (its directory under $PAUDE_HOME/venv), its size on disk, when \
it was built and last used, whether a sandbox is using it now, and the packages its manifest \
asked for (with the size of their closure). --json prints one document for scripts; the \
README describes its fields.")]
pub struct ListArgs {
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `paude cleanup`.
#[derive(Debug, Args)]
#[command(after_help = "\
A venv is kept while a sandbox uses it, and when it was used less than --max-age-days ago \
(its age counts from its last launch, not from its build). Without --max-age-days, every \
venv not in use is removed. Leftovers of builds and removals that were killed are always \
removed; a build that is still running is not touched.

Examples:
  paude cleanup --venvs --max-age-days 7              remove venvs unused for a week
  paude cleanup --venvs --max-age-days 0 --dry-run    show what would go, change nothing
  paude cleanup --venvs --max-age-days 7 --json       the same, as one JSON document")]
pub struct CleanupArgs {
    /// Clean cached environments (the default when no kind is named).
    #[arg(long)]
    pub venvs: bool,
    /// Keep environments used less than this many days ago.
    #[arg(
        long = "max-age-days",
        value_name = "DAYS",
        allow_negative_numbers = true
    )]
    pub max_age_days: Option<u32>,
    /// Say what would be removed, and remove nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Print one JSON document instead of the report.
    #[arg(long)]
    pub json: bool,
}

/// `paude venv`.
#[derive(Debug, Args)]
#[command(after_help = "\
Manifest: -e ARG, else -f FILE, else paude.jsonnet at the workspace root, else the built-in \
default (bash, coreutils, git, dash).

Examples:
  paude venv -e examples/core-venv.jsonnet             a shell in the environment
  paude venv -e m.jsonnet -- make test                 one command
  paude venv -e '(import \"m.jsonnet\") + {envSet+: {A: \"1\"}}' -- env
  paude venv --dry-run -- git status                   print the bwrap command line")]
pub struct VenvArgs {
    /// Jsonnet code, or the path of an existing manifest file.
    #[arg(
        short = 'e',
        long = "exec",
        value_name = "CODE|FILE",
        conflicts_with = "file"
    )]
    pub exec: Option<String>,
    /// A manifest file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Add a library directory for imports (searched after the importing file's directory).
    #[arg(short = 'J', long = "jpath", value_name = "DIR")]
    pub jpath: Vec<PathBuf>,
    /// Set an external string variable (std.extVar); `NAME` alone takes the host's $NAME.
    #[arg(short = 'V', long = "ext-str", value_name = "NAME[=VALUE]")]
    pub ext_str: Vec<String>,
    /// Set an external variable to Jsonnet code; `NAME` alone takes the code from $NAME.
    #[arg(long = "ext-code", value_name = "NAME[=CODE]")]
    pub ext_code: Vec<String>,
    /// Set a top-level argument string; `NAME` alone takes the host's $NAME.
    #[arg(short = 'A', long = "tla-str", value_name = "NAME[=VALUE]")]
    pub tla_str: Vec<String>,
    /// Set a top-level argument to Jsonnet code; `NAME` alone takes the code from $NAME.
    #[arg(long = "tla-code", value_name = "NAME[=CODE]")]
    pub tla_code: Vec<String>,
    /// Print the bwrap command line that would run, and run nothing (the environment is
    /// still built if it is not cached). The line leaves out `--sync-fd`, which passes the
    /// venv's lock only paude holds.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// The command to run, after `--`; none starts an interactive shell.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn command_comes_after_double_dash() {
        let cli = Cli::try_parse_from([
            "paude",
            "venv",
            "-e",
            "m.jsonnet",
            "-V",
            "a=b",
            "--",
            "git",
            "-C",
            "x",
        ])
        .unwrap();
        let Command::Venv(args) = cli.command else {
            panic!("venv")
        };
        assert_eq!(args.exec.as_deref(), Some("m.jsonnet"));
        assert_eq!(args.ext_str, vec!["a=b".to_string()]);
        assert_eq!(
            args.command,
            vec![OsString::from("git"), "-C".into(), "x".into()]
        );
    }

    #[test]
    fn cleanup_takes_an_age_in_whole_days() {
        let cli = Cli::try_parse_from([
            "paude",
            "cleanup",
            "--venvs",
            "--max-age-days",
            "7",
            "--json",
        ])
        .unwrap();
        let Command::Cleanup(args) = cli.command else {
            panic!("cleanup")
        };
        assert_eq!(args.max_age_days, Some(7));
        assert!(args.venvs && args.json && !args.dry_run);
        for bad in ["-1", "1.5", "seven"] {
            assert!(Cli::try_parse_from(["paude", "cleanup", "--max-age-days", bad]).is_err());
        }
    }
}
