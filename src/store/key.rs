//! The cache key of a rootfs: what the tree's content depends on, hashed.
//!
//! The key is sha256 over a canonical encoding: a magic string, the encoding's version, the
//! exporter's version, then every closure package (name, version, architecture) in closure
//! order, then every fsEntry in manifest order, then the source root the files are copied from
//! (`/`, or dpkg's `DPKG_ROOT`). Every field is length-prefixed, so no two
//! different inputs encode to the same bytes. Runtime settings (environment, mounts, the
//! command) do not change the tree and are not part of it.
//!
//! Invariant: the same inputs give the same key on every run and every machine. A test pins
//! known keys; changing the encoding or the exporter's output means bumping a version below,
//! which moves every environment to a new key instead of reusing a tree built differently.

use crate::manifest::FsEntry;
use crate::packages::Closure;
use crate::rootpath;
use sha2::{Digest, Sha256};
use std::fmt;

/// Version of the byte encoding below.
const ENCODING_VERSION: u32 = 1;

/// Version of the exporter's output (`store::export`): bump it whenever the same closure would
/// now produce a different tree.
pub const EXPORT_VERSION: u32 = 1;

/// How many hex digits of the digest name a venv directory: 128 bits, short enough to read in
/// `paude list` and paths, far beyond any chance of collision among one user's environments.
const KEY_HEX_DIGITS: usize = 32;

/// The key of one environment: lowercase hex, [`KEY_HEX_DIGITS`] long.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct VenvKey(String);

impl TryFrom<String> for VenvKey {
    type Error = String;

    fn try_from(text: String) -> Result<VenvKey, String> {
        VenvKey::parse(&text).ok_or_else(|| format!("{text:?} is not an environment key"))
    }
}

impl From<VenvKey> for String {
    fn from(key: VenvKey) -> String {
        key.0
    }
}

impl VenvKey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a directory name back into a key; `None` if it is not one.
    pub fn parse(text: &str) -> Option<VenvKey> {
        let valid = text.len() == KEY_HEX_DIGITS
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| VenvKey(text.to_string()))
    }
}

impl fmt::Display for VenvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Computes the key of the tree built from `closure` and `fs_entries`, copied from
/// `source_root`.
pub fn key(closure: &Closure, fs_entries: &[FsEntry], source_root: &std::path::Path) -> VenvKey {
    let mut encoder = Encoder::default();
    encoder.bytes(b"paude-venv-key");
    encoder.u32(ENCODING_VERSION);
    encoder.u32(EXPORT_VERSION);
    encoder.u64(closure.packages.len() as u64);
    for package in &closure.packages {
        encoder.bytes(package.name.as_bytes());
        encoder.bytes(package.version.as_bytes());
        encoder.bytes(package.arch.as_bytes());
    }
    encode_fs_entries(&mut encoder, fs_entries);
    encoder.bytes(rootpath::bytes(source_root));
    VenvKey(encoder.hex(KEY_HEX_DIGITS))
}

/// Feeds `fs_entries` to `encoder`: their count, then each one's kind, path and content, in
/// manifest order.
pub(crate) fn encode_fs_entries<Out: Output>(encoder: &mut Encoder<Out>, fs_entries: &[FsEntry]) {
    encoder.u64(fs_entries.len() as u64);
    for entry in fs_entries {
        match entry {
            FsEntry::Dir { path, mode } => {
                encoder.u8(1);
                encoder.bytes(rootpath::bytes(path));
                encoder.u32(*mode);
            }
            // An overriding entry is a kind of its own (4, 5): the others keep the encoding,
            // and so the keys, they had before entries could override.
            FsEntry::File {
                path,
                mode,
                contents,
                overrides,
            } => {
                encoder.u8(if *overrides { 4 } else { 2 });
                encoder.bytes(rootpath::bytes(path));
                encoder.u32(*mode);
                encoder.bytes(contents.as_bytes());
            }
            FsEntry::Symlink {
                path,
                target,
                overrides,
            } => {
                encoder.u8(if *overrides { 5 } else { 3 });
                encoder.bytes(rootpath::bytes(path));
                encoder.bytes(rootpath::bytes(target));
            }
        }
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

/// Feeds fixed-width little-endian integers and length-prefixed byte strings to a hash (or,
/// for the launch caches, a byte buffer), so that no two different sequences of fields
/// encode to the same bytes.
#[derive(Default)]
pub(crate) struct Encoder<Out: Output = Sha256> {
    out: Out,
}

/// Where an [`Encoder`] writes: a hash, or the bytes themselves.
pub(crate) trait Output {
    fn put(&mut self, bytes: &[u8]);
}

impl Output for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Output for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl<Out: Output> Encoder<Out> {
    pub(crate) fn u8(&mut self, value: u8) {
        self.out.put(&[value]);
    }
    pub(crate) fn u32(&mut self, value: u32) {
        self.out.put(&value.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, value: u64) {
        self.out.put(&value.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.u64(value.len() as u64);
        self.out.put(value);
    }
    /// What was written.
    pub(crate) fn into_output(self) -> Out {
        self.out
    }
}

impl Encoder {
    /// The first `digits` hex digits of the digest.
    pub(crate) fn hex(self, digits: usize) -> String {
        let mut text = hex(&self.out.finalize());
        text.truncate(digits);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::PackageId;
    use std::path::PathBuf;

    fn package(name: &str, version: &str) -> PackageId {
        PackageId {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
        }
    }

    fn closure(packages: Vec<PackageId>) -> Closure {
        Closure {
            packages,
            missing: Vec::new(),
        }
    }

    fn key_at_root(closure: &Closure, fs_entries: &[FsEntry]) -> VenvKey {
        key(closure, fs_entries, std::path::Path::new("/"))
    }

    #[test]
    fn the_source_root_changes_the_key() {
        let base = closure(vec![package("bash", "1")]);
        assert_ne!(
            key_at_root(&base, &[]),
            key(&base, &[], std::path::Path::new("/srv/chroot"))
        );
    }

    #[test]
    fn known_keys_are_pinned() {
        // If this fails, the encoding changed: bump ENCODING_VERSION or EXPORT_VERSION on
        // purpose and update the pins, never the other way round. The pins were checked
        // against an independent implementation of the encoding documented above (a few
        // lines of Python with hashlib and struct).
        let base = closure(vec![
            package("bash", "5.2.15-2+b8"),
            package("libc6", "2.36-9+deb12u13"),
        ]);
        assert_eq!(key_at_root(&base, &[]).as_str(), PINNED_EMPTY);
        let entries = [FsEntry::File {
            path: PathBuf::from("/etc/motd"),
            mode: 0o644,
            contents: "hi\n".into(),
            overrides: false,
        }];
        assert_eq!(key_at_root(&base, &entries).as_str(), PINNED_WITH_FILE);
    }

    const PINNED_EMPTY: &str = "605578e593bbe230770b7fe40f11f8e3";
    const PINNED_WITH_FILE: &str = "3274b88d69d6fdb594657991fd4f2d3e";

    #[test]
    fn every_input_changes_the_key() {
        let base = closure(vec![package("bash", "1")]);
        let reference = key_at_root(&base, &[]);
        assert_ne!(
            reference,
            key_at_root(&closure(vec![package("bash", "2")]), &[])
        );
        let mut other_arch = package("bash", "1");
        other_arch.arch = "arm64".into();
        assert_ne!(reference, key_at_root(&closure(vec![other_arch]), &[]));
        assert_ne!(
            reference,
            key_at_root(
                &closure(vec![package("bash", "1"), package("git", "1")]),
                &[]
            )
        );
        let dir = |mode| FsEntry::Dir {
            path: PathBuf::from("/x"),
            mode,
        };
        assert_ne!(
            key_at_root(&base, &[dir(0o755)]),
            key_at_root(&base, &[dir(0o700)])
        );
        assert_ne!(reference, key_at_root(&base, &[dir(0o755)]));
    }

    #[test]
    fn length_prefixes_keep_fields_apart() {
        // "ab"+"c" and "a"+"bc" must not collide.
        let first = closure(vec![PackageId {
            name: "ab".into(),
            version: "c".into(),
            arch: "x".into(),
        }]);
        let second = closure(vec![PackageId {
            name: "a".into(),
            version: "bc".into(),
            arch: "x".into(),
        }]);
        assert_ne!(key_at_root(&first, &[]), key_at_root(&second, &[]));
    }

    #[test]
    fn keys_parse_back() {
        let made = key_at_root(&closure(vec![package("bash", "1")]), &[]);
        assert_eq!(VenvKey::parse(made.as_str()), Some(made));
        assert_eq!(VenvKey::parse(".tmp-1234"), None);
        assert_eq!(VenvKey::parse(&"A".repeat(32)), None);
    }
}
