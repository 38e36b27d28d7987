//! `paude venv`: the pipeline, one stage after the other (DESIGN.md): the workspace, the
//! manifest, the closure, the key, the environment (built if missing, and held by its lock),
//! the plan, bwrap's argument list, and the exec.
//!
//! Every check that can fail on bad input (the manifest, mount sources, packages, bwrap, the
//! workspace) runs before the store is touched, so a bad input leaves nothing in the cache.

use super::{BuildReport, ExitError, status, warn};
use crate::cli::{JsonnetArgs, ManifestArgs, VenvArgs};
use crate::host::HostFacts;
use crate::launch::cache::Cache;
use crate::launch::identity::{self, GitIdentity};
use crate::launch::{self, Environment, Learned, PackageDatabase};
use crate::manifest::{
    self, HomeMode, LoadOptions, Manifest, ManifestSource, Mount, MountKind, Network, VenvMode,
    trust,
};
use crate::packages::{Closure, Provider, dpkg, verify};
use crate::rootpath;
use crate::sandbox::identity::User;
use crate::sandbox::pin::{Opened, Pins};
use crate::sandbox::plan::{self, CommandLookup, Plan, PlanInput, Protected};
use crate::sandbox::{bwrap, exec, git, holder, network, seccomp, workspace};
use crate::store::{BuildInput, BuildSpec, LaunchDir, Lease, Store};
use anyhow::{Context, Result, bail};
use std::convert::Infallible;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

/// The name of a workspace's own manifest.
pub const WORKSPACE_MANIFEST: &str = "paude.jsonnet";

/// Runs `paude venv`; returns only for `--dry-run` or on failure.
pub fn run(args: VenvArgs, host: &HostFacts) -> Result<ExitCode> {
    let began = SystemTime::now();
    super::set_quiet(args.quiet);
    let cache = Cache::new(&host.paude_home);
    let store = Store::new(host.paude_home.clone());
    let mut learned = Learned::default();

    let user = identity(host);
    let workspace = find_workspace(&args.manifest, host, &user)?;
    // What a sandbox can write is bound from descriptors held from here (see `pin`).
    let mut pins = Pins::default();
    pins.hold(&workspace, "the workspace")
        .map_err(anyhow::Error::msg)?;
    let repository = git::layout(&workspace).map_err(anyhow::Error::msg)?;
    let (manifest, manifest_files) = load_manifest(
        &args.manifest,
        host,
        &workspace,
        &store,
        &cache,
        began,
        &mut learned,
    )?;
    let mounts = checked_mounts(&manifest, host, &workspace, &mut pins)?;
    let nested = git::nested_gitfiles(&repository, &workspace);
    let submodules: Vec<PathBuf> = nested
        .iter()
        .filter(|guard| guard.at_launch.is_some())
        .map(|guard| guard.relative.clone())
        .collect();
    let protected = checked_protect(
        &workspace,
        &manifest,
        &manifest_files,
        &submodules,
        &mut pins,
    )?;
    let bwrap = host.bwrap()?;
    let slirp4netns = match manifest.network {
        Network::Private => Some(
            host.program("slirp4netns")
                .ok_or_else(|| anyhow::anyhow!(network::SLIRP_MISSING))?,
        ),
        _ => None,
    };
    let (options, asked) = launch::bwrap_options(&cache, &bwrap, began, &mut learned);
    let disable_userns = options.disable_userns;
    // The kernel's settings are read (from /proc/sys, slow to look up) where bwrap was just
    // asked what it can do: on the first launch, and until one goes through. A setting
    // changed after that is bwrap's to report (`paude doctor` reads them every time).
    if asked && let Some(reason) = host.userns_refusal() {
        bail!("{reason}");
    }
    let database = package_database(host);
    let (environment, closure) = resolve(&database, &manifest, &cache, began, &mut learned)?;
    // A venv the sandbox made in an earlier run is kept in paude's state (see `holder`), and
    // bound where it was made.
    let kept_venvs = store.state_of(&workspace, "venvs");
    // The names kept, listed once (most workspaces have none, and then nothing more is
    // looked at); each one a directory of the store reached through no link (one in the
    // state would lead the bind anywhere), holding `pyvenv.cfg`.
    let kept_names: std::collections::HashSet<std::ffi::OsString> = match manifest.venv_persist {
        true => std::fs::read_dir(&kept_venvs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.file_name())
            .collect(),
        false => Default::default(),
    };
    let kept = |relative: &Path| {
        let path = kept_venvs.join(relative);
        relative
            .components()
            .next()
            .is_some_and(|first| kept_names.contains(first.as_os_str()))
            && matches!(
                crate::sandbox::pin::open(&path),
                Ok(Opened::Found(_, rustix::fs::FileType::Directory))
            )
            && workspace::is_venv(&path)
    };
    let venvs = workspace::venvs_to_shadow(&workspace, &manifest.venv, &kept, &mut |w| warn(&w));
    let git_identity = if manifest.git_identity {
        let git_dir = match &repository {
            git::Layout::None => None,
            git::Layout::Main { git_dir } | git::Layout::Module { git_dir } => Some(git_dir),
            git::Layout::Linked { common, .. } => Some(common),
        };
        identity::git_identity(
            &cache,
            host,
            &workspace,
            git_dir.map(PathBuf::as_path),
            began,
            &mut learned,
        )
    } else {
        GitIdentity::default()
    };
    // Every input has passed its checks: what this launch learned may be kept.
    learned.write(&cache);

    let lease = ensure(
        &store,
        &cache,
        &environment,
        closure,
        &manifest,
        &database,
        host,
    )?;
    let mut launch_dir = match repository {
        git::Layout::None => None,
        _ => Some(store.launch_dir()?),
    };
    let mut composition = match &launch_dir {
        Some(dir) => git::compose(&repository, &dir.path)
            .context("making the sandbox's copy of the repository's files")?,
        None => git::Composition::default(),
    };
    // A linked worktree's or a submodule's `.git` is a file naming its repository, which host
    // git obeys: read-only inside (and, bound, it cannot be renamed away).
    if matches!(
        repository,
        git::Layout::Linked { .. } | git::Layout::Module { .. }
    ) {
        let pointer = workspace.join(".git");
        composition.binds.insert(
            0,
            git::Bind {
                path: pointer.clone(),
                source: pointer,
                writable: false,
            },
        );
    }
    for bind in composition
        .binds
        .iter()
        .filter(|bind| bind.source == bind.path)
    {
        pins.hold(&bind.source, "the workspace's repository")
            .map_err(anyhow::Error::msg)?;
    }
    let kept_venvs =
        (manifest.venv_persist && manifest.venv != VenvMode::None).then(|| holder::KeptVenvs {
            state: store.state_of(&workspace, "venvs"),
            listed: match &manifest.venv {
                VenvMode::List(dirs) => Some(dirs.clone()),
                _ => None,
            },
            bound: venvs.clone(),
            existing: holder::KeptVenvs::candidates(
                &workspace,
                match &manifest.venv {
                    VenvMode::List(dirs) => Some(dirs.as_slice()),
                    _ => None,
                },
            )
            .into_iter()
            // An empty directory holds nothing of the user's (the one a kept venv leaves, an
            // uninitialized submodule's): a venv made in it is the sandbox's as much.
            .filter(|dir| {
                dir.symlink_metadata().is_ok()
                    && std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_some())
            })
            .collect(),
        });
    let mut handover = Handover {
        privates: composition.privates,
        nested,
        kept_venvs,
        workspace: workspace.clone(),
        began,
        pins,
    };
    let sandbox = Sandbox {
        slirp4netns,
        nested_repositories: submodules
            .iter()
            .filter_map(|gitfile| Some(workspace.join(gitfile.parent()?)))
            .collect(),
        git: composition.binds,
        git_identity,
        protected,
        user,
        disable_userns,
        manifest,
        mounts,
        workspace,
        venvs,
    };
    let (mut plan, filter) = plan_sandbox(&args, host, &store, &lease, sandbox)?;
    if args.dry_run {
        // The printed line reads the filter from descriptor 3, redirected from its file, and
        // binds the copies of the repository's files, which stay (`cleanup` removes them).
        if let Some(dir) = &mut launch_dir {
            dir.keep();
        }
        plan.seccomp_fd = filter.as_ref().map(|_| 3);
        if let Some(helper) = &plan.helper {
            warn(&format!(
                "{} is started by paude at launch, and is not in this line: run as it is, the \
                 sandbox has loopback only",
                match helper {
                    network::Helper::Slirp(_) => "slirp4netns (network: true)",
                    network::Helper::Proxy(_) => "the allow-list proxy (network.allow)",
                }
            ));
        }
        return print_dry_run(&bwrap, &bwrap::render(&plan), filter.as_deref());
    }
    // Without `--bind-fd` the sources are bound by name (doctor says what that leaves open).
    if !options.bind_fd {
        handover.pins = Pins::default();
    }
    match exec_bwrap(
        &bwrap,
        plan,
        filter.as_deref(),
        lease,
        launch_dir,
        handover,
        &store,
    )? {}
}

/// The manifest and its environment's tree, built if the store does not have it, for a
/// command that reads the tree rather than launching it (`paude export`): the same stages as
/// a launch up to the lease, with the workspace only a place to find the manifest in.
pub(super) fn environment_of(
    args: &ManifestArgs,
    host: &HostFacts,
) -> Result<(Manifest, Store, Lease)> {
    let resolved = resolved(args, host)?;
    let lease = ensure(
        &resolved.store,
        &resolved.cache,
        &resolved.environment,
        resolved.closure,
        &resolved.manifest,
        &resolved.database,
        host,
    )?;
    Ok((resolved.manifest, resolved.store, lease))
}

/// The closure of a manifest's packages, for a command that looks at the host's packages
/// rather than a tree (`paude doctor`): the stages of [`environment_of`] before the build.
pub(super) fn closure_of(
    args: &ManifestArgs,
    host: &HostFacts,
) -> Result<(PackageDatabase, Closure)> {
    let resolved = resolved(args, host)?;
    let manifest = &resolved.manifest;
    let closure = resolved.database.closure_for(
        &resolved.cache,
        &resolved.environment,
        resolved.closure,
        &manifest.packages,
        manifest.essential,
        &manifest.fs_entries,
    )?;
    Ok((resolved.database, closure))
}

/// A manifest found, loaded and resolved, for a command that launches nothing.
struct Resolved {
    manifest: Manifest,
    store: Store,
    cache: Cache,
    database: PackageDatabase,
    environment: Environment,
    closure: Option<Closure>,
}

fn resolved(args: &ManifestArgs, host: &HostFacts) -> Result<Resolved> {
    let began = SystemTime::now();
    let cache = Cache::new(&host.paude_home);
    let store = Store::new(host.paude_home.clone());
    let mut learned = Learned::default();
    let workspace = named_workspace(args.workspace.as_deref(), host)?;
    let (manifest, _) = load_manifest(args, host, &workspace, &store, &cache, began, &mut learned)?;
    let database = package_database(host);
    let (environment, closure) = resolve(&database, &manifest, &cache, began, &mut learned)?;
    learned.write(&cache);
    Ok(Resolved {
        manifest,
        store,
        cache,
        database,
        environment,
        closure,
    })
}

/// The workspace a command that launches nothing works in (`trust`, `export`): the one
/// `--workspace` names, else the git root above the current directory, else the current
/// directory.
pub(super) fn named_workspace(named: Option<&Path>, host: &HostFacts) -> Result<PathBuf> {
    match named {
        Some(dir) => {
            std::fs::canonicalize(dir).with_context(|| format!("--workspace {}", dir.display()))
        }
        None => Ok(workspace::find_root(&host.cwd)),
    }
}

/// The host's package database, where `DPKG_ROOT` and `DPKG_ADMINDIR` say it is.
fn package_database(host: &HostFacts) -> PackageDatabase {
    PackageDatabase::new(
        host.var("DPKG_ROOT").map(|v| v.as_os_str()),
        host.var("DPKG_ADMINDIR").map(|v| v.as_os_str()),
    )
}

/// The shell a launch without a command starts, and the tree's users' shell: bash where the
/// tree has it, resolved inside the tree as the sandbox will see it (a link in it may point
/// anywhere), else `/bin/sh`.
pub(super) fn default_shell(rootfs: &Path) -> &'static str {
    let has_bash =
        rootpath::resolve(rootfs, Path::new("/bin/bash")).is_ok_and(|resolved| resolved.exists());
    if has_bash { "/bin/bash" } else { "/bin/sh" }
}

/// Who the user is, as the host's `/etc/passwd` and `/etc/group` say.
fn identity(host: &HostFacts) -> User {
    let read_text = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    User::from_databases(
        host.uid,
        host.gid,
        &read_text("/etc/passwd"),
        &read_text("/etc/group"),
        host.var("USER").and_then(|v| v.to_str()),
        host.var("HOME").map(Path::new),
    )
}

/// The workspace: `--workspace`, else the git root above the current directory, else the
/// current directory; refused when it is too much to hand a sandbox (see
/// `workspace::refusal`).
fn find_workspace(args: &ManifestArgs, host: &HostFacts, user: &User) -> Result<PathBuf> {
    let workspace = match &args.workspace {
        Some(dir) => match std::fs::canonicalize(dir) {
            Ok(real) if real.is_dir() => real,
            Ok(_) => bail!("--workspace {}: not a directory", dir.display()),
            Err(error) => {
                return Err(error).with_context(|| format!("--workspace {}", dir.display()));
            }
        },
        None => workspace::find_root(&host.cwd),
    };
    let homes: Vec<PathBuf> = [Some(&user.home), user.account_home.as_ref()]
        .into_iter()
        .flatten()
        .map(|home| workspace::real_path_so_far(home))
        .collect();
    let store = workspace::real_path_so_far(&host.paude_home);
    if let Some(refusal) = workspace::refusal(&workspace, &homes, &store) {
        bail!("{refusal}");
    }
    Ok(workspace)
}

/// The manifest: found (`-e`, `-f`, the workspace's, the default), evaluated (or taken from
/// the cache) and validated, with its `home` directory checked on the host; and the paths of
/// the files it read, of which those in the workspace the sandbox gets read-only. The
/// workspace's own manifest is used only as the user trusted it, with every file its
/// evaluation read (see `manifest::trust`).
fn load_manifest(
    args: &ManifestArgs,
    host: &HostFacts,
    workspace: &Path,
    store: &Store,
    cache: &Cache,
    began: SystemTime,
    learned: &mut Learned,
) -> Result<(Manifest, Vec<PathBuf>)> {
    let source = manifest_source(args, workspace)?;
    let options = load_options(&args.jsonnet, host)?;
    // Found in the workspace rather than named by the user: trusted, or refused.
    let own = match &source {
        ManifestSource::File(path) if args.file.is_none() && args.exec.is_none() => {
            Some((path.clone(), store.trust_record(workspace)?))
        }
        _ => None,
    };
    let refuse = |why: String| -> anyhow::Error {
        anyhow::anyhow!(
            "{why}\nThe workspace's own paude.jsonnet decides what its sandbox can reach, and \
             a sandbox can write the workspace, so paude uses it only as you trusted it, with \
             every file it reads. Read it (and what it imports), then run `paude trust` in the \
             workspace (with the same -J and other Jsonnet options); or give a manifest of your \
             own with -e or -f."
        )
    };
    // Early, so that a manifest nobody trusted is not even evaluated.
    if let Some((path, record)) = &own {
        let (bytes, read) =
            manifest::read_file(path).with_context(|| format!("reading {}", path.display()))?;
        if let Some(why) = trust::untrusted(record.as_ref(), &read, || Some(bytes)) {
            return Err(refuse(why));
        }
    }
    let (manifest, files_read) = launch::load_manifest(cache, &source, &options, began, learned)?;
    // What binds: the bytes that were evaluated, as the evaluator hashed them (or those the
    // cached evaluation was made from), of every file read, wherever it lies. A file read
    // again here could have been swapped back since.
    if let Some((_, record)) = &own {
        for file in &files_read {
            let now = || manifest::read_file(&file.path).ok().map(|(bytes, _)| bytes);
            if let Some(why) = trust::untrusted(record.as_ref(), file, now) {
                return Err(refuse(why));
            }
        }
    }
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
    let paths = files_read.into_iter().map(|file| file.path).collect();
    Ok((manifest, paths))
}

/// The environment of the manifest's packages and fsEntries (its key), with a warning for
/// each dependency that is not installed; and the closure, when it had to be resolved.
fn resolve(
    database: &PackageDatabase,
    manifest: &Manifest,
    cache: &Cache,
    began: SystemTime,
    learned: &mut Learned,
) -> Result<(Environment, Option<Closure>)> {
    let (environment, closure) = database.environment(
        cache,
        &manifest.packages,
        manifest.essential,
        &manifest.fs_entries,
        began,
        learned,
    )?;
    for missing in &environment.missing {
        warn(&format!(
            "{} depends on `{}`, which is not installed; continuing without it",
            missing.required_by, missing.relation
        ));
    }
    Ok((environment, closure))
}

/// The environment's tree, built if the store does not have it, held by its shared lock.
fn ensure(
    store: &Store,
    cache: &Cache,
    environment: &Environment,
    closure: Option<Closure>,
    manifest: &Manifest,
    database: &PackageDatabase,
    host: &HostFacts,
) -> Result<Lease> {
    let spec = BuildSpec {
        provider: dpkg::NAME,
        requested: &manifest.packages,
        source_root: &database.root,
        fs_entries: &manifest.fs_entries,
    };
    let mut closure = closure;
    let lease = store.acquire(
        &environment.key,
        &spec,
        &mut || {
            let closure = database.closure_for(
                cache,
                environment,
                closure.take(),
                &manifest.packages,
                manifest.essential,
                &manifest.fs_entries,
            )?;
            let provider = database.provider()?;
            let plan = provider.export_plan(&closure)?;
            for warning in &plan.warnings {
                warn(warning);
            }
            // Once per build: a stat per file, and a read of those written since their
            // package was installed.
            let verified = verify::verify(provider, &closure, verify::Depth::Touched)?;
            if let Some(line) = verified.summary() {
                warn(&line);
            }
            Ok(BuildInput { closure, plan })
        },
        &mut BuildReport::new(host.stderr_is_terminal),
    )?;
    Ok(lease)
}

/// What the exec hands over besides the plan and the locks: to the holder, the private copies
/// of the repository's files and what it needs to name the repositories the sandbox made; to
/// bwrap, the bind sources held by descriptor.
struct Handover {
    privates: Vec<git::Private>,
    nested: Vec<git::Guarded>,
    kept_venvs: Option<holder::KeptVenvs>,
    workspace: PathBuf,
    began: SystemTime,
    pins: Pins,
}

/// What the plan is made of besides the host facts and the environment's tree.
struct Sandbox {
    slirp4netns: Option<PathBuf>,
    nested_repositories: Vec<PathBuf>,
    git: Vec<git::Bind>,
    git_identity: GitIdentity,
    protected: Vec<Protected>,
    user: User,
    disable_userns: bool,
    manifest: Manifest,
    mounts: Vec<(usize, Mount)>,
    workspace: PathBuf,
    venvs: Vec<PathBuf>,
}

/// The sandbox plan, with the terminal-injection filter's file when the run keeps the
/// terminal: the files it binds that paude writes (`/etc/passwd`, `/etc/group`, the kept
/// venvs and home), the shadowed venvs said on stderr, and the command looked up inside.
fn plan_sandbox(
    args: &VenvArgs,
    host: &HostFacts,
    store: &Store,
    lease: &Lease,
    sandbox: Sandbox,
) -> Result<(Plan, Option<PathBuf>)> {
    let Sandbox {
        slirp4netns,
        nested_repositories,
        git,
        git_identity,
        protected,
        user,
        disable_userns,
        mut manifest,
        mounts,
        workspace,
        venvs,
    } = sandbox;
    let rootfs = &lease.rootfs;
    if rootfs.built {
        let unreadable = store.tree_facts(rootfs)?.unreadable;
        if let Some(first) = unreadable.first() {
            warn(&format!(
                "{} of the closure's files are not readable by this user and were left out (first: {first})",
                unreadable.len(),
            ));
        }
    }
    let library_dirs = store.library_dirs(rootfs)?;
    let shell = default_shell(&rootfs.path);
    let passwd = store.small_file("passwd", user.passwd(shell).as_bytes())?;
    let group = store.small_file("group", user.group().as_bytes())?;
    // `network: true`: slirp4netns and its resolver (see `network`).
    let resolv_conf = match manifest.network {
        Network::Private => {
            let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let text = network::slirp_resolv_conf(&host_resolv);
            Some(store.small_file("resolv.conf", text.as_bytes())?)
        }
        _ => None,
    };
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
        let kept_in = |state: &Path| {
            state
                .join(venv.strip_prefix(&workspace).unwrap_or(venv))
                .display()
                .to_string()
        };
        status(&match &venv_state {
            Some(state) if !workspace::is_venv(venv) => format!(
                "using the venv {} the sandbox made, kept in {}",
                venv.display(),
                kept_in(state)
            ),
            Some(state) => format!(
                "shadowing the host's venv {} with the sandbox's own, kept in {}",
                venv.display(),
                kept_in(state)
            ),
            None => format!(
                "shadowing the host's venv {} with an empty directory (venvPersist: true keeps \
                 the sandbox's own)",
                venv.display()
            ),
        });
    }
    if venv_state.is_some() {
        store.touch_state(&workspace, "venvs");
    }
    // The plan reads the host's variables that `envKeep` names, and no others.
    let kept_env: Vec<(OsString, OsString)> = manifest
        .env_keep
        .iter()
        .filter_map(|name| Some((name.into(), host.var(name)?.clone())))
        .collect();
    // The workspace is real already (see `find_workspace`), and so are the repository's
    // directories: no need to ask again.
    let real_path = |path: &Path| {
        if path == workspace || git.iter().any(|bind| bind.path == path) {
            return Some(path.to_path_buf());
        }
        std::fs::canonicalize(path).ok()
    };
    let input = PlanInput {
        manifest: &manifest,
        mounts: &mounts,
        paude_home: &host.paude_home,
        rootfs: &rootfs.path,
        library_dirs: &library_dirs,
        workspace: &workspace,
        // Started outside a `--workspace` named elsewhere: the command starts at its root.
        cwd: if rootpath::is_within(&host.cwd, &workspace) {
            &host.cwd
        } else {
            &workspace
        },
        venvs: &venvs,
        venv_state: venv_state.as_deref(),
        git: &git,
        nested_repositories: &nested_repositories,
        protected: &protected,
        host_env: &kept_env,
        host_has: &|path: &Path| path.exists(),
        real_path: &real_path,
        stdin_is_terminal: host.stdin_is_terminal,
        disable_userns,
        home: Some(&user.home),
        user: Some(&user.name),
        git_identity: &git_identity.variables(),
        identity: Some((&passwd, &group)),
        resolv_conf: resolv_conf.as_deref(),
        slirp4netns: slirp4netns.as_deref(),
        command: &args.command,
    };
    let plan = plan::plan(&input)?;
    for warning in &plan.warnings {
        warn(warning);
    }
    // What the host would run for a bare command name, to say where the two differ: a host
    // program outside the packages (`/usr/local/bin/git`, a tool in `~/.cargo/bin`) is not
    // in the environment, which has the packages' own or none.
    let on_host = Path::new(&plan.command[0])
        .to_str()
        .filter(|name| !name.contains('/'))
        .and_then(|name| host.program(name));
    let lookup = plan::lookup_command(&plan);
    // Compared as the host resolves both (`/bin/git` is `/usr/bin/git` on a merged-/usr
    // host, and so inside), where the paths differ (the usual case needs no lookup).
    let same_file = |inside: &Path, host_path: &Path| {
        std::fs::canonicalize(inside).ok() == std::fs::canonicalize(host_path).ok()
    };
    if let (CommandLookup::Found(Some(inside)), Some(host_path)) = (&lookup, &on_host)
        && inside != host_path
        && !same_file(inside, host_path)
    {
        status(&format!(
            "`{}` is {} on the host, and {} inside: the environment has its packages' own; to \
             run the host's, bind it (`paude.hostLocal.mounts` for /usr/local)",
            plan.command[0].to_string_lossy(),
            host_path.display(),
            inside.display()
        ));
    }
    if let Some(refusal) = command_refusal(lookup, &plan.command[0], on_host.as_deref()) {
        return Err(refusal.into());
    }
    // Every run gets the seccomp filter (see `seccomp`).
    let filter = match seccomp::sandbox_filter() {
        Some((bytes, complete)) => {
            if !complete {
                warn(
                    "this CPU family's seccomp filter refuses only terminal injection; the \
                     keyring, io_uring, bpf and the other calls paude refuses on x86 stay open",
                );
            }
            Some(store.small_file("seccomp.bpf", &bytes)?)
        }
        None => {
            warn(
                "no seccomp filter for this CPU: a program in the sandbox could type into your \
                 terminal and reach the keyring, io_uring and bpf; run paude with stdin not a \
                 terminal to detach it from the terminal at least",
            );
            None
        }
    };
    Ok((plan, filter))
}

/// `--dry-run`: the bwrap line on stdout. It has no `--sync-fd`, which passes a lock only
/// paude holds.
fn print_dry_run(bwrap: &Path, argv: &[OsString], filter: Option<&Path>) -> Result<ExitCode> {
    let line = bwrap::dry_run_line(bwrap.as_os_str(), argv, filter.map(Path::as_os_str));
    std::io::stdout()
        .write_all(&line)
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Marks the environment used, hands its lock (and the launch directory) to the holder, and
/// execs bwrap; returns only the error that kept it from running.
fn exec_bwrap(
    bwrap: &Path,
    mut plan: Plan,
    filter: Option<&Path>,
    lease: Lease,
    mut launch_dir: Option<LaunchDir>,
    handover: Handover,
    store: &Store,
) -> Result<Infallible> {
    let filter = filter
        .map(|path| {
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))
        })
        .transpose()?;
    store.touch(&lease.rootfs)?;
    // Nothing of this process but what it hands over reaches the holder, or bwrap.
    crate::sys::close_on_exec_above_stderr().context("marking descriptors close-on-exec")?;
    let mut locks = vec![lease.lock_fd()];
    locks.extend(launch_dir.as_ref().map(|dir| dir.lock.as_fd()));
    // From here the locks are kept by the holder until the sandbox ends; it brings back
    // what git changed, and removes the launch directory.
    let for_bwrap = holder::start(
        &locks,
        holder::Work {
            git: handover.privates,
            nested: handover.nested,
            venvs: handover.kept_venvs,
            launch_dir: launch_dir.as_ref().map(|dir| dir.path.clone()),
            workspace: handover.workspace,
            began: handover.began,
        },
        plan.helper.as_ref(),
    )
    .context("starting the process that keeps the environment's lock")?;
    let keep_open = for_bwrap.keep_open;
    if let Some(dir) = &mut launch_dir {
        dir.keep();
    }
    plan.keep_open = Some(keep_open.as_raw_fd());
    plan.seccomp_fd = filter.as_ref().map(|file| file.as_raw_fd());
    if let Some(ends) = &for_bwrap.network {
        plan.info_fd = Some(ends.info.as_raw_fd());
        plan.block_fd = Some(ends.block.as_raw_fd());
    }
    let pins = handover.pins;
    plan.pinned = pins.numbers();
    let mut inherit = vec![keep_open.as_fd()];
    inherit.extend(filter.as_ref().map(|file| file.as_fd()));
    inherit.extend(
        for_bwrap
            .network
            .iter()
            .flat_map(|ends| [ends.info.as_fd(), ends.block.as_fd()]),
    );
    inherit.extend(pins.descriptors());
    Err(exec::exec(bwrap, &bwrap::render(&plan), &inherit))
}

/// The manifest's `protect` entries as they are on the host, and the manifest's own files that
/// lie in the workspace (by their real paths, whatever path they were read by): every
/// component from the workspace down a directory, no link on the way or at the end (a link
/// would lead the read-only bind anywhere on the host), each held by descriptor from this
/// check to the mount (see `pin`). A missing entry protects nothing and is
/// left out (never created on the host); entries in `.git` are left out too: the repository
/// is protected on its own (see `git`).
fn checked_protect(
    workspace: &Path,
    manifest: &Manifest,
    manifest_files: &[PathBuf],
    submodules: &[PathBuf],
    pins: &mut Pins,
) -> Result<Vec<Protected>> {
    // By their real paths: an import names its file as written (`conf/../lib.libsonnet`).
    let own: Vec<PathBuf> = manifest_files
        .iter()
        .filter_map(|path| path.canonicalize().ok())
        .filter_map(|path| Some(path.strip_prefix(workspace).ok()?.to_path_buf()))
        .collect();
    let labelled = manifest
        .protect
        .iter()
        .enumerate()
        .map(|(index, path)| (format!("protect[{index}]"), path))
        .chain(
            own.iter()
                .map(|path| ("the manifest's own file".to_string(), path)),
        )
        .chain(
            submodules
                .iter()
                .map(|path| ("a nested repository's `.git`".to_string(), path)),
        );
    let mut out = Vec::new();
    'entries: for (label, relative) in labelled {
        let names: Vec<_> = relative.components().collect();
        if names
            .first()
            .is_some_and(|first| first.as_os_str() == ".git")
        {
            continue;
        }
        let mut path = workspace.to_path_buf();
        let mut ancestors = Vec::new();
        let mut held = Vec::new();
        for (at, name) in names.iter().enumerate() {
            path.push(name);
            let (fd, kind) = match pins
                .open(&path)
                .with_context(|| format!("{label}: {}", path.display()))?
            {
                Opened::Found(fd, kind) => (fd, kind),
                Opened::Missing | Opened::NotDirectory(_) => continue 'entries,
                Opened::Link(link) => bail!(
                    "{label}: {} is a symbolic link; paude protects paths without following \
                     links (one could lead the read-only bind anywhere on the host): protect \
                     what it points to, or remove it",
                    link.display()
                ),
            };
            if at + 1 < names.len() {
                if kind != rustix::fs::FileType::Directory {
                    continue 'entries;
                }
                ancestors.push(path.clone());
            }
            held.push((path.clone(), fd, kind));
        }
        for (path, fd, kind) in held {
            pins.insert(&path, fd, kind);
        }
        out.push(Protected {
            label,
            path,
            ancestors,
        });
    }
    Ok(out)
}

/// Why the command cannot run, with the exit status `env` and `podman run` give for it.
fn command_refusal(
    lookup: CommandLookup,
    command: &std::ffi::OsStr,
    on_host: Option<&Path>,
) -> Option<ExitError> {
    let (code, message) = match lookup {
        CommandLookup::Found(_) => return None,
        CommandLookup::NotFound => (
            127,
            match on_host {
                Some(host) => format!(
                    "command not found in the environment: {}; on the host it is {}: add the \
                     package that provides it to `packages`, or, if it is no package's (under \
                     /usr/local, say), bind it: `mounts: paude.hostLocal.mounts`, or \
                     `paude.roBind(\"{}\")`",
                    Path::new(command).display(),
                    host.display(),
                    host.display()
                ),
                None => format!(
                    "command not found in the environment: {} (add the package that provides \
                     it to `packages`)",
                    Path::new(command).display()
                ),
            },
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
fn manifest_source(args: &ManifestArgs, workspace: &Path) -> Result<ManifestSource> {
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
        // A file's name, not code: one that is not there is said to be missing, rather than
        // evaluated as Jsonnet (`undefined local: nothere`).
        let looks_like_a_file = [".jsonnet", ".libsonnet", ".json"]
            .iter()
            .any(|suffix| text.ends_with(suffix))
            && !text.contains(|c: char| c.is_whitespace() || "{}[]()'\"".contains(c));
        if looks_like_a_file {
            bail!(
                "-e {text}: no such file (from {}); give the manifest's path, or Jsonnet code",
                std::env::current_dir()
                    .map(|dir| dir.display().to_string())
                    .unwrap_or_default()
            );
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

pub(super) fn load_options(args: &JsonnetArgs, host: &HostFacts) -> Result<LoadOptions> {
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
        // paude itself, as the kernel has it: an upgrade meanwhile does not change it.
        evaluator: Some(PathBuf::from("/proc/self/exe")),
    })
}

/// The manifest's mounts with optional ones whose source is missing dropped. A missing
/// non-optional source is an error naming the field; so is one this user cannot reach, since
/// bwrap would fail on it anyway (an optional one is skipped with a warning).
///
/// A read-write bind that would expose the store is refused here too, before the store is
/// touched (the plan checks every bind again, the workspace's git directories among them).
///
/// A source that is, or leads into, the workspace is what a sandbox could have changed: it is
/// refused where a link on its way lies in the workspace (the sandbox could have made it lead
/// anywhere), and otherwise bound by its real path, held by descriptor (see `pin`).
fn checked_mounts(
    manifest: &Manifest,
    host: &HostFacts,
    workspace: &Path,
    pins: &mut Pins,
) -> Result<Vec<(usize, Mount)>> {
    let store = workspace::real_path_so_far(&host.paude_home);
    let writable = manifest
        .mounts
        .iter()
        .enumerate()
        .filter(|(_, mount)| matches!(mount.kind, MountKind::Bind | MountKind::DevBind))
        .filter_map(|(index, mount)| {
            Some((format!("mounts[{index}].target"), mount.source.clone()?))
        });
    let home = match &manifest.home {
        HomeMode::Bind(source) => Some(("`home`".to_string(), source.clone())),
        _ => None,
    };
    for (label, source) in writable.chain(home) {
        if let Some(refusal) =
            plan::store_refusal(&label, &workspace::real_path_so_far(&source), &store)
        {
            bail!(refusal);
        }
    }
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
            None if matches!(mount.kind, MountKind::Bind | MountKind::RoBind) => {
                let mut mount = mount.clone();
                if let Some(real) = source_in_workspace(source, workspace).map_err(|message| {
                    manifest::ManifestError::Field {
                        field: field.clone(),
                        message,
                    }
                })? {
                    pins.hold(&real, &field).map_err(anyhow::Error::msg)?;
                    mount.source = Some(real);
                }
                out.push((index, mount));
            }
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

/// Where a mount's `source` lies, when it is in `workspace` or its resolution passes through
/// it: its real path there; an error when a link on the way lies in the workspace.
fn source_in_workspace(source: &Path, workspace: &Path) -> Result<Option<PathBuf>, String> {
    let mut link_inside = None;
    let resolved = rootpath::resolve_with(Path::new("/"), source, &mut |path| {
        let entry = rootpath::entry(path)?;
        if matches!(entry, Some(rootpath::Entry::Link(_)))
            && rootpath::is_within(path, workspace)
            && link_inside.is_none()
        {
            link_inside = Some(path.to_path_buf());
        }
        Ok(entry)
    })
    .map_err(|error| format!("{}: {error}", source.display()))?;
    if let Some(link) = link_inside {
        return Err(format!(
            "{} leads through {}, a symbolic link in the workspace, which a sandbox can \
             change to lead anywhere; bind what it points to by its own path",
            source.display(),
            link.display()
        ));
    }
    Ok(rootpath::is_within(&resolved.path, workspace).then_some(resolved.path))
}
