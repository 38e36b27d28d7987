//! What of the sandbox's git index may replace the host's.
//!
//! The sandbox's `.git/index` is a private copy that comes back to the host's repository when
//! the sandbox ends (see `git`). The sandbox can write any bytes into it, and host git trusts
//! much of what an index says:
//!
//! - the paths of its entries, which it does not check again: an entry `../home/u/.bashrc` or
//!   `.git/hooks/post-checkout` would have the user's next `git restore .` or
//!   `git checkout -- .` write outside the worktree, or plant a hook that runs;
//! - the assume-valid and skip-worktree bits, which hide an entry's changes from `git status`
//!   and `git diff`;
//! - the stat data of each entry: an entry that copies a changed file's size and times (with
//!   its modification time set long past) says the file is unchanged;
//! - its extensions: the cache tree (`TREE`) names the tree objects of directories, which
//!   `git commit` takes instead of writing them from the entries (so the next commit could
//!   hold a tree the sandbox made, whatever the entries say); the untracked cache (`UNTR`) and
//!   the file-system monitor's token (`FSMN`) hide files from `git status`; a `link` makes the
//!   index split, read with a shared index file elsewhere; the end-of-entries (`EOIE`) and
//!   entry offset table (`IEOT`) have a threaded reader find extensions and entries elsewhere
//!   than where they follow one another.
//!
//! So [`brought_back`] reads the index as host git reads it, refuses it where an entry's path
//! or bits are wrong, and otherwise writes a new one of the same entries: with no extensions
//! (each is a cache git rebuilds, or state of a merge the sandbox did), with the stat data of
//! every entry zeroed where it is not the host's own for the same file, and with its
//! checksum. An entry whose stat data is zero is one git compares by content, as after
//! `git read-tree`; what the sandbox changed cannot hide behind it.

use sha1::{Digest, Sha1};
use std::collections::{HashMap, HashSet};

/// The bytes of the header: the signature `DIRC`, the version and the number of entries.
const HEADER_LEN: usize = 12;

/// The bytes of an object name and of the trailing checksum: SHA-1 (see [`brought_back`]).
const HASH_LEN: usize = 20;

/// The bytes of an entry before its extended flags or path: ten 32-bit stat fields, the object
/// name and the 16-bit flags.
#[cfg(test)]
const FIXED_LEN: usize = 40 + HASH_LEN + 2;

/// Where the 32-bit mode is in an entry; the stat data is the 40 bytes around it.
const MODE_AT: usize = 24;

/// Where the 32-bit seconds of the modification time are in an entry.
const MTIME_AT: usize = 8;

/// The flag that says git is to take the file as unchanged without looking at it.
const ASSUME_VALID: u16 = 0x8000;

/// The flag that says 16 bits of extended flags follow the flags (version 3 and later).
const EXTENDED: u16 = 0x4000;

/// The bits of the flags that hold the merge stage.
const STAGE: u16 = 0x3000;

/// The bits of the flags that hold the path's length, or all ones where it is longer.
const NAME_MASK: u16 = 0x0FFF;

/// The extended flag that says the file is outside the sparse checkout: git does not look at it.
const SKIP_WORKTREE: u16 = 0x4000;

/// The extended flag that says the file was added with `git add -N`.
const INTENT_TO_ADD: u16 = 0x2000;

/// The bytes of an end-of-entries extension: its header and its data (an offset and a hash).
/// Host git reads the bytes this far before the checksum as one, whatever comes before them.
const EOIE_LEN: usize = 8 + 4 + HASH_LEN;

/// The modes git gives entries: a regular file, an executable, a symbolic link, a submodule.
const MODES: [u32; 4] = [0o100644, 0o100755, 0o120000, 0o160000];

/// The mode of a directory, which only a sparse index's directory entries have.
const DIRECTORY: u32 = 0o040000;

/// The mode of a symbolic link.
const SYMLINK: u32 = 0o120000;

/// The mode of a submodule (a "gitlink").
const GITLINK: u32 = 0o160000;

/// The host's index as it is when the sandbox's comes back.
#[derive(Clone, Copy)]
pub struct HostIndex<'a> {
    /// Its bytes.
    pub bytes: &'a [u8],
    /// The seconds of its modification time since the epoch.
    pub modified: u64,
}

/// The index to write in place of the host's, made from `new` (the sandbox's), or why `new`
/// must not come back; `host` is the host's index as it is now (None: the host has none, or
/// it could not be read).
///
/// Both are read as the index of a SHA-1 repository (20-byte object names and checksum); a
/// repository with `extensions.objectFormat=sha256` has 32-byte ones, and its index is refused
/// as not parsing. The checksum of `new` is not verified, as host git does not verify it when
/// it reads an index; the one written is right.
///
/// Refused: a file that does not parse; a split index; an entry whose path git would not
/// check out (a sparse index's directory entries among them); an entry that is assume-valid
/// or skip-worktree where no entry of the same path in `host` has the same bit; a submodule
/// entry where `host` has none of the same path.
///
/// An entry keeps its stat data only where the host's index has an entry of the same path
/// with the same stat data, mode and object, modified before the host's index was (so that
/// host git took the file as clean by comparing it, not racily).
pub fn brought_back(new: &[u8], host: Option<HostIndex>) -> Result<Vec<u8>, String> {
    let index = parse(new).map_err(|why| format!("the index is not one git wrote: {why}"))?;
    let host_index = host.and_then(|h| parse(h.bytes).ok().map(|index| (h, index)));
    let host_entries = host_index.as_ref().map(|(_, i)| i);
    if let Some(why) = split_problem(&index)
        .or_else(|| entries_problem(&index))
        .or_else(|| hiding_problem(&index, host_entries))
        .or_else(|| submodule_problem(&index, host_entries))
    {
        return Err(why);
    }
    let clean: HashMap<&[u8], &[u8]> = host_index.as_ref().map_or_else(HashMap::new, |(h, i)| {
        i.entries
            .iter()
            .filter(|e| {
                u64::from(be32(h.bytes, e.start + MTIME_AT).unwrap_or(u32::MAX)) < h.modified
            })
            .map(|e| (e.path.as_slice(), stat_and_object(h.bytes, e)))
            .collect()
    });
    let mut out = new[..index.extensions_start].to_vec();
    for entry in &index.entries {
        if clean.get(entry.path.as_slice()) == Some(&stat_and_object(new, entry)) {
            continue;
        }
        out[entry.start..entry.start + MODE_AT].fill(0);
        out[entry.start + MODE_AT + 4..entry.start + 40].fill(0);
    }
    // With no extensions, host git must find none: bytes of an entry where it looks for an
    // end-of-entries extension would have it read extensions from inside the entries.
    let probe = out
        .len()
        .checked_sub(EOIE_LEN)
        .filter(|&at| at >= HEADER_LEN);
    if probe.is_some_and(|at| out.get(at..at + 4) == Some(b"EOIE".as_slice())) {
        return Err(
            "the index is not one git wrote: its last entry ends in bytes that read as an \
             end-of-entries extension"
                .to_owned(),
        );
    }
    let checksum = Sha1::digest(&out);
    out.extend_from_slice(&checksum);
    Ok(out)
}

/// The paths of the submodule entries of the index `bytes` (none where it does not parse).
pub fn submodules(bytes: &[u8]) -> Vec<Vec<u8>> {
    // A SHA-256 repository's index has longer object names and checksum; what a SHA-1 reading
    // of it makes of its entries fails on their lengths. (The index read here is the host's,
    // which git wrote: none of the sandbox's comes back unless it is SHA-1.)
    parse(bytes)
        .or_else(|_| parse_with(bytes, SHA256_LEN))
        .map_or_else(
            |_| Vec::new(),
            |index| {
                index
                    .entries
                    .into_iter()
                    .filter(|e| e.mode == GITLINK)
                    .map(|e| e.path)
                    .collect()
            },
        )
}

/// The stat data, mode and object name of `entry` in `bytes`.
fn stat_and_object<'a>(bytes: &'a [u8], entry: &Entry) -> &'a [u8] {
    &bytes[entry.start..entry.start + 40 + HASH_LEN]
}

/// One entry of an index, as host git reads it.
struct Entry {
    /// Where the entry begins in the file.
    start: usize,
    /// Its full path (in version 4, the previous path's kept prefix and its own suffix).
    path: Vec<u8>,
    /// Its mode.
    mode: u32,
    /// Its 16-bit flags, the path's length in them included.
    flags: u16,
    /// Its extended flags (zero where it has none).
    extended: u16,
}

impl Entry {
    /// The entry's merge stage, 0 to 3.
    fn stage(&self) -> u16 {
        (self.flags & STAGE) >> 12
    }

    /// Whether the entry is marked assume-valid.
    fn assume_valid(&self) -> bool {
        self.flags & ASSUME_VALID != 0
    }

    /// Whether the entry is marked skip-worktree.
    fn skip_worktree(&self) -> bool {
        self.extended & SKIP_WORKTREE != 0
    }
}

/// An index, as read from front to back.
struct Index {
    /// Its entries, in the file's order.
    entries: Vec<Entry>,
    /// Where the entries end and the extensions begin.
    extensions_start: usize,
    /// Its extensions, in the file's order: where each header begins, and its signature.
    extensions: Vec<(usize, [u8; 4])>,
}

/// The big-endian 16-bit number at `at`, if the bytes are there.
fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let field = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(field.try_into().ok()?))
}

/// The big-endian 32-bit number at `at`, if the bytes are there.
fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(field.try_into().ok()?))
}

/// A 32-bit number of the file as an offset or count (it always fits on the targets paude has).
fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A path or signature as a message shows it: quoted, with anything unprintable escaped.
fn shown(bytes: &[u8]) -> String {
    format!("\"{}\"", String::from_utf8_lossy(bytes).escape_debug())
}

/// The index in `bytes` read from front to back, or why it cannot be.
/// The bytes of a SHA-256 object name and checksum, for [`submodules`].
const SHA256_LEN: usize = 32;

fn parse(bytes: &[u8]) -> Result<Index, String> {
    parse_with(bytes, HASH_LEN)
}

/// The index in `bytes`, whose object names and checksum have `hash` bytes.
fn parse_with(bytes: &[u8], hash: usize) -> Result<Index, String> {
    let Some(body_len) = bytes.len().checked_sub(hash).filter(|&n| n >= HEADER_LEN) else {
        return Err(format!(
            "its {} bytes are fewer than a header and a checksum",
            bytes.len()
        ));
    };
    // Entries and extensions end where the checksum begins: nothing is read from it.
    let body = &bytes[..body_len];
    if body.get(..4) != Some(b"DIRC".as_slice()) {
        return Err("it does not begin with the signature \"DIRC\"".to_owned());
    }
    let version = be32(body, 4).unwrap_or(0);
    if !(2..=4).contains(&version) {
        return Err(format!("its version is {version}, not 2, 3 or 4"));
    }
    let count = to_usize(be32(body, 8).unwrap_or(0));
    let mut entries: Vec<Entry> = Vec::with_capacity(count.min(body_len / (40 + hash + 2)));
    let mut at = HEADER_LEN;
    for number in 1..=count {
        let previous = entries.last().map_or(&[][..], |e| e.path.as_slice());
        let (entry, next) = parse_entry(body, at, version, previous, hash)
            .map_err(|why| format!("its entry {number} of {count} (at byte {at}) {why}"))?;
        entries.push(entry);
        at = next;
    }
    let extensions_start = at;
    let mut extensions = Vec::new();
    while at < body_len {
        let Some(header) = body.get(at..at + 8) else {
            return Err(format!(
                "its last {} bytes before the checksum (from byte {at}) are not an extension",
                body_len - at
            ));
        };
        let mut signature = [0; 4];
        signature.copy_from_slice(&header[..4]);
        let size = to_usize(be32(header, 4).unwrap_or(0));
        let data_at = at + 8;
        if data_at.checked_add(size).is_none_or(|end| end > body_len) {
            return Err(format!(
                "its extension {} (at byte {at}) claims {size} bytes, more than are left",
                shown(&signature)
            ));
        }
        extensions.push((at, signature));
        at = data_at + size;
    }
    Ok(Index {
        entries,
        extensions_start,
        extensions,
    })
}

/// The entry of an index of `version` that begins at `start` in `body` (the file without its
/// checksum), `previous` being the path of the entry before it, and where the next begins; or
/// why it cannot be read, as words that follow the entry's name.
fn parse_entry(
    body: &[u8],
    start: usize,
    version: u32,
    previous: &[u8],
    hash: usize,
) -> Result<(Entry, usize), String> {
    const CUT: &str = "is cut off by the end of the file";
    let fixed = 40 + hash + 2;
    let mode = be32(body, start + MODE_AT).ok_or(CUT)?;
    let flags = be16(body, start + fixed - 2).ok_or(CUT)?;
    let mut name_at = start + fixed;
    let mut extended = 0;
    if flags & EXTENDED != 0 {
        if version < 3 {
            return Err("has extended flags, which a version 2 index does not have".to_owned());
        }
        extended = be16(body, name_at).ok_or(CUT)?;
        if extended & !(SKIP_WORKTREE | INTENT_TO_ADD) != 0 {
            return Err(format!(
                "has extended flags {extended:#06x}, with bits git does not define"
            ));
        }
        name_at += 2;
    }
    let (path, next) = if version == 4 {
        // The number of bytes to drop from the end of the previous path, then the rest of
        // this one, NUL-terminated; no padding.
        let (strip, suffix_at) = varint(body, name_at)
            .ok_or("has a count of path bytes to reuse that is cut off or too large")?;
        let keep = previous.len().checked_sub(strip).ok_or_else(|| {
            format!(
                "drops {strip} bytes from the previous path, which has only {}",
                previous.len()
            )
        })?;
        let suffix = body.get(suffix_at..).ok_or(CUT)?;
        let len = suffix.iter().position(|&b| b == 0).ok_or(CUT)?;
        let mut path = Vec::with_capacity(keep + len);
        path.extend_from_slice(&previous[..keep]);
        path.extend_from_slice(&suffix[..len]);
        (path, suffix_at + len + 1)
    } else {
        // The path, NUL-terminated, and NULs to a multiple of 8 bytes from the entry's start.
        let name = body.get(name_at..).ok_or(CUT)?;
        let len = name.iter().position(|&b| b == 0).ok_or(CUT)?;
        let next = start + ((name_at - start + len + 8) & !7);
        let padding = body.get(name_at + len..next).ok_or(CUT)?;
        if padding.iter().any(|&b| b != 0) {
            return Err("has bytes other than NUL after its path".to_owned());
        }
        (name[..len].to_vec(), next)
    };
    // Host git takes the length from the flags where it is short enough to fit: it must be
    // the one the NUL gives, or host git would read another path than this one.
    let named = usize::from(flags & NAME_MASK);
    if named != path.len().min(usize::from(NAME_MASK)) {
        return Err(format!(
            "says its path has {named} bytes, but it has {} ({})",
            path.len(),
            shown(&path)
        ));
    }
    let entry = Entry {
        start,
        path,
        mode,
        flags,
        extended,
    };
    Ok((entry, next))
}

/// The number in git's variable-length encoding at `at` (7 bits a byte, the high bit saying
/// another byte follows, each continuation adding one), and where it ends; None where it is
/// cut off or does not fit.
fn varint(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut at = at;
    let mut byte = *bytes.get(at)?;
    at += 1;
    let mut value = usize::from(byte & 0x7f);
    while byte & 0x80 != 0 {
        byte = *bytes.get(at)?;
        at += 1;
        value = value
            .checked_add(1)?
            .checked_mul(128)?
            .checked_add(usize::from(byte & 0x7f))?;
    }
    Some((value, at))
}

/// Why `index` must not come back if it is split: its `link` extension names a shared index
/// file elsewhere, whose entries host git would read as well, and which this one leaves out.
fn split_problem(index: &Index) -> Option<String> {
    index
        .extensions
        .iter()
        .any(|(_, signature)| signature == b"link")
        .then(|| {
            "the index is split: its \"link\" extension names a shared index file elsewhere, \
             whose entries host git would read as well"
                .to_owned()
        })
}

/// What is wrong with the entries of `index`, if anything: a path git would not create, a mode
/// git does not give, or an order git does not keep.
fn entries_problem(index: &Index) -> Option<String> {
    for entry in &index.entries {
        if entry.mode == DIRECTORY && entry.path.ends_with(b"/") {
            return Some(format!(
                "the index has a sparse directory entry {}, which is not accepted",
                shown(&entry.path)
            ));
        }
        if let Some(why) = path_problem(&entry.path, entry.mode) {
            return Some(format!(
                "the index has an entry {} that git would not create: {why}",
                shown(&entry.path)
            ));
        }
        if !MODES.contains(&entry.mode) {
            return Some(format!(
                "the index is not one git wrote: its entry {} has mode {:o}",
                shown(&entry.path),
                entry.mode
            ));
        }
    }
    for pair in index.entries.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let ordered = match a.path.cmp(&b.path) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => a.stage() != 0 && a.stage() < b.stage(),
            std::cmp::Ordering::Greater => false,
        };
        if !ordered {
            return Some(format!(
                "the index is not one git wrote: its entry {} (stage {}) comes after {} \
                 (stage {})",
                shown(&b.path),
                b.stage(),
                shown(&a.path),
                a.stage()
            ));
        }
    }
    None
}

/// What is wrong with `path`, an entry's path of `mode`, if anything: git creates only
/// relative paths of non-empty components, none of them `.`, `..` or its own directory.
fn path_problem(path: &[u8], mode: u32) -> Option<&'static str> {
    if path.is_empty() {
        return Some("it is empty");
    }
    if path.starts_with(b"/") {
        return Some("it begins with a slash");
    }
    if path.ends_with(b"/") {
        return Some("it ends with a slash");
    }
    if path.contains(&b'\\') {
        return Some("it has a backslash");
    }
    if path.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Some("it has a control character");
    }
    let mut components = path.split(|&b| b == b'/').peekable();
    while let Some(component) = components.next() {
        if component.is_empty() {
            return Some("it has an empty component (\"//\")");
        }
        if component == b"." || component == b".." {
            return Some("it has a \".\" or \"..\" component");
        }
        if names_any(component, &[b".git", b"git~1"]) {
            return Some("it has a component that names git's own directory");
        }
        if components.peek().is_none()
            && mode == SYMLINK
            && names_any(component, &[b".gitmodules", b"gitmod~1"])
        {
            return Some("it is a symbolic link named .gitmodules");
        }
    }
    None
}

/// Whether the path component `component` names one of `names` (lowercase) on some file
/// system: compared without regard to ASCII case, ignoring trailing dots and spaces, and an
/// NTFS stream name after a colon.
fn names_any(component: &[u8], names: &[&[u8]]) -> bool {
    let stem = match component.iter().position(|&b| b == b':') {
        Some(colon) => &component[..colon],
        None => component,
    };
    let kept = stem
        .iter()
        .rposition(|&b| b != b'.' && b != b' ')
        .map_or(0, |last| last + 1);
    let stem = &stem[..kept];
    names.iter().any(|name| stem.eq_ignore_ascii_case(name))
}

/// What is wrong with the submodule entries of `index`, if anything: one at a path where the
/// host's index has none. Host git recurses into a submodule on `git status`, `git diff` and
/// `git add`, and obeys the config of the repository it finds there: a repository the sandbox
/// made in the workspace, with a `core.fsmonitor` of its choosing, and an index naming it as a
/// submodule, would have the user's next `git status` run that program.
fn submodule_problem(index: &Index, host: Option<&Index>) -> Option<String> {
    let known: HashSet<&[u8]> = host
        .map_or(&[][..], |h| h.entries.as_slice())
        .iter()
        .filter(|e| e.mode == GITLINK)
        .map(|e| e.path.as_slice())
        .collect();
    if let Some(new) = index
        .entries
        .iter()
        .find(|e| e.mode == GITLINK && !known.contains(e.path.as_slice()))
    {
        return Some(format!(
            "the index has a submodule {} that the host's index does not: host git would run \
             `git status` in it, obeying a config the sandbox may have written (add submodules \
             on the host)",
            shown(&new.path)
        ));
    }
    // A submodule's path is guarded only while the index names it: one dropped here would let
    // a later sandbox put a repository there unguarded, which a `git reset` on the host then
    // names again.
    let kept: HashSet<&[u8]> = index
        .entries
        .iter()
        .filter(|e| e.mode == GITLINK)
        .map(|e| e.path.as_slice())
        .collect();
    let dropped = known.iter().find(|path| !kept.contains(**path))?;
    Some(format!(
        "the index no longer has the submodule {}, which the host's index has: paude guards a \
         submodule's path only while the index names it, and host git would obey a repository \
         put there once the submodule is back (remove submodules on the host)",
        shown(dropped)
    ))
}

/// What is wrong with the assume-valid and skip-worktree bits of `index`, if anything: an
/// entry has one that no entry of the same path has in `host`, the host's index.
fn hiding_problem(index: &Index, host: Option<&Index>) -> Option<String> {
    if !index
        .entries
        .iter()
        .any(|e| e.assume_valid() || e.skip_worktree())
    {
        return None;
    }
    let entries = host.map_or(&[][..], |h| h.entries.as_slice());
    let assumed: HashSet<&[u8]> = entries
        .iter()
        .filter(|e| e.assume_valid())
        .map(|e| e.path.as_slice())
        .collect();
    let skipped: HashSet<&[u8]> = entries
        .iter()
        .filter(|e| e.skip_worktree())
        .map(|e| e.path.as_slice())
        .collect();
    for entry in &index.entries {
        let path = entry.path.as_slice();
        let bit = if entry.assume_valid() && !assumed.contains(path) {
            "assume-valid"
        } else if entry.skip_worktree() && !skipped.contains(path) {
            "skip-worktree"
        } else {
            continue;
        };
        return Some(format!(
            "the index marks its entry {} {bit}, which hides its changes from git status and \
             git diff, and the host's index does not",
            shown(path)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::testing::git;
    use std::path::Path;

    /// A temporary directory (kept alive by the value) with a repository of a few files added,
    /// `f` among them, and one commit.
    fn repository() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        for name in ["f", "README", "src/a.rs", "src/b.rs", "src/deep/c", "z"] {
            std::fs::write(root.join(name), name).unwrap();
        }
        git(root, &["add", "."]);
        git(root, &["commit", "-q", "-m", "x"]);
        dir
    }

    /// The repository's index file.
    fn index(dir: &Path) -> Vec<u8> {
        std::fs::read(dir.join(".git/index")).unwrap()
    }

    /// The paths of the entries of the index `bytes`, which must parse.
    fn paths(bytes: &[u8]) -> Vec<String> {
        let index = parse(bytes).unwrap();
        index
            .entries
            .iter()
            .map(|e| String::from_utf8(e.path.clone()).unwrap())
            .collect()
    }

    /// The paths of [`repository`], in the index's order.
    const PATHS: [&str; 6] = ["README", "f", "src/a.rs", "src/b.rs", "src/deep/c", "z"];

    /// An entry for [`build`]: a path, a mode, flags (without the length) and extended flags.
    struct Made<'a> {
        /// The entry's path.
        path: &'a [u8],
        /// The entry's mode.
        mode: u32,
        /// The entry's flags, without the path's length.
        flags: u16,
        /// The entry's extended flags (written when `flags` has [`EXTENDED`]).
        extended: u16,
    }

    /// A regular file's entry of `path`.
    fn file(path: &[u8]) -> Made<'_> {
        Made {
            path,
            mode: 0o100644,
            flags: 0,
            extended: 0,
        }
    }

    /// An index of `version` with `entries`, as git would write it (version 4 paths are
    /// compressed against the previous path, which is forgotten before the entries of
    /// `fresh`), and where each entry begins.
    fn build_entries(version: u32, entries: &[Made], fresh: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let mut out = b"DIRC".to_vec();
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&u32::try_from(entries.len()).unwrap().to_be_bytes());
        let mut starts = Vec::new();
        let mut previous: &[u8] = b"";
        for (number, entry) in entries.iter().enumerate() {
            let start = out.len();
            starts.push(start);
            for field in 0..10u32 {
                let value = if field == 6 { entry.mode } else { field };
                out.extend_from_slice(&value.to_be_bytes());
            }
            out.extend_from_slice(&[0xab; HASH_LEN]);
            let len = u16::try_from(entry.path.len().min(0xfff)).unwrap();
            out.extend_from_slice(&(entry.flags | len).to_be_bytes());
            if entry.flags & EXTENDED != 0 {
                out.extend_from_slice(&entry.extended.to_be_bytes());
            }
            if version == 4 {
                let common = if fresh.contains(&number) {
                    0
                } else {
                    previous
                        .iter()
                        .zip(entry.path)
                        .take_while(|(a, b)| a == b)
                        .count()
                };
                let strip = previous.len() - common;
                let mut encoded = vec![u8::try_from(strip & 0x7f).unwrap()];
                let mut rest = strip >> 7;
                while rest > 0 {
                    rest -= 1;
                    encoded.insert(0, 0x80 | u8::try_from(rest & 0x7f).unwrap());
                    rest >>= 7;
                }
                out.extend_from_slice(&encoded);
                out.extend_from_slice(&entry.path[common..]);
                out.push(0);
            } else {
                out.extend_from_slice(entry.path);
                let len = out.len() - start;
                out.resize(start + ((len + 8) & !7), 0);
            }
            previous = entry.path;
        }
        (out, starts)
    }

    /// `entries` (from [`build_entries`]) with `extensions` and a checksum of zeros.
    fn finish(mut entries: Vec<u8>, extensions: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        for (signature, data) in extensions {
            entries.extend_from_slice(*signature);
            entries.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
            entries.extend_from_slice(data);
        }
        entries.extend_from_slice(&[0; HASH_LEN]);
        entries
    }

    /// A version 2 index of regular files at `paths`, with no extensions.
    fn build(paths: &[&[u8]]) -> Vec<u8> {
        let entries: Vec<Made> = paths.iter().map(|p| file(p)).collect();
        finish(build_entries(2, &entries, &[]).0, &[])
    }

    /// [`brought_back`] where the host has `host`, modified long after every entry.
    fn against(new: &[u8], host: Option<&[u8]>) -> Result<Vec<u8>, String> {
        let host = host.map(|bytes| HostIndex {
            bytes,
            modified: u64::MAX,
        });
        brought_back(new, host)
    }

    /// Why `new` is refused where the host has `host`, if it is.
    fn refusal(new: &[u8], host: Option<&[u8]>) -> Option<String> {
        against(new, host).err()
    }

    /// What `new` brings back where the host has `host`.
    fn accepted(new: &[u8], host: Option<&[u8]>) -> Vec<u8> {
        against(new, host).expect("accepted")
    }

    /// Why `new` is refused where the host has `host`.
    fn refused(new: &[u8], host: Option<&[u8]>) -> String {
        against(new, host).expect_err("refused")
    }

    /// Whether `out` is what [`brought_back`] writes: it parses, has no extensions, and ends
    /// in the SHA-1 of the rest.
    fn written(out: &[u8]) -> bool {
        let (body, checksum) = out.split_at(out.len() - HASH_LEN);
        parse(out).is_ok_and(|i| i.extensions.is_empty())
            && Sha1::digest(body).as_slice() == checksum
    }

    /// `out` installed as `root`'s index, and what `git status --porcelain` says of it.
    fn status_with(root: &Path, out: &[u8]) -> String {
        std::fs::write(root.join(".git/index"), out).unwrap();
        let status = std::process::Command::new("git")
            .args(["status", "--porcelain"])
            .current_dir(root)
            .output()
            .unwrap();
        assert!(status.status.success());
        String::from_utf8(status.stdout).unwrap()
    }

    /// `bytes` with its checksum made again, as git would write it.
    fn rehashed(mut bytes: Vec<u8>) -> Vec<u8> {
        let body = bytes.len() - HASH_LEN;
        let checksum = Sha1::digest(&bytes[..body]);
        bytes[body..].copy_from_slice(&checksum);
        bytes
    }

    /// The bytes of the 40-hex object name `hex`.
    fn object(hex: &str) -> Vec<u8> {
        (0..40)
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn real_indexes_are_accepted_and_written_as_git_reads_them() {
        let dir = repository();
        let root = dir.path();
        let v2 = index(root);
        assert_eq!(be32(&v2, 4), Some(2));
        assert_eq!(paths(&v2), PATHS);
        for host in [None, Some(&v2[..])] {
            let out = accepted(&v2, host);
            assert!(written(&out));
            assert_eq!(paths(&out), PATHS);
        }
        git(root, &["fsck", "--no-dangling"]);

        git(root, &["update-index", "--index-version", "4"]);
        let v4 = index(root);
        assert_eq!(be32(&v4, 4), Some(4));
        let out = accepted(&v4, Some(&v2));
        assert_eq!(paths(&out), PATHS);
        assert_eq!(status_with(root, &out), "");
        git(root, &["fsck", "--no-dangling"]);

        // `git add -N` makes a version 3 index with an intent-to-add entry; stages are fine.
        git(root, &["update-index", "--index-version", "2"]);
        std::fs::write(root.join("new"), "new").unwrap();
        git(root, &["add", "-N", "new"]);
        let v3 = index(root);
        assert_eq!(be32(&v3, 4), Some(3));
        let out = accepted(&v3, None);
        assert!(paths(&out).contains(&"new".to_owned()));
        assert_eq!(status_with(root, &out), " A new\n");
    }

    #[test]
    fn extensions_do_not_come_back() {
        let dir = repository();
        let root = dir.path();
        for (key, value) in [
            ("index.threads", "2"),
            ("index.recordOffsetTable", "true"),
            ("index.recordEndOfIndexEntries", "true"),
            ("core.untrackedCache", "true"),
        ] {
            git(root, &["config", key, value]);
        }
        // Each changes the version, so that git writes the index again.
        for version in ["4", "2"] {
            git(root, &["update-index", "--index-version", version]);
            git(root, &["write-tree"]);
            git(root, &["status", "--porcelain"]);
            let bytes = index(root);
            let signatures: Vec<[u8; 4]> = parse(&bytes)
                .unwrap()
                .extensions
                .iter()
                .map(|e| e.1)
                .collect();
            for signature in [b"TREE", b"UNTR", b"IEOT", b"EOIE"] {
                assert!(signatures.contains(signature), "{signatures:?}");
            }
            let out = accepted(&bytes, Some(&bytes));
            assert!(written(&out), "version {version}");
            assert_eq!(paths(&out), PATHS);
            assert_eq!(status_with(root, &out), "");
            git(root, &["fsck", "--no-dangling"]);
        }
    }

    #[test]
    fn a_cache_tree_the_sandbox_wrote_is_not_committed() {
        let dir = repository();
        let root = dir.path();
        std::fs::write(root.join("new"), "new").unwrap();
        git(root, &["add", "new"]);
        git(root, &["write-tree"]);
        // A tree of the sandbox's choosing, with a file the entries do not have.
        let made = root.join(".git/made-index");
        let with_made = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .env("GIT_INDEX_FILE", &made)
                .current_dir(root)
                .output()
                .unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        with_made(&["read-tree", "HEAD"]);
        std::fs::write(root.join("evil.sh"), "echo planted").unwrap();
        let blob = with_made(&["hash-object", "-w", "evil.sh"]);
        std::fs::remove_file(root.join("evil.sh")).unwrap();
        with_made(&[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("100755,{blob},evil.sh"),
        ]);
        let evil = with_made(&["write-tree"]);
        // The index's root tree swapped for it.
        let mut bytes = index(root);
        let parsed = parse(&bytes).unwrap();
        let tree = parsed
            .extensions
            .iter()
            .find(|e| &e.1 == b"TREE")
            .unwrap()
            .0;
        let data = tree + 8;
        assert_eq!(bytes[data], 0, "the root comes first, with an empty path");
        let line = data + 1 + bytes[data + 1..].iter().position(|&b| b == b'\n').unwrap() + 1;
        bytes[line..line + HASH_LEN].copy_from_slice(&object(&evil));
        let crafted = rehashed(bytes);

        // Taken as it is, the next commit has the sandbox's tree.
        let copy = tempfile::tempdir().unwrap();
        let control = copy.path().join("r");
        let cp = std::process::Command::new("cp")
            .args(["-a"])
            .arg(root)
            .arg(&control)
            .status()
            .unwrap();
        assert!(cp.success());
        std::fs::write(control.join(".git/index"), &crafted).unwrap();
        git(&control, &["commit", "-q", "-m", "x"]);
        let tree = std::process::Command::new("git")
            .args(["rev-parse", "HEAD^{tree}"])
            .current_dir(&control)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(tree.stdout).unwrap().trim(), evil);

        // Brought back, it commits what its entries say.
        let host = index(root);
        let out = accepted(&crafted, Some(&host));
        std::fs::write(root.join(".git/index"), &out).unwrap();
        git(root, &["commit", "-q", "-m", "x"]);
        let listed = std::process::Command::new("git")
            .args(["ls-tree", "--name-only", "HEAD"])
            .current_dir(root)
            .output()
            .unwrap();
        let listed = String::from_utf8(listed.stdout).unwrap();
        assert!(
            listed.contains("new\n") && !listed.contains("evil.sh"),
            "{listed}"
        );
    }

    #[test]
    fn stat_data_stays_only_where_it_is_the_hosts() {
        use std::os::unix::fs::MetadataExt;
        let dir = repository();
        let root = dir.path();
        let host = index(root);
        // A changed file of the same size, its modification time set long past, and an entry
        // that copies its stat data.
        let f = root.join("f");
        std::fs::write(&f, "g").unwrap();
        let file = std::fs::File::options().write(true).open(&f).unwrap();
        file.set_modified(std::time::UNIX_EPOCH).unwrap();
        let meta = f.metadata().unwrap();
        let parsed = parse(&host).unwrap();
        let entry = parsed.entries.iter().find(|e| e.path == b"f").unwrap();
        let mut crafted = host.clone();
        let fields = [
            meta.ctime(),
            meta.ctime_nsec(),
            meta.mtime(),
            meta.mtime_nsec(),
            i64::try_from(meta.dev()).unwrap(),
            i64::try_from(meta.ino()).unwrap(),
        ];
        for (number, value) in fields.into_iter().enumerate() {
            let at = entry.start + 4 * number;
            crafted[at..at + 4].copy_from_slice(&(value as u32).to_be_bytes());
        }
        let crafted = rehashed(crafted);
        // Taken as it is, the change is hidden.
        assert_eq!(status_with(root, &crafted), "");
        // Brought back, it shows.
        std::fs::write(root.join(".git/index"), &host).unwrap();
        let out = accepted(&crafted, Some(&host));
        assert_eq!(status_with(root, &out), " M f\n");

        // Every other entry kept the host's stat data; an index modified before an entry
        // (which host git would compare racily) keeps none.
        let out = accepted(&host, Some(&host));
        assert_eq!(
            out,
            host[..parse(&host).unwrap().extensions_start]
                .iter()
                .chain(&out[out.len() - HASH_LEN..])
                .copied()
                .collect::<Vec<u8>>()
        );
        let early = HostIndex {
            bytes: &host,
            modified: 0,
        };
        let out = brought_back(&host, Some(early)).unwrap();
        for entry in parse(&out).unwrap().entries {
            assert!(
                out[entry.start..entry.start + MODE_AT]
                    .iter()
                    .all(|&b| b == 0)
            );
        }
        let out = accepted(&host, None);
        for entry in parse(&out).unwrap().entries {
            assert!(
                out[entry.start + MODE_AT + 4..entry.start + 40]
                    .iter()
                    .all(|&b| b == 0)
            );
        }
    }

    #[test]
    fn hiding_bits_need_the_hosts_index_to_have_them() {
        let dir = repository();
        let root = dir.path();
        let plain = index(root);
        git(root, &["update-index", "--skip-worktree", "f"]);
        let skipped = index(root);
        let why = refused(&skipped, None);
        assert!(why.contains("\"f\" skip-worktree"), "{why}");
        refused(&skipped, Some(&plain));
        refused(&skipped, Some(b"not an index"));
        accepted(&skipped, Some(&skipped));

        git(root, &["update-index", "--no-skip-worktree", "f"]);
        git(root, &["update-index", "--assume-unchanged", "src/a.rs"]);
        let assumed = index(root);
        let why = refused(&assumed, None);
        assert!(why.contains("\"src/a.rs\" assume-valid"), "{why}");
        refused(&assumed, Some(&skipped));
        accepted(&assumed, Some(&assumed));
    }

    #[test]
    fn a_submodule_comes_back_only_where_the_host_has_it() {
        let mut module = file(b"sub");
        module.mode = GITLINK;
        let with = finish(build_entries(2, &[file(b"a"), module], &[]).0, &[]);
        let without = build(&[b"a"]);
        let why = refused(&with, Some(&without));
        assert!(why.contains("submodule \"sub\""), "{why}");
        refused(&with, None);
        accepted(&with, Some(&with));
        // A host's submodule that the sandbox's index drops is refused too: its path would go
        // unguarded in the next launch.
        let why = refused(&without, Some(&with));
        assert!(why.contains("no longer has the submodule \"sub\""), "{why}");
    }

    #[test]
    fn hand_built_indexes_are_read_like_git_writes_them() {
        let good = build(&[b"a", b"b/c", b"b/d", b".gitignore", b"x.git", b"..a"]);
        // Not sorted: ".." sorts first.
        assert!(refused(&good, None).contains("comes after"));
        let good = build(&[b"..a", b".gitignore", b"a", b"b/.git-x", b"b/c", b"x.git"]);
        assert!(written(&accepted(&good, None)));

        let entries = [file(b"src/a"), file(b"src/b"), file(b"src/c/d"), file(b"t")];
        let (v4, _) = build_entries(4, &entries, &[2]);
        let extensions_start = v4.len();
        let bytes = finish(v4.clone(), &[]);
        assert_eq!(
            paths(&accepted(&bytes, None)),
            ["src/a", "src/b", "src/c/d", "t"]
        );

        // Extensions, known or not, are read past and left out.
        let bytes = finish(v4.clone(), &[(b"ZZZZ", vec![1, 2, 3]), (b"TREE", vec![])]);
        let out = accepted(&bytes, None);
        assert!(written(&out));
        assert_eq!(out.len(), extensions_start + HASH_LEN);
        // A split index is refused.
        let bytes = finish(v4.clone(), &[(b"link", vec![0; HASH_LEN])]);
        assert!(refused(&bytes, None).contains("split"));
        // An extension that runs into the checksum, and bytes that are not one.
        let mut bytes = finish(v4.clone(), &[(b"ZZZZ", vec![1, 2, 3])]);
        bytes[extensions_start + 7] = 4;
        assert!(refused(&bytes, None).contains("claims 4 bytes"));
        let mut bytes = finish(v4.clone(), &[]);
        bytes.splice(extensions_start..extensions_start, [1, 2, 3]);
        assert!(refused(&bytes, None).contains("not an extension"));

        // A last entry whose path ends where host git looks for an end-of-entries extension.
        let mut path = b"aaaaaaaaaa".to_vec();
        path.extend_from_slice(b"EOIE");
        path.resize(40, b'b');
        let bytes = build(&[&path]);
        assert!(refused(&bytes, None).contains("end-of-entries"));
        path[10] = b'F';
        accepted(&build(&[&path]), None);
    }

    #[test]
    fn paths_git_would_not_create_are_refused() {
        for path in [
            &b"../x"[..],
            b".git/hooks/post-checkout",
            b".GIT/config",
            b"a/.git./b",
            b"a/.git /b",
            b".git::$INDEX_ALLOCATION/config",
            b"git~1/x",
            b"GIT~1/x",
            b"a//b",
            b"/abs",
            b"a/",
            b"a/./b",
            b"a/..",
            b".",
            b"a\\b",
            b"a\nb",
            b"a\x7fb",
            b".git",
        ] {
            let why = refusal(&build(&[path]), None).expect("refused");
            assert!(why.contains(&shown(path)), "{why}");
            assert!(why.contains("would not create"), "{why}");
        }
        let why = refusal(&build(&[b""]), None).unwrap();
        assert!(why.contains("it is empty"), "{why}");

        let mut link = file(b"sub/.gitmodules");
        link.mode = SYMLINK;
        let bytes = finish(build_entries(2, &[link], &[]).0, &[]);
        assert!(refusal(&bytes, None).unwrap().contains("symbolic link"));
        let mut link = file(b".gitmodules");
        link.mode = 0o100755;
        let bytes = finish(build_entries(2, &[link], &[]).0, &[]);
        assert_eq!(refusal(&bytes, None), None);

        // A version 4 path that only its prefix makes bad.
        let entries = [file(b"a/..b"), file(b"a/..")];
        let bytes = finish(build_entries(4, &entries, &[]).0, &[]);
        assert_eq!(paths(&bytes), ["a/..b", "a/.."]);
        assert!(refusal(&bytes, None).unwrap().contains("\"a/..\""));
    }

    #[test]
    fn entries_git_would_not_write_are_refused() {
        // A mode git does not give, and a sparse directory.
        let mut odd = file(b"a");
        odd.mode = 0o104755;
        let bytes = finish(build_entries(2, &[odd], &[]).0, &[]);
        assert!(refusal(&bytes, None).unwrap().contains("mode 104755"));
        let mut sparse = file(b"dir/");
        sparse.mode = DIRECTORY;
        sparse.flags = EXTENDED;
        sparse.extended = SKIP_WORKTREE;
        let bytes = finish(build_entries(3, &[sparse], &[]).0, &[]);
        assert!(refusal(&bytes, None).unwrap().contains("sparse"));

        // Extended flags in version 2, or with bits git does not define.
        let mut flagged = file(b"a");
        flagged.flags = EXTENDED;
        flagged.extended = INTENT_TO_ADD;
        let bytes = finish(build_entries(2, &[flagged], &[]).0, &[]);
        assert!(refusal(&bytes, None).unwrap().contains("version 2"));
        let mut flagged = file(b"a");
        flagged.flags = EXTENDED;
        flagged.extended = 0x1000;
        let bytes = finish(build_entries(3, &[flagged], &[]).0, &[]);
        assert!(refusal(&bytes, None).unwrap().contains("0x1000"));

        // Stages in order are fine; the same path twice, or a merged path with stages, is not.
        let staged = |path: &'static [u8], stage: u16| Made {
            flags: stage << 12,
            ..file(path)
        };
        let merge = [
            staged(b"a", 1),
            staged(b"a", 2),
            staged(b"a", 3),
            file(b"b"),
        ];
        let bytes = finish(build_entries(2, &merge, &[]).0, &[]);
        assert_eq!(refusal(&bytes, None), None);
        for pair in [
            [file(b"a"), file(b"a")],
            [file(b"a"), staged(b"a", 2)],
            [staged(b"a", 2), staged(b"a", 1)],
        ] {
            let bytes = finish(build_entries(2, &pair, &[]).0, &[]);
            assert!(refusal(&bytes, None).unwrap().contains("comes after"));
        }

        // A length in the flags that is not the path's: host git would read another path.
        let mut bytes = build(&[b"abc"]);
        bytes[HEADER_LEN + FIXED_LEN - 1] = 2;
        assert!(
            refusal(&bytes, None)
                .unwrap()
                .contains("says its path has 2")
        );
        // Bytes other than NUL in the padding.
        let mut bytes = build(&[b"abc"]);
        bytes[HEADER_LEN + FIXED_LEN + 4] = b'x';
        assert!(refusal(&bytes, None).unwrap().contains("other than NUL"));
        // A version 4 entry dropping more than the previous path has.
        let (mut v4, _) = build_entries(4, &[file(b"ab")], &[]);
        v4[HEADER_LEN + FIXED_LEN] = 1;
        let bytes = finish(v4, &[]);
        assert!(refusal(&bytes, None).unwrap().contains("drops 1 bytes"));

        // A long path, whose length the flags do not hold.
        let long = vec![b'x'; 5000];
        let bytes = build(&[&long]);
        assert_eq!(refusal(&bytes, None), None);
        let (v4, _) = build_entries(4, &[file(&long), file(b"y")], &[]);
        assert_eq!(refusal(&finish(v4, &[]), None), None);
    }

    #[test]
    fn files_that_are_not_indexes_are_refused() {
        let good = build(&[b"a", b"b"]);
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(refusal(&bad, None).unwrap().contains("DIRC"));
        let mut bad = good.clone();
        bad[7] = 5;
        assert!(refusal(&bad, None).unwrap().contains("version is 5"));
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(refusal(&bad, None).unwrap().contains("entry 3 of"));
        assert!(refusal(b"", None).unwrap().contains("not one git wrote"));
        let huge = varint(&[0xff; 64], 0);
        assert_eq!(huge, None);
        assert_eq!(varint(&[0x80, 0x00], 0), Some((128, 2)));
    }

    #[test]
    fn every_truncation_and_many_corruptions_are_refused_without_panicking() {
        let dir = repository();
        let root = dir.path();
        git(root, &["config", "index.threads", "2"]);
        git(root, &["config", "index.recordOffsetTable", "true"]);
        git(root, &["config", "index.recordEndOfIndexEntries", "true"]);
        for version in ["4", "2"] {
            git(root, &["update-index", "--index-version", version]);
            let bytes = index(root);
            assert_eq!(refusal(&bytes, None), None);
            let parsed = parse(&bytes).unwrap();
            // A file cut where an extension begins, its checksum aside, is still an index
            // (git does not verify the checksum either); every other cut is refused.
            let mut whole: Vec<usize> = parsed.extensions.iter().map(|e| e.0).collect();
            whole.push(parsed.extensions_start);
            for len in 0..bytes.len() {
                let cut = &bytes[..len];
                let why = refusal(cut, Some(cut));
                let kept = len.checked_sub(HASH_LEN);
                if !kept.is_some_and(|kept| whole.contains(&kept)) {
                    assert!(why.is_some(), "version {version} cut at {len}");
                }
            }
            // Every byte of the file set to a few values: whatever comes out, nothing panics.
            for at in 0..bytes.len() {
                for value in [0x00, 0x01, 0x2f, 0x7f, 0x80, 0xff] {
                    let mut bent = bytes.clone();
                    bent[at] = value;
                    let _ = refusal(&bent, Some(&bent[..]));
                }
            }
        }
    }
}
