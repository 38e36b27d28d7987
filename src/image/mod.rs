//! An environment as an OCI image (image-spec 1.0): the layout `paude export --oci` writes,
//! and the single-file archive of it that `--oci-archive` writes.
//!
//! ```text
//! DIR/oci-layout                  {"imageLayoutVersion": "1.0.0"}
//! DIR/index.json                  the image's manifest, named by --tag
//! DIR/blobs/sha256/<hex>          the manifest, the config, and one gzip tar per layer
//! ```
//!
//! Layers, in this order:
//!
//! - one per package of the closure, made from its entry in the package store, so that two
//!   images holding the same package hold the same layer (a registry and a node keep it once);
//! - packages under [`SMALL`] bytes share a layer with the other small packages whose names
//!   hash to the same one of [`BUCKETS`] buckets: a layer per 30 KiB library costs a registry
//!   request and an overlay directory each for nothing, while grouping by the name's hash
//!   (not by position in the closure) keeps a change to one small package from changing the
//!   others' layers;
//! - no more than [`MAX_PACKAGE_LAYERS`] package layers, the smallest packages going to the
//!   buckets first: overlayfs-based runtimes stack at most about 128 layers;
//! - last, the environment's own: what the tree holds that no package does (the merged-/usr
//!   links, the alternatives, the mount points, the fsEntries), `/etc/passwd` and
//!   `/etc/group` for root and nobody, and the working directory `/workspace`.
//!
//! The image holds exactly the environment's tree: a package's file is in its layer only
//! where the tree has that same file at that place (where two packages ship one path, the
//! build linked the earlier one's, and an fsEntry can replace a package's file), so that no
//! layer overrides another and their order changes nothing.
//!
//! Reproducible: the same closure and fsEntries give the same bytes, and so the same
//! digests, on any machine and at any time (see `layer` for what is fixed); the times are
//! `SOURCE_DATE_EPOCH` where it is set, else the epoch. Nothing of the user (name, uid,
//! home, the workspace's path) goes in.

pub mod layer;

use crate::packages::PackageId;
use layer::{Entry, Layer, Written};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Packages with fewer bytes of files than this share a bucket layer.
pub const SMALL: u64 = 1 << 20;
/// How many bucket layers small packages are spread over.
pub const BUCKETS: usize = 8;
/// Package layers at most (buckets included); the environment's own comes on top.
pub const MAX_PACKAGE_LAYERS: usize = 100;
/// The working directory of the image, made empty in the environment's layer.
pub const WORKDIR: &str = "/workspace";

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation that names an image in an index (`--tag`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One package of the closure: its identity, its tree in the package store, and its size.
pub struct Package {
    pub id: PackageId,
    pub tree: PathBuf,
    pub bytes: u64,
}

/// What to make an image of.
pub struct Request<'a> {
    /// The environment's tree (the truth: the image holds what it holds).
    pub rootfs: &'a Path,
    /// The closure, in its order.
    pub packages: &'a [Package],
    /// The image's variables: the manifest's envSet with paude's defaults.
    pub env: Vec<(String, String)>,
    /// The default command: the shell a launch without a command starts.
    pub shell: &'a str,
    /// Seconds since the epoch for every time in the image.
    pub mtime: u64,
    /// `--tag`.
    pub tag: Option<&'a str>,
}

/// Where a long export is, for the progress line.
pub trait Progress: Sync {
    fn bytes(&self, done: u64, total: u64, layers_done: usize, layers_total: usize);
}

/// A written image: its manifest's descriptor and the blobs it is made of.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Descriptor,
    /// Every blob of the image (layers, config, manifest) by file.
    pub blobs: Vec<(String, PathBuf)>,
    /// The layers, with what each holds: its history line and the figures.
    pub layers: Vec<(String, Written)>,
}

/// A content descriptor, as the documents hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, serde::Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: String,
    manifests: Vec<Descriptor>,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Serialize)]
struct Config<'a> {
    created: String,
    architecture: &'a str,
    os: &'a str,
    config: RunConfig,
    rootfs: RootfsConfig,
    history: Vec<History>,
}

#[derive(Serialize)]
struct RunConfig {
    #[serde(rename = "Env")]
    env: Vec<String>,
    #[serde(rename = "Cmd")]
    cmd: Vec<String>,
    #[serde(rename = "WorkingDir")]
    working_dir: String,
}

#[derive(Serialize)]
struct RootfsConfig {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct History {
    created: String,
    created_by: String,
}

/// The architecture as OCI names it (Go's names), for this build of paude.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Whether `tag` is a name the image-spec allows in `org.opencontainers.image.ref.name`:
/// components of letters and digits joined by `-._:@+` or `--`, separated by `/`.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 255
        && tag.split('/').all(|component| {
            let bytes = component.as_bytes();
            let alnum = |b: u8| b.is_ascii_alphanumeric();
            let separator = |b: u8| b"-._:@+".contains(&b);
            !bytes.is_empty()
                && alnum(bytes[0])
                && alnum(bytes[bytes.len() - 1])
                && bytes.windows(2).all(|pair| {
                    alnum(pair[0])
                        || alnum(pair[1])
                        || (pair[0] == b'-' && pair[1] == b'-')
                })
                && bytes.iter().all(|&b| alnum(b) || separator(b))
                // `--` is the one two-character separator: three in a row is no separator.
                && !component.contains("---")
        })
}

/// The layers to make: each a history line and the packages (indices into the closure)
/// whose trees it is made from.
pub fn plan_layers(packages: &[Package]) -> Vec<(String, Vec<usize>)> {
    let mut own: Vec<usize> = (0..packages.len())
        .filter(|&i| packages[i].bytes >= SMALL)
        .collect();
    let room = MAX_PACKAGE_LAYERS - BUCKETS;
    if own.len() > room {
        // The biggest keep their own layers.
        own.sort_by_key(|&i| (std::cmp::Reverse(packages[i].bytes), i));
        own.truncate(room);
        own.sort();
    }
    let own_set: HashSet<usize> = own.iter().copied().collect();
    let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); BUCKETS];
    for (index, package) in packages.iter().enumerate() {
        if !own_set.contains(&index) {
            let hash = Sha256::digest(package.id.name.as_bytes());
            buckets[hash[0] as usize % BUCKETS].push(index);
        }
    }
    let describe = |index: usize| {
        let id = &packages[index].id;
        format!("{} {} ({})", id.name, id.version, id.arch)
    };
    let mut layers: Vec<(String, Vec<usize>)> = own
        .into_iter()
        .map(|index| (format!("paude: package {}", describe(index)), vec![index]))
        .collect();
    for (bucket, members) in buckets.into_iter().enumerate() {
        if members.is_empty() {
            continue;
        }
        let names: Vec<String> = members.iter().map(|&index| describe(index)).collect();
        layers.push((
            format!(
                "paude: small packages, bucket {bucket} of {BUCKETS}: {}",
                names.join(", ")
            ),
            members,
        ));
    }
    layers
}

/// Paths the package layers hold, so that the environment's layer holds the rest.
#[derive(Default)]
struct Held {
    dirs: HashSet<PathBuf>,
    others: HashSet<PathBuf>,
}

impl Held {
    fn join(&mut self, other: Held) {
        self.dirs.extend(other.dirs);
        self.others.extend(other.others);
    }
}

/// The names in `dir`, in byte order; none when it is no directory.
fn names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect::<io::Result<Vec<_>>>()?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    names.sort();
    Ok(names)
}

fn inode(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Whether the package's `ours` is what the tree holds at the same place, `theirs`: the
/// same inode (the build linked it), or, where the build had to copy, the same content.
fn same(ours: &Path, our_meta: &fs::Metadata, theirs: &Path, their_meta: &fs::Metadata) -> bool {
    if inode(our_meta) == inode(their_meta) {
        return true;
    }
    let (a, b) = (our_meta.file_type(), their_meta.file_type());
    if a.is_symlink() && b.is_symlink() {
        return fs::read_link(ours).ok() == fs::read_link(theirs).ok();
    }
    a.is_file()
        && b.is_file()
        && our_meta.len() == their_meta.len()
        && our_meta.mode() & 0o7777 == their_meta.mode() & 0o7777
        && same_bytes(ours, theirs).unwrap_or(false)
}

fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    use io::Read;
    let (mut a, mut b) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut x, mut y) = (vec![0; 1 << 16], vec![0; 1 << 16]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(b.read(&mut y[..1])? == 0);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

/// Adds a non-directory of the tree (a file or a link; anything else is no part of a tree).
fn add_other(
    layer: &mut Layer,
    relative: &Path,
    path: &Path,
    meta: &fs::Metadata,
) -> io::Result<()> {
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path)?;
        layer.add(relative, Entry::Symlink { target: &target })
    } else if meta.is_file() {
        layer.add(
            relative,
            Entry::File {
                mode: meta.mode(),
                source: Some((path, inode(meta))),
                contents: b"",
            },
        )
    } else {
        Ok(())
    }
}

/// Walks the directory `relative` of the trees of one layer and of the environment's tree
/// together, adding what the environment's tree holds from them.
fn walk_packages(
    layer: &mut Layer,
    trees: &[&Path],
    rootfs: &Path,
    relative: &Path,
    held: &mut Held,
    done: &AtomicU64,
) -> io::Result<()> {
    let mut all: BTreeSet<OsString> = BTreeSet::new();
    for tree in trees {
        all.extend(names(&tree.join(relative))?);
    }
    for name in all {
        let inner = relative.join(&name);
        let theirs = rootfs.join(&inner);
        // Reached only through directories of the tree (checked a level up), so this follows
        // no link of the tree's.
        let Ok(their_meta) = fs::symlink_metadata(&theirs) else {
            continue;
        };
        let mut dirs: Vec<&Path> = Vec::new();
        let mut mode = None;
        for tree in trees {
            let ours = tree.join(&inner);
            let Ok(our_meta) = fs::symlink_metadata(&ours) else {
                continue;
            };
            if our_meta.is_dir() {
                if their_meta.is_dir() {
                    mode.get_or_insert(our_meta.mode());
                    dirs.push(tree);
                }
            } else if !held.others.contains(&inner) && same(&ours, &our_meta, &theirs, &their_meta)
            {
                add_other(layer, &inner, &ours, &our_meta)?;
                done.fetch_add(our_meta.len(), Ordering::Relaxed);
                held.others.insert(inner.clone());
            }
        }
        if let Some(mode) = mode {
            layer.add(&inner, Entry::Dir { mode })?;
            held.dirs.insert(inner.clone());
            walk_packages(layer, &dirs, rootfs, &inner, held, done)?;
        }
    }
    Ok(())
}

/// The environment's layer: what the tree holds that no package layer does, with the
/// accounts and the working directory.
fn walk_environment(
    layer: &mut Layer,
    rootfs: &Path,
    relative: &Path,
    held: &Held,
    extras: &BTreeMap<PathBuf, Vec<u8>>,
) -> io::Result<()> {
    let mut all: BTreeSet<OsString> = names(&rootfs.join(relative))?.into_iter().collect();
    if relative.as_os_str().is_empty() {
        all.insert(WORKDIR.trim_start_matches('/').into());
    }
    for name in all {
        let inner = relative.join(&name);
        if let Some(contents) = extras.get(&inner) {
            layer.add(
                &inner,
                Entry::File {
                    mode: 0o644,
                    source: None,
                    contents,
                },
            )?;
            continue;
        }
        let path = rootfs.join(&inner);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                // The working directory, where the tree has nothing there.
                layer.add(&inner, Entry::Dir { mode: 0o755 })?;
                continue;
            }
            Err(error) => return Err(error),
        };
        if meta.is_dir() {
            if !held.dirs.contains(&inner) {
                layer.add(&inner, Entry::Dir { mode: meta.mode() })?;
            }
            walk_environment(layer, rootfs, &inner, held, extras)?;
        } else if !held.others.contains(&inner) {
            add_other(layer, &inner, &path, &meta)?;
        }
    }
    Ok(())
}

/// `/etc/passwd` and `/etc/group` of an image: root, and nobody for runtimes that map the
/// user to it. The launch writes the user's own; an image has no user yet.
fn accounts(shell: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    BTreeMap::from([
        (
            PathBuf::from("etc/passwd"),
            format!(
                "root:x:0:0:root:/root:{shell}\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            )
            .into_bytes(),
        ),
        (
            PathBuf::from("etc/group"),
            b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
        ),
    ])
}

/// A failure, with the path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}")]
pub struct ImageError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn fail<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImageError + 'a {
    move |source| ImageError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The blob directory of a layout, and a temporary file in it.
struct Blobs {
    dir: PathBuf,
    next: AtomicUsize,
}

impl Blobs {
    fn temporary(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(".tmp-{}-{n}", std::process::id()))
    }

    /// Moves a written blob to its name (a blob already there is the same bytes).
    fn keep(&self, written: &Path, digest: &str) -> Result<PathBuf, ImageError> {
        let name = self.dir.join(digest.trim_start_matches("sha256:"));
        fs::rename(written, &name).map_err(fail("writing", &name))?;
        Ok(name)
    }

    /// Writes a JSON document as a blob; its descriptor.
    fn json<T: Serialize>(
        &self,
        media_type: &str,
        value: &T,
    ) -> Result<(Descriptor, PathBuf), ImageError> {
        let bytes = serde_json::to_vec(value).expect("the image's documents are plain data");
        let digest = format!("sha256:{}", crate::store::key::hex(&Sha256::digest(&bytes)));
        let name = self.dir.join(digest.trim_start_matches("sha256:"));
        let temporary = self.temporary();
        write_synced(&temporary, &bytes)?;
        fs::rename(&temporary, &name).map_err(fail("writing", &name))?;
        Ok((
            Descriptor {
                media_type: media_type.into(),
                digest,
                size: bytes.len() as u64,
                annotations: BTreeMap::new(),
            },
            name,
        ))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let mut file = fs::File::create(path).map_err(fail("writing", path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(fail("writing", path))
}

/// Writes the image's blobs into the layout at `dir` (which must exist, with its
/// `blobs/sha256`), the layers over the cores in parallel; the index is the caller's
/// ([`write_index`]).
pub fn write_blobs(
    dir: &Path,
    request: &Request<'_>,
    progress: &dyn Progress,
) -> Result<Image, ImageError> {
    let blobs = Blobs {
        dir: dir.join("blobs/sha256"),
        next: AtomicUsize::new(0),
    };
    let plan = plan_layers(request.packages);
    let total: u64 = request.packages.iter().map(|package| package.bytes).sum();
    let done = AtomicU64::new(0);
    let finished = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    // The biggest first, so that no core is left with one big layer at the end.
    let mut order: Vec<usize> = (0..plan.len()).collect();
    order.sort_by_key(|&index| {
        let bytes: u64 = plan[index]
            .1
            .iter()
            .map(|&m| request.packages[m].bytes)
            .sum();
        (std::cmp::Reverse(bytes), index)
    });
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(plan.len().max(1));
    type Made = Result<(Written, Held), ImageError>;
    let mut made: Vec<Option<Made>> = (0..plan.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    while let Some(&index) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let members = &plan[index].1;
                        let trees: Vec<&Path> = members
                            .iter()
                            .map(|&m| request.packages[m].tree.as_path())
                            .collect();
                        let file = blobs.temporary();
                        let result = (|| {
                            let mut layer = Layer::create(file.clone(), request.mtime)
                                .map_err(fail("writing", &file))?;
                            let mut held = Held::default();
                            walk_packages(
                                &mut layer,
                                &trees,
                                request.rootfs,
                                Path::new(""),
                                &mut held,
                                &done,
                            )
                            .map_err(fail("reading the package store for", trees[0]))?;
                            let written = layer.finish().map_err(fail("writing", &file))?;
                            Ok((written, held))
                        })();
                        if result.is_err() {
                            fs::remove_file(&file).ok();
                        }
                        finished.fetch_add(1, Ordering::Relaxed);
                        mine.push((index, result));
                    }
                    mine
                })
            })
            .collect();
        while finished.load(Ordering::Relaxed) < plan.len()
            && !workers.iter().all(|w| w.is_finished())
        {
            progress.bytes(
                done.load(Ordering::Relaxed),
                total,
                finished.load(Ordering::Relaxed),
                plan.len() + 1,
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        for worker in workers {
            for (index, result) in worker.join().expect("a layer writer panicked") {
                made[index] = Some(result);
            }
        }
    });
    let mut held = Held::default();
    let mut layers = Vec::new();
    let mut failure = None;
    for ((history, _), result) in plan.into_iter().zip(made) {
        match result.expect("every planned layer was taken") {
            Ok((written, its)) => {
                held.join(its);
                layers.push((history, written));
            }
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    if let Some(error) = failure {
        for (_, written) in &layers {
            fs::remove_file(&written.file).ok();
        }
        return Err(error);
    }
    let file = blobs.temporary();
    let own = (|| {
        let mut layer =
            Layer::create(file.clone(), request.mtime).map_err(fail("writing", &file))?;
        walk_environment(
            &mut layer,
            request.rootfs,
            Path::new(""),
            &held,
            &accounts(request.shell),
        )
        .map_err(fail("reading", request.rootfs))?;
        layer.finish().map_err(fail("writing", &file))
    })();
    match own {
        Ok(written) => layers.push((
            "paude: the environment (links, alternatives, mount points, fsEntries, accounts)"
                .into(),
            written,
        )),
        Err(error) => {
            fs::remove_file(&file).ok();
            for (_, written) in &layers {
                fs::remove_file(&written.file).ok();
            }
            return Err(error);
        }
    }
    progress.bytes(total, total, layers.len(), layers.len());

    let mut kept = Vec::new();
    for (_, written) in &mut layers {
        let name = blobs.keep(&written.file, &written.digest)?;
        written.file = name.clone();
        kept.push((written.digest.clone(), name));
    }
    let created = crate::commands::rfc3339(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(request.mtime),
    );
    let config = Config {
        created: created.clone(),
        architecture: architecture(),
        os: "linux",
        config: RunConfig {
            env: request
                .env
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect(),
            cmd: vec![request.shell.to_string()],
            working_dir: WORKDIR.into(),
        },
        rootfs: RootfsConfig {
            kind: "layers",
            diff_ids: layers.iter().map(|(_, w)| w.diff_id.clone()).collect(),
        },
        history: layers
            .iter()
            .map(|(history, _)| History {
                created: created.clone(),
                created_by: history.clone(),
            })
            .collect(),
    };
    let (config, config_file) = blobs.json(MEDIA_CONFIG, &config)?;
    kept.push((config.digest.clone(), config_file));
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST,
        config,
        layers: layers
            .iter()
            .map(|(_, written)| Descriptor {
                media_type: MEDIA_LAYER.into(),
                digest: written.digest.clone(),
                size: written.size,
                annotations: BTreeMap::new(),
            })
            .collect(),
    };
    let (mut manifest, manifest_file) = blobs.json(MEDIA_MANIFEST, &manifest)?;
    kept.push((manifest.digest.clone(), manifest_file));
    if let Some(tag) = request.tag {
        manifest.annotations.insert(REF_NAME.into(), tag.into());
    }
    Ok(Image {
        manifest,
        blobs: kept,
        layers,
    })
}

/// Makes `dir` an image layout (or checks that it is one), with its blob directory.
pub fn open_layout(dir: &Path) -> Result<(), String> {
    if !check_layout(dir)? {
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        write_synced(
            &dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .map_err(|e| format!("{e}: {}", e.source))?;
    }
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(|e| format!("creating {}: {e}", blobs.display()))
}

/// Whether `dir` is an image layout paude can add to (true), or can become one (false: it is
/// missing or an empty directory); else an error that says why not. Writes nothing.
pub fn check_layout(dir: &Path) -> Result<bool, String> {
    // Written through no link: a layout in a workspace could have one planted in it.
    for part in [
        dir.to_path_buf(),
        dir.join("blobs"),
        dir.join("blobs/sha256"),
    ] {
        if part
            .symlink_metadata()
            .is_ok_and(|meta| meta.file_type().is_symlink())
        {
            return Err(format!(
                "{} is a symbolic link; paude writes an image layout through none (name the \
                 directory it leads to, or another)",
                part.display()
            ));
        }
    }
    let layout = dir.join("oci-layout");
    match fs::read(&layout) {
        Ok(bytes) => {
            let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
                format!(
                    "{} is not an OCI layout file; name a new or empty directory",
                    layout.display()
                )
            })?;
            if value.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
                return Err(format!(
                    "{} is not of version 1.0.0, the one paude writes; name a new or empty directory",
                    layout.display()
                ));
            }
            Ok(true)
        }
        Err(_) if dir.exists() && !dir.is_dir() => Err(format!(
            "{} is not a directory; name a new or empty directory",
            dir.display()
        )),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
                return Err(format!(
                    "{} is not empty and is no OCI layout (it has no oci-layout file); name a new or empty directory",
                    dir.display()
                ));
            }
            Ok(false)
        }
        Err(error) => Err(format!("reading {}: {error}", layout.display())),
    }
}

/// Writes `index.json` of the layout at `dir`: the images it held, but another of the same
/// name (or, untagged, another untagged one), and this one; by rename, so a reader sees the
/// old index or the new.
pub fn write_index(dir: &Path, image: &Image) -> Result<(), ImageError> {
    let path = dir.join("index.json");
    let mut manifests = match fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice::<Index>(&bytes)
                .map_err(|error| ImageError {
                    action: "reading",
                    path: path.clone(),
                    source: io::Error::other(error),
                })?
                .manifests
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(fail("reading", &path)(error)),
    };
    let name = image.manifest.annotations.get(REF_NAME);
    manifests.retain(|other| other.annotations.get(REF_NAME) != name);
    manifests.push(image.manifest.clone());
    let index = Index {
        schema_version: 2,
        media_type: MEDIA_INDEX.into(),
        manifests,
    };
    let bytes = serde_json::to_vec(&index).expect("the index is plain data");
    let temporary = dir.join(format!(".index.json.tmp-{}", std::process::id()));
    write_synced(&temporary, &bytes)?;
    fs::rename(&temporary, &path).map_err(fail("writing", &path))
}

/// Writes the image alone as one tar of its layout, what `podman load` and
/// `skopeo copy oci-archive:FILE` read: the same fixed headers as the layers, in byte order.
pub fn write_archive(file: &Path, image: &Image, mtime: u64) -> Result<(), ImageError> {
    let temporary = file.with_file_name(format!(
        ".{}.tmp-{}",
        file.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| -> io::Result<()> {
        let out = fs::File::create_new(&temporary)?;
        let mut tar = tar::Builder::new(io::BufWriter::new(out));
        let header = |kind, mode, size| layer::header(kind, mode, size, mtime);
        let index = serde_json::to_vec(&Index {
            schema_version: 2,
            media_type: MEDIA_INDEX.into(),
            manifests: vec![image.manifest.clone()],
        })
        .expect("the index is plain data");
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        for dir in ["blobs", "blobs/sha256"] {
            tar.append_data(
                &mut header(tar::EntryType::Directory, 0o755, 0),
                dir,
                io::empty(),
            )?;
        }
        let mut blobs: Vec<&(String, PathBuf)> = image.blobs.iter().collect();
        blobs.sort();
        blobs.dedup_by(|a, b| a.0 == b.0);
        for (digest, path) in blobs {
            let source = fs::File::open(path)?;
            let size = source.metadata()?.len();
            let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
            tar.append_data(
                &mut header(tar::EntryType::Regular, 0o644, size),
                name,
                io::Read::take(source, size),
            )?;
        }
        tar.append_data(
            &mut header(tar::EntryType::Regular, 0o644, index.len() as u64),
            "index.json",
            &index[..],
        )?;
        tar.append_data(
            &mut header(tar::EntryType::Regular, 0o644, layout.len() as u64),
            "oci-layout",
            &layout[..],
        )?;
        let out = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()
    })();
    if let Err(error) = result {
        fs::remove_file(&temporary).ok();
        return Err(fail("writing", file)(error));
    }
    fs::rename(&temporary, file).map_err(fail("writing", file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, bytes: u64) -> Package {
        Package {
            id: PackageId {
                name: name.into(),
                version: "1".into(),
                arch: "amd64".into(),
            },
            tree: PathBuf::new(),
            bytes,
        }
    }

    #[test]
    fn big_packages_get_layers_and_small_ones_share_buckets_by_name() {
        let packages = vec![
            package("big", 5 << 20),
            package("tiny", 10),
            package("other", 100),
            package("large", SMALL),
        ];
        let layers = plan_layers(&packages);
        assert_eq!(layers[0].1, vec![0]);
        assert_eq!(layers[1].1, vec![3]);
        let small: Vec<usize> = layers[2..].iter().flat_map(|(_, m)| m.clone()).collect();
        assert_eq!(small.len(), 2);
        // A small package's bucket depends on its name alone, not on what else is there.
        let alone = plan_layers(&[package("tiny", 10)]);
        let bucket_of = |layers: &[(String, Vec<usize>)], want: &str| {
            layers
                .iter()
                .find(|(history, _)| history.contains(want))
                .map(|(history, _)| history.split(':').nth(1).unwrap().to_string())
        };
        assert_eq!(bucket_of(&alone, "tiny 1"), bucket_of(&layers, "tiny 1"));
    }

    #[test]
    fn no_more_package_layers_than_runtimes_stack() {
        let packages: Vec<Package> = (0..300)
            .map(|i| package(&format!("p{i}"), SMALL + i as u64))
            .collect();
        let layers = plan_layers(&packages);
        assert!(layers.len() <= MAX_PACKAGE_LAYERS, "{}", layers.len());
        let covered: usize = layers.iter().map(|(_, m)| m.len()).sum();
        assert_eq!(covered, 300);
        // The biggest keep their own layers.
        assert!(layers.iter().any(|(_, m)| m == &vec![299]));
        assert!(!layers.iter().any(|(_, m)| m == &vec![0]));
    }

    #[test]
    fn tags_are_those_the_image_spec_allows() {
        for good in [
            "latest",
            "v1.0",
            "paude/core:1",
            "a--b",
            "x_y".replace('_', "-").as_str(),
        ] {
            assert!(valid_tag(good), "{good}");
        }
        for bad in [
            "", "-a", "a-", "a//b", "a b", "a/../b", "é", "a---b", ".hidden",
        ] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }
}
