//! Launch records: what a launch worked out (the environment it runs in, the bwrap command
//! line, the lines it said) kept with every question it asked the host on the way (see
//! `probe`), so that the same launch again costs one look per question instead of the work.
//!
//! ```text
//! $PAUDE_HOME/cache/<build>/launch/<slot>.rec
//! ```
//!
//! - A record's inputs are everything its launch depended on that is neither a file nor an
//!   environment variable (those are checks): the words of its command line up to the
//!   command's first, the current directory, the user, group and supplementary group ids,
//!   `PAUDE_HOME`, and whether stdin and stderr are terminals ([`encode_inputs`]). A record is
//!   used only when its inputs are byte for byte the launch's and every check still holds.
//! - Records are read by the launch front (`front`), before the C library has started, so the
//!   reading side ([`walk`]) allocates nothing and hands out borrowed views.
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
pub use crate::bare::Sink;
use crate::probe::{Check, Kind};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How many records a build keeps at most.
pub const SLOTS: u64 = 1024;

/// The first bytes of a record, with the format's version.
const MAGIC: &[u8] = b"paude-launch-record\0";
const FORMAT: u32 = 2;

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

/// What a launch's record depends on besides its command line: the facts of the process that
/// are neither files nor variables.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub uid: u32,
    pub gid: u32,
    /// The supplementary groups, which decide with the ids what the launch could read.
    pub groups: &'a [u32],
    pub cwd: &'a [u8],
    pub paude_home: &'a [u8],
    pub stdin_is_terminal: bool,
    pub stderr_is_terminal: bool,
}

/// Encodes a launch's inputs: `words` are its command line from `argv[0]`; the `own` words
/// after `argv[0]` (`venv`, the options, `--`) count, and the command's first word. The
/// command's other words are appended to the recorded bwrap line as given, and `argv[0]` is
/// left out: how paude was named does not change what it does.
pub fn encode_inputs<'a>(
    sink: &mut dyn Sink,
    words: impl Iterator<Item = &'a [u8]> + Clone,
    own: usize,
    facts: &Facts<'_>,
) {
    let counted = words.skip(1).take(own);
    sink.u64(counted.clone().count() as u64);
    for word in counted {
        sink.bytes(word);
    }
    sink.u64(facts.groups.len() as u64);
    for group in facts.groups {
        sink.u64(u64::from(*group));
    }
    sink.bytes(facts.cwd);
    sink.bytes(facts.paude_home);
    for number in [
        u64::from(facts.uid),
        u64::from(facts.gid),
        u64::from(facts.stdin_is_terminal),
        u64::from(facts.stderr_is_terminal),
    ] {
        sink.u64(number);
    }
}

/// The file name of the slot a record of `inputs` goes in. FNV-1a: stable, and nothing but
/// arithmetic (the front computes it before the C library has started).
pub fn slot_name(inputs: &[u8]) -> [u8; 7] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in inputs {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let slot = hash % SLOTS;
    let digit = |shift: u64| b"0123456789abcdef"[((slot >> shift) & 0xf) as usize];
    [digit(8), digit(4), digit(0), b'.', b'r', b'e', b'c']
}

/// A launch's inputs, encoded (see [`encode_inputs`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inputs(pub Vec<u8>);

impl Inputs {
    /// The file name of the slot these inputs go in.
    fn slot(&self) -> String {
        String::from_utf8_lossy(&slot_name(&self.0)).into_owned()
    }
}

/// One recorded question with its answer, as [`walk`] hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckView<'a> {
    Kind {
        path: &'a [u8],
        follow: bool,
        kind: Kind,
    },
    Same {
        path: &'a [u8],
        seen: Option<Seen>,
    },
    Executable {
        path: &'a [u8],
        allowed: bool,
    },
    Real {
        path: &'a [u8],
        real: Option<&'a [u8]>,
    },
    Subdirectories {
        path: &'a [u8],
        names: Option<List<'a>>,
    },
    Env {
        name: &'a [u8],
        value: Option<&'a [u8]>,
    },
}

/// A recorded list of byte strings, each after a flag byte when the list is flagged
/// (checked whole when the record was walked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct List<'a> {
    count: usize,
    flagged: bool,
    encoded: &'a [u8],
}

impl<'a> List<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The strings, each with its flag (`false` in a list without flags).
    pub fn flagged(&self) -> impl Iterator<Item = (bool, &'a [u8])> + Clone + use<'a> {
        let mut reader = Reader { rest: self.encoded };
        let flagged = self.flagged;
        (0..self.count).map_while(move |_| {
            let flag = if flagged { reader.flag()? } else { false };
            Some((flag, reader.bytes()?))
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + Clone + use<'a> {
        self.flagged().map(|(_, bytes)| bytes)
    }

    fn read(reader: &mut Reader<'a>, flagged: bool) -> Option<List<'a>> {
        let count = reader.count(if flagged { 9 } else { 8 })?;
        let start = reader.rest;
        for _ in 0..count {
            if flagged {
                reader.flag()?;
            }
            reader.bytes()?;
        }
        let encoded = &start[..start.len() - reader.rest.len()];
        Some(List {
            count,
            flagged,
            encoded,
        })
    }
}

/// A recorded launch, as [`walk`] hands it out.
#[derive(Debug, Clone, Copy)]
pub struct LaunchView<'a> {
    pub venv: &'a [u8],
    /// The lines said, each flagged when it was a warning.
    pub lines: List<'a>,
    pub bwrap: &'a [u8],
    pub argv: List<'a>,
    pub descriptors_at: usize,
    pub filter: Option<&'a [u8]>,
    pub tree: (&'a [u8], Option<Seen>),
}

/// Reads a record for `inputs` from its bytes, handing each check to `check` in order and
/// stopping at the first that does not hold; the launch when every check held. `None` for
/// other inputs and for a record damaged anywhere. Allocates nothing.
pub fn walk<'a>(
    bytes: &'a [u8],
    inputs: &[u8],
    check: &mut dyn FnMut(CheckView<'a>) -> bool,
) -> Option<LaunchView<'a>> {
    let mut reader = Reader { rest: bytes };
    if reader.take(MAGIC.len())? != MAGIC || reader.u32()? != FORMAT {
        return None;
    }
    if reader.bytes()? != inputs {
        return None;
    }
    // A check is at least a tag and a path's length.
    let count = reader.count(9)?;
    for _ in 0..count {
        let tag = reader.u8()?;
        let path = reader.bytes()?;
        let view = match tag {
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
                CheckView::Kind { path, follow, kind }
            }
            2 => CheckView::Same {
                path,
                seen: reader.seen()?,
            },
            3 => CheckView::Executable {
                path,
                allowed: reader.flag()?,
            },
            4 => CheckView::Real {
                path,
                real: reader.optional()?,
            },
            5 => CheckView::Subdirectories {
                path,
                names: if reader.flag()? {
                    Some(List::read(&mut reader, false)?)
                } else {
                    None
                },
            },
            6 => CheckView::Env {
                name: path,
                value: reader.optional()?,
            },
            _ => return None,
        };
        if !check(view) {
            return None;
        }
    }
    let venv = reader.bytes()?;
    let lines = List::read(&mut reader, true)?;
    let bwrap = reader.bytes()?;
    let argv = List::read(&mut reader, false)?;
    let descriptors_at = usize::try_from(reader.u64()?).ok()?;
    if descriptors_at > argv.len() {
        return None;
    }
    let filter = reader.optional()?;
    let tree = (reader.bytes()?, reader.seen()?);
    reader.rest.is_empty().then_some(LaunchView {
        venv,
        lines,
        bwrap,
        argv,
        descriptors_at,
        filter,
        tree,
    })
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
    writer.bytes(&inputs.0);
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
        self.0.u64(value);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.0.bytes(bytes);
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
#[derive(Clone)]
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
    /// left can hold, so a corrupt count cannot make a walk take long.
    fn count(&mut self, least: usize) -> Option<usize> {
        usize::try_from(self.u64()?)
            .ok()
            .filter(|count| count.saturating_mul(least) <= self.rest.len())
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let length = usize::try_from(self.u64()?).ok()?;
        self.take(length)
    }

    /// What [`Writer::stamp`] wrote after the path.
    fn seen(&mut self) -> Option<Option<Seen>> {
        if !self.flag()? {
            return Some(None);
        }
        let [dev, ino, mode, size] = self.u64s()?;
        let [mtime, mtime_nsec, ctime, ctime_nsec] = self.u64s()?.map(|v| v as i64);
        Some(Some(Seen {
            dev,
            ino,
            mode: u32::try_from(mode).ok()?,
            size,
            mtime: (mtime, mtime_nsec),
            ctime: (ctime, ctime_nsec),
        }))
    }

    /// What [`Writer::optional`] wrote.
    fn optional(&mut self) -> Option<Option<&'a [u8]>> {
        if self.flag()? {
            Some(Some(self.bytes()?))
        } else {
            Some(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

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
        inputs.0.bytes(text.as_bytes());
        inputs.0.u64(7);
        inputs
    }

    /// The record for `inputs` as owned values, read through [`walk`] with every check taken
    /// as holding.
    fn read(cache: &Cache, inputs: &Inputs) -> Option<(Vec<Check>, Launch)> {
        let bytes = std::fs::read(cache.file("launch", &inputs.slot())?).ok()?;
        let os = |bytes: &[u8]| OsString::from_vec(bytes.to_vec());
        let path = |bytes: &[u8]| PathBuf::from(os(bytes));
        let mut checks = Vec::new();
        let view = walk(&bytes, &inputs.0, &mut |check| {
            checks.push(match check {
                CheckView::Kind {
                    path: p,
                    follow,
                    kind,
                } => Check::Kind {
                    path: path(p),
                    follow,
                    kind,
                },
                CheckView::Same { path: p, seen } => Check::Same(Stamp {
                    path: path(p),
                    seen,
                }),
                CheckView::Executable { path: p, allowed } => Check::Executable {
                    path: path(p),
                    allowed,
                },
                CheckView::Real { path: p, real } => Check::Real {
                    path: path(p),
                    real: real.map(path),
                },
                CheckView::Subdirectories { path: p, names } => Check::Subdirectories {
                    path: path(p),
                    names: names.map(|names| names.iter().map(os).collect()),
                },
                CheckView::Env { name, value } => Check::Env {
                    name: os(name),
                    value: value.map(os),
                },
            });
            true
        })?;
        let launch = Launch {
            venv: VenvKey::parse(std::str::from_utf8(view.venv).ok()?)?,
            lines: view
                .lines
                .flagged()
                .map(|(warning, text)| Line {
                    warning,
                    text: String::from_utf8(text.to_vec()).unwrap(),
                })
                .collect(),
            bwrap: path(view.bwrap),
            argv: view.argv.iter().map(os).collect(),
            descriptors_at: view.descriptors_at,
            filter: view.filter.map(path),
            tree: Stamp {
                path: path(view.tree.0),
                seen: view.tree.1,
            },
        };
        Some((checks, launch))
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let home = tempfile::tempdir().unwrap();
        let cache = Cache::new(home.path());
        let (checks, launch) = sample();
        let prepared = prepare(&cache, &inputs("a"), &checks, &launch).unwrap();
        cache.write(prepared);
        let (read_checks, read_launch) = read(&cache, &inputs("a")).expect("a record");
        assert_eq!(read_checks, checks);
        assert_eq!(read_launch, launch);
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
        let counted = MAGIC.len() + 4 + 8 + inputs("a").0.len();
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
