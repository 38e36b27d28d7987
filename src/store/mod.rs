//! The store: content-addressed rootfs trees under `$PAUDE_HOME/venv`.
//!
//! ```text
//! $PAUDE_HOME/venv/<key>/rootfs/      the tree; read-only once published
//! $PAUDE_HOME/venv/<key>/refs/        links to the package-store entries it is made of
//! $PAUDE_HOME/venv/<key>/meta.json    what it was built from
//! $PAUDE_HOME/venv/<key>/library-dirs the tree's library directories, one a line: what a
//!                                     launch reads of meta.json, without the rest of it
//! $PAUDE_HOME/venv/<key>/last-used    mtime = last launch; cleanup ages by it
//! $PAUDE_HOME/venv/<key>.lock         flock: shared while used, exclusive to build or delete
//! $PAUDE_HOME/venv/.tmp-<key>-<pid>   a build in progress (or the leftover of a dead one)
//! $PAUDE_HOME/venv/.del-<key>-<pid>   a removal in progress (or the leftover of a dead one)
//! $PAUDE_HOME/venv/.cleanup.lock      flock: one cleanup at a time
//! $PAUDE_HOME/pkg/                    the package store ([`packages`])
//! $PAUDE_HOME/cache/                  launch caches (`launch::cache`)
//! ```
//!
//! Invariants:
//!
//! - A tree is built in a `.tmp-` directory beside its final place, under the key's exclusive
//!   lock, and renamed into place only when complete: a `venv/<key>` directory is always whole,
//!   and a build killed at any instant leaves at most a `.tmp-` directory that nothing trusts.
//!   The next build of the key removes it; so does `paude cleanup`, which can tell a dead build
//!   from a running one because a running build holds the key's lock.
//! - A launch holds the key's lock shared from before it looks the tree up until its sandbox
//!   ends ([`Lease`]), so a tree is never removed under a sandbox, even though paude itself has
//!   become bwrap by then.
//! - Removal takes the key's lock exclusively, renames `venv/<key>` to a `.del-` name, unlinks
//!   the lock file and only then deletes: a launch either got the tree before, or finds it gone
//!   and builds a fresh one; it never sees a half-deleted tree.
//! - A published tree is never modified.

pub mod export;
pub mod key;
pub mod lock;
pub mod packages;
pub mod prune;
pub mod tree;

use crate::manifest::FsEntry;
use crate::packages::{Closure, ExportPlan, PackageError, PackageId};
use export::ExportStats;
pub use key::VenvKey;
use lock::KeyLock;
use packages::PackageStore;
pub use packages::Report;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The file of a tree's library directories (see the module documentation).
const LIBRARY_DIRS: &str = "library-dirs";

/// Version of `meta.json`.
const META_FORMAT: u32 = 1;

/// How many replaced lock files a launch follows before it gives up.
const MAX_LOCK_TURNS: u32 = 1000;

/// Errors of the store; each names the path it is about.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot use {path} for paude's cache; set PAUDE_HOME to a directory this user can write"
    )]
    Unusable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("building the environment")]
    Export(#[from] export::ExportError),
    #[error(transparent)]
    Packages(#[from] PackageError),
    #[error("reading {path}: {message}")]
    Meta { path: PathBuf, message: String },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What a tree was built from and what it holds: `venv/<key>/meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    pub format: u32,
    pub key: String,
    /// Seconds since the epoch when the tree was published.
    pub created: u64,
    /// The package provider that resolved the closure ("dpkg").
    pub provider: String,
    /// The packages the manifest asked for.
    pub requested: Vec<String>,
    /// The whole closure.
    pub closure: Vec<PackageId>,
    /// The manifest's fsEntries, as JSON.
    pub fs_entries: serde_json::Value,
    pub stats: ExportStats,
}

/// What a launch reads of a tree's [`ExportStats`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct TreeFacts {
    /// The tree's library directories: the sandbox's default `LD_LIBRARY_PATH`.
    pub library_dirs: Vec<String>,
    /// Files of the closure this user could not read, left out of the tree.
    pub unreadable: Vec<String>,
}

/// The store rooted at `$PAUDE_HOME`.
#[derive(Debug, Clone)]
pub struct Store {
    home: PathBuf,
}

/// A published tree, ready to be mounted.
#[derive(Debug, Clone)]
pub struct Rootfs {
    pub key: VenvKey,
    /// `venv/<key>`.
    pub dir: PathBuf,
    /// `venv/<key>/rootfs`.
    pub path: PathBuf,
    /// Whether this launch built it (false: it was in the cache).
    pub built: bool,
}

/// A tree and the shared lock that keeps it: while the lock is held (by paude, then by the
/// holder process while the sandbox runs), no cleanup removes the tree.
#[derive(Debug)]
pub struct Lease {
    pub rootfs: Rootfs,
    lock: KeyLock,
}

impl Lease {
    /// The locked descriptor, to hand to the process that holds it while the sandbox runs.
    pub fn lock_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.lock.fd()
    }
}

/// What a build records besides the tree.
pub struct BuildSpec<'a> {
    pub provider: &'a str,
    pub requested: &'a [String],
    pub source_root: &'a Path,
    pub fs_entries: &'a [FsEntry],
}

/// What a tree is built from, worked out only when a build is needed: the closure whose
/// key is being built, and its export plan.
pub struct BuildInput {
    pub closure: Closure,
    pub plan: ExportPlan,
}

impl Store {
    /// The store at `home` (nothing is created until something is used).
    pub fn new(home: PathBuf) -> Store {
        Store { home }
    }

    /// `$PAUDE_HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `$PAUDE_HOME/venv`.
    pub fn venv_root(&self) -> PathBuf {
        self.home.join("venv")
    }

    /// `$PAUDE_HOME/venv/<key>`.
    pub fn venv_dir(&self, key: &VenvKey) -> PathBuf {
        self.venv_root().join(key.as_str())
    }

    /// `$PAUDE_HOME/venv/<key>.lock`.
    pub fn lock_path(&self, key: &VenvKey) -> PathBuf {
        self.venv_root().join(format!("{key}.lock"))
    }

    /// The published tree of `key`, if there is one. Without the key's lock, the answer may
    /// be stale by the time it is used; [`Store::acquire`] asks under the lock.
    pub fn lookup(&self, key: &VenvKey) -> Option<Rootfs> {
        let dir = self.venv_dir(key);
        let path = dir.join("rootfs");
        path.is_dir().then(|| Rootfs {
            key: key.clone(),
            dir,
            path,
            built: false,
        })
    }

    /// Returns the published tree of `key` with its shared lock held, building the tree
    /// first when there is none. The build runs at most once at a time per key, under the
    /// key's exclusive lock; `prepare` is called only then. `report` receives status
    /// lines for stderr. A failed build leaves the store as it found it.
    pub fn acquire(
        &self,
        key: &VenvKey,
        spec: &BuildSpec<'_>,
        prepare: &mut dyn FnMut() -> Result<BuildInput, PackageError>,
        report: &mut dyn Report,
    ) -> Result<Lease, StoreError> {
        let venv_root = self.venv_root();
        // What this call creates, it removes again if the build fails (when still empty).
        let created: Vec<PathBuf> = [self.home.clone(), venv_root.clone()]
            .into_iter()
            .filter(|dir| dir.symlink_metadata().is_err())
            .collect();
        let lock_path = self.lock_path(key);
        let mut built = false;
        let mut turns = 0;
        loop {
            // Each turn follows a lock file that an exclusive holder unlinked (a removal, a
            // failed build); so many in a row mean something else is wrong.
            turns += 1;
            if turns > MAX_LOCK_TURNS {
                return Err(StoreError::Io {
                    action: "locking",
                    path: lock_path,
                    source: io::Error::other(format!(
                        "the lock file was replaced {MAX_LOCK_TURNS} times in a row; \
                         is another program removing files in the store?"
                    )),
                });
            }
            let lock = self.open_lock(&lock_path)?;
            lock.shared(&mut || {
                report.line(&format!(
                    "waiting for environment {key}: another paude is building or removing it"
                ))
            })
            .map_err(io_error("locking", &lock_path))?;
            if !lock
                .is_current()
                .map_err(io_error("checking", &lock_path))?
            {
                continue;
            }
            if let Some(rootfs) = self.lookup(key) {
                return Ok(Lease {
                    rootfs: Rootfs { built, ..rootfs },
                    lock,
                });
            }
            // Nothing published: become the builder, or wait for the one there is.
            lock.unlock().map_err(io_error("unlocking", &lock_path))?;
            lock.exclusive(&mut || {
                report.line(&format!(
                    "waiting for another paude that is building environment {key}"
                ))
            })
            .map_err(io_error("locking", &lock_path))?;
            if !lock
                .is_current()
                .map_err(io_error("checking", &lock_path))?
            {
                continue;
            }
            if self.lookup(key).is_none() {
                if let Err(error) = self.build_locked(key, spec, prepare, report) {
                    // Waiters see the lock file gone and start over (and fail the same way,
                    // each with its own message).
                    lock.unlink().ok();
                    for dir in created.iter().rev() {
                        std::fs::remove_dir(dir).ok();
                    }
                    return Err(error);
                }
                built = true;
            }
            // Downgrade to shared and look again. Linux converts a flock in one step under the
            // inode's lock, so no cleanup can slip in between; flock(2) does not promise it,
            // so the tree is looked up again anyway (and rebuilt if a cleanup did take it).
            lock.shared(&mut || {})
                .map_err(io_error("locking", &lock_path))?;
            if lock
                .is_current()
                .map_err(io_error("checking", &lock_path))?
                && let Some(rootfs) = self.lookup(key)
            {
                return Ok(Lease {
                    rootfs: Rootfs { built, ..rootfs },
                    lock,
                });
            }
        }
    }

    /// Opens (creating) a lock file under `venv/`, creating `venv/` (mode 0700) when it is
    /// missing, also when a failed build of another launch removed it a moment ago.
    fn open_lock(&self, lock_path: &Path) -> Result<KeyLock, StoreError> {
        let venv_root = self.venv_root();
        let mut created_root = false;
        loop {
            match KeyLock::open(lock_path, true) {
                Ok(Some(lock)) => return Ok(lock),
                Err(error) if error.kind() == io::ErrorKind::NotFound && !created_root => {
                    private_dir(&venv_root)?;
                    created_root = true;
                }
                Err(error)
                    if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) =>
                {
                    return Err(StoreError::Io {
                        action: "opening",
                        path: lock_path.to_path_buf(),
                        source: io::Error::other(
                            "it is a symbolic link, and paude's lock files are plain files; remove it",
                        ),
                    });
                }
                Err(source) if lock_path.symlink_metadata().is_ok() => {
                    return Err(StoreError::Io {
                        action: "opening the lock file",
                        path: lock_path.to_path_buf(),
                        source,
                    });
                }
                Err(source) => {
                    return Err(StoreError::Unusable {
                        path: venv_root,
                        source,
                    });
                }
                // Not with `create`; kept total rather than trusted.
                Ok(None) => {
                    return Err(StoreError::Unusable {
                        path: venv_root,
                        source: io::ErrorKind::NotFound.into(),
                    });
                }
            }
        }
    }

    /// Builds and publishes `key`; the caller holds the key's exclusive lock.
    fn build_locked(
        &self,
        key: &VenvKey,
        spec: &BuildSpec<'_>,
        prepare: &mut dyn FnMut() -> Result<BuildInput, PackageError>,
        report: &mut dyn Report,
    ) -> Result<(), StoreError> {
        let venv_root = self.venv_root();
        // Under the exclusive lock, any other build directory of this key is a dead build's,
        // and a `venv/<key>` without a tree is not a published one (it cannot be made by
        // paude; remove it rather than fail to publish over it).
        for leftover in prune::build_leftovers(&venv_root, key) {
            tree::remove(&leftover).map_err(io_error("removing", &leftover))?;
        }
        let dir = self.venv_dir(key);
        if dir.symlink_metadata().is_ok() {
            tree::remove(&dir).map_err(io_error("removing the incomplete", &dir))?;
        }
        let input = prepare()?;
        let started = std::time::Instant::now();
        let tmp = venv_root.join(format!(
            "{}{key}-{}",
            prune::BUILD_PREFIX,
            std::process::id()
        ));
        // The package store is held shared from before its entries are looked up until the
        // new tree holds its references to them.
        let packages = PackageStore::new(&self.home);
        let store_lock = packages.lock()?;
        store_lock
            .shared(&mut || {
                report.line("waiting for paude cleanup to finish with the package store")
            })
            .map_err(io_error("locking", store_lock.path()))?;
        let built = self.build(key, spec, &input, &packages, &tmp, report);
        store_lock.unlock().ok();
        let (stats, unpacked) = match built {
            Ok(built) => built,
            Err(error) => {
                tree::remove(&tmp).ok();
                return Err(error);
            }
        };
        if let Err(error) = std::fs::rename(&tmp, &dir) {
            tree::remove(&tmp).ok();
            return Err(StoreError::Io {
                action: "publishing",
                path: dir,
                source: error,
            });
        }
        let count = input.closure.packages.len();
        report.line(&format!(
            "built environment {key}: {} ({}), {} files, {} in {:.1}s",
            crate::text::counted(count as u64, "package"),
            match unpacked {
                0 => "all from the package store".to_string(),
                n if n == count => "all unpacked now".to_string(),
                n => format!("{n} unpacked now, {} from the package store", count - n),
            },
            stats.files,
            human_bytes(stats.bytes),
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Builds the tree in `tmp`: the closure's packages from the package store (unpacked
    /// first where missing), then what the environment adds. Returns the tree's statistics
    /// and how many packages were unpacked.
    fn build(
        &self,
        key: &VenvKey,
        spec: &BuildSpec<'_>,
        input: &BuildInput,
        packages: &PackageStore,
        tmp: &Path,
        report: &mut dyn Report,
    ) -> Result<(ExportStats, usize), StoreError> {
        let BuildInput { closure, plan } = input;
        let mut wanted: Vec<packages::Wanted<'_>> = closure
            .packages
            .iter()
            .map(|id| packages::Wanted {
                id,
                paths: Vec::new(),
            })
            .collect();
        for entry in &plan.entries {
            if let Some(package) = wanted.get_mut(entry.package) {
                package.paths.push(entry.path.clone());
            }
        }
        let entries = packages.ensure(&wanted, spec.source_root, report)?;
        // References first: from here on, the entries count this tree as a user.
        let refs = tmp.join(packages::REFS);
        std::fs::create_dir_all(&refs).map_err(io_error("creating", &refs))?;
        for entry in &entries {
            let link = refs.join(&entry.name);
            std::fs::hard_link(entry.dir.join(packages::REF), &link)
                .map_err(io_error("linking", &link))?;
        }
        let rootfs = tmp.join("rootfs");
        std::fs::create_dir(&rootfs).map_err(io_error("creating", &rootfs))?;
        let trees: Vec<PathBuf> = entries.iter().map(packages::Entry::tree).collect();
        let mut stats = export::assemble(
            &trees,
            spec.source_root,
            &plan.alternatives,
            spec.fs_entries,
            &rootfs,
        )?;
        for entry in &entries {
            stats.bytes += entry.stats.bytes;
            stats.missing += entry.stats.missing;
            stats
                .unreadable
                .extend(entry.stats.unreadable.iter().cloned());
        }
        let meta = Meta {
            format: META_FORMAT,
            key: key.to_string(),
            created: now_seconds(),
            provider: spec.provider.to_string(),
            requested: spec.requested.to_vec(),
            closure: closure.packages.clone(),
            fs_entries: fs_entries_json(spec.fs_entries),
            stats: stats.clone(),
        };
        write_json(&tmp.join("meta.json"), &meta)?;
        let library_dirs = tmp.join(LIBRARY_DIRS);
        std::fs::write(&library_dirs, stats.library_dirs.join("\n"))
            .map_err(io_error("writing", &library_dirs))?;
        let last_used = tmp.join("last-used");
        std::fs::write(&last_used, b"").map_err(io_error("writing", &last_used))?;
        let unpacked = entries.iter().filter(|entry| entry.unpacked).count();
        Ok((stats, unpacked))
    }

    /// The tree's library directories, the sandbox's default `LD_LIBRARY_PATH`: from
    /// `library-dirs`, or from `meta.json` in a tree built before that file was.
    pub fn library_dirs(&self, rootfs: &Rootfs) -> Result<Vec<String>, StoreError> {
        let path = rootfs.dir.join(LIBRARY_DIRS);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().map(str::to_string).collect()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                Ok(self.tree_facts(rootfs)?.library_dirs)
            }
            Err(error) => Err(io_error("reading", &path)(error)),
        }
    }

    /// What a launch may need of `venv/<key>/meta.json`; the rest of it (the closure, above
    /// all) is skipped unread into values.
    pub fn tree_facts(&self, rootfs: &Rootfs) -> Result<TreeFacts, StoreError> {
        #[derive(serde::Deserialize)]
        struct Stats {
            stats: TreeFacts,
        }
        let path = rootfs.dir.join("meta.json");
        let stats: Option<Stats> = read_json(&path)?;
        match stats {
            Some(Stats { stats }) => Ok(stats),
            None => Err(io_error("reading", &path)(io::ErrorKind::NotFound.into())),
        }
    }

    /// The package store's entries a tree was built from, in its closure's order (the order
    /// in which the build linked them: an earlier package's file won), each with its package.
    /// The tree's lease keeps them: an entry is removed only when no tree refers to it.
    pub fn packages_of(
        &self,
        rootfs: &Rootfs,
    ) -> Result<Vec<(PackageId, packages::Entry)>, StoreError> {
        let meta = read_meta(&rootfs.dir)?;
        let refs_dir = rootfs.dir.join(packages::REFS);
        let mut names: Vec<String> = std::fs::read_dir(&refs_dir)
            .map_err(io_error("listing", &refs_dir))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        let store = PackageStore::new(&self.home);
        let mut found = Vec::with_capacity(meta.closure.len());
        for id in meta.closure {
            // Entry names are `<name>_<version>_<arch>-<hash>`, and none of the three holds `_`.
            let prefix = format!("{}_{}_{}-", id.name, id.version, id.arch);
            let entry = names
                .iter()
                .find(|name| name.starts_with(&prefix))
                .map(|name| store.present(name))
                .transpose()?
                .flatten()
                .ok_or_else(|| StoreError::Meta {
                    path: refs_dir.clone(),
                    message: format!(
                        "no package store entry of {} {} ({}) is referred to; remove the \
                         environment with `paude cleanup` and build it again",
                        id.name, id.version, id.arch
                    ),
                })?;
            found.push((id, entry));
        }
        Ok(found)
    }

    /// Records a launch: sets the mtime of `venv/<key>/last-used` to now (one system call;
    /// the file is made with the tree, and again here should it be gone).
    pub fn touch(&self, rootfs: &Rootfs) -> Result<(), StoreError> {
        use rustix::fs::{AtFlags, CWD, Timestamps, UTIME_NOW, UTIME_OMIT};
        let path = rootfs.dir.join("last-used");
        let now = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_NOW,
            },
        };
        if rustix::fs::utimensat(CWD, &path, &now, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Ok(());
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error("opening", &path))?;
        file.set_modified(SystemTime::now())
            .map_err(io_error("updating the time of", &path))
    }
}

impl Store {
    /// `$PAUDE_HOME/files/<hash>/<name>` holding `contents`: small files a launch binds or
    /// hands to bwrap (`/etc/passwd`, a seccomp filter), written once (content-addressed,
    /// renamed into place when complete) and reused by every launch that needs the same.
    pub fn small_file(&self, name: &str, contents: &[u8]) -> Result<PathBuf, StoreError> {
        let digest = short_hash(contents);
        let root = self.home.join("files");
        let dir = root.join(format!("{digest}-{name}"));
        let file = dir.join(name);
        if file.is_file() {
            return Ok(file);
        }
        private_dir(&root)?;
        let tmp = root.join(format!(".tmp-{digest}-{name}-{}", std::process::id()));
        tree::remove(&tmp).ok();
        let written =
            std::fs::create_dir(&tmp).and_then(|()| std::fs::write(tmp.join(name), contents));
        if let Err(error) = written {
            tree::remove(&tmp).ok();
            return Err(io_error("writing", &tmp)(error));
        }
        // Another launch may have published the same file meanwhile: it is the same.
        if std::fs::rename(&tmp, &dir).is_err() {
            tree::remove(&tmp).ok();
            if !file.is_file() {
                return Err(io_error("publishing", &dir)(io::ErrorKind::NotFound.into()));
            }
        }
        Ok(file)
    }
}

impl Store {
    /// `$PAUDE_HOME/state/<hash of the workspace path>/<kind>`, with the directories `dirs`
    /// (relative to it) in it: what a workspace's sandboxes keep from one run to the next
    /// (`venvs` for `venvPersist`, `home` for `home: "persist"`). Created mode 0700; never
    /// removed by paude, since it is the user's work.
    pub fn workspace_state(
        &self,
        workspace: &Path,
        kind: &str,
        dirs: &[&Path],
    ) -> Result<PathBuf, StoreError> {
        let state = self.state_of(workspace, kind);
        for dir in dirs {
            private_dir(&state.join(dir))?;
        }
        Ok(state)
    }

    /// Marks the workspace's `kind` of state used now (`<kind>.last-used` beside it), for
    /// `paude cleanup`.
    pub fn touch_state(&self, workspace: &Path, kind: &str) {
        let state = self.state_of(workspace, kind);
        if let Some(parent) = state.parent() {
            let mark = parent.join(format!("{kind}.last-used"));
            let touched = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&mark)
                .and_then(|file| file.set_modified(SystemTime::now()));
            touched.ok();
        }
    }

    /// `$PAUDE_HOME/state/<hash of workspace>/<kind>`, whether or not it exists.
    pub fn state_of(&self, workspace: &Path, kind: &str) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let digest = short_hash(workspace.as_os_str().as_bytes());
        self.home.join("state").join(digest).join(kind)
    }
}

/// A directory of one launch's own, `$PAUDE_HOME/launch/<pid>-<nanoseconds>`, locked
/// (flock, exclusive) for as long as its descriptor is open: the sandbox's copies of git's
/// files live there while it runs, and the holder removes it after. One whose lock is free
/// was left by a launch that did not finish (a `--dry-run`, a holder that was killed), and
/// `paude cleanup` removes it.
#[derive(Debug)]
pub struct LaunchDir {
    pub path: PathBuf,
    pub lock: std::fs::File,
    /// Whether it outlives this value: handed to the holder, or left for a printed line.
    kept: bool,
}

impl LaunchDir {
    /// Leaves the directory in place when this value goes.
    pub fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for LaunchDir {
    /// A launch that fails before its sandbox starts leaves nothing behind.
    fn drop(&mut self) {
        if !self.kept {
            tree::remove(&self.path).ok();
        }
    }
}

impl Store {
    /// `$PAUDE_HOME/launch`.
    pub fn launch_root(&self) -> PathBuf {
        self.home.join(LAUNCH)
    }

    /// Makes a new [`LaunchDir`].
    pub fn launch_dir(&self) -> Result<LaunchDir, StoreError> {
        let root = self.launch_root();
        private_dir(&root)?;
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let path = root.join(format!("{}-{}", std::process::id(), since.as_nanos()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io_error("creating", &path))?;
        let lock = std::fs::File::open(&path).map_err(io_error("opening", &path))?;
        lock.try_lock()
            .map_err(|error| io_error("locking", &path)(io::Error::other(error.to_string())))?;
        Ok(LaunchDir {
            path,
            lock,
            kept: false,
        })
    }
}

impl Store {
    /// Where the user's trust of `workspace`'s own manifest is kept (see `manifest::trust`).
    fn trust_path(&self, workspace: &Path) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let digest = short_hash(workspace.as_os_str().as_bytes());
        self.home.join("trust").join(format!("{digest}.json"))
    }

    /// The trust record of `workspace`, if the user trusted its manifest.
    pub fn trust_record(
        &self,
        workspace: &Path,
    ) -> Result<Option<crate::manifest::trust::Record>, StoreError> {
        let record: Option<crate::manifest::trust::Record> =
            read_json(&self.trust_path(workspace))?;
        // A record is for its workspace only (names are a short hash of the path).
        Ok(record.filter(|record| record.workspace == workspace))
    }

    /// Records the user's trust (replacing what was trusted before), or removes it.
    pub fn set_trust(
        &self,
        workspace: &Path,
        record: Option<&crate::manifest::trust::Record>,
    ) -> Result<(), StoreError> {
        let path = self.trust_path(workspace);
        match record {
            Some(record) => {
                if let Some(parent) = path.parent() {
                    private_dir(parent)?;
                }
                write_json(&path, record)
            }
            None => match std::fs::remove_file(&path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    Err(io_error("removing", &path)(error))
                }
                _ => Ok(()),
            },
        }
    }
}

/// Where launches keep what they need while their sandbox runs (see [`LaunchDir`]).
pub const LAUNCH: &str = "launch";

/// Creates `dir` and its missing parents mode 0700: the store holds fsEntries' contents and
/// the user's kept homes and venvs, which may be private.
pub(crate) fn private_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::Unusable {
            path: dir.to_path_buf(),
            source,
        })
}

/// The first 64 bits of the sha256 of `bytes`, in hex: names for small content-addressed
/// things (the venv key, which must be stable across versions, has its own encoding).
fn short_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    key::hex(&sha2::Sha256::digest(bytes)[..8])
}

/// Reads `<dir>/meta.json`.
pub fn read_meta(dir: &Path) -> Result<Meta, StoreError> {
    let path = dir.join("meta.json");
    read_json(&path)?.ok_or_else(|| io_error("reading", &path)(io::ErrorKind::NotFound.into()))
}

/// Reads and decodes a JSON file of the store (`meta.json` of a venv or a package-store
/// entry); `None` when it does not exist.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("reading", path)(error)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|error| StoreError::Meta {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
}

/// Writes `value` as a JSON file of the store.
fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|error| StoreError::Meta {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    text.push(b'\n');
    std::fs::write(path, text).map_err(io_error("writing", path))
}

fn fs_entries_json(entries: &[FsEntry]) -> serde_json::Value {
    use serde_json::json;
    entries
        .iter()
        .map(|entry| match entry {
            FsEntry::Dir { path, mode } => json!({"type": "dir", "path": path, "mode": format!("{mode:04o}")}),
            FsEntry::File { path, mode, contents, overrides } => {
                json!({"type": "file", "path": path, "mode": format!("{mode:04o}"), "contents": contents, "override": overrides})
            }
            FsEntry::Symlink { path, target, overrides } => json!({"type": "symlink", "path": path, "target": target, "override": overrides}),
        })
        .collect()
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `1.5 MiB`-style sizes for messages.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
