//! The sandbox plan: everything bwrap will be told, as plain data.
//!
//! [`plan`] takes the manifest, the published rootfs, the workspace and the host facts, and
//! returns a [`Plan`]: the namespaces, the ordered mount operations, the environment, the
//! working directory and the command. It reads the rootfs (to learn which mount targets exist)
//! but changes nothing; [`super::bwrap::render`] turns the plan into argv.
//!
//! The logical mounts, in order (a later mount shadows an earlier one at the same path):
//!
//! 1. the default mounts, unless `mountDefaults: false`: a minimal `/dev`, `/proc`, `/sys`
//!    read-only, the host's `/etc/resolv.conf` and `/etc/hosts` read-only (when the host has
//!    them), a private tmpfs `/tmp`; a default whose target the manifest also mounts is dropped;
//! 2. the manifest's mounts whose target is outside the workspace, in manifest order;
//! 3. the workspace, read-write at its host path, and the git directories its `.git` file
//!    points to outside it (a linked worktree's repository, a submodule's git directory);
//! 4. the manifest's mounts whose target is inside the workspace (so the workspace bind does
//!    not silently hide them);
//! 5. an empty tmpfs over each Python venv to shadow.
//!
//! The rootfs is never modified at launch, yet any mount target must work. So `/` is not a
//! bind of the rootfs: it stays bwrap's own tmpfs, each top-level entry of the rootfs is bound
//! read-only into it (links recreated as links), and `/` is remounted read-only at the end.
//! A target that does not exist in the rootfs below some existing directory `D` (say
//! `/usr/local/x`) *splits* `D` the same way: a tmpfs at `D`, each entry of the rootfs's `D`
//! bound into it, `D` remounted read-only after the mounts. Targets are resolved inside the
//! rootfs first, so a target through a link (`/bin/x`) lands where the link leads.

use super::network::Helper;
use crate::manifest::{HomeMode, Manifest, Mount, MountKind, Network};
use crate::rootpath;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The default `PATH` inside, as Debian's login shells set it for a user plus the sbin dirs.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// One bwrap mount operation; targets are paths inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    Bind { source: PathBuf, target: PathBuf },
    RoBind { source: PathBuf, target: PathBuf },
    DevBind { source: PathBuf, target: PathBuf },
    Tmpfs { target: PathBuf },
    Proc { target: PathBuf },
    Dev { target: PathBuf },
    Symlink { link: PathBuf, target: PathBuf },
    RemountRo { target: PathBuf },
}

/// What the sandbox sees at a path: where a lookup below a logical mount target goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// A host directory or file.
    Host(PathBuf),
    /// An empty tmpfs.
    Empty,
    /// Something paude does not look into (`/proc`, `/dev`).
    Opaque,
}

/// Everything bwrap is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The rootfs the top-level entries come from.
    pub rootfs: PathBuf,
    /// `--unshare-net`: a network namespace of the sandbox's own (every `network` but
    /// `"host"`).
    pub unshare_net: bool,
    /// The helper that gives that namespace its way out (see `network`), started by the
    /// holder between bwrap's `--info-fd` and `--block-fd`.
    pub helper: Option<super::network::Helper>,
    /// `--info-fd` and `--block-fd`, where there is a helper. Set, like `keep_open`, by the
    /// launch right before exec.
    pub info_fd: Option<i32>,
    pub block_fd: Option<i32>,
    /// `--disable-userns`: no new user namespace inside (bwrap 0.8 and later; the seccomp
    /// filter refuses them too).
    pub disable_userns: bool,
    /// `--new-session`: detach from the terminal (no TIOCSTI injection into it).
    pub new_session: bool,
    /// `--sync-fd`: a descriptor bwrap's pid 1 keeps open until the sandbox ends, which keeps
    /// the venv's lock held (see `store::lock`). [`plan`] leaves it unset: the launch sets it
    /// right before exec, and a printed plan has none.
    pub keep_open: Option<i32>,
    /// `--seccomp`: the descriptor of the terminal-injection filter (see `seccomp`), which a
    /// run that keeps the terminal needs (`!new_session`). Set, like `keep_open`, by the
    /// launch right before exec.
    pub seccomp_fd: Option<i32>,
    /// The bind sources held by descriptor (see `pin`): a bind of one of these paths is
    /// `--bind-fd`/`--ro-bind-fd` of its descriptor. Set, like `keep_open`, by the launch right
    /// before exec; a printed plan names the paths.
    pub pinned: Vec<(PathBuf, i32)>,
    /// Mount operations in bwrap order.
    pub mounts: Vec<MountOp>,
    /// The logical mounts, resolved, in order: (target inside, what is there).
    pub views: Vec<(PathBuf, View)>,
    /// The environment, after `--clearenv`, in order.
    pub env: Vec<(OsString, OsString)>,
    /// The working directory inside.
    pub chdir: PathBuf,
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// Things the user should know about the plan (stderr).
    pub warnings: Vec<String>,
}

/// What [`plan`] needs; gathered by the caller so the plan depends on nothing else.
#[derive(Clone)]
pub struct PlanInput<'a> {
    pub manifest: &'a Manifest,
    /// The manifest's mounts, with their index in the manifest, after dropping optional
    /// ones whose source is missing.
    pub mounts: &'a [(usize, Mount)],
    /// `$PAUDE_HOME`: no read-write bind may hold it or lie inside it (but for `state/`).
    pub paude_home: &'a Path,
    pub rootfs: &'a Path,
    /// Default `LD_LIBRARY_PATH` entries, from the rootfs's meta.
    pub library_dirs: &'a [String],
    pub workspace: &'a Path,
    pub cwd: &'a Path,
    pub venvs: &'a [PathBuf],
    /// With `venvPersist`: the directory holding this workspace's own venvs, one per shadowed
    /// venv at the same relative path, bound over the host's instead of an empty tmpfs.
    pub venv_state: Option<&'a Path>,
    /// The workspace's repository as the sandbox sees it (see `git`), bound after it.
    pub git: &'a [super::git::Bind],
    /// The repositories nested in the workspace at launch (its submodules' worktrees), which
    /// git inside trusts as it trusts the workspace.
    pub nested_repositories: &'a [PathBuf],
    /// The workspace's protected paths (see [`Protected`]), checked on the host.
    pub protected: &'a [Protected],
    pub host_env: &'a [(OsString, OsString)],
    /// Which host paths exist: default-mount sources (`/etc/resolv.conf`, `/etc/hosts`),
    /// protected paths, mount points inside host binds.
    pub host_has: &'a dyn Fn(&Path) -> bool,
    /// A host path with every link resolved, if it exists: the store's protection compares
    /// real paths, since `$PAUDE_HOME` or a bind's source may be reached through a link.
    pub real_path: &'a dyn Fn(&Path) -> Option<PathBuf>,
    pub stdin_is_terminal: bool,
    /// Whether bwrap has `--disable-userns`.
    pub disable_userns: bool,
    /// The user's home path on the host, which is `HOME` inside (none: no home is set up).
    pub home: Option<&'a Path>,
    /// The user's name, which is `USER` and `LOGNAME` inside (as a login sets them).
    pub user: Option<&'a str>,
    /// Variables of the host's git identity (`GIT_AUTHOR_NAME`, ...), set where the manifest
    /// sets none of the same name.
    pub git_identity: &'a [(&'static str, &'a str)],
    /// Files for `/etc/passwd` and `/etc/group` naming the user (see `identity`).
    pub identity: Option<(&'a Path, &'a Path)>,
    /// The sandbox's `/etc/resolv.conf` where it is not the host's (slirp4netns's resolver).
    pub resolv_conf: Option<&'a Path>,
    /// slirp4netns, for `network: true` (none: such a plan is an error that says to install
    /// it).
    pub slirp4netns: Option<&'a Path>,
    /// Empty: an interactive shell.
    pub command: &'a [OsString],
}

/// A protected path of the workspace, as the launch found it on the host: every component
/// from the workspace down is a directory, not a link, and the path itself is no link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    /// How messages name it: `protect[2]`, the manifest's own file.
    pub label: String,
    pub path: PathBuf,
    /// The directories between the workspace and the path, outermost first.
    pub ancestors: Vec<PathBuf>,
}

/// A plan that cannot be made; the message names the path and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

struct Logical {
    kind: MountKind,
    source: Option<PathBuf>,
    target: PathBuf,
    /// How error messages name it: `mounts[2].target`, `the workspace`, ...
    label: String,
}

/// Makes the plan. See the module documentation for the mount order.
pub fn plan(input: &PlanInput<'_>) -> Result<Plan, PlanError> {
    let host = HostPaths::new(input.host_has);
    let mut rootfs = RootfsReader::new(input.rootfs);
    let logical = logical_mounts(input, &host)?;
    let (mounts, views) = mount_ops(&mut rootfs, &logical, &host)?;
    let env = environment(input)?;
    let command = if input.command.is_empty() {
        vec![shell(&mut rootfs, &views, &env)?]
    } else {
        input.command.to_vec()
    };
    let mut warnings = Vec::new();
    let helper = match &input.manifest.network {
        Network::Private => Some(Helper::Slirp(
            input
                .slirp4netns
                .ok_or_else(|| PlanError(super::network::SLIRP_MISSING.into()))?
                .to_path_buf(),
        )),
        Network::Allow(list) => Some(Helper::Proxy(list.clone())),
        Network::Loopback => None,
        Network::Host => {
            warnings.push(
                "network: \"host\" shares the host's network namespace: the sandbox reaches \
                 every service on the host's loopback and the host's abstract sockets (X11, \
                 D-Bus); network: true reaches the internet without them"
                    .into(),
            );
            None
        }
    };
    // Started inside a shadowed venv: that directory is an empty tmpfs inside, so the
    // nearest directory that exists there is the venv itself.
    let mut chdir = input.cwd.to_path_buf();
    let last_covering = views
        .iter()
        .rev()
        .find(|(target, _)| rootpath::is_within(input.cwd, target));
    if let Some((venv, View::Empty)) = last_covering
        && venv != input.cwd
    {
        warnings.push(format!(
            "{} is inside the shadowed venv {}; starting in {} instead",
            input.cwd.display(),
            venv.display(),
            venv.display()
        ));
        chdir = venv.clone();
    }
    Ok(Plan {
        rootfs: input.rootfs.to_path_buf(),
        unshare_net: input.manifest.network != Network::Host,
        helper,
        info_fd: None,
        block_fd: None,
        disable_userns: input.disable_userns,
        new_session: !input.stdin_is_terminal,
        keep_open: None,
        seccomp_fd: None,
        pinned: Vec::new(),
        mounts,
        views,
        env,
        chdir,
        command,
        warnings,
    })
}

/// Which host paths exist, asked of [`PlanInput::host_has`] once per path (a protected path is
/// asked about again as a mount point). Keyed by the path's bytes, which compare faster than
/// components hash.
struct HostPaths<'a> {
    has: &'a dyn Fn(&Path) -> bool,
    seen: RefCell<BTreeMap<OsString, bool>>,
}

impl<'a> HostPaths<'a> {
    fn new(has: &'a dyn Fn(&Path) -> bool) -> HostPaths<'a> {
        HostPaths {
            has,
            seen: RefCell::new(BTreeMap::new()),
        }
    }

    fn has(&self, path: &Path) -> bool {
        if let Some(&known) = self.seen.borrow().get(path.as_os_str()) {
            return known;
        }
        let has = (self.has)(path);
        self.seen.borrow_mut().insert(path.into(), has);
        has
    }
}

/// The published rootfs, as the planner reads it. A published tree never changes, so each path
/// in it is looked at once per plan; and the listing of a directory, which a split needs
/// anyway, answers for the entries in it: resolving `/etc` or `/tmp` costs no lookup of its own.
struct RootfsReader<'a> {
    root: &'a Path,
    /// What was learned of each path (a host path, inside the rootfs), by its bytes.
    seen: BTreeMap<OsString, Option<rootpath::Entry>>,
    /// The listings made, by directory (inside).
    listed: BTreeMap<OsString, Vec<(OsString, std::fs::FileType)>>,
}

impl<'a> RootfsReader<'a> {
    fn new(root: &'a Path) -> RootfsReader<'a> {
        RootfsReader {
            root,
            seen: BTreeMap::new(),
            listed: BTreeMap::new(),
        }
    }

    /// The entry at a host path inside the rootfs.
    fn entry(&mut self, path: &Path) -> std::io::Result<Option<rootpath::Entry>> {
        if let Some(known) = self.seen.get(path.as_os_str()) {
            return Ok(known.clone());
        }
        let entry = rootpath::entry(path)?;
        self.seen.insert(path.into(), entry.clone());
        Ok(entry)
    }

    /// `path` (inside) resolved in the rootfs; see [`rootpath::resolve`].
    fn resolve(&mut self, path: &Path) -> std::io::Result<rootpath::Resolved> {
        let root = self.root;
        rootpath::resolve_with(root, path, &mut |candidate| self.entry(candidate))
    }

    /// The entries of `directory` (inside), sorted by name. What each is is kept for later
    /// lookups, except links, whose targets a listing does not give.
    fn list(&mut self, directory: &Path) -> Result<&[(OsString, std::fs::FileType)], PlanError> {
        if self.listed.contains_key(directory.as_os_str()) {
            return Ok(&self.listed[directory.as_os_str()]);
        }
        let outside = rootpath::under(self.root, directory);
        let mut children: Vec<(OsString, std::fs::FileType)> = std::fs::read_dir(&outside)
            .map_err(|error| {
                PlanError(format!(
                    "reading the environment's {}: {error}",
                    outside.display()
                ))
            })?
            .flatten()
            .filter_map(|entry| entry.file_type().ok().map(|kind| (entry.file_name(), kind)))
            .collect();
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind) in &children {
            let entry = if kind.is_symlink() {
                continue;
            } else if kind.is_dir() {
                rootpath::Entry::Directory
            } else {
                rootpath::Entry::File
            };
            self.seen.insert(outside.join(name).into(), Some(entry));
        }
        Ok(self.listed.entry(directory.into()).or_insert(children))
    }
}

fn logical_mounts(input: &PlanInput<'_>, host: &HostPaths<'_>) -> Result<Vec<Logical>, PlanError> {
    let user_targets: BTreeSet<&Path> = input
        .mounts
        .iter()
        .map(|(_, m)| m.target.as_path())
        .collect();
    let mut out = Vec::new();
    if input.manifest.mount_defaults {
        let defaults: [(MountKind, Option<&str>, &str); 6] = [
            (MountKind::DevBind, None, "/dev"),
            (MountKind::Proc, None, "/proc"),
            (MountKind::RoBind, Some("/sys"), "/sys"),
            (
                MountKind::RoBind,
                Some("/etc/resolv.conf"),
                "/etc/resolv.conf",
            ),
            (MountKind::RoBind, Some("/etc/hosts"), "/etc/hosts"),
            (MountKind::Tmpfs, None, "/tmp"),
        ];
        for (kind, source, target) in defaults {
            if user_targets.contains(Path::new(target)) {
                continue;
            }
            // slirp4netns's resolver rather than the host's, which may be on the host's
            // loopback (127.0.0.53) and is not the sandbox's to reach.
            // That file paude wrote; a host source the host may lack.
            let source = match (target, input.resolv_conf, source.map(Path::new)) {
                ("/etc/resolv.conf", Some(written), _) => Some(written),
                (_, _, Some(source)) if !host.has(source) => continue,
                (_, _, source) => source,
            };
            // The default /dev is bwrap's minimal devtmpfs (`--dev`), marked by no source.
            out.push(Logical {
                kind,
                source: source.map(Path::to_path_buf),
                target: PathBuf::from(target),
                label: format!("the default mount {target}"),
            });
        }
        if let Some((passwd, group)) = input.identity {
            for (source, target) in [(passwd, "/etc/passwd"), (group, "/etc/group")] {
                if !user_targets.contains(Path::new(target)) {
                    out.push(Logical {
                        kind: MountKind::RoBind,
                        source: Some(source.to_path_buf()),
                        target: PathBuf::from(target),
                        label: format!("the default mount {target}"),
                    });
                }
            }
        }
    }
    // The home: after the defaults, before every mount that may lie below it (the
    // workspace, usually), so that those show through.
    if let Some(home) = input
        .home
        .filter(|home| *home != Path::new("/") && !user_targets.contains(home))
    {
        out.push(match &input.manifest.home {
            // The launch turns `persist` into the bind of its directory before planning.
            HomeMode::Tmpfs | HomeMode::Persist => Logical {
                kind: MountKind::Tmpfs,
                source: None,
                target: home.to_path_buf(),
                label: "the home".into(),
            },
            HomeMode::Bind(source) => Logical {
                kind: MountKind::Bind,
                source: Some(source.clone()),
                target: home.to_path_buf(),
                label: "`home`".into(),
            },
        });
    }
    type Indexed<'m> = Vec<&'m (usize, Mount)>;
    let (inside, outside): (Indexed, Indexed) = input
        .mounts
        .iter()
        .partition(|(_, m)| rootpath::is_within(&m.target, input.workspace));
    let user = |(index, m): &(usize, Mount)| Logical {
        kind: m.kind,
        source: m.source.clone(),
        target: m.target.clone(),
        label: format!("mounts[{index}].target"),
    };
    out.extend(outside.into_iter().map(user));
    out.push(Logical {
        kind: MountKind::Bind,
        source: Some(input.workspace.to_path_buf()),
        target: input.workspace.to_path_buf(),
        label: "the workspace".into(),
    });
    out.extend(input.git.iter().map(|bind| Logical {
        kind: if bind.writable {
            MountKind::Bind
        } else {
            MountKind::RoBind
        },
        source: Some(bind.source.clone()),
        target: bind.path.clone(),
        label: format!("the workspace's repository at {}", bind.path.display()),
    }));
    out.extend(inside.into_iter().map(user));
    // Protected paths: each directory between the workspace and the path bound on itself,
    // so that nothing inside can rename or replace it, then the path read-only.
    for protected in input.protected {
        let label = protected.label.clone();
        for dir in &protected.ancestors {
            out.push(Logical {
                kind: MountKind::Bind,
                source: Some(dir.clone()),
                target: dir.clone(),
                label: label.clone(),
            });
        }
        out.push(Logical {
            kind: MountKind::RoBind,
            source: Some(protected.path.clone()),
            target: protected.path.clone(),
            label,
        });
    }
    out.extend(input.venvs.iter().map(|venv| {
        let kept = input
            .venv_state
            .and_then(|state| Some(state.join(venv.strip_prefix(input.workspace).ok()?)));
        Logical {
            kind: if kept.is_some() {
                MountKind::Bind
            } else {
                MountKind::Tmpfs
            },
            source: kept,
            target: venv.clone(),
            label: format!("the venv shadow {}", venv.display()),
        }
    }));
    // The store must never be writable inside: a sandbox that could change a published tree
    // would change every later environment built from it, and one that could write a launch
    // cache, the passwd file or the seccomp filter would choose what the next launch runs.
    // A read-only bind over it would not do: the sandbox could rename a directory above it
    // and leave a store of its own at the path. So a read-write bind of a directory that
    // holds the store, or of one inside it (but a workspace's own kept home and venvs, under
    // `state/`), is refused. Real paths are compared, as either may be reached through a link.
    let store = (input.real_path)(input.paude_home).unwrap_or_else(|| input.paude_home.into());
    for mount in out
        .iter()
        .filter(|m| matches!(m.kind, MountKind::Bind | MountKind::DevBind))
    {
        let Some(source) = &mount.source else {
            continue;
        };
        let source = (input.real_path)(source).unwrap_or_else(|| source.clone());
        if let Some(refusal) = store_refusal(&mount.label, &source, &store) {
            return Err(refusal);
        }
    }
    Ok(out)
}

/// Why a read-write bind of `source` must be refused, if it must: it holds the store, or lies
/// inside it outside `state/` (a workspace's own kept home and venvs) and `launch/` (a
/// launch's copies of git's files). Both paths are real; `label` names the mount in the
/// message.
pub fn store_refusal(label: &str, source: &Path, store: &Path) -> Option<PlanError> {
    let holds_store = rootpath::is_within(store, source);
    let sandboxes_own = ["state", "launch"]
        .iter()
        .any(|own| rootpath::is_within(source, &store.join(own)));
    let in_store = rootpath::is_within(source, store) && !sandboxes_own;
    (holds_store || in_store).then(|| {
        PlanError(format!(
            "{label} would make {} writable inside the sandbox, and with it paude's store {} \
             (PAUDE_HOME), which decides what later launches run; bind a directory that does \
             not hold the store, or set PAUDE_HOME to a directory outside it",
            source.display(),
            store.display()
        ))
    })
}

type MountPlan = (Vec<MountOp>, Vec<(PathBuf, View)>);

fn mount_ops(
    rootfs: &mut RootfsReader<'_>,
    logical: &[Logical],
    host: &HostPaths<'_>,
) -> Result<MountPlan, PlanError> {
    // Each split directory, with the index of the last logical mount that needs a mount point
    // made in it: it is remounted read-only right after that mount, so a later mount at or
    // above it is neither made read-only nor left without its remount target.
    let mut splits: BTreeMap<PathBuf, usize> = BTreeMap::from([(PathBuf::from("/"), usize::MAX)]);
    // `/` is always split; listed first, it answers for the top-level mount targets.
    rootfs.list(Path::new("/"))?;
    let mut views: Vec<(PathBuf, View)> = Vec::new();
    for (index, mount) in logical.iter().enumerate() {
        let covering = |path: &Path| {
            views
                .iter()
                .rev()
                .find(|(target, _)| rootpath::is_within(path, target))
                .cloned()
        };
        let target = match covering(&mount.target) {
            Some(_) => mount.target.clone(),
            None => {
                let resolved = rootfs.resolve(&mount.target).map_err(|error| {
                    PlanError(format!(
                        "{} {}: {error}",
                        mount.label,
                        mount.target.display()
                    ))
                })?;
                // A link in the rootfs may lead into an earlier mount (`/data -> /tmp/data`):
                // then the mount point is made there, not split out of the rootfs.
                if !resolved.exists() && covering(&resolved.path).is_none() {
                    let split = resolved.deepest_existing();
                    splits
                        .entry(split)
                        .and_modify(|last| {
                            if *last != usize::MAX {
                                *last = index;
                            }
                        })
                        .or_insert(index);
                }
                resolved.path
            }
        };
        // bwrap makes a missing mount point inside a host bind on the host itself: refuse,
        // so that paude never changes the workspace (or any host directory) on its own.
        if let Some((above, View::Host(source))) = covering(&target) {
            let rest = target.strip_prefix(&above).unwrap_or(Path::new(""));
            let on_host = source.join(rest);
            if !host.has(&on_host) {
                return Err(PlanError(format!(
                    "{} {}: it does not exist in {} ({} on the host), and bwrap would create it \
                     there; create it yourself, or choose another target",
                    mount.label,
                    target.display(),
                    above.display(),
                    on_host.display()
                )));
            }
        }
        let view = match (mount.kind, &mount.source) {
            (MountKind::Tmpfs, _) => View::Empty,
            (MountKind::Proc, _) | (MountKind::DevBind, None) => View::Opaque,
            (_, Some(source)) => View::Host(source.clone()),
            (_, None) => View::Opaque,
        };
        views.push((target, view));
    }

    let mut ops = Vec::new();
    // Parents before children: a split below another split is mounted on top of it.
    let mut ordered: Vec<&PathBuf> = splits.keys().collect();
    ordered.sort_by_key(|path| (path.components().count(), (*path).clone()));
    for split in &ordered {
        if split.as_os_str() != "/" {
            ops.push(MountOp::Tmpfs {
                target: (*split).clone(),
            });
        }
        let directory = rootpath::under(rootfs.root, split);
        for (name, kind) in rootfs.list(split)? {
            let inside = split.join(name);
            // A child that a mount replaces whole, or that is split itself, needs no bind:
            // bwrap creates its mount point in the tmpfs.
            // (Views' targets are normalized, so the same path is the same bytes.)
            let mounted = |(target, _): &(PathBuf, View)| target.as_os_str() == inside.as_os_str();
            if splits.contains_key(&inside) || views.iter().any(mounted) {
                continue;
            }
            let source = directory.join(name);
            if kind.is_symlink() {
                let link = std::fs::read_link(&source)
                    .map_err(|error| PlanError(format!("reading {}: {error}", source.display())))?;
                ops.push(MountOp::Symlink {
                    link,
                    target: inside,
                });
            } else if kind.is_dir() || kind.is_file() {
                ops.push(MountOp::RoBind {
                    source,
                    target: inside,
                });
            }
        }
    }
    for (index, (mount, (target, _))) in logical.iter().zip(&views).enumerate() {
        let target = target.clone();
        ops.push(match (mount.kind, mount.source.clone()) {
            (MountKind::Bind, Some(source)) => MountOp::Bind { source, target },
            (MountKind::RoBind, Some(source)) => MountOp::RoBind { source, target },
            (MountKind::DevBind, Some(source)) => MountOp::DevBind { source, target },
            (MountKind::DevBind, None) => MountOp::Dev { target },
            (MountKind::Tmpfs, _) => MountOp::Tmpfs { target },
            (MountKind::Proc, _) => MountOp::Proc { target },
            (kind, None) => {
                return Err(PlanError(format!(
                    "{}: a {kind:?} mount at {} has no source",
                    mount.label,
                    target.display()
                )));
            }
        });
        // Deepest first, so a parent's remount does not precede its child's.
        for split in ordered
            .iter()
            .rev()
            .filter(|split| splits[**split] == index)
        {
            ops.push(MountOp::RemountRo {
                target: (*split).clone(),
            });
        }
    }
    ops.push(MountOp::RemountRo {
        target: PathBuf::from("/"),
    });
    Ok((ops, views))
}

/// An ordered environment in which setting a name again replaces its value in place.
#[derive(Default)]
struct Environment {
    vars: Vec<(OsString, OsString)>,
    index: std::collections::HashMap<OsString, usize>,
}

impl Environment {
    fn set(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) {
        let (name, value) = (name.into(), value.into());
        match self.index.get(&name) {
            Some(&at) => self.vars[at].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&OsString> {
        self.index.get(OsStr::new(name)).map(|&at| &self.vars[at].1)
    }
}

/// What every environment gets where the manifest does not say: the default `PATH`, and the
/// tree's library directories as `LD_LIBRARY_PATH` (the tree has no `ld.so.cache`).
fn tree_defaults(env: &mut Environment, library_dirs: &[String]) {
    if env.get("PATH").is_none() {
        env.set("PATH", DEFAULT_PATH);
    }
    if env.get("LD_LIBRARY_PATH").is_none() && !library_dirs.is_empty() {
        env.set("LD_LIBRARY_PATH", library_dirs.join(":"));
    }
}

/// The variables of an image of the environment (`paude export`): the manifest's `envSet`
/// with the defaults of a launch that depend on the tree alone. What depends on the host or
/// the launch (`envKeep`, `HOME`, git's `safe.directory`, `TERM`) is the runtime's.
pub fn image_environment(
    env_set: &BTreeMap<String, String>,
    library_dirs: &[String],
) -> Vec<(String, String)> {
    let mut env = Environment::default();
    for (name, value) in env_set {
        env.set(name, value);
    }
    tree_defaults(&mut env, library_dirs);
    env.vars
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

fn environment(input: &PlanInput<'_>) -> Result<Vec<(OsString, OsString)>, PlanError> {
    let mut env = Environment::default();
    let host: std::collections::HashMap<&OsStr, &OsString> = input
        .host_env
        .iter()
        .map(|(key, value)| (key.as_os_str(), value))
        .collect();
    for name in &input.manifest.env_keep {
        if let Some(value) = host.get(OsStr::new(name)) {
            env.set(name, *value);
        }
    }
    for (name, value) in &input.manifest.env_set {
        env.set(name, value);
    }
    if let Some(home) = input.home
        && env.get("HOME").is_none()
    {
        env.set("HOME", home.as_os_str());
    }
    if let Some(user) = input.user {
        for name in ["USER", "LOGNAME"] {
            if env.get(name).is_none() {
                env.set(name, user);
            }
        }
    }
    for (name, value) in input.git_identity {
        if env.get(name).is_none() {
            env.set(*name, *value);
        }
    }
    if let Network::Allow(allow) = &input.manifest.network {
        for (name, value) in super::network::proxy_variables(allow) {
            if env.get(&name).is_none() {
                env.set(name, value);
            }
        }
    }
    tree_defaults(&mut env, input.library_dirs);
    // Seed 003: git refuses a repository whose owner differs from the user ("dubious
    // ownership"). Trust exactly the workspace, through git's environment config, appended
    // after any the user passes, never by editing a config file and never with `*`.
    let count = match env.get("GIT_CONFIG_COUNT") {
        None => 0,
        // git itself refuses a count it cannot parse; so does paude, rather than overwrite
        // the user's own GIT_CONFIG_KEY_0.
        Some(value) => value
            .to_str()
            .and_then(|text| text.parse::<u32>().ok())
            .filter(|count| *count < 10_000)
            .ok_or_else(|| {
                PlanError(format!(
                    "GIT_CONFIG_COUNT is {value:?}, which is not a count git accepts; \
                     fix it in `envSet` or in the host environment (`envKeep`)"
                ))
            })?,
    };
    // And the workspace's nested repositories (its submodules), which git checks on their
    // own when it recurses into them.
    let trusted = std::iter::once(input.workspace)
        .chain(input.nested_repositories.iter().map(PathBuf::as_path));
    let mut next = count;
    for directory in trusted {
        env.set(format!("GIT_CONFIG_KEY_{next}"), "safe.directory");
        env.set(format!("GIT_CONFIG_VALUE_{next}"), directory.as_os_str());
        next += 1;
    }
    env.set("GIT_CONFIG_COUNT", next.to_string());
    Ok(env.vars)
}

/// Where a path inside the sandbox is found from outside.
enum Location {
    /// A host path, through a bind.
    Host(PathBuf),
    /// A path in the rootfs, with what is there (`None`: nothing).
    Rootfs(PathBuf, Option<rootpath::Entry>),
    /// In a place paude does not look into (`/proc`, `/dev`, a tmpfs).
    Unknown,
}

/// Where `path` (inside the sandbox) is found from outside, following the plan's mounts.
fn locate(rootfs: &mut RootfsReader<'_>, views: &[(PathBuf, View)], path: &Path) -> Location {
    match views
        .iter()
        .rev()
        .find(|(target, _)| rootpath::is_within(path, target))
    {
        Some((target, View::Host(source))) => match path.strip_prefix(target) {
            Ok(rest) if rest.as_os_str().is_empty() => Location::Host(source.clone()),
            Ok(rest) => Location::Host(source.join(rest)),
            Err(_) => Location::Unknown,
        },
        Some(_) => Location::Unknown,
        None => {
            let Ok(resolved) = rootfs.resolve(path) else {
                return Location::Unknown;
            };
            // A link into a mounted path (say /etc/x -> /tmp/y) leaves the rootfs.
            if views
                .iter()
                .any(|(target, _)| rootpath::is_within(&resolved.path, target))
            {
                return if resolved.path == path {
                    Location::Unknown
                } else {
                    locate(rootfs, views, &resolved.path)
                };
            }
            let inside = rootpath::under(rootfs.root, &resolved.path);
            if !resolved.exists() {
                return Location::Rootfs(inside, None);
            }
            // Resolving looked at the whole path, so this is an answer already seen; and it
            // followed every link, so what is there is not a link.
            match rootfs.entry(&inside) {
                Ok(entry) => Location::Rootfs(inside, entry),
                Err(_) => Location::Unknown,
            }
        }
    }
}

/// How a command name is found inside, for a clear 126/127 before bwrap runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLookup {
    /// Found and executable, at this path inside (none: in a place paude does not look
    /// into).
    Found(Option<PathBuf>),
    NotFound,
    /// Found, but this user may not execute it.
    NotExecutable(PathBuf),
    IsDirectory(PathBuf),
    /// A script whose `#!` interpreter is not in the environment.
    BadInterpreter {
        script: PathBuf,
        interpreter: PathBuf,
    },
}

/// Looks the plan's command up the way `execvp` inside will: in the rootfs, or on the host
/// where a bind puts a host directory (the workspace, a bound directory).
pub fn lookup_command(plan: &Plan) -> CommandLookup {
    match plan.command.first() {
        Some(command) => lookup(
            &mut RootfsReader::new(&plan.rootfs),
            &plan.views,
            &plan.env,
            &plan.chdir,
            command,
        ),
        None => CommandLookup::NotFound,
    }
}

/// A name with a `/` is taken relative to `chdir`, any other through the environment's
/// `PATH`; the first executable candidate wins, as in `execvp`.
fn lookup(
    rootfs: &mut RootfsReader<'_>,
    views: &[(PathBuf, View)],
    env: &[(OsString, OsString)],
    chdir: &Path,
    command: &OsStr,
) -> CommandLookup {
    let candidates: Vec<PathBuf> = if command.as_bytes().contains(&b'/') {
        vec![chdir.join(command)]
    } else {
        let path = env
            .iter()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| DEFAULT_PATH.into());
        path.as_bytes()
            .split(|b| *b == b':')
            .filter(|dir| dir.starts_with(b"/"))
            .map(|dir| Path::new(OsStr::from_bytes(dir)).join(command))
            .collect()
    };
    let mut refused = None;
    for candidate in candidates {
        let (outside, is_dir) = match locate(rootfs, views, &candidate) {
            Location::Unknown => {
                // In /proc, /dev or a tmpfs: paude cannot tell, bwrap will.
                if views
                    .iter()
                    .any(|(t, v)| *v == View::Opaque && rootpath::is_within(&candidate, t))
                {
                    return CommandLookup::Found(None);
                }
                continue;
            }
            Location::Rootfs(_, None) => continue,
            Location::Rootfs(outside, Some(entry)) => {
                let is_dir = entry == rootpath::Entry::Directory;
                (outside, is_dir)
            }
            Location::Host(outside) => match std::fs::metadata(&outside) {
                Err(_) => continue,
                Ok(meta) => (outside, meta.is_dir()),
            },
        };
        if is_dir {
            refused = refused.or(Some(CommandLookup::IsDirectory(candidate)));
        } else if !executable(&outside) {
            refused = refused.or(Some(CommandLookup::NotExecutable(candidate)));
        } else {
            // The kernel runs a `#!` script's interpreter: look that up too, once.
            if let Some(interpreter) = shebang(&outside)
                && interpreter.is_absolute()
                && !command_exists(rootfs, views, &interpreter)
            {
                return CommandLookup::BadInterpreter {
                    script: candidate,
                    interpreter,
                };
            }
            return CommandLookup::Found(Some(candidate));
        }
    }
    refused.unwrap_or(CommandLookup::NotFound)
}

/// Whether an absolute path names an executable file inside (no script check).
fn command_exists(rootfs: &mut RootfsReader<'_>, views: &[(PathBuf, View)], path: &Path) -> bool {
    match locate(rootfs, views, path) {
        Location::Host(outside) | Location::Rootfs(outside, Some(_)) => executable(&outside),
        Location::Rootfs(_, None) => false,
        Location::Unknown => true,
    }
}

/// Whether this user may execute `path` (`access(X_OK)`).
fn executable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}

/// The interpreter named by a `#!` line, if the file starts with one.
fn shebang(file: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let mut opened = std::fs::File::open(file).ok()?;
    let read = opened.read(&mut head).ok()?;
    let line = head[..read].strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next()?;
    let word = line
        .split(|b| *b == b' ' || *b == b'\t')
        .find(|word| !word.is_empty())?;
    Some(PathBuf::from(OsStr::from_bytes(word)))
}

/// The interactive shell: `bash` when the environment has it, else `/bin/sh`.
fn shell(
    rootfs: &mut RootfsReader<'_>,
    views: &[(PathBuf, View)],
    env: &[(OsString, OsString)],
) -> Result<OsString, PlanError> {
    for candidate in ["bash", "/bin/sh"] {
        if matches!(
            lookup(rootfs, views, env, Path::new("/"), OsStr::new(candidate)),
            CommandLookup::Found(_)
        ) {
            return Ok(candidate.into());
        }
    }
    Err(PlanError(
        "the environment has no shell (neither bash nor /bin/sh): add \"bash\" or \"dash\" to `packages`, \
         or give a command after `--`"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Destination;
    use crate::manifest::VenvMode;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        // The mount points the store makes for the default mounts.
        std::fs::write(r.join("etc/resolv.conf"), "").unwrap();
        std::fs::write(r.join("etc/hosts"), "").unwrap();
        std::fs::write(r.join("usr/bin/bash"), "").unwrap();
        std::fs::set_permissions(
            r.join("usr/bin/bash"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(r.join("usr/bin/data"), "").unwrap();
        std::fs::write(r.join("etc/hosts"), "").unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        dir
    }

    fn manifest() -> Manifest {
        Manifest {
            git_identity: true,
            essential: true,
            packages: vec!["bash".into()],
            env_keep: vec!["TERM".into(), "ABSENT".into()],
            env_set: BTreeMap::from([("A".to_string(), "1".to_string())]),
            mount_defaults: true,
            mounts: Vec::new(),
            fs_entries: Vec::new(),
            venv: VenvMode::Auto,
            venv_persist: false,
            network: Network::Private,
            protect: Vec::new(),
            home: HomeMode::Tmpfs,
        }
    }

    fn make(manifest: &Manifest, mounts: &[Mount], rootfs: &Path, command: &[&str]) -> Plan {
        make_in(
            manifest,
            mounts,
            rootfs,
            command,
            "/w/src",
            "/home/u/.paude",
        )
        .unwrap()
    }

    /// A plan for the workspace `/w` started in `cwd`; on this fake host every path exists
    /// except `/etc/resolv.conf` and those with `missing` in them.
    fn make_in(
        manifest: &Manifest,
        mounts: &[Mount],
        rootfs: &Path,
        command: &[&str],
        cwd: &str,
        paude_home: &str,
    ) -> Result<Plan, PlanError> {
        let command: Vec<OsString> = command.iter().map(OsString::from).collect();
        let host_env = vec![
            (OsString::from("TERM"), OsString::from("xterm")),
            ("SECRET".into(), "x".into()),
        ];
        let venvs = vec![PathBuf::from("/w/.venv")];
        let mounts: Vec<(usize, Mount)> = mounts.iter().cloned().enumerate().collect();
        let input = PlanInput {
            manifest,
            mounts: &mounts,
            paude_home: Path::new(paude_home),
            rootfs,
            library_dirs: &["/usr/lib/x86_64-linux-gnu".to_string()],
            workspace: Path::new("/w"),
            cwd: Path::new(cwd),
            venvs: &venvs,
            venv_state: None,
            git: &[],
            nested_repositories: &[PathBuf::from("/w/sub")],
            protected: &[],
            host_env: &host_env,
            host_has: &|path: &Path| {
                path != Path::new("/etc/resolv.conf") && !path.to_string_lossy().contains("missing")
            },
            // `/home/link` is a link to `/w`.
            real_path: &|path: &Path| {
                let text = path.to_string_lossy();
                (!text.contains("missing")).then(|| text.replace("/home/link", "/w").into())
            },
            stdin_is_terminal: false,
            disable_userns: true,
            home: None,
            user: None,
            git_identity: &[],
            identity: None,
            resolv_conf: (manifest.network == Network::Private)
                .then_some(Path::new("/p/files/resolv.conf")),
            slirp4netns: Some(Path::new("/usr/bin/slirp4netns")),
            command: &command,
        };
        plan(&input)
    }

    /// Replaces the rootfs path by `$ROOTFS` for whole-plan comparisons.
    fn ops(plan: &Plan) -> Vec<String> {
        let root = plan.rootfs.display().to_string();
        super::super::bwrap::render(plan)
            .iter()
            .map(|arg| arg.to_string_lossy().replace(&root, "$ROOTFS"))
            .collect()
    }

    #[test]
    fn whole_plan_for_the_defaults() {
        let rootfs = rootfs();
        let plan = make(&manifest(), &[], rootfs.path(), &["bash", "-c", "x"]);
        #[rustfmt::skip]
        let expected: Vec<&str> = vec![
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
            "--unshare-net", "--disable-userns",
            "--die-with-parent", "--cap-drop", "ALL", "--new-session",
            // The top level of the rootfs, entry by entry, into bwrap's tmpfs root.
            "--symlink", "usr/bin", "/bin",
            "--ro-bind", "$ROOTFS/etc", "/etc",
            "--ro-bind", "$ROOTFS/usr", "/usr",
            // Defaults (no /etc/resolv.conf on this host: skipped).
            "--dev", "/dev",
            "--proc", "/proc",
            "--ro-bind", "/sys", "/sys",
            // slirp4netns's resolver (network: true), not the host's.
            "--ro-bind", "/p/files/resolv.conf", "/etc/resolv.conf",
            "--ro-bind", "/etc/hosts", "/etc/hosts",
            "--tmpfs", "/tmp",
            // The workspace, then its venv shadow.
            "--bind", "/w", "/w",
            "--tmpfs", "/w/.venv",
            "--remount-ro", "/",
            "--clearenv",
            "--setenv", "TERM", "xterm",
            "--setenv", "A", "1",
            "--setenv", "PATH", DEFAULT_PATH,
            "--setenv", "LD_LIBRARY_PATH", "/usr/lib/x86_64-linux-gnu",
            "--setenv", "GIT_CONFIG_KEY_0", "safe.directory",
            "--setenv", "GIT_CONFIG_VALUE_0", "/w",
            "--setenv", "GIT_CONFIG_KEY_1", "safe.directory",
            "--setenv", "GIT_CONFIG_VALUE_1", "/w/sub",
            "--setenv", "GIT_CONFIG_COUNT", "2",
            "--chdir", "/w/src",
            "--", "bash", "-c", "x",
        ];
        assert_eq!(ops(&plan), expected);
        assert_eq!(
            plan.helper,
            Some(Helper::Slirp("/usr/bin/slirp4netns".into()))
        );
    }

    #[test]
    fn each_network_form_in_the_plan() {
        let rootfs = rootfs();
        let mut manifest = manifest();
        let has = |plan: &Plan, name: &str| plan.env.iter().any(|(key, _)| key == name);
        manifest.network = Network::Host;
        let plan = make(&manifest, &[], rootfs.path(), &["true"]);
        assert!(!plan.unshare_net && plan.helper.is_none());
        assert!(
            plan.warnings[0].contains("host's loopback"),
            "{:?}",
            plan.warnings
        );
        assert!(!ops(&plan).contains(&"/p/files/resolv.conf".to_string()));
        manifest.network = Network::Loopback;
        let plan = make(&manifest, &[], rootfs.path(), &["true"]);
        assert!(plan.unshare_net && plan.helper.is_none() && !has(&plan, "HTTPS_PROXY"));
        let allow = vec![Destination {
            host: "pypi.org".into(),
            subdomains: false,
            port: None,
        }];
        manifest.network = Network::Allow(allow.clone());
        manifest
            .env_set
            .insert("no_proxy".into(), "mine.internal".into());
        let plan = make(&manifest, &[], rootfs.path(), &["true"]);
        assert!(plan.unshare_net);
        assert_eq!(plan.helper, Some(Helper::Proxy(allow)));
        let value = |name: &str| {
            plan.env
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.to_string_lossy().into_owned())
        };
        assert_eq!(
            value("HTTPS_PROXY").as_deref(),
            Some("http://127.0.0.1:3128")
        );
        assert_eq!(
            value("all_proxy").as_deref(),
            Some("socks5h://127.0.0.1:3128")
        );
        // The manifest's own value wins.
        assert_eq!(value("no_proxy").as_deref(), Some("mine.internal"));
        assert_eq!(
            value("NO_PROXY").as_deref(),
            Some("localhost,127.0.0.1,::1")
        );
    }

    #[test]
    fn a_missing_target_splits_its_deepest_existing_directory() {
        let rootfs = rootfs();
        let mounts = vec![Mount {
            kind: MountKind::RoBind,
            source: Some("/host/data".into()),
            target: "/bin/newdir/x".into(),
            optional: false,
        }];
        let plan = make(&manifest(), &mounts, rootfs.path(), &["true"]);
        let args = ops(&plan).join(" ");
        // Through the /bin link to /usr/bin, which becomes a tmpfs holding the rootfs's
        // entries, and is read-only again once the mount point is made.
        assert!(
            args.contains("--tmpfs /usr/bin --ro-bind $ROOTFS/usr/bin/bash /usr/bin/bash --ro-bind $ROOTFS/usr/bin/data /usr/bin/data"),
            "{args}"
        );
        assert!(
            args.contains("--ro-bind /host/data /usr/bin/newdir/x"),
            "{args}"
        );
        assert!(
            args.contains(
                "--ro-bind /host/data /usr/bin/newdir/x --remount-ro /usr/bin --bind /w /w"
            ),
            "{args}"
        );
    }

    #[test]
    fn user_mounts_replace_defaults_and_follow_the_workspace_when_inside_it() {
        let rootfs = rootfs();
        let bind = |source: &str, target: &str| Mount {
            kind: MountKind::Bind,
            source: Some(source.into()),
            target: target.into(),
            optional: false,
        };
        let mounts = vec![bind("/w-secrets", "/w/secrets"), bind("/tmp", "/tmp")];
        let mut manifest = manifest();
        manifest.network = Network::Loopback;
        let plan = make(&manifest, &mounts, rootfs.path(), &["true"]);
        let args = ops(&plan).join(" ");
        assert!(!args.contains("--tmpfs /tmp"), "{args}");
        assert!(args.contains("--unshare-net"), "{args}");
        assert!(
            args.contains(
                "--bind /tmp /tmp --bind /w /w --bind /w-secrets /w/secrets --tmpfs /w/.venv"
            ),
            "{args}"
        );
    }

    #[test]
    fn no_default_mounts_when_turned_off() {
        let rootfs = rootfs();
        let mut manifest = manifest();
        manifest.mount_defaults = false;
        let args = ops(&make(&manifest, &[], rootfs.path(), &["true"])).join(" ");
        for default in [
            "--dev /dev",
            "--proc",
            "/sys",
            "--tmpfs /tmp",
            "/etc/hosts /etc/hosts",
        ] {
            assert!(!args.contains(default), "{default} in {args}");
        }
    }

    #[test]
    fn git_config_entries_are_appended_to_the_users() {
        let rootfs = rootfs();
        let mut manifest = manifest();
        manifest
            .env_set
            .insert("GIT_CONFIG_COUNT".into(), "2".into());
        let plan = make(&manifest, &[], rootfs.path(), &["true"]);
        let get = |name: &str| {
            plan.env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("GIT_CONFIG_KEY_2"), Some("safe.directory".into()));
        assert_eq!(get("GIT_CONFIG_VALUE_3"), Some("/w/sub".into()));
        assert_eq!(get("GIT_CONFIG_COUNT"), Some("4".into()));
        assert_eq!(get("SECRET"), None);
        assert_eq!(get("ABSENT"), None);
    }

    #[test]
    fn commands_are_looked_up_as_execvp_will() {
        let rootfs = rootfs();
        let m = manifest();
        let lookup = |command: &[&str]| lookup_command(&make(&m, &[], rootfs.path(), command));
        assert_eq!(
            lookup(&["bash"]),
            CommandLookup::Found(Some("/usr/bin/bash".into()))
        );
        assert_eq!(
            lookup(&["/bin/bash"]),
            CommandLookup::Found(Some("/bin/bash".into()))
        );
        assert_eq!(lookup(&["git"]), CommandLookup::NotFound);
        assert_eq!(
            lookup(&["data"]),
            CommandLookup::NotExecutable("/usr/local/bin/data".into()).or_path("/usr/bin/data")
        );
        // /proc is not looked into: bwrap will tell.
        assert_eq!(lookup(&["/proc/self/exe"]), CommandLookup::Found(None));
        // No command: bash, because the rootfs has it.
        assert_eq!(
            make(&m, &[], rootfs.path(), &[]).command,
            vec![OsString::from("bash")]
        );
    }

    fn mount(kind: MountKind, source: Option<&str>, target: &str) -> Mount {
        Mount {
            kind,
            source: source.map(PathBuf::from),
            target: target.into(),
            optional: false,
        }
    }

    #[test]
    fn a_split_is_remounted_before_a_later_mount_at_or_above_it() {
        let rootfs = rootfs();
        std::fs::create_dir_all(rootfs.path().join("usr/share/doc")).unwrap();
        let m = manifest();
        // The split of /usr/share/doc made for the first mount must be remounted read-only
        // before the tmpfs hides it, or bwrap fails on a path that no longer exists.
        let mounts = vec![
            mount(MountKind::RoBind, Some("/data"), "/usr/share/doc/x/y"),
            mount(MountKind::Tmpfs, None, "/usr/share"),
        ];
        let args = ops(&make(&m, &mounts, rootfs.path(), &["true"])).join(" ");
        assert!(
            args.contains(
                "--ro-bind /data /usr/share/doc/x/y --remount-ro /usr/share/doc --tmpfs /usr/share"
            ),
            "{args}"
        );
        // A read-write mount at the split directory itself stays read-write.
        let mounts = vec![
            mount(MountKind::RoBind, Some("/data"), "/usr/share/doc/new"),
            mount(MountKind::Bind, Some("/host-doc"), "/usr/share/doc"),
        ];
        let args = ops(&make(&m, &mounts, rootfs.path(), &["true"])).join(" ");
        assert!(
            args.contains("--remount-ro /usr/share/doc --bind /host-doc /usr/share/doc"),
            "{args}"
        );
        assert_eq!(
            args.matches("--remount-ro /usr/share/doc").count(),
            1,
            "{args}"
        );
    }

    #[test]
    fn a_target_through_a_link_into_an_earlier_mount_splits_nothing() {
        let rootfs = rootfs();
        std::fs::create_dir_all(rootfs.path().join("tmp")).unwrap();
        symlink("/tmp/data", rootfs.path().join("data")).unwrap();
        let mounts = vec![mount(MountKind::Bind, Some("/host"), "/data")];
        let args = ops(&make(&manifest(), &mounts, rootfs.path(), &["true"])).join(" ");
        assert!(args.contains("--bind /host /tmp/data"), "{args}");
        assert!(
            !args.contains("--remount-ro /tmp"),
            "the private /tmp stays writable: {args}"
        );
    }

    #[test]
    fn a_writable_bind_that_holds_the_store_or_lies_in_it_is_refused() {
        let rootfs = rootfs();
        // The workspace holds it, also when PAUDE_HOME is named through a link to it.
        for paude_home in ["/w/.paude", "/home/link/.paude"] {
            let error = make_in(&manifest(), &[], rootfs.path(), &["true"], "/w", paude_home)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("the workspace would make /w writable"),
                "{error}"
            );
            assert!(error.contains("paude's store /w/.paude"), "{error}");
        }
        // A user's read-write bind holds it.
        let mounts = vec![mount(MountKind::Bind, Some("/home/u"), "/mnt/home")];
        let error = make_in(
            &manifest(),
            &mounts,
            rootfs.path(),
            &["true"],
            "/w",
            "/home/u/.paude",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("mounts[0].target"), "{error}");
        // A bind of a directory inside it.
        let mounts = vec![mount(
            MountKind::Bind,
            Some("/home/u/.paude/venv"),
            "/mnt/v",
        )];
        assert!(
            make_in(
                &manifest(),
                &mounts,
                rootfs.path(),
                &["true"],
                "/w",
                "/home/u/.paude"
            )
            .is_err()
        );
        // Read-only, or a workspace's own kept state, is allowed.
        let mounts = vec![
            mount(MountKind::RoBind, Some("/home/u"), "/mnt/home"),
            mount(
                MountKind::Bind,
                Some("/home/u/.paude/state/x/home"),
                "/mnt/h",
            ),
        ];
        assert!(
            make_in(
                &manifest(),
                &mounts,
                rootfs.path(),
                &["true"],
                "/w",
                "/home/u/.paude"
            )
            .is_ok()
        );
    }

    #[test]
    fn a_mount_point_bwrap_would_make_on_the_host_is_refused() {
        let rootfs = rootfs();
        let mounts = vec![mount(MountKind::Tmpfs, None, "/w/missing-dir")];
        let error =
            make_in(&manifest(), &mounts, rootfs.path(), &["true"], "/w", "/p").unwrap_err();
        assert!(
            error
                .0
                .starts_with("mounts[0].target /w/missing-dir: it does not exist in /w"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_git_config_count_is_an_error() {
        let rootfs = rootfs();
        for bad in ["x", " 2", "4294967295"] {
            let mut m = manifest();
            m.env_set.insert("GIT_CONFIG_COUNT".into(), bad.into());
            let error = make_in(&m, &[], rootfs.path(), &["true"], "/w", "/p").unwrap_err();
            assert!(error.0.contains("GIT_CONFIG_COUNT"), "{error}");
        }
    }

    #[test]
    fn starting_inside_a_shadowed_venv_starts_in_the_venv() {
        let rootfs = rootfs();
        let plan = make_in(
            &manifest(),
            &[],
            rootfs.path(),
            &["true"],
            "/w/.venv/bin",
            "/p",
        )
        .unwrap();
        assert_eq!(plan.chdir, PathBuf::from("/w/.venv"));
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    }

    impl CommandLookup {
        /// The first PATH entry holding a non-executable `data` is /usr/bin.
        fn or_path(self, path: &str) -> CommandLookup {
            match self {
                CommandLookup::NotExecutable(_) => CommandLookup::NotExecutable(path.into()),
                other => other,
            }
        }
    }

    #[test]
    fn no_shell_is_a_clear_error() {
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(rootfs.path().join("usr")).unwrap();
        let manifest = manifest();
        let venvs = Vec::new();
        let input = PlanInput {
            manifest: &manifest,
            mounts: &[],
            paude_home: Path::new("/home/u/.paude"),
            rootfs: rootfs.path(),
            library_dirs: &[],
            workspace: Path::new("/w"),
            cwd: Path::new("/w"),
            venvs: &venvs,
            venv_state: None,
            git: &[],
            nested_repositories: &[PathBuf::from("/w/sub")],
            protected: &[],
            host_env: &[],
            host_has: &|_: &Path| true,
            real_path: &|path: &Path| Some(path.to_path_buf()),
            stdin_is_terminal: true,
            disable_userns: true,
            home: None,
            user: None,
            git_identity: &[],
            identity: None,
            resolv_conf: None,
            slirp4netns: Some(Path::new("/usr/bin/slirp4netns")),
            command: &[],
        };
        let error = plan(&input).unwrap_err().to_string();
        assert!(error.contains("no shell"), "{error}");
    }
}
