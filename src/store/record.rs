//! Launch records: what a launch worked out (the environment it runs in, the bwrap command
//! line, the lines it said) kept with every question it asked the host on the way (see
//! `probe`), so that the same launch again costs one look per question instead of the work.
//!
//! ```text
//! $PAUDE_HOME/cache/<build>/launch/<slot>.rec
//! ```
//!
//! - A record's inputs are everything its launch depended on that is not a file: the `venv`
//!   options, the current directory, the whole environment, the user and group ids, and
//!   whether stdin and stderr are terminals (see `commands::venv`). A record is used only when
//!   its inputs are byte for byte the launch's and every check still holds.
//! - Records live in [`SLOTS`] slots, named by a hash of their inputs: however many different
//!   launches run, a build's records take at most that many files. Two inputs that share a
//!   slot take turns (each replaces the other), which costs a miss, never a wrong answer.
//! - A record is written like every cache entry: whole, by rename, only after the launch's
//!   input passed every check, and only when every file it read had settled (see
//!   [`super::cache::SETTLE`]). A record that cannot be read is a miss.
//! - The format is binary (little-endian integers, length-prefixed byte strings, so paths
//!   that are not UTF-8 stay bytes): a launch reads its record every time, and JSON took longer
//!   to parse than the rest of a hit.

use super::cache::{Cache, Prepared, Seen, Stamp};
use super::key::VenvKey;
use crate::probe::{Check, Kind};
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// How many records a build keeps at most.
pub const SLOTS: u64 = 1024;

/// The first bytes of a record, with the format's version.
const MAGIC: &[u8] = b"paude-launch-record\0";
const FORMAT: u32 = 1;

/// A line a launch said on stderr, said again when its record is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub warning: bool,
    pub text: String,
}

/// What a launch worked out: everything the exec needs besides the lock and descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The environment it runs in.
    pub venv: VenvKey,
    /// What it said on stderr before running bwrap.
    pub lines: Vec<Line>,
    pub bwrap: PathBuf,
    /// bwrap's arguments without the descriptor options (`--sync-fd`, `--seccomp`), which go
    /// at `descriptors_at`, and without the command's words after the first, which the
    /// launch appends as given.
    pub argv: Vec<OsString>,
    pub descriptors_at: usize,
    /// The terminal-injection filter to hand to bwrap, if the run keeps the terminal.
    pub filter: Option<PathBuf>,
    /// The environment's `meta.json` as this launch saw it. A key names the same packages,
    /// but a cleanup and a rebuild make a new tree (files this user could read, the host's
    /// links), whose meta.json is a new file: a record is used only with the tree it was
    /// worked out for, checked once the tree's lock is held.
    pub tree: Stamp,
}

/// A record as read: its checks and its launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub checks: Vec<Check>,
    pub launch: Launch,
}

impl Record {
    /// Whether every question, asked again, has the recorded answer.
    pub fn holds(&self) -> bool {
        self.checks.iter().all(Check::holds)
    }
}

/// A launch's inputs, encoded: fields added in a fixed order, each length-prefixed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inputs(Writer);

impl Inputs {
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Inputs {
        self.0.bytes(bytes);
        self
    }

    pub fn u64(&mut self, value: u64) -> &mut Inputs {
        self.0.u64(value);
        self
    }

    /// The file name of the slot these inputs go in.
    fn slot(&self) -> String {
        // SipHash with fixed keys: stable for a build, which is all a slot needs (records
        // live in their build's directory).
        let mut hasher = std::hash::DefaultHasher::new();
        self.0.0.hash(&mut hasher);
        format!("{:03x}.rec", hasher.finish() % SLOTS)
    }
}

/// The record for `inputs`, if there is one (its checks are not asked here).
pub fn read(cache: &Cache, inputs: &Inputs) -> Option<Record> {
    let bytes = std::fs::read(cache.file("launch", &inputs.slot())?).ok()?;
    let mut reader = Reader { rest: &bytes };
    if reader.take(MAGIC.len())? != MAGIC || reader.u32()? != FORMAT {
        return None;
    }
    if reader.bytes()? != inputs.0.0.as_slice() {
        return None;
    }
    let record = decode(&mut reader)?;
    reader.rest.is_empty().then_some(record)
}

/// A record to write with [`Cache::write`]; `None` when caching is off.
pub fn prepare(
    cache: &Cache,
    inputs: &Inputs,
    checks: &[Check],
    launch: &Launch,
) -> Option<Prepared> {
    let path = cache.file("launch", &inputs.slot())?;
    let mut writer = Writer::default();
    writer.0.extend_from_slice(MAGIC);
    writer.u32(FORMAT);
    writer.bytes(&inputs.0.0);
    encode(&mut writer, checks, launch);
    Some(Prepared::raw(path, writer.0))
}

fn encode(writer: &mut Writer, checks: &[Check], launch: &Launch) {
    writer.u64(checks.len() as u64);
    for check in checks {
        match check {
            Check::Kind { path, follow, kind } => {
                writer.u8(1);
                writer.path(path);
                writer.u8(u8::from(*follow));
                match kind {
                    Kind::File => writer.u8(0),
                    Kind::Dir => writer.u8(1),
                    Kind::Link => writer.u8(2),
                    Kind::Other => writer.u8(3),
                    Kind::Error(errno) => {
                        writer.u8(4);
                        writer.u32(*errno as u32);
                    }
                }
            }
            Check::Same(stamp) => {
                writer.u8(2);
                writer.stamp(stamp);
            }
            Check::Executable { path, allowed } => {
                writer.u8(3);
                writer.path(path);
                writer.u8(u8::from(*allowed));
            }
            Check::Real { path, real } => {
                writer.u8(4);
                writer.path(path);
                writer.optional_path(real.as_deref());
            }
            Check::Env { name, value } => {
                writer.u8(6);
                writer.bytes(name.as_bytes());
                writer.optional(value.as_ref().map(|value| value.as_bytes()));
            }
            Check::Subdirectories { path, names } => {
                writer.u8(5);
                writer.path(path);
                match names {
                    None => writer.u8(0),
                    Some(names) => {
                        writer.u8(1);
                        writer.u64(names.len() as u64);
                        for name in names {
                            writer.bytes(name.as_bytes());
                        }
                    }
                }
            }
        }
    }
    writer.bytes(launch.venv.as_str().as_bytes());
    writer.u64(launch.lines.len() as u64);
    for line in &launch.lines {
        writer.u8(u8::from(line.warning));
        writer.bytes(line.text.as_bytes());
    }
    writer.path(&launch.bwrap);
    writer.u64(launch.argv.len() as u64);
    for arg in &launch.argv {
        writer.bytes(arg.as_bytes());
    }
    writer.u64(launch.descriptors_at as u64);
    writer.optional_path(launch.filter.as_deref());
    writer.stamp(&launch.tree);
}

fn decode(reader: &mut Reader<'_>) -> Option<Record> {
    // A check is at least a tag and a path's length; a line a flag and a length; a name or
    // an argument a length.
    let count = reader.count(9)?;
    let mut checks = Vec::with_capacity(count);
    for _ in 0..count {
        let tag = reader.u8()?;
        if tag == 2 {
            checks.push(Check::Same(reader.stamp()?));
            continue;
        }
        let path = reader.path()?;
        checks.push(match tag {
            1 => {
                let follow = reader.flag()?;
                let kind = match reader.u8()? {
                    0 => Kind::File,
                    1 => Kind::Dir,
                    2 => Kind::Link,
                    3 => Kind::Other,
                    4 => Kind::Error(reader.u32()? as i32),
                    _ => return None,
                };
                Check::Kind { path, follow, kind }
            }
            3 => Check::Executable {
                path,
                allowed: reader.flag()?,
            },
            4 => Check::Real {
                path,
                real: reader.optional_path()?,
            },
            5 => {
                let names = if reader.flag()? {
                    let count = reader.count(8)?;
                    let mut names = Vec::with_capacity(count);
                    for _ in 0..count {
                        names.push(reader.os_string()?);
                    }
                    Some(names)
                } else {
                    None
                };
                Check::Subdirectories { path, names }
            }
            6 => Check::Env {
                name: path.into_os_string(),
                value: reader.optional_os_string()?,
            },
            _ => return None,
        });
    }
    let venv = VenvKey::parse(std::str::from_utf8(reader.bytes()?).ok()?)?;
    let count = reader.count(9)?;
    let mut lines = Vec::with_capacity(count);
    for _ in 0..count {
        let warning = reader.flag()?;
        let text = String::from_utf8(reader.bytes()?.to_vec()).ok()?;
        lines.push(Line { warning, text });
    }
    let bwrap = reader.path()?;
    let count = reader.count(8)?;
    let mut argv = Vec::with_capacity(count);
    for _ in 0..count {
        argv.push(reader.os_string()?);
    }
    let descriptors_at = usize::try_from(reader.u64()?).ok()?;
    if descriptors_at > argv.len() {
        return None;
    }
    let filter = reader.optional_path()?;
    let tree = reader.stamp()?;
    Some(Record {
        checks,
        launch: Launch {
            venv,
            lines,
            bwrap,
            argv,
            descriptors_at,
            filter,
            tree,
        },
    })
}

/// Little-endian integers and length-prefixed byte strings.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn path(&mut self, path: &Path) {
        self.bytes(path.as_os_str().as_bytes());
    }

    fn stamp(&mut self, stamp: &Stamp) {
        self.path(&stamp.path);
        match &stamp.seen {
            None => self.u8(0),
            Some(seen) => {
                self.u8(1);
                for value in [seen.dev, seen.ino, u64::from(seen.mode), seen.size] {
                    self.u64(value);
                }
                for value in [seen.mtime.0, seen.mtime.1, seen.ctime.0, seen.ctime.1] {
                    self.u64(value as u64);
                }
            }
        }
    }

    /// A flag, then the bytes when there are some.
    fn optional(&mut self, bytes: Option<&[u8]>) {
        self.u8(u8::from(bytes.is_some()));
        if let Some(bytes) = bytes {
            self.bytes(bytes);
        }
    }

    fn optional_path(&mut self, path: Option<&Path>) {
        self.optional(path.map(|path| path.as_os_str().as_bytes()));
    }
}

/// Reads what [`Writer`] wrote; `None` at any truncation or bad value.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if count > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(count);
        self.rest = rest;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u64s<const N: usize>(&mut self) -> Option<[u64; N]> {
        let mut values = [0; N];
        for value in &mut values {
            *value = self.u64()?;
        }
        Some(values)
    }

    /// A count of items that follow, each at least `least` bytes long: no more than what is
    /// left can hold, so a corrupt count cannot make an allocation much larger than the file.
    fn count(&mut self, least: usize) -> Option<usize> {
        usize::try_from(self.u64()?)
            .ok()
            .filter(|count| count.saturating_mul(least) <= self.rest.len())
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let length = usize::try_from(self.u64()?).ok()?;
        self.take(length)
    }

    fn os_string(&mut self) -> Option<OsString> {
        Some(OsString::from_vec(self.bytes()?.to_vec()))
    }

    fn path(&mut self) -> Option<PathBuf> {
        self.os_string().map(PathBuf::from)
    }

    fn stamp(&mut self) -> Option<Stamp> {
        let path = self.path()?;
        let seen = if self.flag()? {
            let [dev, ino, mode, size] = self.u64s()?;
            let [mtime, mtime_nsec, ctime, ctime_nsec] = self.u64s()?.map(|v| v as i64);
            Some(Seen {
                dev,
                ino,
                mode: u32::try_from(mode).ok()?,
                size,
                mtime: (mtime, mtime_nsec),
                ctime: (ctime, ctime_nsec),
            })
        } else {
            None
        };
        Some(Stamp { path, seen })
    }

    /// What [`Writer::optional`] wrote, as a string of bytes.
    fn optional_os_string(&mut self) -> Option<Option<OsString>> {
        if self.flag()? {
            Some(Some(self.os_string()?))
        } else {
            Some(None)
        }
    }

    fn optional_path(&mut self) -> Option<Option<PathBuf>> {
        Some(self.optional_os_string()?.map(PathBuf::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<Check>, Launch) {
        let odd = PathBuf::from(OsString::from_vec(b"/tmp/not-utf8-\xff".to_vec()));
        let checks = vec![
            Check::Kind {
                path: "/w/.git".into(),
                follow: false,
                kind: Kind::Dir,
            },
            Check::Kind {
                path: odd.clone(),
                follow: true,
                kind: Kind::Error(libc::ENOENT),
            },
            Check::Same(Stamp {
                path: "/etc/passwd".into(),
                seen: Some(Seen {
                    dev: 2049,
                    ino: 1234,
                    mode: 0o100644,
                    size: 1500,
                    mtime: (1_700_000_000, 5),
                    ctime: (-1, 999_999_999),
                }),
            }),
            Check::Same(Stamp {
                path: "/w/absent".into(),
                seen: None,
            }),
            Check::Executable {
                path: "/usr/bin/bwrap".into(),
                allowed: true,
            },
            Check::Real {
                path: "/w/wt/gitdir".into(),
                real: Some("/r/.git/worktrees/wt".into()),
            },
            Check::Real {
                path: "/w/gone".into(),
                real: None,
            },
            Check::Subdirectories {
                path: "/w".into(),
                names: Some(vec![".git".into(), "src".into()]),
            },
            Check::Subdirectories {
                path: "/unreadable".into(),
                names: None,
            },
            Check::Env {
                name: "PATH".into(),
                value: Some("/usr/bin:/bin".into()),
            },
            Check::Env {
                name: "PAUDE_BWRAP".into(),
                value: None,
            },
        ];
        let launch = Launch {
            venv: VenvKey::parse("0123456789abcdef0123456789abcdef").unwrap(),
            lines: vec![Line {
                warning: true,
                text: "skipping optional mount".into(),
            }],
            bwrap: "/usr/bin/bwrap".into(),
            argv: vec!["--unshare-user".into(), odd.into_os_string(), "--".into()],
            descriptors_at: 1,
            filter: None,
            tree: Stamp {
                path: "/s/venv/0123456789abcdef0123456789abcdef/meta.json".into(),
                seen: None,
            },
        };
        (checks, launch)
    }

    fn inputs(text: &str) -> Inputs {
        let mut inputs = Inputs::default();
        inputs.bytes(text.as_bytes()).u64(7);
        inputs
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let home = tempfile::tempdir().unwrap();
        let cache = Cache::new(home.path());
        let (checks, launch) = sample();
        let prepared = prepare(&cache, &inputs("a"), &checks, &launch).unwrap();
        cache.write(prepared);
        let record = read(&cache, &inputs("a")).expect("a record");
        assert_eq!(record.checks, checks);
        assert_eq!(record.launch, launch);
        // Other inputs, whatever their slot, find no record.
        assert_eq!(read(&cache, &inputs("b")), None);
    }

    #[test]
    fn a_damaged_record_is_a_miss() {
        let home = tempfile::tempdir().unwrap();
        let cache = Cache::new(home.path());
        let (checks, launch) = sample();
        cache.write(prepare(&cache, &inputs("a"), &checks, &launch).unwrap());
        let path = cache.file("launch", &inputs("a").slot()).unwrap();
        let whole = std::fs::read(&path).unwrap();
        // Every truncation, and a byte too many.
        for length in 0..whole.len() {
            std::fs::write(&path, &whole[..length]).unwrap();
            assert_eq!(read(&cache, &inputs("a")), None, "cut at {length}");
        }
        let mut longer = whole.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert_eq!(read(&cache, &inputs("a")), None);
        // A huge count is refused before anything is allocated.
        let mut corrupt = whole;
        let counted = MAGIC.len() + 4 + 8 + inputs("a").0.0.len();
        corrupt[counted..counted + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &corrupt).unwrap();
        assert_eq!(read(&cache, &inputs("a")), None);
    }

    #[test]
    fn slots_are_bounded() {
        let names: std::collections::BTreeSet<String> =
            (0..5000).map(|n| inputs(&n.to_string()).slot()).collect();
        assert!(names.len() <= SLOTS as usize);
        assert!(names.len() > 900, "{}", names.len());
    }
}
