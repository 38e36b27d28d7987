//! One layer of an image: a tar stream of some of the environment's files, gzip-compressed
//! into a blob file, hashed on the way both before compression (the layer's `diff_id`) and
//! after (its digest).
//!
//! What makes a layer reproducible is fixed here: entries in byte order of their paths,
//! parents before children; every owner 0:0 with no names; every time `mtime` (the export's
//! `SOURCE_DATE_EPOCH`, else 0); modes as the tree has them (set-id bits were dropped when
//! the tree was made); a second name of a file already in the layer as a tar hard link;
//! GNU long-name records for paths over 100 bytes; gzip at a fixed level with no name and no
//! time in its header.

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// gzip's own default, what `tar czf` writes: level 9 would take about twice as long for a
/// few per cent less.
const LEVEL: u32 = 6;

/// A `Write` that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(data)?;
        self.hash.update(&data[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }
}

/// A tar header as every entry paude writes has it: GNU format, owners 0:0 with no names,
/// the permission bits of `mode`, and the time `mtime`.
pub fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode & 0o7777);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(size);
    header
}

/// A finished layer blob: where it is, and what the image's documents say of it.
#[derive(Debug, Clone)]
pub struct Written {
    pub file: PathBuf,
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    pub size: u64,
    /// `sha256:<hex>` of the tar stream.
    pub diff_id: String,
    /// Bytes of file contents in the layer, for the summary.
    pub content_bytes: u64,
}

/// A layer being written.
pub struct Layer {
    tar: tar::Builder<Hashing<GzEncoder<Hashing<File>>>>,
    file: PathBuf,
    mtime: u64,
    /// Files already in this layer, by inode: a second name becomes a hard link.
    inodes: HashMap<(u64, u64), PathBuf>,
    content_bytes: u64,
}

/// The kinds of entry a layer holds.
pub enum Entry<'a> {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        /// The file to copy, with its identity for hard links; `None`: `contents` instead.
        source: Option<(&'a Path, (u64, u64))>,
        contents: &'a [u8],
    },
    Symlink {
        target: &'a Path,
    },
}

impl Layer {
    /// Starts a layer in the new file `file`.
    pub fn create(file: PathBuf, mtime: u64) -> io::Result<Layer> {
        let out = File::create_new(&file)?;
        let gzip = flate2::GzBuilder::new()
            .mtime(0)
            .write(Hashing::new(out), Compression::new(LEVEL));
        let mut tar = tar::Builder::new(Hashing::new(gzip));
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(Layer {
            tar,
            file,
            mtime,
            inodes: HashMap::new(),
            content_bytes: 0,
        })
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        header(kind, mode, size, self.mtime)
    }

    /// Adds `path` (relative to the image's root, no leading `/`).
    pub fn add(&mut self, path: &Path, entry: Entry<'_>) -> io::Result<()> {
        match entry {
            Entry::Dir { mode } => {
                let mut header = self.header(tar::EntryType::Directory, mode, 0);
                self.tar.append_data(&mut header, path, io::empty())
            }
            Entry::Symlink { target } => {
                let mut header = self.header(tar::EntryType::Symlink, 0o777, 0);
                self.tar.append_link(&mut header, path, target)
            }
            Entry::File {
                mode,
                source: None,
                contents,
            } => {
                let mut header = self.header(tar::EntryType::Regular, mode, contents.len() as u64);
                self.content_bytes += contents.len() as u64;
                self.tar.append_data(&mut header, path, contents)
            }
            Entry::File {
                mode,
                source: Some((source, inode)),
                ..
            } => {
                if let Some(first) = self.inodes.get(&inode) {
                    let first = first.clone();
                    let mut header = self.header(tar::EntryType::Link, mode, 0);
                    return self.tar.append_link(&mut header, path, first);
                }
                let file = File::open(source)?;
                let size = file.metadata()?.len();
                let mut header = self.header(tar::EntryType::Regular, mode, size);
                // A file that changes size while it is read would make a corrupt entry; the
                // tar writer checks the length it was told.
                self.tar
                    .append_data(&mut header, path, io::Read::take(file, size))?;
                self.content_bytes += size;
                self.inodes.insert(inode, path.to_path_buf());
                Ok(())
            }
        }
    }

    /// Ends the tar stream and the gzip member, and says what was written.
    pub fn finish(self) -> io::Result<Written> {
        let tar = self.tar.into_inner()?;
        let diff_id = format!("sha256:{}", crate::store::key::hex(&tar.hash.finalize()));
        let mut blob = tar.inner.finish()?;
        blob.flush()?;
        blob.inner.sync_all()?;
        Ok(Written {
            file: self.file,
            digest: format!("sha256:{}", crate::store::key::hex(&blob.hash.finalize())),
            size: blob.bytes,
            diff_id,
            content_bytes: self.content_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(dir: &Path, name: &str, mtime: u64) -> Written {
        let source = dir.join("source");
        std::fs::write(&source, b"hello\n").unwrap();
        let inode = (1, 2);
        let mut layer = Layer::create(dir.join(name), mtime).unwrap();
        layer
            .add(Path::new("usr"), Entry::Dir { mode: 0o755 })
            .unwrap();
        layer
            .add(
                Path::new("usr/a"),
                Entry::File {
                    mode: 0o644,
                    source: Some((&source, inode)),
                    contents: b"",
                },
            )
            .unwrap();
        layer
            .add(
                Path::new("usr/b"),
                Entry::File {
                    mode: 0o644,
                    source: Some((&source, inode)),
                    contents: b"",
                },
            )
            .unwrap();
        let long = format!("usr/{}", "x".repeat(150));
        layer
            .add(
                Path::new(&long),
                Entry::Symlink {
                    target: Path::new("a"),
                },
            )
            .unwrap();
        layer.finish().unwrap()
    }

    #[test]
    fn a_layer_is_the_same_bytes_every_time_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let one = written(dir.path(), "one", 0);
        let two = written(dir.path(), "two", 0);
        assert_eq!(one.digest, two.digest);
        assert_eq!(one.diff_id, two.diff_id);
        assert_eq!(
            std::fs::read(&one.file).unwrap(),
            std::fs::read(&two.file).unwrap()
        );
        assert_ne!(written(dir.path(), "three", 1).digest, one.digest);
        // The digest is of the blob; the diff_id of what it decompresses to.
        let blob = std::fs::read(&one.file).unwrap();
        assert_eq!(
            one.digest,
            format!("sha256:{}", crate::store::key::hex(&Sha256::digest(&blob)))
        );
        assert_eq!(one.size, blob.len() as u64);
        let tar_bytes = {
            let mut out = Vec::new();
            io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut out).unwrap();
            out
        };
        assert_eq!(
            one.diff_id,
            format!(
                "sha256:{}",
                crate::store::key::hex(&Sha256::digest(&tar_bytes))
            )
        );
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let entries: Vec<(String, tar::EntryType, u64, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let header = entry.header();
                (
                    entry.path().unwrap().to_string_lossy().into_owned(),
                    header.entry_type(),
                    header.uid().unwrap(),
                    header.mtime().unwrap(),
                    header.size().unwrap(),
                )
            })
            .collect();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].0, "usr");
        assert_eq!(
            entries[1],
            ("usr/a".into(), tar::EntryType::Regular, 0, 0, 6)
        );
        // The second name of the same file is a hard link to the first.
        assert_eq!(entries[2].1, tar::EntryType::Link);
        assert_eq!(entries[3].0.len(), 154);
        assert_eq!(entries[3].1, tar::EntryType::Symlink);
    }
}
