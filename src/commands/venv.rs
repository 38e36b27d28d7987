//! `paude venv`: manifest → closure → cached rootfs → plan → exec bwrap.
//!
//! Every check that can fail on bad input (the manifest, mount sources, packages, bwrap, the
//! workspace) runs before the store is touched, so a bad input leaves nothing in the cache.

use super::{BuildReport, ExitError, status, warn};
use crate::cli::VenvArgs;
use crate::host::HostFacts;
use crate::manifest::{self, HomeMode, LoadOptions, Manifest, ManifestSource, Mount};
use crate::packages::{
    Closure, PackageError, Provider,
    dpkg::{self, Dpkg},
};
use crate::probe::{Kind, Probes};
use crate::rootpath;
use crate::sandbox::identity::User;
use crate::sandbox::plan::{self, CommandLookup, PlanInput};
use crate::sandbox::{bwrap, exec, seccomp, workspace};
use crate::store::cache::{self, Cache, Stamp};
use crate::store::record::{self, Launch, Line};
use crate::store::{self, BuildSpec, Lease, Store};
use anyhow::{Context, Result, bail};
use std::cell::OnceCell;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

/// The name of a workspace's own manifest.
pub const WORKSPACE_MANIFEST: &str = "paude.jsonnet";

/// Runs `paude venv`; returns only for `--dry-run` or on failure.
///
/// A launch whose record (see `store::record`) matches its inputs, and whose every check
/// still holds, never gets here: the launch front (`front`) serves it before the C library
/// starts. This one works everything out ([`work_out`]) and leaves a record for the next.
pub fn run(args: VenvArgs, words: &[OsString], host: &HostFacts) -> Result<ExitCode> {
    let began = SystemTime::now();
    let cache = Cache::new(&host.paude_home);
    let store = Store::new(host.paude_home.clone());
    let probes = Probes::new();
    let (launch, lease) = work_out(&args, host, &cache, &store, &probes, began)?;
    if let Some(inputs) = record_inputs(words, host)
        && let Some(checks) = probes.settled(began)
        && let Some(entry) = record::prepare(&cache, &inputs, &checks, &launch)
    {
        cache.write(entry);
    }
    finish(&launch, lease, &store, &args)
}

/// The inputs of a launch for its record (see `record::encode_inputs`), from its command
/// line as given: `None` for a line only clap reads, which the front does not look up.
fn record_inputs(words: &[OsString], host: &HostFacts) -> Option<record::Inputs> {
    use std::os::unix::ffi::OsStrExt;
    let words = words.iter().map(|word| word.as_bytes());
    let own = crate::cli::walk_venv_args(words.clone(), &mut |_, _| {})?;
    // Named field by field, so that a new host fact does not compile until it is considered
    // here.
    let HostFacts {
        uid,
        gid,
        cwd,
        env: _,
        groups,
        stdin_is_terminal,
        stderr_is_terminal,
        paude_home,
    } = host;
    let facts = record::Facts {
        uid: *uid,
        gid: *gid,
        groups,
        cwd: cwd.as_os_str().as_bytes(),
        paude_home: paude_home.as_os_str().as_bytes(),
        stdin_is_terminal: *stdin_is_terminal,
        stderr_is_terminal: *stderr_is_terminal,
    };
    let mut inputs = record::Inputs::default();
    // The words through `--`, and the command's first.
    record::encode_inputs(&mut inputs.0, words, own, &facts);
    Some(inputs)
}

/// The lines a launch says on stderr before it runs bwrap, kept for its record. (What a
/// build says is not kept: the next launch has nothing to build.)
#[derive(Default)]
struct Said {
    lines: Vec<Line>,
}

impl Said {
    fn status(&mut self, text: String) {
        status(&text);
        self.lines.push(Line {
            warning: false,
            text,
        });
    }

    fn warn(&mut self, text: String) {
        warn(&text);
        self.lines.push(Line {
            warning: true,
            text,
        });
    }
}

/// Everything a launch works out before it runs bwrap, asking the host through `probes`:
/// the manifest, the closure, the environment (built if missing, and held by its lock), the
/// workspace, the plan.
fn work_out(
    args: &VenvArgs,
    host: &HostFacts,
    cache: &Cache,
    store: &Store,
    probes: &Probes,
    began: SystemTime,
) -> Result<(Launch, Lease)> {
    let workspace = workspace::find_root(&host.cwd, probes);
    if workspace == Path::new("/") {
        bail!(
            "the workspace would be / (the current directory is / or / is a git repository); \
             cd into a project directory first"
        );
    }
    let mut said = Said::default();
    // What this launch learns for the caches is written only once its input passed every check.
    let mut learned = Vec::new();
    let source = manifest_source(args, &workspace, probes)?;
    let options = load_options(args, host, probes)?;
    let mut manifest = load_manifest(cache, &source, &options, began, &mut learned, probes)?;
    let mounts = checked_mounts(&manifest, probes, &mut said)?;
    if let HomeMode::Bind(source) = &manifest.home
        && !probes.kind(source, true).is_dir()
    {
        bail!(manifest::ManifestError::Field {
            field: "home".into(),
            message: format!(
                "{} is not a directory on this host; create it, or use \"tmpfs\"",
                source.display()
            ),
        });
    }
    let bwrap_path = host.bwrap(probes)?;
    if let Some(reason) = host.userns_refusal() {
        bail!("{reason}");
    }

    let packages = Packages::new(host, probes);
    let closure = packages.closure(cache, &manifest.packages, began, &mut learned, probes)?;
    for missing in &closure.missing {
        said.warn(format!(
            "{} depends on `{}`, which is not installed; continuing without it",
            missing.required_by, missing.relation
        ));
    }
    let key = store::key::key(&closure, &manifest.fs_entries, &packages.root);
    let venvs =
        workspace::venvs_to_shadow(&workspace, &manifest.venv, &mut |w| said.warn(w), probes);

    for entry in learned {
        cache.write(entry);
    }
    let spec = BuildSpec {
        provider: dpkg::NAME,
        requested: &manifest.packages,
        closure: &closure,
        source_root: &packages.root,
        fs_entries: &manifest.fs_entries,
    };
    let lease = store.acquire(
        &key,
        &spec,
        &mut || {
            let export_plan = packages.provider()?.export_plan(&closure)?;
            for warning in &export_plan.warnings {
                warn(warning);
            }
            Ok(export_plan)
        },
        &mut BuildReport::new(host.stderr_is_terminal),
    )?;
    let rootfs = &lease.rootfs;
    let meta = store.meta(rootfs)?;
    let tree = Stamp::of(&rootfs.dir.join("meta.json")).unwrap_or_else(|_| {
        probes.give_up();
        Stamp {
            path: rootfs.dir.join("meta.json"),
            seen: None,
        }
    });
    if rootfs.built && !meta.stats.unreadable.is_empty() {
        warn(&format!(
            "{} of the closure's files are not readable by this user and were left out (first: {})",
            meta.stats.unreadable.len(),
            meta.stats.unreadable[0]
        ));
    }

    let read_text = |path: &str| {
        String::from_utf8(probes.read(Path::new(path)).unwrap_or_default()).unwrap_or_default()
    };
    let user = User::from_databases(
        host.uid,
        host.gid,
        &read_text("/etc/passwd"),
        &read_text("/etc/group"),
        probes.var(host, "USER").and_then(|v| v.to_str()),
        probes.var(host, "HOME").map(Path::new),
    );
    // The store's trees never change; files and directories outside them may go.
    let kept = |path: PathBuf| {
        probes.kind(&path, true);
        path
    };
    // Resolved inside the tree, as the sandbox will see it (a link in it may point anywhere).
    let has_bash = rootpath::resolve(&rootfs.path, Path::new("/bin/bash"))
        .is_ok_and(|resolved| resolved.exists());
    let shell = if has_bash { "/bin/bash" } else { "/bin/sh" };
    let passwd = kept(store.small_file("passwd", user.passwd(shell).as_bytes())?);
    let group = kept(store.small_file("group", user.group().as_bytes())?);
    let venv_state = if manifest.venv_persist && !venvs.is_empty() {
        let relative: Vec<&Path> = venvs
            .iter()
            .map(|venv| venv.strip_prefix(&workspace).unwrap_or(venv))
            .collect();
        let state = store.workspace_state(&workspace, "venvs", &relative)?;
        for dir in &relative {
            kept(state.join(dir));
        }
        Some(state)
    } else {
        None
    };
    // `home: "persist"` is this workspace's own home directory in the store.
    if manifest.home == HomeMode::Persist {
        let home = store.workspace_state(&workspace, "home", &[Path::new("")])?;
        manifest.home = HomeMode::Bind(kept(home));
    }
    for venv in &venvs {
        said.status(format!(
            "shadowing the host's venv {} with {}",
            venv.display(),
            match &venv_state {
                Some(state) => format!(
                    "the sandbox's own, kept in {}",
                    state
                        .join(venv.strip_prefix(&workspace).unwrap_or(venv))
                        .display()
                ),
                None => "an empty directory (venvPersist: true keeps the sandbox's own)".into(),
            }
        ));
    }
    let host_has = |path: &Path| probes.exists(path);
    let real_path = |path: &Path| probes.canonicalize(path).ok();
    // The plan reads the host's variables that `envKeep` names, and no others.
    let kept_env: Vec<(OsString, OsString)> = manifest
        .env_keep
        .iter()
        .filter_map(|name| Some((name.into(), probes.var(host, name)?.clone())))
        .collect();
    let input = PlanInput {
        manifest: &manifest,
        mounts: &mounts,
        paude_home: &host.paude_home,
        rootfs: &rootfs.path,
        library_dirs: &meta.stats.library_dirs,
        workspace: &workspace,
        cwd: &host.cwd,
        venvs: &venvs,
        venv_state: venv_state.as_deref(),
        git_dirs: &workspace::outside_git_dirs(&workspace, probes),
        host_env: &kept_env,
        host_has: &host_has,
        real_path: &real_path,
        probes,
        stdin_is_terminal: host.stdin_is_terminal,
        home: Some(&user.home),
        identity: Some((&passwd, &group)),
        command: &args.command,
    };
    let plan = plan::plan(&input)?;
    for warning in &plan.warnings {
        said.warn(warning.clone());
    }
    if let Some(refusal) = command_refusal(plan::lookup_command(&plan, probes), &plan.command[0]) {
        return Err(refusal.into());
    }
    // A run that keeps the terminal (no --new-session) gets the terminal-injection filter.
    let filter = if plan.new_session {
        None
    } else {
        match seccomp::terminal_injection_filter() {
            Some(bytes) => Some(kept(store.small_file("tty-filter.bpf", &bytes)?)),
            None => {
                said.warn(
                    "no terminal-injection filter for this CPU: a program in the sandbox could \
                     type into your terminal; run paude with stdin not a terminal to detach it"
                        .into(),
                );
                None
            }
        }
    };
    let (mut argv, descriptors_at) = bwrap::render_without_descriptors(&plan);
    // The command's words after the first are not part of the record: `finish` appends them.
    argv.truncate(argv.len() - args.command.len().saturating_sub(1));
    let launch = Launch {
        venv: key,
        lines: said.lines,
        bwrap: bwrap_path,
        argv,
        descriptors_at,
        filter,
        tree,
    };
    Ok((launch, lease))
}

/// Runs the launch worked out (or recorded): prints the bwrap line for `--dry-run`, else
/// marks the environment used, hands its lock to the holder and execs bwrap.
fn finish(launch: &Launch, lease: Lease, store: &Store, args: &VenvArgs) -> Result<ExitCode> {
    use std::os::unix::ffi::OsStrExt;
    let argv = |keep_open: Option<i32>, seccomp: Option<i32>| {
        let mut argv = launch.argv.clone();
        let at = launch.descriptors_at;
        argv.splice(at..at, bwrap::descriptor_options(keep_open, seccomp));
        argv.extend(args.command.iter().skip(1).cloned());
        argv
    };
    if args.dry_run {
        // The printed line reads the filter from descriptor 3, redirected from its file.
        let argv = argv(None, launch.filter.as_ref().map(|_| 3));
        let mut line = Vec::new();
        bwrap::dry_run_line(
            &mut line,
            launch.bwrap.as_os_str().as_bytes(),
            argv.iter().map(|arg| arg.as_bytes()),
            launch
                .filter
                .as_ref()
                .map(|path| path.as_os_str().as_bytes()),
        );
        std::io::stdout()
            .write_all(&line)
            .context("writing to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    let filter = launch
        .filter
        .as_ref()
        .map(|path| {
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))
        })
        .transpose()?;
    store.touch(&lease.rootfs)?;
    // From here the lock is kept by a holder process until the sandbox ends.
    let keep_open = lease
        .hold_while_open()
        .context("starting the process that keeps the environment's lock")?;
    let argv = argv(
        Some(keep_open.as_raw_fd()),
        filter.as_ref().map(|file| file.as_raw_fd()),
    );
    let mut inherit = vec![keep_open.as_fd()];
    inherit.extend(filter.as_ref().map(|file| file.as_fd()));
    let error = exec::exec(launch.bwrap.as_os_str(), &argv, &inherit);
    if error.raw_os_error() == Some(rustix::io::Errno::TOOBIG.raw_os_error()) {
        let bytes: usize = argv.iter().map(|arg| arg.len() + 1).sum();
        bail!(
            "the bwrap command line is too long for the kernel ({bytes} bytes of arguments); {}",
            exec::TOO_LONG_FIX
        );
    }
    Err(error).with_context(|| format!("running {}", launch.bwrap.display()))
}

/// The manifest, evaluated, or taken from the cache while none of its inputs changed (the
/// files it read, the paths its imports looked for in vain, the `-e` text, `-J`, ext and tla
/// values, and paude itself). Validation runs either way; a valid manifest's evaluation is
/// added to `learned`.
fn load_manifest(
    cache: &Cache,
    source: &ManifestSource,
    options: &LoadOptions,
    began: SystemTime,
    learned: &mut Vec<cache::Prepared>,
    probes: &Probes,
) -> Result<Manifest> {
    use std::os::unix::ffi::OsStrExt;
    let key = || {
        let (kind, text): (&[u8], &[u8]) = match source {
            ManifestSource::Code(code) => (b"code", code.as_bytes()),
            ManifestSource::File(path) => (b"file", path.as_os_str().as_bytes()),
            ManifestSource::Default => (b"default", b""),
        };
        cache::Key::new("manifest")
            .field(kind)
            .field(text)
            .field(options.cwd.as_os_str().as_bytes())
            .fields(options.jpath.iter().map(|dir| dir.as_os_str().as_bytes()))
            .pairs(&options.ext_str)
            .pairs(&options.ext_code)
            .pairs(&options.tla_str)
            .pairs(&options.tla_code)
    };
    if let Some((value, stamps)) = cache.get_stamped::<serde_json::Value>(key()) {
        probes.absorb(stamps);
        return Ok(manifest::validate(&value)?);
    }
    let loaded = manifest::load(source, options)?;
    // Stamped after evaluating: a file changed meanwhile has a fresh ctime and is not cached.
    let read = loaded.files_read.iter().map(|path| (path, true));
    let probed = loaded.not_found.iter().map(|path| (path, false));
    let stamps: Option<Vec<Stamp>> = read
        .chain(probed)
        .map(|(path, exists)| {
            Stamp::of(path)
                .ok()
                .filter(|stamp| stamp.seen.is_some() == exists)
        })
        .collect();
    match stamps {
        Some(stamps) => {
            probes.absorb(stamps.iter().cloned());
            learned.extend(cache.prepare(key(), stamps, began, &loaded.value));
        }
        None => probes.give_up(),
    }
    Ok(loaded.manifest)
}

/// The host's package database: where it is, and the provider, opened only when needed (a
/// cache miss, a build).
struct Packages {
    /// The root the packages' files are copied from (`DPKG_ROOT`, default `/`).
    root: PathBuf,
    admindir: PathBuf,
    provider: OnceCell<Dpkg>,
}

impl Packages {
    fn new(host: &HostFacts, probes: &Probes) -> Packages {
        let (root, admindir) = dpkg::paths_from_env(
            probes.var(host, "DPKG_ROOT").map(|v| v.as_os_str()),
            probes.var(host, "DPKG_ADMINDIR").map(|v| v.as_os_str()),
        );
        Packages {
            root,
            admindir,
            provider: OnceCell::new(),
        }
    }

    fn provider(&self) -> Result<&Dpkg, PackageError> {
        if let Some(provider) = self.provider.get() {
            return Ok(provider);
        }
        let opened = Dpkg::open(&self.root, &self.admindir)?;
        Ok(self.provider.get_or_init(|| opened))
    }

    /// The closure of `requested`, from the cache while the database files are unchanged.
    fn closure(
        &self,
        cache: &Cache,
        requested: &[String],
        began: SystemTime,
        learned: &mut Vec<cache::Prepared>,
        probes: &Probes,
    ) -> Result<Closure> {
        use std::os::unix::ffi::OsStrExt;
        let key = || {
            cache::Key::new("closure")
                .field(dpkg::NAME.as_bytes())
                .field(self.root.as_os_str().as_bytes())
                .field(self.admindir.as_os_str().as_bytes())
                .fields(requested.iter().map(|name| name.as_bytes()))
        };
        if let Some((closure, stamps)) = cache.get_stamped::<Closure>(key()) {
            probes.absorb(stamps);
            return Ok(closure);
        }
        let provider = self.provider().context("opening the dpkg database")?;
        let closure = provider.resolve(requested)?;
        let stamps: Result<Vec<Stamp>, _> = provider
            .database_files()
            .iter()
            .map(|path| Stamp::of(path))
            .collect();
        match stamps {
            Ok(stamps) => {
                probes.absorb(stamps.iter().cloned());
                learned.extend(cache.prepare(key(), stamps, began, &closure));
            }
            Err(_) => probes.give_up(),
        }
        Ok(closure)
    }
}

/// Why the command cannot run, with the exit status `env` and `podman run` give for it.
fn command_refusal(lookup: CommandLookup, command: &std::ffi::OsStr) -> Option<ExitError> {
    let (code, message) = match lookup {
        CommandLookup::Found => return None,
        CommandLookup::NotFound => (
            127,
            format!(
                "command not found in the environment: {} (add the package that provides it to `packages`)",
                Path::new(command).display()
            ),
        ),
        CommandLookup::NotExecutable(path) => (
            126,
            format!(
                "{} is not executable by this user in the environment (chmod +x it, or run it through its interpreter)",
                path.display()
            ),
        ),
        CommandLookup::IsDirectory(path) => (
            126,
            format!("{} is a directory, not a command", path.display()),
        ),
        CommandLookup::BadInterpreter {
            script,
            interpreter,
        } => (
            127,
            format!(
                "{}: its interpreter {} (from its #! line) is not in the environment; \
                 add the package that provides it to `packages`",
                script.display(),
                interpreter.display()
            ),
        ),
    };
    Some(ExitError { code, message })
}

/// Which manifest to evaluate: `-e`, `-f`, the workspace's `paude.jsonnet`, or the default.
fn manifest_source(args: &VenvArgs, workspace: &Path, probes: &Probes) -> Result<ManifestSource> {
    if let Some(file) = &args.file {
        return match probes.kind(file, true) {
            Kind::File => Ok(ManifestSource::File(file.clone())),
            Kind::Error(errno) => Err(std::io::Error::from_raw_os_error(errno))
                .with_context(|| format!("-f {}", file.display())),
            _ => bail!(
                "-f {}: not a file (a manifest is a Jsonnet file)",
                file.display()
            ),
        };
    }
    if let Some(text) = &args.exec {
        // `-e m.jsonnet` with an existing file means the file, as users expect; anything
        // else is Jsonnet code (a file name that does not exist fails as code, loudly).
        let path = Path::new(text);
        if !text.contains('\n') && probes.kind(path, true).is_file() {
            return Ok(ManifestSource::File(path.to_path_buf()));
        }
        return Ok(ManifestSource::Code(text.clone()));
    }
    let own = workspace.join(WORKSPACE_MANIFEST);
    match probes.kind(&own, true) {
        Kind::File => Ok(ManifestSource::File(own)),
        kind if kind.exists() => bail!(
            "the workspace manifest {} is not a file; make it one, or remove it to use the built-in default",
            own.display()
        ),
        // A dangling link is a broken manifest, not an absent one: say so rather than
        // silently running something else.
        _ if probes.kind(&own, false).exists() => bail!(
            "the workspace manifest {} is a link to a missing file; fix the link, or remove it",
            own.display()
        ),
        _ => Ok(ManifestSource::Default),
    }
}

fn load_options(args: &VenvArgs, host: &HostFacts, probes: &Probes) -> Result<LoadOptions> {
    let pairs = |values: &[String], flag: &str| -> Result<Vec<(String, String)>> {
        values
            .iter()
            .map(|value| match value.split_once('=') {
                Some((name, value)) if !name.is_empty() => {
                    Ok((name.to_string(), value.to_string()))
                }
                Some(_) => bail!("{flag} {value}: the name before `=` is empty"),
                None => match probes.var(host, value).and_then(|v| v.to_str()) {
                    Some(from_env) => Ok((value.clone(), from_env.to_string())),
                    None => bail!(
                        "{flag} {value}: no `=VALUE` given and ${value} is not set (or not UTF-8)"
                    ),
                },
            })
            .collect()
    };
    Ok(LoadOptions {
        cwd: host.cwd.clone(),
        jpath: args.jpath.clone(),
        ext_str: pairs(&args.ext_str, "--ext-str")?,
        ext_code: pairs(&args.ext_code, "--ext-code")?,
        tla_str: pairs(&args.tla_str, "--tla-str")?,
        tla_code: pairs(&args.tla_code, "--tla-code")?,
    })
}

/// The manifest's mounts with optional ones whose source is missing dropped. A missing
/// non-optional source is an error naming the field; so is one this user cannot reach, since
/// bwrap would fail on it anyway (an optional one is skipped with a warning).
fn checked_mounts(
    manifest: &Manifest,
    probes: &Probes,
    said: &mut Said,
) -> Result<Vec<(usize, Mount)>> {
    let mut out = Vec::new();
    for (index, mount) in manifest.mounts.iter().enumerate() {
        let Some(source) = &mount.source else {
            out.push((index, mount.clone()));
            continue;
        };
        let field = format!("mounts[{index}].source");
        // `metadata` follows links, as bwrap will: a dangling link is a missing source.
        let problem = match probes.kind(source, true).error() {
            None => None,
            Some(error) if error.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "{} does not exist on this host{}; create it, or mark the mount `optional: true`",
                source.display(),
                if probes.kind(source, false) == Kind::Link {
                    " (it is a link to a missing path)"
                } else {
                    ""
                }
            )),
            Some(error) if error.kind() == std::io::ErrorKind::PermissionDenied => Some(format!(
                "{} cannot be reached by this user (permission denied on a directory above it); \
                 bind something this user can read, or mark the mount `optional: true`",
                source.display()
            )),
            Some(error) => Some(format!("{}: {error}", source.display())),
        };
        match problem {
            None => out.push((index, mount.clone())),
            Some(message) if mount.optional => {
                if probes.kind(source, false).exists() {
                    said.warn(format!("skipping optional mount {field}: {message}"));
                }
            }
            Some(message) => bail!(manifest::ManifestError::Field { field, message }),
        }
    }
    Ok(out)
}
