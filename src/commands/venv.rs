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
use crate::sandbox::identity::User;
use crate::sandbox::plan::{self, CommandLookup, PlanInput};
use crate::sandbox::{bwrap, exec, seccomp, workspace};
use crate::store::cache::{self, Cache, Stamp};
use crate::store::{self, BuildSpec, Store};
use anyhow::{Context, Result, bail};
use std::cell::OnceCell;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

/// The name of a workspace's own manifest.
pub const WORKSPACE_MANIFEST: &str = "paude.jsonnet";

/// Runs `paude venv`; returns only for `--dry-run` or on failure.
pub fn run(args: VenvArgs, host: &HostFacts) -> Result<ExitCode> {
    let workspace = workspace::find_root(&host.cwd);
    if workspace == Path::new("/") {
        bail!(
            "the workspace would be / (the current directory is / or / is a git repository); \
             cd into a project directory first"
        );
    }
    let began = SystemTime::now();
    let cache = Cache::new(&host.paude_home);
    // What this launch learns for the caches is written only once its input passed every check.
    let mut learned = Vec::new();
    let source = manifest_source(&args, &workspace)?;
    let options = load_options(&args, host)?;
    let mut manifest = load_manifest(&cache, &source, &options, began, &mut learned)?;
    let mounts = checked_mounts(&manifest)?;
    if let HomeMode::Bind(source) = &manifest.home
        && !source.is_dir()
    {
        bail!(manifest::ManifestError::Field {
            field: "home".into(),
            message: format!(
                "{} is not a directory on this host; create it, or use \"tmpfs\"",
                source.display()
            ),
        });
    }
    let bwrap_path = host.bwrap()?;
    if let Some(reason) = host.userns_refusal() {
        bail!("{reason}");
    }

    let packages = Packages::new(host);
    let closure = packages.closure(&cache, &manifest.packages, began, &mut learned)?;
    for missing in &closure.missing {
        warn(&format!(
            "{} depends on `{}`, which is not installed; continuing without it",
            missing.required_by, missing.relation
        ));
    }
    let key = store::key::key(&closure, &manifest.fs_entries, &packages.root);
    let venvs = workspace::venvs_to_shadow(&workspace, &manifest.venv, &mut |w| warn(&w));

    let store = Store::new(host.paude_home.clone());
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
    if rootfs.built && !meta.stats.unreadable.is_empty() {
        warn(&format!(
            "{} of the closure's files are not readable by this user and were left out (first: {})",
            meta.stats.unreadable.len(),
            meta.stats.unreadable[0]
        ));
    }

    let user = User::from_databases(
        host.uid,
        host.gid,
        &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
        &std::fs::read_to_string("/etc/group").unwrap_or_default(),
        host.var("USER").and_then(|v| v.to_str()),
        host.var("HOME").map(Path::new),
    );
    let shell = if rootfs.path.join("bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let passwd = store.small_file("passwd", user.passwd(shell).as_bytes())?;
    let group = store.small_file("group", user.group().as_bytes())?;
    let venv_state = if manifest.venv_persist && !venvs.is_empty() {
        let relative: Vec<&Path> = venvs
            .iter()
            .map(|venv| venv.strip_prefix(&workspace).unwrap_or(venv))
            .collect();
        Some(store.workspace_state(&workspace, "venvs", &relative)?)
    } else {
        None
    };
    // `home: "persist"` is this workspace's own home directory in the store.
    if manifest.home == HomeMode::Persist {
        let home = store.workspace_state(&workspace, "home", &[Path::new("")])?;
        manifest.home = HomeMode::Bind(home);
    }
    for venv in &venvs {
        status(&format!(
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
    let host_has = |path: &Path| path.exists();
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
        git_dirs: &workspace::outside_git_dirs(&workspace),
        host_env: &host.env,
        host_has: &host_has,
        stdin_is_terminal: host.stdin_is_terminal,
        home: Some(&user.home),
        identity: Some((&passwd, &group)),
        command: &args.command,
    };
    let mut plan = plan::plan(&input)?;
    for warning in &plan.warnings {
        warn(warning);
    }
    if let Some(refusal) = command_refusal(plan::lookup_command(&plan), &plan.command[0]) {
        return Err(refusal.into());
    }
    // A run that keeps the terminal (no --new-session) gets the terminal-injection filter.
    let filter = if plan.new_session {
        None
    } else {
        match seccomp::terminal_injection_filter() {
            Some(bytes) => Some(store.small_file("tty-filter.bpf", &bytes)?),
            None => {
                warn(
                    "no terminal-injection filter for this CPU: a program in the sandbox could \
                     type into your terminal; run paude with stdin not a terminal to detach it",
                );
                None
            }
        }
    };
    if args.dry_run {
        // The printed line reads the filter from descriptor 3, redirected from its file.
        plan.seccomp_fd = filter.as_ref().map(|_| 3);
        let argv = bwrap::render(&plan);
        let mut line = bwrap::command_line(bwrap_path.as_os_str(), &argv);
        if let Some(filter) = &filter {
            line.extend_from_slice(b" 3<");
            line.extend(bwrap::shell_quote(filter.as_os_str()));
        }
        line.push(b'\n');
        std::io::stdout()
            .write_all(&line)
            .context("writing to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    let filter = filter
        .map(|path| {
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))
        })
        .transpose()?;
    plan.seccomp_fd = filter.as_ref().map(|file| file.as_raw_fd());
    store.touch(rootfs)?;
    // From here the lock is kept by a holder process until the sandbox ends.
    let keep_open = lease
        .hold_while_open()
        .context("starting the process that keeps the environment's lock")?;
    plan.keep_open = Some(keep_open.as_raw_fd());
    let argv = bwrap::render(&plan);
    let mut inherit = vec![keep_open.as_fd()];
    inherit.extend(filter.as_ref().map(|file| file.as_fd()));
    let error = exec::exec(bwrap_path.as_os_str(), &argv, &inherit);
    if error.raw_os_error() == Some(rustix::io::Errno::TOOBIG.raw_os_error()) {
        let bytes: usize = argv.iter().map(|arg| arg.len() + 1).sum();
        bail!(
            "the bwrap command line is too long for the kernel ({bytes} bytes of arguments); \
             shrink large `envSet` values or pass them through `envKeep`, or use fewer mounts"
        );
    }
    Err(error).with_context(|| format!("running {}", bwrap_path.display()))
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
    if let Some(value) = cache.get::<serde_json::Value>(key()) {
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
    if let Some(stamps) = stamps {
        learned.extend(cache.prepare(key(), stamps, began, &loaded.value));
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
    fn new(host: &HostFacts) -> Packages {
        let (root, admindir) = dpkg::paths_from_env(
            host.var("DPKG_ROOT").map(|v| v.as_os_str()),
            host.var("DPKG_ADMINDIR").map(|v| v.as_os_str()),
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
    ) -> Result<Closure> {
        use std::os::unix::ffi::OsStrExt;
        let key = || {
            cache::Key::new("closure")
                .field(dpkg::NAME.as_bytes())
                .field(self.root.as_os_str().as_bytes())
                .field(self.admindir.as_os_str().as_bytes())
                .fields(requested.iter().map(|name| name.as_bytes()))
        };
        if let Some(closure) = cache.get::<Closure>(key()) {
            return Ok(closure);
        }
        let provider = self.provider().context("opening the dpkg database")?;
        let closure = provider.resolve(requested)?;
        let stamps: Result<Vec<Stamp>, _> = provider
            .database_files()
            .iter()
            .map(|path| Stamp::of(path))
            .collect();
        if let Ok(stamps) = stamps {
            learned.extend(cache.prepare(key(), stamps, began, &closure));
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
fn manifest_source(args: &VenvArgs, workspace: &Path) -> Result<ManifestSource> {
    if let Some(file) = &args.file {
        return match std::fs::metadata(file) {
            Ok(meta) if meta.is_file() => Ok(ManifestSource::File(file.clone())),
            Ok(_) => bail!(
                "-f {}: not a file (a manifest is a Jsonnet file)",
                file.display()
            ),
            Err(error) => Err(error).with_context(|| format!("-f {}", file.display())),
        };
    }
    if let Some(text) = &args.exec {
        // `-e m.jsonnet` with an existing file means the file, as users expect; anything
        // else is Jsonnet code (a file name that does not exist fails as code, loudly).
        let path = Path::new(text);
        if !text.contains('\n') && path.is_file() {
            return Ok(ManifestSource::File(path.to_path_buf()));
        }
        return Ok(ManifestSource::Code(text.clone()));
    }
    let own = workspace.join(WORKSPACE_MANIFEST);
    match std::fs::metadata(&own) {
        Ok(meta) if meta.is_file() => Ok(ManifestSource::File(own)),
        Ok(_) => bail!(
            "the workspace manifest {} is not a file; make it one, or remove it to use the built-in default",
            own.display()
        ),
        // A dangling link is a broken manifest, not an absent one: say so rather than
        // silently running something else.
        Err(_) if own.symlink_metadata().is_ok() => bail!(
            "the workspace manifest {} is a link to a missing file; fix the link, or remove it",
            own.display()
        ),
        Err(_) => Ok(ManifestSource::Default),
    }
}

fn load_options(args: &VenvArgs, host: &HostFacts) -> Result<LoadOptions> {
    let pairs = |values: &[String], flag: &str| -> Result<Vec<(String, String)>> {
        values
            .iter()
            .map(|value| match value.split_once('=') {
                Some((name, value)) if !name.is_empty() => {
                    Ok((name.to_string(), value.to_string()))
                }
                Some(_) => bail!("{flag} {value}: the name before `=` is empty"),
                None => match host.var(value).and_then(|v| v.to_str()) {
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
fn checked_mounts(manifest: &Manifest) -> Result<Vec<(usize, Mount)>> {
    let mut out = Vec::new();
    for (index, mount) in manifest.mounts.iter().enumerate() {
        let Some(source) = &mount.source else {
            out.push((index, mount.clone()));
            continue;
        };
        let field = format!("mounts[{index}].source");
        // `metadata` follows links, as bwrap will: a dangling link is a missing source.
        let problem = match std::fs::metadata(source) {
            Ok(_) => None,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "{} does not exist on this host{}; create it, or mark the mount `optional: true`",
                source.display(),
                if source.is_symlink() {
                    " (it is a link to a missing path)"
                } else {
                    ""
                }
            )),
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => Some(format!(
                "{} cannot be reached by this user (permission denied on a directory above it); \
                 bind something this user can read, or mark the mount `optional: true`",
                source.display()
            )),
            Err(error) => Some(format!("{}: {error}", source.display())),
        };
        match problem {
            None => out.push((index, mount.clone())),
            Some(message) if mount.optional => {
                if source.symlink_metadata().is_ok() {
                    warn(&format!("skipping optional mount {field}: {message}"));
                }
            }
            Some(message) => bail!(manifest::ManifestError::Field { field, message }),
        }
    }
    Ok(out)
}
