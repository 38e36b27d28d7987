//! Launch caches: results a launch would otherwise recompute every time (the evaluated
//! manifest, the environment's key), kept under `$PAUDE_HOME/cache` and reused while the
//! files they were computed from are unchanged.
//!
//! ```text
//! $PAUDE_HOME/cache/<build>/<kind>/<hash>.json   {"inputs": ..., "stamps": [...], "value": ...}
//! ```
//!
//! - `<build>` names the paude binary (its file's device, inode, size, mtime and ctime): a new
//!   or rebuilt paude starts with empty caches, so a change of Jsonnet semantics, of the embedded
//!   library or of the closure rules can never serve an old answer. `paude cleanup` removes
//!   the directories of other builds.
//! - `inputs` is every input that is not a file, encoded: the manifest's path or `-e` text,
//!   the `-J`, ext and tla values, the requested packages and fsEntries, the database's
//!   location. `<hash>` is a short hash of them (SipHash, which needs no CPU feature probe;
//!   a probe costs a launch more than hashing). An entry answers only for the inputs it
//!   holds, so two inputs that share a name cost a miss, never a wrong answer, and nobody
//!   can make one answer for another.
//! - The stamps are the files the result was computed from, and the paths that were looked for
//!   and not found (an import found in the second `-J` directory changes when a file of that
//!   name appears in the first). A stamp is the device, inode, size, mtime and ctime of the
//!   path, or its absence. An entry is used only when every stamp is what it was. A file the
//!   result was computed from is stamped from the descriptor its bytes were read from, not
//!   by its name afterwards: a name swapped for another file meanwhile
//!   (`renameat2(RENAME_EXCHANGE)`) would otherwise stamp the other file with a result
//!   computed from the first.
//!
//! Invariant: an entry is never written from a file that might change without changing its
//! stamp. A write in the same clock tick as the read could leave mtime, ctime and size as they
//! were, so an entry is written only when every file's ctime is [`SETTLE`] older than the
//! moment the computation began (ctime, unlike mtime, cannot be set back by a program); until
//! then the result is recomputed on every launch. Entries are written by rename, whole, and a
//! cache that cannot be read or written is the same as an empty one: it never fails a launch.

use crate::store::{key::Encoder, private_dir};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How old every input's ctime must be before a result computed from it is cached: above the
/// coarsest timestamp granularity of common file systems (two seconds).
pub const SETTLE: Duration = Duration::from_millis(2500);

/// Version of the entries' format and of the keys' encoding.
const FORMAT: u32 = 2;

/// What a path looked like: enough to tell that it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Seen {
    /// What `path` looks like as the kernel resolves it (following links, as a read does);
    /// `None` when nothing is there.
    pub fn of(path: &Path) -> Result<Option<Seen>, rustix::io::Errno> {
        match rustix::fs::stat(path) {
            Ok(stat) => Ok(Some(Seen::from_stat(&stat))),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(None),
            Err(errno) => Err(errno),
        }
    }

    /// What the file open as `file` looks like: the file a read from it read, whatever its
    /// path leads to now.
    pub fn of_open(file: impl std::os::fd::AsFd) -> Result<Seen, rustix::io::Errno> {
        rustix::fs::fstat(file).map(|stat| Seen::from_stat(&stat))
    }

    /// The parts of `stat` a stamp compares.
    fn from_stat(stat: &rustix::fs::Stat) -> Seen {
        Seen {
            dev: stat.st_dev,
            ino: stat.st_ino,
            mode: stat.st_mode,
            size: stat.st_size as u64,
            mtime: (stat.st_mtime, stat.st_mtime_nsec as i64),
            ctime: (stat.st_ctime, stat.st_ctime_nsec as i64),
        }
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        rustix::fs::FileType::from_raw_mode(self.mode) == rustix::fs::FileType::RegularFile
    }

    /// Whether `other` is the same file (device and inode), whatever its content.
    pub fn same_file(&self, other: &Seen) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

/// A path and what it looked like (`None`: it did not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub path: PathBuf,
    pub seen: Option<Seen>,
}

impl Stamp {
    /// Stamps `path` as the kernel resolves it (following links, as a read does).
    pub fn of(path: &Path) -> io::Result<Stamp> {
        Ok(Stamp {
            path: path.to_path_buf(),
            seen: Seen::of(path)?,
        })
    }

    /// Whether the path is still as stamped.
    pub fn holds(&self) -> bool {
        Stamp::of(&self.path).is_ok_and(|now| now.seen == self.seen)
    }

    /// Whether the path changed last at least [`SETTLE`] before `began` (an absent path has
    /// nothing to settle: creating it changes its stamp).
    pub fn settled(&self, began: SystemTime) -> bool {
        let Some(seen) = &self.seen else { return true };
        let Some(limit) = began
            .checked_sub(SETTLE)
            .and_then(|limit| limit.duration_since(UNIX_EPOCH).ok())
        else {
            return false;
        };
        let ctime = i128::from(seen.ctime.0) * 1_000_000_000 + i128::from(seen.ctime.1);
        ctime < limit.as_nanos() as i128
    }
}

/// A cache entry ready to be written.
#[derive(Debug)]
pub struct Prepared {
    path: PathBuf,
    text: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Entry<T> {
    /// The key's inputs, in hex: the file's name is a short hash of them, which two inputs may
    /// share, so an entry answers only for the inputs it holds.
    inputs: String,
    stamps: Vec<Stamp>,
    value: T,
}

/// The launch caches of one store and one paude build.
#[derive(Debug, Clone)]
pub struct Cache {
    /// `$PAUDE_HOME/cache/<build>`; `None` when this binary cannot be identified (no `/proc`),
    /// which disables caching.
    dir: Option<PathBuf>,
}

/// A cache key under construction: the non-file inputs of a result.
pub struct Key {
    kind: &'static str,
    encoder: Encoder<Vec<u8>>,
}

impl Key {
    /// A key for results of `kind` (a directory name: "manifest", "environment").
    pub fn new(kind: &'static str) -> Key {
        let mut encoder = Encoder::default();
        encoder.bytes(b"paude-cache");
        encoder.u32(FORMAT);
        encoder.bytes(kind.as_bytes());
        Key { kind, encoder }
    }

    /// Adds a field.
    pub fn field(mut self, bytes: &[u8]) -> Key {
        self.encoder.bytes(bytes);
        self
    }

    /// Adds a list of name and value pairs (`--ext-str NAME=VALUE`, ...), with its length.
    pub fn pairs(mut self, pairs: &[(String, String)]) -> Key {
        self.encoder.u64(pairs.len() as u64);
        for (name, value) in pairs {
            self.encoder.bytes(name.as_bytes());
            self.encoder.bytes(value.as_bytes());
        }
        self
    }

    /// Adds fsEntries, encoded as the environment's key encodes them.
    pub fn fs_entries(mut self, entries: &[crate::manifest::FsEntry]) -> Key {
        crate::store::key::encode_fs_entries(&mut self.encoder, entries);
        self
    }

    /// Adds a list of fields, with its length.
    pub fn fields<'a>(mut self, items: impl ExactSizeIterator<Item = &'a [u8]>) -> Key {
        self.encoder.u64(items.len() as u64);
        for item in items {
            self.encoder.bytes(item);
        }
        self
    }
}

impl Cache {
    /// The caches under `$PAUDE_HOME/cache` for the running binary.
    pub fn new(paude_home: &Path) -> Cache {
        Cache {
            dir: build_id().map(|id| Cache::root(paude_home).join(id)),
        }
    }

    /// `$PAUDE_HOME/cache`.
    pub fn root(paude_home: &Path) -> PathBuf {
        paude_home.join("cache")
    }

    /// The running build's directory name, if it can be identified.
    pub fn current_build(&self) -> Option<&std::ffi::OsStr> {
        self.dir.as_deref().and_then(Path::file_name)
    }

    /// Where the entry of `key` is, and the inputs it must hold.
    fn place(&self, key: Key) -> Option<(PathBuf, String)> {
        use std::hash::Hasher;
        let inputs = key.encoder.into_output();
        // The standard library's SipHash, with its fixed keys: stable for one build, which is
        // all a build's caches need, and fast.
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(&inputs);
        let name = format!("{:016x}.json", hasher.finish());
        let path = self.dir.as_ref()?.join(key.kind).join(name);
        Some((path, crate::store::key::hex(&inputs)))
    }

    /// The cached value for `key`, if there is one and every file it came from is unchanged.
    pub fn get<T: DeserializeOwned>(&self, key: Key) -> Option<T> {
        let (path, inputs) = self.place(key)?;
        let text = std::fs::read(&path).ok()?;
        let entry: Entry<T> = serde_json::from_slice(&text).ok()?;
        (entry.inputs == inputs && entry.stamps.iter().all(Stamp::holds)).then_some(entry.value)
    }

    /// Removes the entry of `key`, if there is one: it answered, but what it answered no
    /// longer holds.
    pub fn remove(&self, key: Key) {
        if let Some((path, _)) = self.place(key) {
            std::fs::remove_file(path).ok();
        }
    }

    /// An entry to [`Cache::write`] later: a launch keeps what it learned until its input has
    /// passed every check, so that bad input writes nothing to the store. `None` when the
    /// value cannot be cached (a stamp has not settled, no build identity).
    pub fn prepare<T: Serialize>(
        &self,
        key: Key,
        stamps: Vec<Stamp>,
        began: SystemTime,
        value: &T,
    ) -> Option<Prepared> {
        if !stamps.iter().all(|stamp| stamp.settled(began)) {
            return None;
        }
        let (path, inputs) = self.place(key)?;
        let text = serde_json::to_vec(&Entry {
            inputs,
            stamps,
            value,
        })
        .ok()?;
        Some(Prepared { path, text })
    }

    /// Writes a prepared entry; a failure leaves the cache as it was.
    pub fn write(&self, entry: Prepared) {
        let Prepared { path, text } = entry;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        if private_dir(dir).is_err() {
            return;
        }
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if std::fs::write(&tmp, text).is_err() || std::fs::rename(&tmp, &path).is_err() {
            std::fs::remove_file(&tmp).ok();
        }
    }
}

/// Names the running binary by its file's identity, which any rebuild, reinstall or upgrade
/// changes: one `stat` of `/proc/self/exe`. `None` without `/proc`, which disables caching.
fn build_id() -> Option<String> {
    let meta = std::fs::metadata("/proc/self/exe").ok()?;
    Some(format!(
        "b{:x}-{:x}-{:x}-{}.{}-{}.{}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prepares and writes at once, as a launch does once its input passed every check.
    fn put(cache: &Cache, key: Key, stamps: Vec<Stamp>, began: SystemTime, value: &u32) {
        if let Some(entry) = cache.prepare(key, stamps, began, value) {
            cache.write(entry);
        }
    }

    fn old_enough() -> SystemTime {
        SystemTime::now() + SETTLE + Duration::from_secs(1)
    }

    #[test]
    fn a_value_is_served_while_its_stamps_hold() {
        let home = tempfile::tempdir().unwrap();
        let input = home.path().join("input");
        let absent = home.path().join("absent");
        std::fs::write(&input, "one").unwrap();
        let cache = Cache::new(home.path());
        let key = || Key::new("test").field(b"a");
        let stamps = vec![Stamp::of(&input).unwrap(), Stamp::of(&absent).unwrap()];
        put(&cache, key(), stamps, old_enough(), &42);
        assert_eq!(cache.get::<u32>(key()), Some(42));
        assert_eq!(cache.get::<u32>(Key::new("test").field(b"b")), None);
        // A path that was looked for and not found appears: the value is stale.
        std::fs::write(&absent, "").unwrap();
        assert_eq!(cache.get::<u32>(key()), None);
        std::fs::remove_file(&absent).unwrap();
        assert_eq!(cache.get::<u32>(key()), Some(42));
        // The input is rewritten with content of the same size.
        std::fs::write(&input, "two").unwrap();
        assert_eq!(cache.get::<u32>(key()), None);
    }

    #[test]
    fn unsettled_inputs_are_not_cached() {
        let home = tempfile::tempdir().unwrap();
        let input = home.path().join("input");
        std::fs::write(&input, "just written").unwrap();
        let cache = Cache::new(home.path());
        let stamps = vec![Stamp::of(&input).unwrap()];
        put(&cache, Key::new("test"), stamps, SystemTime::now(), &1);
        assert_eq!(cache.get::<u32>(Key::new("test")), None);
        assert!(!Cache::root(home.path()).exists());
    }

    #[test]
    fn fields_are_delimited() {
        let cache = Cache::new(Path::new("/nonexistent"));
        let one = cache.place(Key::new("k").field(b"ab").field(b"c"));
        let two = cache.place(Key::new("k").field(b"a").field(b"bc"));
        assert_ne!(one, two);
    }

    /// Two inputs whose entries share a file (a hash collision, made here by writing one's
    /// entry where the other's goes) never answer for each other.
    #[test]
    fn an_entry_answers_only_for_its_own_inputs() {
        let home = tempfile::tempdir().unwrap();
        let cache = Cache::new(home.path());
        put(
            &cache,
            Key::new("test").field(b"a"),
            Vec::new(),
            old_enough(),
            &1,
        );
        let (from, _) = cache.place(Key::new("test").field(b"a")).unwrap();
        let (to, _) = cache.place(Key::new("test").field(b"b")).unwrap();
        std::fs::rename(from, to).unwrap();
        assert_eq!(cache.get::<u32>(Key::new("test").field(b"b")), None);
    }
}
