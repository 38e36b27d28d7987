//! Command-line definitions (clap), and a quick reader of `paude venv`'s usual command line
//! that answers as clap would. No I/O happens here.

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

// One value per run: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Trust the workspace's own paude.jsonnet as it is now (or forget it).
    Trust(TrustArgs),
    /// Write the environment a manifest describes as a reproducible, layered OCI image.
    Export(ExportArgs),
    /// Print a shell completion script (`paude completions bash > /etc/bash_completion.d/paude`).
    Completions(CompletionsArgs),
    /// Print the manual page, in roff (`paude man > paude.1; man ./paude.1`), or a command's.
    Man(ManArgs),
    /// paude's own manifest evaluator, which a launch runs as a child (see
    /// `manifest::isolated`).
    #[command(name = "__evaluate", hide = true)]
    Evaluate,
}

/// `paude doctor`.
#[derive(Debug, Args)]
#[command(after_help = "\
Checks, one line each (ok, warning or problem, with the fix): bwrap (found, its version, \
whether it is setuid), user namespaces (the kernel's settings, and a trial), a trial sandbox \
set up as paude sets one up, the dpkg database, PAUDE_HOME (writable by this user, free \
space) and the cached environments in it. The exit status is 0 when nothing is a problem \
(warnings allowed), 125 when something is.

With a manifest (-e, -f, or a --workspace with a paude.jsonnet), one more check: every host \
file of the environment's packages, read and compared with the MD5 sum dpkg recorded when it \
installed it (as `dpkg --verify` does). paude builds environments from the host's files as \
they are, so a file changed or removed since goes into the environment changed, or not at all.

Examples:
  paude doctor                           the report
  paude doctor --json                    one JSON document for scripts
  paude doctor -e examples/core-venv.jsonnet   also check the packages' files
  PAUDE_HOME=/srv/paude paude doctor     check another cache location")]
pub struct DoctorArgs {
    /// Print one JSON document instead of the report.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub manifest: ManifestArgs,
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

/// The options of the `jsonnet` command line, which `venv` and `trust` take.
#[derive(Debug, Default, PartialEq, Eq, Args)]
pub struct JsonnetArgs {
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
}

/// Which manifest, and how it is evaluated: what `venv`, `export` and `doctor` take.
#[derive(Debug, Default, PartialEq, Eq, Args)]
pub struct ManifestArgs {
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
    /// The project directory: the one the sandbox may write to, whose paude.jsonnet is the
    /// manifest when neither -e nor -f is given (default: the git root above the current
    /// directory, else the current directory).
    #[arg(long = "workspace", value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    #[command(flatten)]
    pub jsonnet: JsonnetArgs,
}

/// `paude trust`.
#[derive(Debug, Args)]
#[command(after_help = "\
Trusts the workspace's paude.jsonnet as it is now, with the files it imports from the \
workspace: paude venv uses a workspace's own manifest only as its user trusted it, since a \
sandbox can write the workspace. Read the manifest first. The Jsonnet options are those the \
manifest is launched with (its imports can depend on them).

Examples:
  paude trust                          trust ./paude.jsonnet (at the workspace root)
  paude trust --revoke                 forget it")]
pub struct TrustArgs {
    /// The workspace (default: the git root above the current directory, else the current
    /// directory).
    #[arg(long = "workspace", value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Forget the trust instead.
    #[arg(long = "revoke")]
    pub revoke: bool,
    #[command(flatten)]
    pub jsonnet: JsonnetArgs,
}

/// `paude completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `paude man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print (`venv`, `export`, ...); none: paude's own.
    pub command: Option<String>,
}

/// `paude export`.
#[derive(Debug, Args)]
#[command(
    group(clap::ArgGroup::new("output").required(true).multiple(true).args(["oci", "oci_archive"])),
    after_help = "\
Writes the environment (built first if it is not cached) as an OCI image: one layer per \
package (small packages share a few layers), one for what the environment adds, and a config \
with the manifest's envSet, the default PATH and LD_LIBRARY_PATH, /workspace as the working \
directory and the default shell as the command. The same closure gives the same digests: \
times are SOURCE_DATE_EPOCH (else 0), owners 0:0. The manifest's digest goes to stdout. \
What a paude launch adds around the tree (the workspace bind, venv shadowing, the seccomp \
filter, protected paths) is no part of an image; paude export says which.

Examples:
  paude export -e examples/core-venv.jsonnet --oci ./image --tag core
  skopeo inspect oci:./image:core
  paude export --oci-archive core.tar --tag localhost/core:1 && podman load -i core.tar")]
pub struct ExportArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Write an OCI image layout in DIR (new, empty, or a layout to add the image to).
    #[arg(long = "oci", value_name = "DIR")]
    pub oci: Option<PathBuf>,
    /// Write the image as one tar of its layout, what `podman load` reads.
    #[arg(long = "oci-archive", value_name = "FILE")]
    pub oci_archive: Option<PathBuf>,
    /// The image's name in the layout's index (org.opencontainers.image.ref.name).
    #[arg(long = "tag", value_name = "NAME")]
    pub tag: Option<String>,
}

/// `paude venv`.
#[derive(Debug, Default, PartialEq, Eq, Args)]
#[command(after_help = "\
Manifest: -e ARG, else -f FILE, else paude.jsonnet at the workspace root, else the built-in \
default (bash, coreutils, git, dash).

Examples:
  paude venv -e examples/core-venv.jsonnet             a shell in the environment
  paude venv -e m.jsonnet -- make test                 one command
  paude venv -e '(import \"m.jsonnet\") + {envSet+: {A: \"1\"}}' -- env
  paude venv --dry-run -- git status                   print the bwrap command line")]
pub struct VenvArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Print the bwrap command line that would run, and run nothing (the environment is
    /// still built if it is not cached). The line leaves out `--sync-fd`, which passes the
    /// venv's lock only paude holds.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Print no status lines (the shadowed venvs, a build's summary and progress): only
    /// warnings, errors, and what the sandbox's end makes paude say.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// The command to run, after `--`; none starts an interactive shell.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// For `paude venv git status`, which clap refuses (the command goes after `--`): the line
/// as it was meant, for a hint under clap's error.
pub fn command_hint(args: &[OsString], error: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::UnknownArgument || args.get(1)? != "venv" {
        return None;
    }
    let Some(ContextValue::String(word)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    if word.starts_with('-') {
        return None;
    }
    let at = args
        .iter()
        .position(|arg| arg.to_str() == Some(word.as_str()))?;
    let shown = |words: &[OsString]| -> Vec<String> {
        words
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    };
    let mut line = shown(&args[1..at]);
    line.push("--".into());
    line.extend(shown(&args[at..]));
    Some(format!(
        "the command to run goes after `--`: paude {}",
        line.join(" ")
    ))
}

/// One of `paude venv`'s options, as [`quick_venv_args`] knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VenvOption {
    Exec,
    File,
    Workspace,
    Jpath,
    ExtStr,
    ExtCode,
    TlaStr,
    TlaCode,
    DryRun,
    Quiet,
}

/// `paude venv`'s options: short name, long name, which field. A test holds this table to the
/// clap definitions above, name for name, so the two cannot drift apart.
const VENV_OPTIONS: [(Option<char>, &str, VenvOption); 10] = [
    (Some('e'), "exec", VenvOption::Exec),
    (Some('f'), "file", VenvOption::File),
    (None, "workspace", VenvOption::Workspace),
    (Some('J'), "jpath", VenvOption::Jpath),
    (Some('V'), "ext-str", VenvOption::ExtStr),
    (None, "ext-code", VenvOption::ExtCode),
    (Some('A'), "tla-str", VenvOption::TlaStr),
    (None, "tla-code", VenvOption::TlaCode),
    (None, "dry-run", VenvOption::DryRun),
    (Some('q'), "quiet", VenvOption::Quiet),
];

/// `paude venv`'s arguments read without clap, for the command lines a launch usually has:
/// `venv`, then options each given as `-x VALUE`, `--long VALUE` or `--long=VALUE`, then
/// `--` and the command. Anything else (help, an unknown or repeated option, `-e` with `-f`,
/// a value that starts with `-` or is empty or not UTF-8 where a string is wanted, an argument
/// before `--`) gives `None`, and clap parses the line and says what is wrong.
///
/// Why not clap alone: building clap's whole command tree costs every launch a measurable
/// part of what paude adds to bwrap's own start-up (BENCHMARKS.md); this costs microseconds.
/// Where it answers, the answer is clap's (a test compares the two on every form above).
pub fn quick_venv_args(args: &[OsString]) -> Option<VenvArgs> {
    use std::os::unix::ffi::OsStrExt;
    let mut words = args.iter().enumerate().skip(1);
    if words.next()?.1 != "venv" {
        return None;
    }
    let mut venv = VenvArgs::default();
    let mut command_at = args.len();
    while let Some((at, word)) = words.next() {
        let bytes = word.as_bytes();
        if bytes == b"--" {
            command_at = at + 1;
            break;
        }
        let (option, attached) = if let Some(long) = bytes.strip_prefix(b"--") {
            let (name, value) = match long.iter().position(|b| *b == b'=') {
                Some(at) => (&long[..at], Some(&long[at + 1..])),
                None => (long, None),
            };
            let (_, _, option) = VENV_OPTIONS
                .iter()
                .find(|(_, long, _)| long.as_bytes() == name)?;
            (*option, value)
        } else {
            let [b'-', short] = bytes else { return None };
            let (_, _, option) = VENV_OPTIONS
                .iter()
                .find(|(letter, _, _)| *letter == Some(char::from(*short)))?;
            (*option, None)
        };
        // The two flags: no value, and once each.
        let flag = match option {
            VenvOption::DryRun => Some(&mut venv.dry_run),
            VenvOption::Quiet => Some(&mut venv.quiet),
            _ => None,
        };
        if let Some(flag) = flag {
            if *flag || attached.is_some() {
                return None;
            }
            *flag = true;
            continue;
        }
        let value = match attached {
            Some(value) => value,
            None => words.next()?.1.as_bytes(),
        };
        if value.is_empty() || value[0] == b'-' {
            return None;
        }
        let path = || PathBuf::from(std::ffi::OsStr::from_bytes(value));
        let text = || std::str::from_utf8(value).ok().map(str::to_owned);
        match option {
            // One manifest: `-e` or `-f`, once.
            VenvOption::Exec | VenvOption::File
                if venv.manifest.exec.is_some() || venv.manifest.file.is_some() =>
            {
                return None;
            }
            VenvOption::Exec => venv.manifest.exec = Some(text()?),
            VenvOption::File => venv.manifest.file = Some(path()),
            VenvOption::Workspace if venv.manifest.workspace.is_some() => return None,
            VenvOption::Workspace => venv.manifest.workspace = Some(path()),
            VenvOption::Jpath => venv.manifest.jsonnet.jpath.push(path()),
            VenvOption::ExtStr => venv.manifest.jsonnet.ext_str.push(text()?),
            VenvOption::ExtCode => venv.manifest.jsonnet.ext_code.push(text()?),
            VenvOption::TlaStr => venv.manifest.jsonnet.tla_str.push(text()?),
            VenvOption::TlaCode => venv.manifest.jsonnet.tla_code.push(text()?),
            // Taken above: they have no value.
            VenvOption::DryRun | VenvOption::Quiet => {}
        }
    }
    // No `--`: no command, an interactive shell; every word was the launch's own.
    venv.command = args[command_at..].to_vec();
    Some(venv)
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
        assert_eq!(args.manifest.exec.as_deref(), Some("m.jsonnet"));
        assert_eq!(args.manifest.jsonnet.ext_str, vec!["a=b".to_string()]);
        assert_eq!(
            args.command,
            vec![OsString::from("git"), "-C".into(), "x".into()]
        );
    }

    /// The quick reader knows exactly clap's `venv` options, with the same short names, and
    /// takes a value exactly where clap does.
    #[test]
    fn quick_venv_options_are_clap_venv_options() {
        let cli = Cli::command();
        let venv = cli.find_subcommand("venv").unwrap();
        let mut from_clap: Vec<(Option<char>, String, bool)> = venv
            .get_arguments()
            .filter_map(|arg| {
                let long = arg.get_long()?;
                (long != "help").then(|| {
                    let takes_value = arg.get_action().takes_values();
                    (arg.get_short(), long.to_string(), takes_value)
                })
            })
            .collect();
        let mut quick: Vec<(Option<char>, String, bool)> = VENV_OPTIONS
            .iter()
            .map(|(short, long, option)| {
                let flag = matches!(option, VenvOption::DryRun | VenvOption::Quiet);
                (*short, long.to_string(), !flag)
            })
            .collect();
        from_clap.sort();
        quick.sort();
        assert_eq!(quick, from_clap);
    }

    /// Every line the quick reader answers, clap answers the same; every line it declines is
    /// one clap refuses, or one in a form it leaves to clap (an empty value, a short option
    /// with its value attached).
    #[test]
    fn quick_venv_args_agree_with_clap() {
        use std::os::unix::ffi::OsStringExt;
        let left_to_clap: &[&[&str]] = &[&["-e", ""], &["--exec="], &["-ea"], &["-e=a"]];
        let words: &[&[&str]] = &[
            &[],
            &["-e", "m.jsonnet"],
            &["--exec", "{packages: []}"],
            &["--exec={a: 1}"],
            &["-f", "m.jsonnet"],
            &["--file=m.jsonnet"],
            &["--workspace", "proj"],
            &["--workspace=proj", "-e", "x"],
            &["--workspace", "a", "--workspace", "b"],
            &["-e", "a", "-f", "b"],
            &["-e", "a", "-e", "b"],
            &["-f", "a", "--file", "b"],
            &["-J", "lib", "--jpath", "vendor", "--jpath=more"],
            &["-V", "a=b", "--ext-str", "c", "--ext-str=d=e"],
            &["--ext-code", "x=1+1", "--ext-code=y"],
            &["-A", "n=v", "--tla-str", "m", "--tla-str=o=p"],
            &["--tla-code", "t=true", "--tla-code=u"],
            &["--dry-run"],
            &["--dry-run", "--dry-run"],
            &["--dry-run=yes"],
            &["-q"],
            &["--quiet", "-e", "m"],
            &["-q", "--quiet"],
            &["--quiet=1"],
            &["-e"],
            &["-e", "-f"],
            &["-e", "-x"],
            &["-f", "--"],
            &["-h"],
            &["--help"],
            &["--version"],
            &["--nope"],
            &["-x", "y"],
            &["--ex", "a"],
            &["true"],
            &["-e", "a", "true"],
            &["-"],
        ];
        let commands: &[&[&str]] = &[&[], &["--"], &["--", "git", "-C", "x", "--", "-e"]];
        let mut lines: Vec<(Vec<OsString>, bool)> = Vec::new();
        for (first, unusual) in words
            .iter()
            .map(|w| (w, false))
            .chain(left_to_clap.iter().map(|w| (w, true)))
        {
            for second in [&[][..], &["-J", "j"], &["--dry-run"]] {
                for command in commands {
                    let line = ["paude", "venv"]
                        .iter()
                        .chain(first.iter())
                        .chain(second.iter())
                        .chain(command.iter())
                        .map(OsString::from)
                        .collect();
                    lines.push((line, unusual));
                }
            }
        }
        let with_bytes = |words: &[&str], last: &[u8]| {
            let mut line: Vec<OsString> = words.iter().map(OsString::from).collect();
            line.push(OsString::from_vec(last.to_vec()));
            line
        };
        lines.push((
            with_bytes(&["paude", "venv", "-f"], b"m\xff.jsonnet"),
            false,
        ));
        lines.push((with_bytes(&["paude", "venv", "-e"], b"\xff"), false));
        lines.push((with_bytes(&["paude", "venv", "--"], b"\xff"), false));
        for other in [
            &["paude"][..],
            &["paude", "list"],
            &["paude", "--dry-run", "venv"],
        ] {
            lines.push((other.iter().map(OsString::from).collect(), false));
        }
        let mut answered = 0;
        for (line, unusual) in &lines {
            let clap = match Cli::try_parse_from(line).map(|cli| cli.command) {
                Ok(Command::Venv(args)) => Some(args),
                _ => None,
            };
            match quick_venv_args(line) {
                Some(quick) => {
                    answered += 1;
                    assert_eq!(Some(quick), clap, "{line:?}");
                }
                None => assert!(clap.is_none() || *unusual, "declined {line:?}"),
            }
        }
        assert!(
            answered > 100,
            "the quick reader answered only {answered} lines"
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
