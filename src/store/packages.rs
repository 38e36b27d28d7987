//! The package store: one unpacked copy of each package, shared by every environment that
//! holds it.
//!
//! ```text
//! $PAUDE_HOME/pkg/<name>_<version>_<arch>-<hash>/tree/     the package's files, at their places
//! $PAUDE_HOME/pkg/<name>_<version>_<arch>-<hash>/meta.json what unpacking it counted
//! $PAUDE_HOME/pkg/<name>_<version>_<arch>-<hash>/ref       an empty file; see below
//! $PAUDE_HOME/pkg/.tmp-<entry>-<pid>-<n>                   an unpacking in progress (or dead)
//! $PAUDE_HOME/pkg/.del-<entry>-<pid>                       a removal in progress (or dead)
//! $PAUDE_HOME/pkg/.lock                                    flock: shared by builds, exclusive to prune
//! ```
//!
//! An environment's tree is assembled from these by hard links (`export::assemble`), so a
//! second environment sharing most packages costs a directory skeleton and a link per file.
//! The hash covers what the package contributes on this host besides its name, version and
//! architecture: the source root and the exact paths planned for it (diversions and dpkg's
//! `path-exclude` change them).
//!
//! Invariants:
//!
//! - An entry is unpacked in a `.tmp-` directory and renamed into place whole; two builds
//!   unpacking the same package race harmlessly (the second rename fails, its copy goes).
//! - Each environment holds a hard link to the `ref` file of every entry it was built from
//!   (`venv/<key>/refs/<entry>`), made before its first file is linked; so `ref`'s link count
//!   is one more than the number of environments (published, or being built) that use the
//!   entry, and an entry whose `ref` has one link is used by none.
//! - A build holds `pkg/.lock` shared from before it looks entries up until its environment
//!   holds its references; pruning holds it exclusively, so it never removes an entry a build
//!   is about to link, and every `.tmp-` directory it sees is dead.
//! - Published entries are never modified: environments share their inodes.

use super::export::{self, ExportStats};
use super::lock::KeyLock;
use super::{StoreError, io_error, private_dir, read_json, tree, write_json};
use crate::packages::PackageId;
use crate::rootpath;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Prefix of an unpacking in progress.
pub const UNPACK_PREFIX: &str = ".tmp-";
/// Prefix of a removal in progress.
pub const REMOVAL_PREFIX: &str = ".del-";
/// The name of the reference file of an entry, and of the directory of references in an
/// environment.
pub const REF: &str = "ref";
pub const REFS: &str = "refs";

/// One package to have in the store: its identity and the paths planned for it.
pub struct Wanted<'a> {
    pub id: &'a PackageId,
    pub paths: Vec<PathBuf>,
}

/// An entry of the store, present.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `pkg/<name>`.
    pub dir: PathBuf,
    pub name: String,
    /// Whether this build unpacked it (false: it was in the store).
    pub unpacked: bool,
    pub stats: ExportStats,
}

impl Entry {
    /// The unpacked files.
    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }
}

/// Where a build is, for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// What is being done, as the line says it: "unpacking packages".
    pub what: &'static str,
    pub packages_done: usize,
    pub packages_total: usize,
    pub bytes_done: u64,
    /// An estimate (sizes of the planned files); 0 when not measured.
    pub bytes_total: u64,
    pub elapsed: Duration,
}

impl Progress {
    /// The time left, extrapolated from the bytes copied so far, once there is enough to go by.
    pub fn remaining(&self) -> Option<Duration> {
        if self.bytes_total == 0 || self.bytes_done < self.bytes_total / 50 || self.bytes_done == 0
        {
            return None;
        }
        let left = self.bytes_total.saturating_sub(self.bytes_done) as f64;
        Some(self.elapsed.mul_f64(left / self.bytes_done as f64))
    }
}

/// What a build tells its user: lines for the log, and where it is while it unpacks.
pub trait Report {
    /// A line worth keeping (waiting for a lock, the summary of a build).
    fn line(&mut self, text: &str);
    /// Whether [`Report::progress`] is shown (a terminal): the sizes are measured only then.
    fn wants_progress(&self) -> bool {
        false
    }
    /// Where the build is; called a few times a second while packages are unpacked.
    fn progress(&mut self, _progress: &Progress) {}
}

/// The package store under `$PAUDE_HOME/pkg`.
#[derive(Debug, Clone)]
pub struct PackageStore {
    root: PathBuf,
}

impl PackageStore {
    pub fn new(paude_home: &Path) -> PackageStore {
        PackageStore {
            root: paude_home.join("pkg"),
        }
    }

    /// `$PAUDE_HOME/pkg`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entry name of a package with these planned paths, copied from `source_root`.
    pub fn entry_name(id: &PackageId, source_root: &Path, paths: &[PathBuf]) -> String {
        let mut encoder = super::key::Encoder::default();
        encoder.bytes(b"paude-package");
        encoder.u32(super::key::EXPORT_VERSION);
        encoder.bytes(rootpath::bytes(source_root));
        encoder.u64(paths.len() as u64);
        for path in paths {
            encoder.bytes(rootpath::bytes(path));
        }
        // Names and architectures are [a-z0-9.+-]; versions add `:` and `~`, which are fine
        // in a file name. A `/` cannot occur, but is replaced should a database have one.
        let clean = |text: &str| text.replace('/', "%2f");
        format!(
            "{}_{}_{}-{}",
            clean(&id.name),
            clean(&id.version),
            clean(&id.arch),
            encoder.hex(16)
        )
    }

    /// Opens (creating) `pkg/.lock`.
    pub fn lock(&self) -> Result<KeyLock, StoreError> {
        private_dir(&self.root)?;
        let path = self.root.join(".lock");
        match KeyLock::open(&path, true) {
            Ok(Some(lock)) => Ok(lock),
            Ok(None) => Err(io_error("opening", &path)(io::ErrorKind::NotFound.into())),
            Err(error) => Err(io_error("opening", &path)(error)),
        }
    }

    /// Makes sure every wanted package is unpacked, unpacking the missing ones in parallel
    /// over the cores; returns the entries in the order wanted. The caller holds the lock
    /// shared.
    pub fn ensure(
        &self,
        wanted: &[Wanted<'_>],
        source_root: &Path,
        report: &mut dyn Report,
    ) -> Result<Vec<Entry>, StoreError> {
        let started = Instant::now();
        let names: Vec<String> = wanted
            .iter()
            .map(|w| Self::entry_name(w.id, source_root, &w.paths))
            .collect();
        let mut entries: Vec<Option<Entry>> = names
            .iter()
            .map(|name| self.present(name))
            .collect::<Result<_, _>>()?;
        let todo: Vec<usize> = (0..wanted.len())
            .filter(|&index| entries[index].is_none())
            .collect();
        if !todo.is_empty() {
            let bytes_total = if report.wants_progress() {
                todo.iter()
                    .map(|&index| planned_bytes(source_root, &wanted[index].paths))
                    .sum()
            } else {
                0
            };
            for (index, entry) in self.unpack_all(
                wanted,
                &names,
                &todo,
                source_root,
                bytes_total,
                started,
                report,
            )? {
                entries[index] = Some(entry);
            }
        }
        Ok(entries.into_iter().flatten().collect())
    }

    /// The published entry `name`, if there is one.
    pub(super) fn present(&self, name: &str) -> Result<Option<Entry>, StoreError> {
        let dir = self.root.join(name);
        let Some(stats) = read_json::<ExportStats>(&dir.join("meta.json"))? else {
            return Ok(None);
        };
        Ok(Some(Entry {
            dir,
            name: name.to_string(),
            unpacked: false,
            stats,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn unpack_all(
        &self,
        wanted: &[Wanted<'_>],
        names: &[String],
        todo: &[usize],
        source_root: &Path,
        bytes_total: u64,
        started: Instant,
        report: &mut dyn Report,
    ) -> Result<Vec<(usize, Entry)>, StoreError> {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8)
            .min(todo.len());
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let copied = AtomicU64::new(0);
        // Each unpacked package with its index in `wanted`, in the order they finished.
        let results: Mutex<Vec<(usize, Result<Entry, StoreError>)>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for worker in 0..workers {
                let (next, done, failed, copied, results) =
                    (&next, &done, &failed, &copied, &results);
                scope.spawn(move || {
                    loop {
                        let slot = next.fetch_add(1, Ordering::Relaxed);
                        if slot >= todo.len() || failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let index = todo[slot];
                        let result = self.unpack_one(
                            &names[index],
                            &wanted[index].paths,
                            source_root,
                            worker,
                            copied,
                        );
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        if let Ok(mut results) = results.lock() {
                            results.push((index, result));
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            // On a terminal, this thread shows progress until the workers are through (or one
            // failed and the others finished what they had); else it just waits for them.
            if !report.wants_progress() {
                return;
            }
            loop {
                let finished = done.load(Ordering::Relaxed);
                report.progress(&Progress {
                    what: "unpacking packages",
                    packages_done: finished,
                    packages_total: todo.len(),
                    bytes_done: copied.load(Ordering::Relaxed),
                    bytes_total,
                    elapsed: started.elapsed(),
                });
                if finished >= todo.len() || failed.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // After a failure the workers stop taking packages: the first failure is reported.
        results
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .into_iter()
            .map(|(index, result)| result.map(|entry| (index, entry)))
            .collect()
    }

    /// Unpacks one package and publishes it; another build may have published it first.
    fn unpack_one(
        &self,
        name: &str,
        paths: &[PathBuf],
        source_root: &Path,
        worker: usize,
        copied: &AtomicU64,
    ) -> Result<Entry, StoreError> {
        let tmp = self.root.join(format!(
            "{UNPACK_PREFIX}{name}-{}-{worker}",
            std::process::id()
        ));
        tree::remove(&tmp).map_err(io_error("removing", &tmp))?;
        let result = (|| {
            let tree_dir = tmp.join("tree");
            std::fs::create_dir_all(&tree_dir).map_err(io_error("creating", &tree_dir))?;
            let stats = export::unpack(paths, source_root, &tree_dir, copied)?;
            write_json(&tmp.join("meta.json"), &stats)?;
            let reference = tmp.join(REF);
            std::fs::write(&reference, b"").map_err(io_error("writing", &reference))?;
            Ok(stats)
        })();
        let stats = match result {
            Ok(stats) => stats,
            Err(error) => {
                tree::remove(&tmp).ok();
                return Err(error);
            }
        };
        let dir = self.root.join(name);
        if let Err(error) = std::fs::rename(&tmp, &dir) {
            tree::remove(&tmp).ok();
            // Published meanwhile by another build: the same package, the same files.
            if self.present(name)?.is_none() {
                return Err(io_error("publishing", &dir)(error));
            }
            return Ok(Entry {
                dir,
                name: name.to_string(),
                unpacked: false,
                stats,
            });
        }
        Ok(Entry {
            dir,
            name: name.to_string(),
            unpacked: true,
            stats,
        })
    }
}

/// The bytes a package's planned regular files hold on the source root (for an estimate; a
/// path that cannot be inspected counts nothing).
fn planned_bytes(source_root: &Path, paths: &[PathBuf]) -> u64 {
    paths
        .iter()
        .filter_map(|path| {
            std::fs::symlink_metadata(crate::rootpath::under(source_root, path)).ok()
        })
        .filter(|meta| meta.is_file())
        .map(|meta| meta.size())
        .sum()
}

/// The entries of the store and what is left of interrupted work, for `list` and `cleanup`.
#[derive(Debug, Default)]
pub struct StoreScan {
    pub entries: Vec<StoreEntry>,
    /// `.tmp-` and `.del-` directories.
    pub leftovers: Vec<PathBuf>,
}

/// A published entry and how many environments hold it.
#[derive(Debug, Clone)]
pub struct StoreEntry {
    pub name: String,
    pub dir: PathBuf,
    /// Environments holding a reference (published or being built); `None` when the entry
    /// has no `ref` (not made by paude, or damaged): nothing can be using it.
    pub references: Option<u64>,
}

impl PackageStore {
    /// Lists the store (empty when there is none).
    pub fn scan(&self) -> Result<StoreScan, StoreError> {
        let mut scan = StoreScan::default();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(scan),
            Err(error) => return Err(io_error("listing", &self.root)(error)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error("listing", &self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(UNPACK_PREFIX) || name.starts_with(REMOVAL_PREFIX) {
                scan.leftovers.push(path);
            } else if !name.starts_with('.') {
                let references = std::fs::symlink_metadata(path.join(REF))
                    .ok()
                    .filter(|meta| meta.is_file())
                    .map(|meta| meta.nlink().saturating_sub(1));
                scan.entries.push(StoreEntry {
                    name,
                    dir: path,
                    references,
                });
            }
        }
        scan.entries.sort_by(|a, b| a.name.cmp(&b.name));
        scan.leftovers.sort();
        Ok(scan)
    }

    /// Removes an entry no environment holds: renamed out of the way first, so a partial
    /// removal is a leftover, never a damaged entry. The caller holds the lock exclusively.
    pub fn remove(&self, entry: &StoreEntry) -> Result<tree::TreeSize, StoreError> {
        let doomed = self.root.join(format!(
            "{REMOVAL_PREFIX}{}-{}",
            entry.name,
            std::process::id()
        ));
        std::fs::rename(&entry.dir, &doomed).map_err(io_error("removing", &entry.dir))?;
        tree::remove(&doomed).map_err(io_error("removing", &doomed))
    }
}

/// The store entries an environment directory holds references to.
pub fn references_of(venv_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(venv_dir.join(REFS))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, version: &str) -> PackageId {
        PackageId {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
        }
    }

    struct Quiet;
    impl Report for Quiet {
        fn line(&mut self, _text: &str) {}
    }

    #[test]
    fn entry_names_follow_the_identity_and_the_planned_paths() {
        let root = Path::new("/");
        let paths = vec![PathBuf::from("/usr/bin/a")];
        let base = PackageStore::entry_name(&id("a", "1:2.0~rc1"), root, &paths);
        assert!(base.starts_with("a_1:2.0~rc1_amd64-"), "{base}");
        assert_eq!(
            base,
            PackageStore::entry_name(&id("a", "1:2.0~rc1"), root, &paths)
        );
        assert_ne!(
            base,
            PackageStore::entry_name(&id("a", "1:2.0"), root, &paths)
        );
        assert_ne!(
            base,
            PackageStore::entry_name(&id("a", "1:2.0~rc1"), Path::new("/srv"), &paths)
        );
        let diverted = vec![PathBuf::from("/usr/bin/a.distrib")];
        assert_ne!(
            base,
            PackageStore::entry_name(&id("a", "1:2.0~rc1"), root, &diverted)
        );
    }

    #[test]
    fn packages_are_unpacked_once_and_references_are_counted() {
        let source = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(source.path().join("usr/bin")).unwrap();
        std::fs::write(source.path().join("usr/bin/a"), "aaaa").unwrap();
        std::fs::write(source.path().join("usr/bin/b"), "bb").unwrap();
        let home = tempfile::tempdir().unwrap();
        let store = PackageStore::new(home.path());
        let (a, b) = (id("a", "1"), id("b", "1"));
        let wanted = [
            Wanted {
                id: &a,
                paths: vec!["/usr".into(), "/usr/bin".into(), "/usr/bin/a".into()],
            },
            Wanted {
                id: &b,
                paths: vec!["/usr/bin/b".into()],
            },
        ];
        let first = store.ensure(&wanted, source.path(), &mut Quiet).unwrap();
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|entry| entry.unpacked));
        assert_eq!(first[0].stats.bytes, 4);
        assert_eq!(
            std::fs::read_to_string(first[0].tree().join("usr/bin/a")).unwrap(),
            "aaaa"
        );
        let again = store.ensure(&wanted, source.path(), &mut Quiet).unwrap();
        assert!(again.iter().all(|entry| !entry.unpacked));
        assert_eq!(again[1].stats.bytes, 2);

        let scan = store.scan().unwrap();
        assert_eq!(scan.entries.len(), 2);
        assert!(scan.entries.iter().all(|e| e.references == Some(0)));
        let venv = home.path().join("venv-x");
        std::fs::create_dir_all(venv.join(REFS)).unwrap();
        std::fs::hard_link(first[0].dir.join(REF), venv.join(REFS).join(&first[0].name)).unwrap();
        let scan = store.scan().unwrap();
        let held = scan
            .entries
            .iter()
            .find(|e| e.name == first[0].name)
            .unwrap();
        assert_eq!(held.references, Some(1));
        assert_eq!(references_of(&venv), vec![first[0].name.clone()]);

        let free = scan
            .entries
            .iter()
            .find(|e| e.name == first[1].name)
            .unwrap();
        store.remove(free).unwrap();
        assert!(!free.dir.exists());
        assert!(store.scan().unwrap().leftovers.is_empty());
    }
}
