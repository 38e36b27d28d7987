//! What the store holds, and taking it apart safely: the edge under `paude list` and
//! `paude cleanup`.
//!
//! [`scan`] reads `venv/` once. Every decision to remove is taken again under the key's
//! exclusive lock, because a launch may use or rebuild a venv between the scan and the removal:
//!
//! - a venv whose lock cannot be taken is in use (a sandbox holds it shared) or being built or
//!   removed; it is kept;
//! - its last use is read under the lock, so a launch that ended a moment ago counts;
//! - removal renames `venv/<key>` to `.del-<key>-<pid>` and unlinks the lock file while still
//!   holding the lock, then deletes the renamed tree (see the module documentation of
//!   [`crate::store`]).
//!
//! Leftovers: `.tmp-<key>-<pid>` of a build whose key lock is free is a dead build's (a running
//! build holds the lock); `.del-` directories belong to cleanups, which run one at a time under
//! `venv/.cleanup.lock`, so another cleanup finding one knows its remover is dead.

use super::lock::{Attempt, KeyLock};
use super::tree::{self, TreeSize};
use super::{Meta, Store, StoreError, VenvKey, io_error, read_meta};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Prefix of a build's directory: `.tmp-<key>-<pid>`.
pub const BUILD_PREFIX: &str = ".tmp-";
/// Prefix of a removal's directory: `.del-<key>-<pid>`.
pub const REMOVAL_PREFIX: &str = ".del-";
/// The lock that keeps cleanups from running at the same time.
const CLEANUP_LOCK: &str = ".cleanup.lock";

/// One published venv, as the scan found it.
#[derive(Debug)]
pub struct VenvEntry {
    pub key: VenvKey,
    pub dir: PathBuf,
}

/// What kind of leftover a directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftoverKind {
    /// `.tmp-<key>-<pid>`: a build, running or dead.
    Build,
    /// `.del-<key>-<pid>`: a removal that did not finish.
    Removal,
}

impl LeftoverKind {
    /// How the JSON documents name it.
    pub fn name(self) -> &'static str {
        match self {
            LeftoverKind::Build => "build",
            LeftoverKind::Removal => "removal",
        }
    }
}

#[derive(Debug)]
pub struct Leftover {
    pub path: PathBuf,
    pub kind: LeftoverKind,
    /// The key it was for (when its name carries one).
    pub key: Option<VenvKey>,
}

/// The contents of `venv/`, sorted by key.
#[derive(Debug, Default)]
pub struct Scan {
    pub venvs: Vec<VenvEntry>,
    pub leftovers: Vec<Leftover>,
    /// Keys with a lock file and neither a venv nor a build.
    pub orphan_locks: Vec<VenvKey>,
}

/// Reads `venv/`; an absent store is an empty one.
pub fn scan(store: &Store) -> Result<Scan, StoreError> {
    let root = store.venv_root();
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Scan::default()),
        Err(source) => return Err(StoreError::Unusable { path: root, source }),
    };
    let mut scan = Scan::default();
    let mut locks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("reading", &root))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if let Some(key) = VenvKey::parse(name) {
            scan.venvs.push(VenvEntry { key, dir: path });
        } else if let Some(key) = name.strip_suffix(".lock").and_then(VenvKey::parse) {
            locks.push(key);
        } else if let Some(rest) = name.strip_prefix(BUILD_PREFIX) {
            scan.leftovers.push(Leftover {
                path,
                kind: LeftoverKind::Build,
                key: key_of(rest),
            });
        } else if let Some(rest) = name.strip_prefix(REMOVAL_PREFIX) {
            scan.leftovers.push(Leftover {
                path,
                kind: LeftoverKind::Removal,
                key: key_of(rest),
            });
        }
    }
    scan.venvs.sort_by(|a, b| a.key.cmp(&b.key));
    scan.leftovers.sort_by(|a, b| a.path.cmp(&b.path));
    scan.orphan_locks = locks
        .into_iter()
        .filter(|key| {
            !scan.venvs.iter().any(|v| &v.key == key)
                && !scan.leftovers.iter().any(|l| l.key.as_ref() == Some(key))
        })
        .collect();
    scan.orphan_locks.sort();
    Ok(scan)
}

/// The key in `<key>-<pid>`.
fn key_of(rest: &str) -> Option<VenvKey> {
    let (key, pid) = rest.rsplit_once('-')?;
    pid.parse::<u32>().ok()?;
    VenvKey::parse(key)
}

/// The build directories of `key` under `root` (`.tmp-<key>-<pid>`).
pub fn build_leftovers(root: &Path, key: &VenvKey) -> Vec<PathBuf> {
    let prefix = format!("{BUILD_PREFIX}{key}-");
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(&prefix))
        })
        .map(|entry| entry.path())
        .collect()
}

/// When the venv in `dir` was last used: the mtime of `last-used`, else of `meta.json`, else
/// of the directory itself.
pub fn last_used(dir: &Path) -> Option<SystemTime> {
    ["last-used", "meta.json", ""]
        .iter()
        .find_map(|name| std::fs::metadata(dir.join(name)).ok()?.modified().ok())
}

/// Everything `paude list` shows about one venv.
#[derive(Debug)]
pub struct VenvInfo {
    pub key: VenvKey,
    pub dir: PathBuf,
    pub meta: Result<Meta, String>,
    pub last_used: Option<SystemTime>,
    pub size: Result<TreeSize, String>,
    pub in_use: Result<bool, String>,
}

impl VenvInfo {
    /// What could not be read about it (its meta.json, its size, its lock).
    pub fn problems(&self) -> impl Iterator<Item = &str> {
        [
            self.meta.as_ref().err(),
            self.size.as_ref().err(),
            self.in_use.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
    }
}

/// Describes a venv the scan found.
pub fn info(store: &Store, venv: &VenvEntry) -> VenvInfo {
    VenvInfo {
        key: venv.key.clone(),
        dir: venv.dir.clone(),
        meta: read_meta(&venv.dir).map_err(|error| format!("{:#}", anyhow::Error::from(error))),
        last_used: last_used(&venv.dir),
        size: tree::size(&venv.dir).map_err(|error| format!("{}: {error}", venv.dir.display())),
        in_use: in_use(store, &venv.key)
            .map_err(|error| format!("{}: {error}", store.lock_path(&venv.key).display())),
    }
}

/// The one figure of the store's size that `list` and `doctor` both give: each environment's
/// own files (those whose every link is in it; the rest are the package store's), the
/// leftovers of builds and removals, and the package store, so that a file linked into many
/// environments counts once. Sizes that could not be measured count nothing.
pub fn store_bytes(
    venvs: &[VenvInfo],
    leftovers: impl IntoIterator<Item = u64>,
    package_store: Option<u64>,
) -> u64 {
    venvs
        .iter()
        .filter_map(|venv| venv.size.as_ref().ok().map(|size| size.exclusive))
        .chain(leftovers)
        .chain(package_store)
        .sum()
}

/// Whether a sandbox (or a build or removal) holds the key's lock now.
pub fn in_use(store: &Store, key: &VenvKey) -> io::Result<bool> {
    held(&store.lock_path(key))
}

/// Whether the build or removal that made a leftover is still running: its key's lock, or
/// the cleanup lock, is held.
pub fn leftover_running(store: &Store, leftover: &Leftover) -> bool {
    let lock = match (leftover.kind, &leftover.key) {
        (LeftoverKind::Build, Some(key)) => store.lock_path(key),
        (LeftoverKind::Removal, _) => store.venv_root().join(CLEANUP_LOCK),
        (LeftoverKind::Build, None) => return false,
    };
    held(&lock).unwrap_or(false)
}

/// Whether someone holds the lock file at `path`: an exclusive attempt that is let go at once
/// (a missing file is held by nobody).
fn held(path: &Path) -> io::Result<bool> {
    let Some(lock) = KeyLock::open(path, false)? else {
        return Ok(false);
    };
    match lock.attempt(true)? {
        Attempt::Busy => Ok(true),
        Attempt::Locked => {
            lock.unlock()?;
            Ok(false)
        }
    }
}

/// An exclusive attempt on a lock file, without waiting.
enum Exclusive {
    /// Taken; `None` when there is no lock file and none was to be created (nobody holds it).
    Taken(Option<KeyLock>),
    /// Someone holds it.
    Busy,
    /// Taken, but the file was unlinked or replaced since it was opened: it guards nothing.
    Replaced,
}

/// Tries the lock file at `path` exclusively, creating it when `create` is set.
fn try_exclusive(path: &Path, create: bool) -> Result<Exclusive, StoreError> {
    let Some(lock) = KeyLock::open(path, create).map_err(io_error("opening", path))? else {
        return Ok(Exclusive::Taken(None));
    };
    if lock.attempt(true).map_err(io_error("locking", path))? == Attempt::Busy {
        return Ok(Exclusive::Busy);
    }
    if !lock.is_current().map_err(io_error("checking", path))? {
        return Ok(Exclusive::Replaced);
    }
    Ok(Exclusive::Taken(Some(lock)))
}

/// What happened to one venv in a cleanup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Removed (or, in a dry run, would be): what it held.
    Removed(TreeSize),
    /// A sandbox uses it, or a launch is building or removing it.
    InUse,
    /// Used more recently than the cut-off.
    Recent,
    /// It was gone when its lock was taken (another cleanup, or a failed build).
    Gone,
}

/// A verdict and the last use it was based on (read under the key's lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub last_used: Option<SystemTime>,
}

impl From<Verdict> for Outcome {
    fn from(verdict: Verdict) -> Outcome {
        Outcome {
            verdict,
            last_used: None,
        }
    }
}

/// What became of a leftover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftoverOutcome {
    /// Removed (in a dry run: would be), with what it held.
    Removed(TreeSize),
    /// Its build is still running.
    Running,
    /// Its key's lock file changed hands while cleanup looked; the next cleanup decides.
    Skipped,
}

/// The cleanup lock, held exclusively for the whole of a cleanup.
/// `Ok(None)`: there is no store, or this is a dry run and no cleanup ever ran (a dry run
/// creates nothing).
pub fn lock_cleanup(
    store: &Store,
    dry_run: bool,
    waiting: &mut dyn FnMut(),
) -> Result<Option<KeyLock>, StoreError> {
    let root = store.venv_root();
    if !root.is_dir() {
        return Ok(None);
    }
    let path = root.join(CLEANUP_LOCK);
    let Some(lock) = KeyLock::open(&path, !dry_run).map_err(io_error("opening", &path))? else {
        return Ok(None);
    };
    lock.exclusive(waiting)
        .map_err(io_error("locking", &path))?;
    Ok(Some(lock))
}

/// Removes the venv `key` unless it is in use or `keep` says so given its last use; in a dry
/// run, only says what would happen (measuring after letting go of the lock, so a launch is
/// never held up by a dry run). The caller holds the cleanup lock.
pub fn remove_venv(
    store: &Store,
    key: &VenvKey,
    keep: &dyn Fn(Option<SystemTime>) -> bool,
    dry_run: bool,
) -> Result<Outcome, StoreError> {
    // A dry run creates nothing: without a lock file, nobody holds the lock.
    let lock = match try_exclusive(&store.lock_path(key), !dry_run)? {
        Exclusive::Taken(lock) => lock,
        // Reported, not decided on: reading it without the lock is fine.
        Exclusive::Busy => {
            return Ok(Outcome {
                verdict: Verdict::InUse,
                last_used: last_used(&store.venv_dir(key)),
            });
        }
        Exclusive::Replaced => return Ok(Verdict::Gone.into()),
    };
    let dir = store.venv_dir(key);
    if dir.symlink_metadata().is_err() {
        if let Some(lock) = &lock
            && !dry_run
        {
            lock.unlink().ok();
        }
        return Ok(Verdict::Gone.into());
    }
    let used = last_used(&dir);
    let outcome = |verdict| Outcome {
        verdict,
        last_used: used,
    };
    if keep(used) {
        return Ok(outcome(Verdict::Recent));
    }
    if dry_run {
        drop(lock);
        let size = tree::size(&dir).map_err(io_error("measuring", &dir))?;
        return Ok(outcome(Verdict::Removed(size)));
    }
    let aside = store
        .venv_root()
        .join(format!("{REMOVAL_PREFIX}{key}-{}", std::process::id()));
    tree::remove(&aside).map_err(io_error("removing", &aside))?;
    std::fs::rename(&dir, &aside).map_err(io_error("moving aside", &dir))?;
    if let Some(lock) = lock {
        lock.unlink().map_err(io_error("removing", lock.path()))?;
    }
    let size = tree::remove(&aside).map_err(io_error("removing", &aside))?;
    Ok(outcome(Verdict::Removed(size)))
}

/// Removes a leftover directory unless its build is still running; in a dry run, only
/// measures it. The caller holds the cleanup lock.
pub fn remove_leftover(
    store: &Store,
    leftover: &Leftover,
    dry_run: bool,
) -> Result<LeftoverOutcome, StoreError> {
    let path = &leftover.path;
    let lock = match (leftover.kind, &leftover.key) {
        (LeftoverKind::Build, Some(key)) => match try_exclusive(&store.lock_path(key), !dry_run)? {
            Exclusive::Taken(lock) => lock,
            Exclusive::Busy => return Ok(LeftoverOutcome::Running),
            Exclusive::Replaced => return Ok(LeftoverOutcome::Skipped),
        },
        _ => None,
    };
    if dry_run {
        drop(lock);
        let size = tree::size(path).map_err(io_error("measuring", path))?;
        return Ok(LeftoverOutcome::Removed(size));
    }
    let size = tree::remove(path).map_err(io_error("removing", path))?;
    // A lock file whose key has neither a venv nor a build any more is clutter.
    if let (Some(lock), Some(key)) = (&lock, &leftover.key)
        && store.venv_dir(key).symlink_metadata().is_err()
        && build_leftovers(&store.venv_root(), key).is_empty()
    {
        lock.unlink().ok();
    }
    Ok(LeftoverOutcome::Removed(size))
}

/// Removes the lock file of a key with neither a venv nor a build, unless someone holds it.
pub fn remove_orphan_lock(store: &Store, key: &VenvKey) -> Result<bool, StoreError> {
    let lock_path = store.lock_path(key);
    let Exclusive::Taken(Some(lock)) = try_exclusive(&lock_path, false)? else {
        return Ok(false);
    };
    if store.venv_dir(key).symlink_metadata().is_ok()
        || !build_leftovers(&store.venv_root(), key).is_empty()
    {
        return Ok(false);
    }
    lock.unlink().map_err(io_error("removing", &lock_path))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("home"));
        std::fs::create_dir_all(store.venv_root()).unwrap();
        (dir, store)
    }

    fn publish(store: &Store, key: &VenvKey) {
        let dir = store.venv_dir(key);
        std::fs::create_dir_all(dir.join("rootfs/usr/bin")).unwrap();
        std::fs::write(dir.join("rootfs/usr/bin/tool"), vec![0u8; 8192]).unwrap();
        std::fs::write(dir.join("last-used"), "").unwrap();
    }

    fn key() -> VenvKey {
        VenvKey::parse(KEY).unwrap()
    }

    #[test]
    fn scan_sorts_venvs_leftovers_and_orphan_locks() {
        let (_dir, store) = store();
        let root = store.venv_root();
        publish(&store, &key());
        let other = VenvKey::parse(&"f".repeat(32)).unwrap();
        for name in [
            format!("{KEY}.lock"),
            format!("{other}.lock"),
            format!(".tmp-{KEY}-12"),
            format!(".del-{other}-7"),
            ".cleanup.lock".into(),
            "stray".into(),
        ] {
            std::fs::create_dir_all(root.join(&name)).unwrap();
        }
        let scan = scan(&store).unwrap();
        assert_eq!(scan.venvs.len(), 1);
        assert_eq!(scan.venvs[0].key, key());
        let kinds: Vec<_> = scan
            .leftovers
            .iter()
            .map(|l| (l.kind, l.key.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (LeftoverKind::Removal, Some(other.clone())),
                (LeftoverKind::Build, Some(key())),
            ]
        );
        // `other` has a removal leftover, so its lock is not an orphan yet.
        assert!(scan.orphan_locks.is_empty());
        assert!(
            super::scan(&Store::new(root.join("nowhere")))
                .unwrap()
                .venvs
                .is_empty()
        );
    }

    #[test]
    fn removal_keeps_what_is_in_use_or_recent_and_removes_the_rest() {
        let (_dir, store) = store();
        let key = key();
        publish(&store, &key);
        let user = KeyLock::open(&store.lock_path(&key), true)
            .unwrap()
            .unwrap();
        user.shared(&mut || {}).unwrap();
        assert!(in_use(&store, &key).unwrap());
        let old = |_: Option<SystemTime>| false;
        let recent = |_: Option<SystemTime>| true;
        let verdict = |keep: &dyn Fn(Option<SystemTime>) -> bool, dry_run: bool| {
            remove_venv(&store, &key, keep, dry_run).unwrap().verdict
        };
        assert_eq!(verdict(&old, false), Verdict::InUse);
        // Unlocked rather than dropped: a process another test thread is spawning may hold a
        // copy of the descriptor until its exec, and an unlock releases the lock for all.
        user.unlock().unwrap();
        assert!(!in_use(&store, &key).unwrap());
        assert_eq!(verdict(&recent, false), Verdict::Recent);
        let Verdict::Removed(would) = verdict(&old, true) else {
            panic!("dry run removes")
        };
        assert!(store.lookup(&key).is_some(), "a dry run changes nothing");
        let outcome = remove_venv(&store, &key, &old, false).unwrap();
        assert_eq!(outcome.verdict, Verdict::Removed(would));
        assert!(outcome.last_used.is_some());
        assert!(would.total >= 8192);
        assert!(store.lookup(&key).is_none());
        assert_eq!(std::fs::read_dir(store.venv_root()).unwrap().count(), 0);
        assert_eq!(verdict(&old, false), Verdict::Gone);
    }

    #[test]
    fn a_lock_file_opened_before_a_removal_is_no_longer_current_after_it() {
        let (_dir, store) = store();
        let key = key();
        publish(&store, &key);
        let waiter = KeyLock::open(&store.lock_path(&key), true)
            .unwrap()
            .unwrap();
        let old = |_: Option<SystemTime>| false;
        remove_venv(&store, &key, &old, false).unwrap();
        waiter.shared(&mut || {}).unwrap();
        assert!(!waiter.is_current().unwrap());
    }

    #[test]
    fn last_use_falls_back_to_meta_then_directory() {
        let (_dir, store) = store();
        let key = key();
        publish(&store, &key);
        let dir = store.venv_dir(&key);
        let past = SystemTime::now() - Duration::from_secs(40 * 86400);
        std::fs::File::options()
            .write(true)
            .open(dir.join("last-used"))
            .unwrap()
            .set_modified(past)
            .unwrap();
        assert_eq!(last_used(&dir), Some(past));
        std::fs::remove_file(dir.join("last-used")).unwrap();
        assert!(last_used(&dir).unwrap() > past);
    }

    #[test]
    fn dead_build_is_removed_and_a_running_one_kept() {
        let (_dir, store) = store();
        let key = key();
        let tmp = store.venv_root().join(format!(".tmp-{KEY}-99"));
        std::fs::create_dir_all(tmp.join("rootfs/etc")).unwrap();
        let leftover = Leftover {
            path: tmp.clone(),
            kind: LeftoverKind::Build,
            key: Some(key.clone()),
        };
        let builder = KeyLock::open(&store.lock_path(&key), true)
            .unwrap()
            .unwrap();
        builder.exclusive(&mut || {}).unwrap();
        assert_eq!(
            remove_leftover(&store, &leftover, false).unwrap(),
            LeftoverOutcome::Running
        );
        assert!(tmp.exists());
        builder.unlock().unwrap();
        let removed = |outcome| matches!(outcome, LeftoverOutcome::Removed(_));
        assert!(removed(remove_leftover(&store, &leftover, true).unwrap()));
        assert!(tmp.exists());
        assert!(removed(remove_leftover(&store, &leftover, false).unwrap()));
        assert!(!tmp.exists());
        assert!(
            !store.lock_path(&key).exists(),
            "the orphaned lock goes too"
        );
    }
}
