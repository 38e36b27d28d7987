//! The store: content-addressed rootfs trees under `$PAUDE_HOME/venv`.
//!
//! ```text
//! $PAUDE_HOME/venv/<key>/rootfs/     the tree; read-only once published
//! $PAUDE_HOME/venv/<key>/meta.json   what it was built from
//! $PAUDE_HOME/venv/<key>/last-used   mtime = last launch
//! $PAUDE_HOME/venv/<key>.lock        flock: exclusive to build or delete
//! $PAUDE_HOME/venv/.tmp-<key>-*      under construction
//! ```
//!
//! Invariants: a tree is built in a `.tmp-` directory beside its final place and renamed into
//! place only when complete, so a `venv/<key>` directory is always whole and a crash leaves at
//! most a `.tmp-` directory that nothing trusts. Builds of one key are serialized by an
//! exclusive lock on `<key>.lock`; the second builder finds the tree published and uses it.
//! A published tree is never modified.

pub mod export;
pub mod key;

use crate::manifest::FsEntry;
use crate::packages::{Closure, ExportPlan, PackageId};
use export::ExportStats;
pub use key::VenvKey;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Version of `meta.json`.
const META_FORMAT: u32 = 1;

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
    /// Whether this call built it (false: it was in the cache).
    pub built: bool,
}

/// What a build needs besides the key.
pub struct BuildInput<'a> {
    pub provider: &'a str,
    pub requested: &'a [String],
    pub closure: &'a Closure,
    pub plan: &'a ExportPlan,
    pub source_root: &'a Path,
    pub fs_entries: &'a [FsEntry],
}

impl Store {
    /// The store at `home` (nothing is created until something is built).
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

    /// The published tree of `key`, if there is one.
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

    /// Returns the published tree of `key`, building it first if needed. The build runs at
    /// most once, under the key's exclusive lock, only when no tree is published; `progress`
    /// receives status lines for stderr. A failed build leaves the store as it found it.
    pub fn ensure(
        &self,
        key: &VenvKey,
        input: &BuildInput<'_>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Rootfs, StoreError> {
        if let Some(found) = self.lookup(key) {
            return Ok(found);
        }
        let venv_root = self.venv_root();
        // What this call creates, it removes again if the build fails.
        let created: Vec<PathBuf> = [self.home.clone(), venv_root.clone()]
            .into_iter()
            .filter(|dir| dir.symlink_metadata().is_err())
            .collect();
        // 0700: the cache holds fsEntries' contents, which may be private.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&venv_root)
            .map_err(|source| StoreError::Unusable {
                path: venv_root.clone(),
                source,
            })?;
        let lock_path = self.lock_path(key);
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| StoreError::Unusable {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                progress(&format!(
                    "waiting for another paude that is building environment {key}"
                ));
                lock.lock().map_err(io_error("locking", &lock_path))?;
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(StoreError::Io {
                    action: "locking",
                    path: lock_path,
                    source: error,
                });
            }
        }
        // Someone else may have published it while we waited.
        if let Some(found) = self.lookup(key) {
            return Ok(found);
        }
        progress(&format!(
            "building environment {key} from {} packages ({} requested)",
            input.closure.packages.len(),
            input.requested.len()
        ));
        let started = std::time::Instant::now();
        let tmp = venv_root.join(format!(".tmp-{key}-{}", std::process::id()));
        // A leftover of our own pid (a crashed earlier process with a recycled pid) is garbage.
        remove_tree(&tmp).ok();
        let stats = match self.build(key, input, &tmp) {
            Ok(stats) => stats,
            Err(error) => {
                remove_tree(&tmp).ok();
                // Unlinking a lock file others may be waiting on can, at worst, let two
                // processes build the same key at once; publishing copes with that below.
                std::fs::remove_file(&lock_path).ok();
                for dir in created.iter().rev() {
                    std::fs::remove_dir(dir).ok();
                }
                return Err(error);
            }
        };
        let dir = self.venv_dir(key);
        if let Err(error) = std::fs::rename(&tmp, &dir) {
            remove_tree(&tmp).ok();
            // Published by another builder in the meantime: theirs is as good as ours.
            if let Some(found) = self.lookup(key) {
                return Ok(found);
            }
            return Err(StoreError::Io {
                action: "publishing",
                path: dir,
                source: error,
            });
        }
        progress(&format!(
            "built environment {key}: {} packages, {} files, {} in {:.1}s",
            input.closure.packages.len(),
            stats.files,
            human_bytes(stats.bytes),
            started.elapsed().as_secs_f64()
        ));
        drop(lock);
        let path = dir.join("rootfs");
        Ok(Rootfs {
            key: key.clone(),
            dir,
            path,
            built: true,
        })
    }

    fn build(
        &self,
        key: &VenvKey,
        input: &BuildInput<'_>,
        tmp: &Path,
    ) -> Result<ExportStats, StoreError> {
        let rootfs = tmp.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(io_error("creating", &rootfs))?;
        let stats = export::export(input.plan, input.source_root, input.fs_entries, &rootfs)?;
        let meta = Meta {
            format: META_FORMAT,
            key: key.to_string(),
            created: now_seconds(),
            provider: input.provider.to_string(),
            requested: input.requested.to_vec(),
            closure: input.closure.packages.clone(),
            fs_entries: fs_entries_json(input.fs_entries),
            stats: stats.clone(),
        };
        let meta_path = tmp.join("meta.json");
        let text = serde_json::to_string_pretty(&meta).map_err(|e| StoreError::Meta {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&meta_path, text + "\n").map_err(io_error("writing", &meta_path))?;
        let last_used = tmp.join("last-used");
        std::fs::write(&last_used, b"").map_err(io_error("writing", &last_used))?;
        Ok(stats)
    }

    /// Reads `venv/<key>/meta.json`.
    pub fn meta(&self, rootfs: &Rootfs) -> Result<Meta, StoreError> {
        let path = rootfs.dir.join("meta.json");
        let text = std::fs::read_to_string(&path).map_err(io_error("reading", &path))?;
        serde_json::from_str(&text).map_err(|e| StoreError::Meta {
            path,
            message: e.to_string(),
        })
    }

    /// Records a launch: sets the mtime of `venv/<key>/last-used` to now.
    pub fn touch(&self, rootfs: &Rootfs) -> Result<(), StoreError> {
        let path = rootfs.dir.join("last-used");
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

/// Removes a tree that may hold read-only directories, never following links.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(path);
            std::fs::remove_dir_all(path)
        }
    }
}

/// Gives the owner write and search permission on every directory below `path` (not through
/// links), so that a tree with read-only directories can be removed.
fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o700)).ok();
    }
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

fn fs_entries_json(entries: &[FsEntry]) -> serde_json::Value {
    use serde_json::json;
    entries
        .iter()
        .map(|entry| match entry {
            FsEntry::Dir { path, mode } => json!({"type": "dir", "path": path, "mode": format!("{mode:04o}")}),
            FsEntry::File { path, mode, contents } => {
                json!({"type": "file", "path": path, "mode": format!("{mode:04o}"), "contents": contents})
            }
            FsEntry::Symlink { path, target } => json!({"type": "symlink", "path": path, "target": target}),
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
