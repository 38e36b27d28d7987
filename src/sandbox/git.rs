//! The workspace's git repository inside the sandbox: usable, and unable to change what host
//! git obeys.
//!
//! Host git runs programs and reads settings from a repository's control files: `config`,
//! `config.worktree`, `hooks/`, `info/`, `commondir`, `worktrees/`, `modules/` (the
//! submodules' own repositories), and whatever rebase or sequencer state names. Read-only
//! binds of the files that exist would not do: a sandbox could create one beside them, or
//! rename `.git` away and make another. So the sandbox's git directory is a *composition*:
//!
//! - a private directory on the host (in the store's `state/`, one per launch) is bound at
//!   the git directory's own path; the repository's top-level files (`HEAD`, `index`,
//!   `packed-refs`, ...) are copies in it, and whatever the sandbox creates there stays there;
//! - the repository's `objects/`, `refs/`, `logs/` (and `lfs/`, `rr-cache/`) are bound into
//!   it read-write: commits, branches, stashes, fetches and reflogs reach the host;
//! - `config`, `config.worktree`, `commondir`, `gitdir`, `hooks/`, `info/` and every other
//!   directory are bound read-only: git inside obeys them, and cannot change them;
//! - `.git` itself, and every directory bound, is a mount point inside: it cannot be renamed
//!   or replaced.
//!
//! When the sandbox ends, the holder (see `holder`) brings back the copies of the files git
//! changed that carry no instructions ([`SYNCED`]: `HEAD`, `index`, `packed-refs`, the merge
//! and cherry-pick state), each only where the host's file is still what it was at launch, by
//! git's own lock-and-rename; then the private directory goes.
//!
//! A linked worktree's repository is used only once it verifies: its `.git` file names a
//! directory `worktrees/<name>` of a repository whose `gitdir` file names this `.git` back. A
//! submodule's repository must lie in the `.git/modules/` of a repository above the
//! workspace. Anything else is refused: what the workspace says never adds a host path.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The most a pointer file (`.git`, `commondir`, `gitdir`) is read of: one line and a path.
const POINTER_MAX: u64 = 4096 + 8;

/// Subdirectories bound read-write: data, which git writes by creating files in them. A
/// link, FIFO or socket the sandbox makes in them is removed when it ends (see [`sweep`]).
const WRITABLE: [&str; 4] = ["refs", "objects", "lfs", "rr-cache"];

/// Subdirectories the sandbox gets a private tree of: the reflogs, which host git appends to
/// by following a link (a link the sandbox put at `logs/HEAD` would have host git append a
/// line of its choosing, a branch name, to `~/.bashrc`). The tree holds hard links to the
/// host's files (copies where the store is on another file system), so what git appends
/// inside reaches the host's file at once; a file the sandbox makes, renames or removes
/// there comes back when it ends, as a regular file, never through a link.
const PRIVATE_TREES: [&str; 1] = ["logs"];

/// Top-level files bound read-only (git obeys what they say).
const READ_ONLY_FILES: [&str; 4] = ["config", "config.worktree", "commondir", "gitdir"];

/// The top-level files whose changes come back to the host: data that names no program and no
/// setting. A repository's own worktree state (`HEAD`, `index`, ...) comes back only from the
/// repository the workspace is a checkout of; `packed-refs` and `FETCH_HEAD` from either.
pub const SYNCED: [&str; 13] = [
    "HEAD",
    "index",
    "ORIG_HEAD",
    "COMMIT_EDITMSG",
    "MERGE_HEAD",
    "MERGE_MSG",
    "MERGE_MODE",
    "CHERRY_PICK_HEAD",
    "REVERT_HEAD",
    "AUTO_MERGE",
    "BISECT_LOG",
    "packed-refs",
    "FETCH_HEAD",
];
const SHARED: [&str; 2] = ["packed-refs", "FETCH_HEAD"];

/// Where the workspace's repository is, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// No `.git`: not a repository.
    None,
    /// `.git` is the repository.
    Main { git_dir: PathBuf },
    /// A linked worktree: its own directory, and the repository's.
    Linked { admin: PathBuf, common: PathBuf },
    /// A submodule whose repository is in a superproject's `.git/modules/`.
    Module { git_dir: PathBuf },
}

/// Finds and verifies the repository of `workspace` (a real path); an error says why what the
/// workspace names is not used.
pub fn layout(workspace: &Path) -> Result<Layout, String> {
    let dot_git = workspace.join(".git");
    let meta = match dot_git.symlink_metadata() {
        Ok(meta) => meta,
        Err(_) => return Ok(Layout::None),
    };
    if meta.file_type().is_symlink() {
        return Err(format!(
            "{} is a symbolic link; paude does not follow it (it could lead anywhere on the \
             host): make it the repository itself, or a `gitdir:` file",
            dot_git.display()
        ));
    }
    if meta.is_dir() {
        if dot_git.join("commondir").symlink_metadata().is_ok() {
            return Err(format!(
                "{} has a `commondir` file, which a repository's own .git never has (git \
                 would take another directory's config and hooks from it): remove it",
                dot_git.display()
            ));
        }
        return Ok(Layout::Main { git_dir: dot_git });
    }
    if !meta.is_file() {
        return Err(format!(
            "{} is neither a directory nor a file (a FIFO would keep paude waiting): remove it",
            dot_git.display()
        ));
    }
    let refused = |why: &str| {
        format!(
            "{}'s `gitdir:` {why}; paude binds only a verified worktree's or submodule's \
             repository (run `git worktree repair` or `git submodule absorbgitdirs` on the \
             host, or remove the file)",
            dot_git.display()
        )
    };
    let pointer = read_pointer(&dot_git, "gitdir:").ok_or_else(|| refused("cannot be read"))?;
    let git_dir = real(&workspace.join(pointer)).ok_or_else(|| refused("names nothing"))?;
    if !git_dir.is_dir() {
        return Err(refused("names no directory"));
    }
    if let Some(common) = read_pointer(&git_dir.join("commondir"), "") {
        let common = real(&git_dir.join(common)).ok_or_else(|| refused("has no repository"))?;
        let in_worktrees = git_dir.parent() == Some(&common.join("worktrees"));
        let named_back = read_pointer(&git_dir.join("gitdir"), "")
            .and_then(|back| real(&git_dir.join(back)))
            .is_some_and(|back| back == dot_git);
        if !in_worktrees || !named_back {
            return Err(refused(&format!(
                "names {}, which is not a worktree of a repository that names this one back",
                git_dir.display()
            )));
        }
        return Ok(Layout::Linked {
            admin: git_dir,
            common,
        });
    }
    let in_superproject = workspace.ancestors().skip(1).any(|above| {
        let modules = above.join(".git/modules");
        modules.is_dir() && git_dir.starts_with(&modules) && git_dir != modules
    });
    // A submodule's repository names its own worktree (`core.worktree`, which git writes when
    // it absorbs one): the workspace's `.git` must not name a sibling's.
    let worktree = module_worktree(&git_dir).and_then(|dir| real(&git_dir.join(dir)));
    if !in_superproject || worktree.as_deref() != Some(workspace) {
        return Err(refused(&format!(
            "names {}, which is no submodule's repository in a repository above the workspace \
             whose `core.worktree` is this workspace",
            git_dir.display()
        )));
    }
    Ok(Layout::Module { git_dir })
}

/// A `.git` in the workspace that host git would obey when it works in the repository:
/// where a submodule is (or would be, once checked out), or a linked worktree of the user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guarded {
    /// `<path>/.git`, relative to the workspace.
    pub relative: PathBuf,
    /// What was there at launch (device and inode), reached without following a link;
    /// `None` when nothing was (or something on the way was a link, which host git does not
    /// follow into a submodule either).
    pub at_launch: Option<(u64, u64)>,
}

/// The `.git` paths of `workspace` that host git obeys when it works in the workspace's
/// repository, with what was at each at launch:
///
/// - at every submodule path of the workspace's index, and of the indexes of the submodule
///   repositories in `modules/` (nested ones included, at their worktrees): host `git status`
///   recurses into a submodule and obeys the repository its `.git` names, also one that was
///   not checked out at launch, once something is there;
/// - at each worktree that a submodule repository's `core.worktree` names;
/// - at each linked worktree (`worktrees/*/gitdir`) that lies in the workspace: a `cd` into it
///   and host git obeys the repository its `.git` names.
///
/// Those present at launch are protected like the user's `protect` entries (read-only, their
/// directories not to be renamed); those absent are what the holder moves aside when the
/// sandbox put something there ([`move_aside_planted`]). By identity rather than by time: a
/// directory renamed into place keeps the times of what is in it.
pub fn nested_gitfiles(layout: &Layout, workspace: &Path) -> Vec<Guarded> {
    // A linked worktree's submodules have their repositories in its own directory in the
    // repository's `worktrees/`; the main worktree's, in the repository's `modules/`.
    let (roots, own_index, common) = match layout {
        Layout::None => return Vec::new(),
        Layout::Main { git_dir } | Layout::Module { git_dir } => {
            (vec![git_dir], git_dir.join("index"), git_dir)
        }
        Layout::Linked { common, admin } => (vec![admin, common], admin.join("index"), common),
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    // (the index, the worktree its paths are relative to)
    let mut indexes = vec![(own_index, workspace.to_path_buf())];
    let mut pending: Vec<(PathBuf, usize)> =
        roots.iter().map(|root| (root.join("modules"), 0)).collect();
    // The linked worktrees in the workspace: their `.git` files, their indexes and the
    // repositories of their submodules (in their own directories of `worktrees/`).
    if let Ok(entries) = std::fs::read_dir(common.join("worktrees")) {
        for entry in entries.flatten() {
            let admin = entry.path();
            let Some(gitfile) = read_pointer(&admin.join("gitdir"), "") else {
                continue;
            };
            let gitfile = lexically_normal(&gitfile);
            if let Some(worktree) = gitfile.parent()
                && worktree.starts_with(workspace)
                && worktree != workspace
            {
                indexes.push((admin.join("index"), worktree.to_path_buf()));
                pending.push((admin.join("modules"), 0));
                paths.push(gitfile);
            }
        }
    }
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) || depth > 16 {
                continue;
            }
            let module = entry.path();
            if !module.join("HEAD").is_file() {
                // A part of a submodule's name (`libs/a` is `modules/libs/a`).
                pending.push((module, depth + 1));
                continue;
            }
            pending.push((module.join("modules"), depth + 1));
            let Some(worktree) = module_worktree(&module) else {
                continue;
            };
            let worktree = lexically_normal(&module.join(worktree));
            paths.push(worktree.join(".git"));
            indexes.push((module.join("index"), worktree));
        }
    }
    for (index, worktree) in indexes {
        if !worktree.starts_with(workspace) {
            continue;
        }
        let Ok(Some(bytes)) = read_copy(&index) else {
            continue;
        };
        for path in super::index::submodules(&bytes) {
            use std::os::unix::ffi::OsStrExt;
            paths.push(
                worktree
                    .join(std::ffi::OsStr::from_bytes(&path))
                    .join(".git"),
            );
        }
    }
    let mut found: Vec<Guarded> = paths
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(workspace).ok()?;
            (relative.file_name() == Some(std::ffi::OsStr::new(".git"))
                && relative != Path::new(".git")
                && !relative.starts_with(".git"))
            .then(|| relative.to_path_buf())
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|relative| Guarded {
            at_launch: inode_of(&workspace.join(&relative)),
            relative,
        })
        .collect();
    found.sort_by(|a, b| a.relative.cmp(&b.relative));
    found
}

/// `path` with `.` and `..` taken away by their names (the paths git writes are its own).
fn lexically_normal(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                normal.pop();
            }
            std::path::Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal
}

/// The device and inode of what is at `path`, reached without following any link.
fn inode_of(path: &Path) -> Option<(u64, u64)> {
    match super::pin::open(path).ok()? {
        super::pin::Opened::Found(fd, _) => {
            let stat = rustix::fs::fstat(&fd).ok()?;
            Some((stat.st_dev, stat.st_ino))
        }
        _ => None,
    }
}

/// The `core.worktree` a repository's `config` sets, read no further than 64 KiB: the last
/// one of a `[core]` section, as git takes it.
fn module_worktree(git_dir: &Path) -> Option<PathBuf> {
    let opened = super::pin::read_regular(&git_dir.join("config")).ok()??;
    let mut text = String::new();
    opened.take(64 << 10).read_to_string(&mut text).ok()?;
    let mut in_core = false;
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[') {
            in_core = section
                .trim_end_matches(']')
                .trim()
                .eq_ignore_ascii_case("core");
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if in_core && key.trim().eq_ignore_ascii_case("worktree") {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            found = Some(PathBuf::from(value));
        }
    }
    found.filter(|dir| !dir.as_os_str().is_empty())
}

/// A `gitdir:`-style pointer: the first line of `file`, after `prefix`, read no further than
/// a line; `None` when there is none.
fn read_pointer(file: &Path, prefix: &str) -> Option<PathBuf> {
    let mut text = String::new();
    // Not through a link, and not waiting on a FIFO: only a regular file is read.
    let opened = super::pin::read_regular(file).ok()??;
    opened.take(POINTER_MAX).read_to_string(&mut text).ok()?;
    // A line cut short by the limit is no pointer.
    if text.len() as u64 == POINTER_MAX && !text.contains('\n') {
        return None;
    }
    let value = text.lines().next()?.strip_prefix(prefix)?.trim();
    (!value.is_empty()).then(|| PathBuf::from(value))
}

fn real(path: &Path) -> Option<PathBuf> {
    path.canonicalize().ok()
}

/// One bind of the composition: `source` on the host at the same path inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub path: PathBuf,
    /// For the private directory: what is bound at `path`.
    pub source: PathBuf,
    pub writable: bool,
}

/// A git directory's private copy, what the holder needs to bring it back.
#[derive(Debug)]
pub struct Private {
    /// The host's git directory, as named in messages.
    pub host: PathBuf,
    /// The host's git directory, opened without following links at launch: everything the
    /// holder does to the host's files is done through it, whatever a sandbox still running
    /// in a workspace that holds this one does to the names above it.
    pub held: OwnedFd,
    /// The private directory bound at its path.
    pub copy: PathBuf,
    /// The private directory, held: the sandbox can put a link anywhere in it (in place of
    /// `logs/`, say), so the holder reads it one name at a time without following any.
    pub copy_held: OwnedFd,
    /// Each file that may come back, with the host's file and the copy as they were at
    /// launch (`None`: absent).
    pub files: Vec<Synced>,
    /// The files of the private trees ([`PRIVATE_TREES`]) at launch.
    pub trees: Vec<Planted>,
    /// The replace refs (`refs/replace/...`, relative to the git directory) at launch, with
    /// their content: the only ones that stay, as they were (see [`sweep`]).
    pub replace_refs: HashMap<PathBuf, Vec<u8>>,
}

/// A file of a private tree as it was at launch: its path relative to the git directory, the
/// host's file and the copy (the same file where it is a hard link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planted {
    pub relative: PathBuf,
    pub host: Identity,
    pub copy: Identity,
}

/// A file that may come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub name: String,
    pub host: Option<Identity>,
    pub copy: Option<Identity>,
}

/// What a file looked like: enough to tell that it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    /// Whether `other` is this file, unwritten: the same inode with the same size and
    /// modification time. The change time is left out: a hard link made or removed in a
    /// private tree changes it, and says nothing of the content.
    fn unwritten(&self, other: &Identity) -> bool {
        (self.dev, self.ino, self.size, self.mtime)
            == (other.dev, other.ino, other.size, other.mtime)
    }

    fn of(path: &Path) -> Option<Identity> {
        Some(Identity::from(&path.symlink_metadata().ok()?))
    }

    fn from(meta: &std::fs::Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The sandbox's view of a repository: the binds, in order, and the private copies.
#[derive(Debug, Default)]
pub struct Composition {
    pub binds: Vec<Bind>,
    pub privates: Vec<Private>,
}

/// Composes the sandbox's view of `layout`, making its private copies under `private_root`
/// (a directory of this launch's own).
pub fn compose(layout: &Layout, private_root: &Path) -> io::Result<Composition> {
    let mut composition = Composition::default();
    match layout {
        Layout::None => {}
        Layout::Main { git_dir } | Layout::Module { git_dir } => {
            compose_dir(git_dir, &private_root.join("0"), &SYNCED, &mut composition)?;
        }
        Layout::Linked { admin, common } => {
            // The repository first, then this worktree's directory inside its `worktrees/`.
            compose_dir(common, &private_root.join("0"), &SHARED, &mut composition)?;
            compose_dir(admin, &private_root.join("1"), &SYNCED, &mut composition)?;
        }
    }
    Ok(composition)
}

fn compose_dir(
    host: &Path,
    copy: &Path,
    synced: &[&str],
    composition: &mut Composition,
) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(copy)?;
    composition.binds.push(Bind {
        path: host.to_path_buf(),
        source: copy.to_path_buf(),
        writable: true,
    });
    let mut files = Vec::new();
    let mut trees = Vec::new();
    // Read through a descriptor of the directory, opened without following links: what is
    // copied is what is in it, whatever a sandbox still running does to the names above.
    let held = open_directory(host)?;
    let listed = through(&held);
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(&listed)?.flatten().collect();
    entries.sort_by_key(|entry| entry.file_name());
    let names: Vec<std::ffi::OsString> = entries.iter().map(|entry| entry.file_name()).collect();
    for entry in entries {
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        let kind = entry.file_type()?;
        let path = host.join(&name);
        let inside = copy.join(&name);
        if kind.is_dir() && PRIVATE_TREES.contains(&text) {
            plant_tree(&path, &inside, Path::new(text), &mut trees)?;
        } else if kind.is_dir() {
            // A mount point in the copy, and the host's directory bound on it.
            std::fs::create_dir(&inside)?;
            composition.binds.push(Bind {
                path: path.clone(),
                source: path,
                writable: WRITABLE.contains(&text),
            });
        } else if kind.is_file() && READ_ONLY_FILES.contains(&text) {
            std::fs::File::create(&inside)?;
            composition.binds.push(Bind {
                path: path.clone(),
                source: path,
                writable: false,
            });
        } else if kind.is_file() {
            // Not through a link put there since the listing, nor held up by a FIFO; its
            // identity is the file's as it was opened, before it was read.
            let Some(mut source) = super::pin::read_in(held.as_fd(), &name)? else {
                continue;
            };
            let before = Identity::from(&source.metadata()?);
            let mut target = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&inside)?;
            io::copy(&mut source, &mut target)?;
            if synced.contains(&text) {
                files.push(Synced {
                    name: text.to_string(),
                    host: Some(before),
                    copy: Some(Identity::from(&target.metadata()?)),
                });
            }
        } else if kind.is_symlink() {
            // Copied as the link it is (an old repository's HEAD may be one), never followed.
            std::os::unix::fs::symlink(std::fs::read_link(listed.join(&name))?, &inside)?;
        }
    }
    // Files git may make while the sandbox runs come back too.
    for name in synced {
        if !names.iter().any(|listed| listed == name) {
            files.push(Synced {
                name: name.to_string(),
                host: None,
                copy: None,
            });
        }
    }
    let replace_refs = files_below(&held, Path::new("refs/replace"));
    composition.privates.push(Private {
        host: host.to_path_buf(),
        held,
        copy: copy.to_path_buf(),
        copy_held: open_directory(copy)?,
        files,
        trees,
        replace_refs,
    });
    Ok(())
}

/// The regular files below `relative` in the git directory `held`, by their paths relative
/// to it, reached one name at a time without following links; none where it is absent.
fn files_below(held: &OwnedFd, relative: &Path) -> HashMap<PathBuf, Vec<u8>> {
    let mut found = HashMap::new();
    let mut pending = vec![relative.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(dir_held) = open_below(held, &dir, false) else {
            continue;
        };
        for entry in std::fs::read_dir(through(&dir_held))
            .into_iter()
            .flatten()
            .flatten()
        {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(dir.join(entry.file_name())),
                Ok(kind) if kind.is_file() => {
                    if let Some(content) = small_file_in(dir_held.as_fd(), &entry.file_name()) {
                        found.insert(dir.join(entry.file_name()), content);
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// The content of the regular file `name` in `dir`, read no further than a ref can be long.
fn small_file_in(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> Option<Vec<u8>> {
    let file = super::pin::read_in(dir, name).ok()??;
    let mut content = Vec::new();
    file.take(POINTER_MAX).read_to_end(&mut content).ok()?;
    Some(content)
}

/// `path` opened as a directory without following a link anywhere on the way.
fn open_directory(path: &Path) -> io::Result<OwnedFd> {
    match super::pin::open(path)? {
        super::pin::Opened::Found(fd, rustix::fs::FileType::Directory) => Ok(fd),
        _ => Err(io::Error::other(format!(
            "{} is no longer a directory reached without links",
            path.display()
        ))),
    }
}

fn through(fd: &OwnedFd) -> PathBuf {
    super::pin::through(fd.as_fd())
}

/// Makes `copy` a private tree of the host's directory `host`: its directories made anew, its
/// regular files hard links to the host's (copies across file systems), nothing else; each
/// file recorded in `trees` by `relative` path with its identity.
fn plant_tree(
    host: &Path,
    copy: &Path,
    relative: &Path,
    trees: &mut Vec<Planted>,
) -> io::Result<()> {
    let held = open_directory(host)?;
    let listed = through(&held);
    std::fs::create_dir(copy)?;
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(&listed)?.flatten().collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = entry.file_name();
        let kind = entry.file_type()?;
        let inside = copy.join(&name);
        if kind.is_dir() {
            plant_tree(&host.join(&name), &inside, &relative.join(&name), trees)?;
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        // link(2) does not follow a link at its source: one swapped in since the listing
        // would be linked as the link it is, and is then removed.
        match std::fs::hard_link(listed.join(&name), &inside) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::EXDEV) => {
                let Some(mut source) = super::pin::read_in(held.as_fd(), &name)? else {
                    continue;
                };
                let mut target = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&inside)?;
                io::copy(&mut source, &mut target)?;
            }
            Err(error) => return Err(error),
        }
        if !inside.symlink_metadata()?.is_file() {
            std::fs::remove_file(&inside)?;
            continue;
        }
        if let (Some(host), Some(copy)) = (Identity::of(&listed.join(&name)), Identity::of(&inside))
        {
            trees.push(Planted {
                relative: relative.join(&name),
                host,
                copy,
            });
        }
    }
    Ok(())
}

/// Brings back what git changed in `private`'s copies (see the module documentation), then
/// removes the private directory, unless something could not come back: then it stays, and
/// the lines say where. The host's files are reached through the directory held since launch.
pub fn bring_back(private: &Private) -> Vec<String> {
    let mut lines = Vec::new();
    let base = through(&private.held);
    for file in &private.files {
        let copy = private.copy.join(&file.name);
        let host = base.join(&file.name);
        let shown = private.host.join(&file.name);
        if Identity::of(&copy) == file.copy {
            continue;
        }
        if Identity::of(&host) != file.host {
            lines.push(changed_on_the_host(&shown, &copy));
            continue;
        }
        let content = match read_copy(&copy) {
            Ok(content) => content,
            Err(error) => {
                lines.push(could_not(&shown, &copy, &error));
                continue;
            }
        };
        let vetted = match content {
            Some(bytes) => vetted(&file.name, bytes, &host).map(Some),
            // Removed inside: the host's goes too, but a repository keeps its HEAD, and its
            // index (whose submodules are what the next launch guards: one removed would
            // leave them all unguarded, and host git rebuilds a lost index only from HEAD).
            None if file.name == "HEAD" || file.name == "index" => Err("it is gone".to_owned()),
            None => Ok(None),
        };
        match vetted {
            Ok(content) => {
                if let Err(error) = replace(&host, content.as_deref()) {
                    lines.push(could_not(&shown, &copy, &error));
                }
            }
            Err(why) => lines.push(format!(
                "the sandbox's git {} was not brought back: {why} (it is in {})",
                file.name,
                copy.display()
            )),
        }
    }
    bring_back_trees(private, &mut lines);
    if lines.is_empty() {
        std::fs::remove_dir_all(&private.copy).ok();
    }
    lines
}

/// The most of a copy that is read to bring it back: the index of some millions of files.
const SYNCED_MAX: u64 = 1 << 30;

/// The bytes of the regular file at `path`, or None where it is gone.
fn read_copy(path: &Path) -> io::Result<Option<Vec<u8>>> {
    Ok(read_with_metadata(path)?.map(|(bytes, _)| bytes))
}

/// [`read_copy`], with what the file's descriptor said of it before it was read.
fn read_with_metadata(path: &Path) -> io::Result<Option<(Vec<u8>, std::fs::Metadata)>> {
    let Some(file) = regular_or_absent(path)? else {
        return Ok(None);
    };
    let metadata = file.metadata()?;
    let mut bytes = Vec::new();
    file.take(SYNCED_MAX + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > SYNCED_MAX {
        return Err(io::Error::other("it is larger than 1 GiB"));
    }
    Ok(Some((bytes, metadata)))
}

/// What to write in place of the host's `name` (at `host`), from the sandbox's `bytes`, or why
/// they must not come back. What host git reads as names of objects or refs must be no more
/// than that: it writes through a ref a file names, and reads an index's paths, bits and caches
/// without checking them again (see `index`). Messages (`COMMIT_EDITMSG`, `MERGE_MSG`,
/// `MERGE_MODE`, `BISECT_LOG`) are text that git shows or parses, and come back as they are.
fn vetted(name: &str, bytes: Vec<u8>, host: &Path) -> Result<Vec<u8>, String> {
    let lines = || {
        let text = std::str::from_utf8(&bytes).map_err(|_| "it is not text".to_owned())?;
        Ok::<_, String>(text.strip_suffix('\n').unwrap_or(text).split('\n'))
    };
    let why = match name {
        "index" => return host_index_for(&bytes, host),
        "HEAD" => {
            let text = std::str::from_utf8(&bytes).map_err(|_| "it is not text".to_owned())?;
            if names_a_ref(text, "refs/heads/") {
                return Ok(bytes);
            }
            let line = text.strip_suffix('\n').unwrap_or(text);
            format!("it says {line:?}, which is neither an object name nor a branch in refs/heads/")
        }
        "ORIG_HEAD" | "MERGE_HEAD" | "CHERRY_PICK_HEAD" | "REVERT_HEAD" | "AUTO_MERGE" => {
            match lines()?.find(|line| !object_name(line)) {
                None => return Ok(bytes),
                Some(line) => format!("it has a line {line:?}, which is not an object name"),
            }
        }
        "FETCH_HEAD" => {
            let fetched = |line: &str| line.split_once('\t').is_some_and(|(id, _)| object_name(id));
            match lines()?.find(|line| !line.is_empty() && !fetched(line)) {
                None => return Ok(bytes),
                Some(line) => format!("it has a line {line:?}, which names no fetched object"),
            }
        }
        "packed-refs" => {
            let replacing = |text: &str| -> HashSet<String> {
                text.lines()
                    .filter(|line| {
                        line.split_once(' ')
                            .is_some_and(|(_, r)| r.starts_with("refs/replace/"))
                    })
                    .map(str::to_owned)
                    .collect()
            };
            let host_text = read_copy(host).ok().flatten().unwrap_or_default();
            let known = replacing(&String::from_utf8_lossy(&host_text));
            if let Some(line) = replacing(&String::from_utf8_lossy(&bytes))
                .into_iter()
                .find(|line| !known.contains(line))
            {
                return Err(format!(
                    "it has a replace ref the host's does not, {line:?} (host git would show \
                     another object in place of the one named)"
                ));
            }
            let packed = |line: &str| {
                if line.starts_with("# pack-refs with:") {
                    return true;
                }
                if let Some(peeled) = line.strip_prefix('^') {
                    return object_name(peeled);
                }
                line.split_once(' ').is_some_and(|(id, full)| {
                    object_name(id) && full.strip_prefix("refs/").is_some_and(branch_name)
                })
            };
            match lines()?.find(|line| !line.is_empty() && !packed(line)) {
                None => return Ok(bytes),
                Some(line) => format!("it has a line {line:?}, which is not a packed ref"),
            }
        }
        _ => return Ok(bytes),
    };
    Err(why)
}

/// Whether `text`, a ref's file, is one line of an object name or of `ref: ` and a valid ref
/// name below `under` (host git writes through such a link on the next commit).
fn names_a_ref(text: &str, under: &str) -> bool {
    let line = text.strip_suffix('\n').unwrap_or(text);
    object_name(line)
        || line
            .strip_prefix("ref: ")
            .and_then(|target| target.strip_prefix(under))
            .is_some_and(branch_name)
}

/// Whether `id` is an object name: 40 (SHA-1) or 64 (SHA-256) hexadecimal digits.
fn object_name(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The index to write at `host` from the sandbox's index `new` (see `index`).
fn host_index_for(new: &[u8], host: &Path) -> Result<Vec<u8>, String> {
    let current = read_with_metadata(host).ok().flatten();
    let host = current
        .as_ref()
        .map(|(bytes, metadata)| super::index::HostIndex {
            bytes,
            modified: u64::try_from(metadata.mtime()).unwrap_or(0),
        });
    super::index::brought_back(new, host)
}

/// Whether `name` (below `refs/heads/`) keeps git's rules for ref names: no empty component,
/// none that begins with `.` or ends with `.lock`, no `..`, `@{`, trailing `.`, and none of
/// the bytes git refuses (controls, space, `~^:?*[\`).
fn branch_name(name: &str) -> bool {
    !name.is_empty()
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.contains("@{")
        && name
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.') && !part.ends_with(".lock"))
        && name.bytes().all(|b| {
            b > b' ' && b != 0x7f && !matches!(b, b'~' | b'^' | b':' | b'?' | b'*' | b'[' | b'\\')
        })
}

fn changed_on_the_host(shown: &Path, copy: &Path) -> String {
    format!(
        "git's {} changed on the host while the sandbox ran, so the sandbox's was not brought \
         back (it is in {})",
        shown.display(),
        copy.display()
    )
}

fn could_not(shown: &Path, copy: &Path, error: &io::Error) -> String {
    format!(
        "could not bring back git's {} from the sandbox ({error}; it is in {})",
        shown.display(),
        copy.display()
    )
}

/// The private trees' part of [`bring_back`]: a file shared with the host (a hard link) has
/// nothing to bring; one the sandbox made, rewrote or removed comes back where the host's is
/// as it was at launch (or absent, for a new one); anything but a regular file stays behind.
/// The most bytes [`bring_back_trees`] copies back in one sandbox's end.
const TREES_COPY_MAX: u64 = 64 << 20;

fn bring_back_trees(private: &Private, lines: &mut Vec<String>) {
    let mut now = Vec::new();
    let mut unread = Vec::new();
    for tree in PRIVATE_TREES {
        if open_below(&private.copy_held, Path::new(tree), false).is_err() {
            // Gone, or a link now: nothing of it comes back, and nothing of the host's goes.
            if private
                .trees
                .iter()
                .any(|file| file.relative.starts_with(tree))
            {
                lines.push(format!(
                    "the sandbox replaced its copy of git's {} with something other than a \
                     directory; nothing of it was brought back",
                    private.host.join(tree).display()
                ));
            }
            unread.push(tree);
            continue;
        }
        let mut budget = WALK_LIMIT;
        list_tree(&private.copy_held, Path::new(tree), &mut now, &mut budget);
    }
    // What is copied back, at most: a sandbox could leave sparse files of gigabytes there,
    // which the holder, which the user's shell now waits for, would copy whole.
    let mut copy_budget = TREES_COPY_MAX;
    for (relative, kind) in &now {
        let shown = private.host.join(relative);
        // Reached through the held copy, one name at a time: a link the sandbox put in
        // place of a directory leads nowhere.
        let Ok(copy_dir) = open_below(
            &private.copy_held,
            relative.parent().unwrap_or(relative),
            false,
        ) else {
            continue;
        };
        let Some(file_name) = relative.file_name() else {
            continue;
        };
        let copy = through(&copy_dir).join(file_name);
        if !kind.is_file() {
            lines.push(format!(
                "the sandbox left {}, which is not a regular file, in its copy of git's {}; it \
                 was not brought back",
                copy.display(),
                shown.display()
            ));
            continue;
        }
        let planted = private.trees.iter().find(|file| &file.relative == relative);
        let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) else {
            continue;
        };
        let held = match open_below(&private.held, parent, planted.is_none()) {
            Ok(held) => held,
            Err(error) => {
                lines.push(could_not(&shown, &copy, &error));
                continue;
            }
        };
        let host = through(&held).join(name);
        let (copy_now, host_now) = (Identity::of(&copy), Identity::of(&host));
        let same_file = |a: Option<Identity>, b: Option<Identity>| {
            a.zip(b)
                .is_some_and(|(a, b)| (a.dev, a.ino) == (b.dev, b.ino))
        };
        let unwritten =
            |now: Option<Identity>, then: &Identity| now.is_some_and(|now| then.unwritten(&now));
        if same_file(copy_now, host_now)
            || planted.is_some_and(|file| unwritten(copy_now, &file.copy))
        {
            continue;
        }
        let host_as_at_launch = match planted {
            Some(file) => unwritten(host_now, &file.host),
            None => host_now.is_none(),
        };
        let size = copy_now.map_or(0, |identity| identity.size);
        if !host_as_at_launch {
            lines.push(changed_on_the_host(&shown, &copy));
        } else if size > copy_budget {
            lines.push(format!(
                "the sandbox's {} was not brought back: with it, what comes back of git's \
                 reflogs would be more than {} MiB (it is in {})",
                shown.display(),
                TREES_COPY_MAX >> 20,
                copy.display()
            ));
            copy_budget = 0;
        } else if let Err(error) = {
            copy_budget -= size;
            read_copy(&copy).and_then(|c| replace(&host, c.as_deref()))
        } {
            lines.push(could_not(&shown, &copy, &error));
        }
    }
    // What the sandbox removed goes on the host too, where the host's is as it was.
    for file in &private.trees {
        if now.iter().any(|(relative, _)| relative == &file.relative)
            || unread.iter().any(|tree| file.relative.starts_with(tree))
        {
            continue;
        }
        let (Some(parent), Some(name)) = (file.relative.parent(), file.relative.file_name()) else {
            continue;
        };
        let Ok(held) = open_below(&private.held, parent, false) else {
            continue;
        };
        let host = through(&held).join(name);
        if Identity::of(&host).is_some_and(|now| file.host.unwritten(&now)) {
            std::fs::remove_file(&host).ok();
        }
    }
}

/// Every entry below `relative` in the directory `root` holds, by its path relative to it,
/// with its kind, at most `budget` of them; each directory is opened without following a
/// link (a link in place of one is listed as the link it is, never followed).
fn list_tree(
    root: &OwnedFd,
    relative: &Path,
    out: &mut Vec<(PathBuf, std::fs::FileType)>,
    budget: &mut usize,
) {
    let Ok(dir) = open_below(root, relative, false) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(through(&dir)) else {
        return;
    };
    for entry in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = relative.join(entry.file_name());
        if kind.is_dir() {
            list_tree(root, &path, out, budget);
        } else {
            out.push((path, kind));
        }
    }
}

/// The directory `relative` below the one `base` holds, opened one name at a time without
/// following a link; with `make`, the missing ones are made.
fn open_below(base: &OwnedFd, relative: &Path, make: bool) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut current = rustix::io::dup(base)?;
    for name in relative.components() {
        let name = name.as_os_str();
        current = match rustix::fs::openat(&current, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) if make => {
                rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(0o755))?;
                rustix::fs::openat(&current, name, flags, Mode::empty())?
            }
            Err(error) => return Err(error.into()),
        };
    }
    Ok(current)
}

/// Removes what the sandbox made in the repository's shared data directories ([`WRITABLE`])
/// that host git would follow or wait on: links, FIFOs and sockets made since `began` (a link
/// the user made before is left alone); and in `refs/`, the refs made or changed since then
/// that are not an object name or a link to a valid ref name (host git writes through a
/// `ref: refs/heads/../../x` on the next commit), and every replace ref (`refs/replace/`); a
/// line for each. A link there is the one route left
/// while the sandbox runs: host git writing then would create a file named by a hash or a
/// ref in the directory the link names (never one of the sandbox's choosing, and no program).
pub fn sweep(private: &Private, began: std::time::SystemTime) -> Vec<String> {
    use rustix::fs::AtFlags;
    let mut lines = Vec::new();
    // `refs/` first: the one where a link leads host git to write under a name of the
    // sandbox's choosing. Each directory has a budget of its own.
    for dir in WRITABLE {
        let mut budget = WALK_LIMIT;
        let mut pending = vec![PathBuf::from(dir)];
        while let Some(relative) = pending.pop() {
            // From the held git directory, one name at a time, following no link: a
            // directory swapped for a link since leads the sweep nowhere.
            let Ok(held) = open_below(&private.held, &relative, false) else {
                continue;
            };
            // A directory the sandbox took the user's permissions from is given them back
            // (it is the user's own): what is in it is looked at all the same.
            let listed = std::fs::read_dir(through(&held)).or_else(|_| {
                let_the_user_in(&held);
                std::fs::read_dir(through(&held))
            });
            let entries = match listed {
                Ok(entries) => entries,
                Err(error) => {
                    lines.push(format!(
                        "could not look into {} ({error}); look at what is in it yourself",
                        private.host.join(&relative).display()
                    ));
                    continue;
                }
            };
            for entry in entries.flatten() {
                if budget == 0 {
                    lines.push(format!(
                        "stopped looking for links in {} after {WALK_LIMIT} entries; look for \
                         any yourself (`find {} ! -type f ! -type d`)",
                        private.host.join(dir).display(),
                        private.host.join(dir).display()
                    ));
                    pending.clear();
                    break;
                }
                budget -= 1;
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let name = entry.file_name();
                if kind.is_dir() {
                    pending.push(relative.join(&name));
                    continue;
                }
                // An entry that cannot be looked at (its directory listable, not searchable)
                // is given the benefit of no doubt: made since, as far as the sweep goes.
                let look = || rustix::fs::statat(&held, &name, AtFlags::SYMLINK_NOFOLLOW);
                let made_since = look()
                    .or_else(|_| {
                        let_the_user_in(&held);
                        look()
                    })
                    .map_or(true, |stat| {
                        at_or_after(stat.st_ctime, stat.st_ctime_nsec as i64, began)
                    });
                let why = if !kind.is_file() {
                    if !made_since {
                        continue;
                    }
                    "is not a regular file (host git would have followed it, or waited on it)"
                } else if dir != "refs" {
                    continue;
                } else if name.as_encoded_bytes().ends_with(b".lock") {
                    // No ref git reads, but one left would fail every host git that updates
                    // the ref. One made since launch is the sandbox's (a host git's own lives
                    // the milliseconds of an update; one removed under it fails that update,
                    // which says so).
                    if !made_since {
                        continue;
                    }
                    "is a lock the sandbox left (host git would fail to update the ref)"
                } else if relative.starts_with("refs/replace") {
                    // By name and content, not by time: a ref renamed into `refs/replace/`,
                    // or its directory, keeps the change time it had.
                    let launched = private.replace_refs.get(&relative.join(&name));
                    if launched.is_some() && launched == small_file_in(held.as_fd(), &name).as_ref()
                    {
                        continue;
                    }
                    "is a replace ref (host git would show another commit, tree or blob in \
                     place of the one named, and hide a change from status and diff)"
                } else if let Some(why) = loose_ref_problem(held.as_fd(), &name) {
                    // Whatever its age: git writes no such ref.
                    why
                } else {
                    continue;
                };
                let removed = rustix::fs::unlinkat(&held, &name, AtFlags::empty()).or_else(|_| {
                    let_the_user_in(&held);
                    rustix::fs::unlinkat(&held, &name, AtFlags::empty())
                });
                let shown = private.host.join(relative.join(&name));
                lines.push(match removed {
                    Ok(()) => format!(
                        "removed {}, which the sandbox made or changed in the repository and {why}",
                        shown.display()
                    ),
                    Err(error) => format!(
                        "could not remove {} ({error}), which {why}; remove it yourself",
                        shown.display()
                    ),
                });
            }
        }
    }
    lines
}

/// Gives the user back the read, write and search permissions on the directory `held` (one
/// of the repository's own, which the sandbox could chmod), through the kernel's link to it.
fn let_the_user_in(held: &OwnedFd) {
    use std::os::unix::fs::PermissionsExt;
    let path = through(held);
    if let Ok(meta) = std::fs::metadata(&path) {
        let mode = meta.permissions().mode() | 0o700;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).ok();
    }
}

/// Why the loose ref `name` in the directory `dir` must not stay, if it must not: it is not one
/// line holding an object name or `ref: ` and a valid ref name under `refs/`.
fn loose_ref_problem(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> Option<&'static str> {
    const NOT_A_REF: &str = "is not a ref git writes (an object name, or a link to a ref)";
    let Ok(Some(file)) = super::pin::read_in(dir, name) else {
        return Some(NOT_A_REF);
    };
    let mut text = String::new();
    if file.take(POINTER_MAX).read_to_string(&mut text).is_err() {
        return Some(NOT_A_REF);
    }
    (!names_a_ref(&text, "refs/")).then_some(NOT_A_REF)
}

/// Whether the time `seconds` and `nanoseconds` after the epoch (a change time) is at or after
/// `began`.
fn at_or_after(seconds: i64, nanoseconds: i64, began: std::time::SystemTime) -> bool {
    let time = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            u64::try_from(seconds).unwrap_or(0),
            u32::try_from(nanoseconds.clamp(0, 999_999_999)).unwrap_or(0),
        );
    time >= began
}

/// The regular file at `path` opened to read (see `pin::read_regular`), `None` when there is
/// nothing there, and an error when what is there is something else (a link, a FIFO).
fn regular_or_absent(path: &Path) -> io::Result<Option<std::fs::File>> {
    match super::pin::read_regular(path) {
        Ok(Some(file)) => Ok(Some(file)),
        Ok(None) => Err(io::Error::other("not a regular file")),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Replaces `host` with `content` (or removes it, when None), as git does: by its `.lock`
/// file, made exclusively, then renamed into place. A lock that is there already is git at
/// work on the host: then nothing is done.
fn replace(host: &Path, content: Option<&[u8]>) -> io::Result<()> {
    let mut lock_name = host.as_os_str().to_os_string();
    lock_name.push(".lock");
    let lock_path = PathBuf::from(lock_name);
    let mut lock = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&lock_path)?;
    let result = (|| match content {
        Some(bytes) => {
            lock.write_all(bytes)?;
            lock.flush()?;
            std::fs::rename(&lock_path, host)
        }
        None => {
            std::fs::remove_file(host)?;
            std::fs::remove_file(&lock_path)
        }
    })();
    if result.is_err() {
        std::fs::remove_file(&lock_path).ok();
    }
    result
}

/// Moves aside each `.git` at a guarded path ([`nested_gitfiles`]) that is not what was there
/// at launch: made there, or renamed into place with the directory around it, by the sandbox.
/// Host git would obey the repository it names on the next `git status` (a submodule) or `cd`
/// (a worktree). A line for each, and for each that could not be looked at.
pub fn move_aside_planted(workspace: &Path, guarded: &[Guarded]) -> Vec<String> {
    let mut lines = Vec::new();
    for guard in guarded {
        let gitfile = workspace.join(&guard.relative);
        let Some(parent) = gitfile.parent() else {
            continue;
        };
        // Through no link: one on the way is what host git does not go through either.
        let Ok(super::pin::Opened::Found(held, rustix::fs::FileType::Directory)) =
            super::pin::open(parent)
        else {
            continue;
        };
        let look = || rustix::fs::statat(&held, ".git", rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
        let now = look().or_else(|error| {
            if error != rustix::io::Errno::ACCESS {
                return Err(error);
            }
            let_the_user_in(&held);
            look()
        });
        let line = match now {
            Err(rustix::io::Errno::NOENT) => continue,
            Ok(stat) if guard.at_launch == Some((stat.st_dev, stat.st_ino)) => continue,
            Err(error) => format!(
                "could not look at {} ({error}): host git obeys the repository a .git there names; look at it yourself",
                gitfile.display()
            ),
            Ok(_) => {
                let aside = format!(
                    ".git.paude-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos()
                );
                let rename = || rustix::fs::renameat(&held, ".git", &held, aside.as_str());
                match rename().or_else(|_| {
                    let_the_user_in(&held);
                    rename()
                }) {
                    Ok(()) => format!(
                        "moved {} to {aside}: the sandbox put it where host git would have obeyed the repository it names",
                        gitfile.display()
                    ),
                    Err(error) => format!(
                        "could not move aside {} ({error}), which the sandbox put where host git obeys the repository it names; remove it before you run git there",
                        gitfile.display()
                    ),
                }
            }
        };
        lines.push(line);
    }
    lines
}

/// The most entries [`made_since`] looks at: a workspace bigger than that is looked at in part.
const WALK_LIMIT: usize = 200_000;

/// The directories of `workspace` holding a `.git` made, renamed into place or changed at or
/// after `began` (the workspace's own excepted), by its birth and change times; and a line for
/// each part of the workspace that was not looked at (a directory it could not read, the
/// entries past [`WALK_LIMIT`]), so that a sandbox cannot hide one from this list unsaid.
pub fn made_since(workspace: &Path, began: std::time::SystemTime) -> (Vec<PathBuf>, Vec<String>) {
    made_since_within(workspace, began, usize::MAX).unwrap_or_default()
}

/// [`made_since`], or `None` where the workspace has more than `quick` entries (then the
/// caller does the whole walk where it holds up no one).
pub fn made_since_within(
    workspace: &Path,
    began: std::time::SystemTime,
    quick: usize,
) -> Option<(Vec<PathBuf>, Vec<String>)> {
    let mut found = Vec::new();
    let mut unseen = Vec::new();
    let mut pending = vec![workspace.to_path_buf()];
    let mut seen = 0;
    'walk: while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) => {
                unseen.push(format!(
                    "could not look into {} ({error}) for git repositories the sandbox made; \
                     look at it yourself before you run git there",
                    dir.display()
                ));
                continue;
            }
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > quick {
                return None;
            }
            if seen > WALK_LIMIT {
                unseen.push(format!(
                    "stopped looking for git repositories the sandbox made after {WALK_LIMIT} \
                     entries of the workspace; look for any yourself (`find {} -name .git`)",
                    workspace.display()
                ));
                break 'walk;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            // A `.git`, or the `HEAD` of a bare repository (beside its `objects/` and `refs/`:
            // a `cd` into it, and host git obeys its config as well).
            // (git takes a directory for one where `HEAD` is a file or a link, beside
            // `objects/` and `refs/` or a `commondir`.)
            let marks = name == ".git"
                || (name == "HEAD"
                    && (kind.is_file() || kind.is_symlink())
                    && ((dir.join("objects").is_dir() && dir.join("refs").is_dir())
                        || dir.join("commondir").symlink_metadata().is_ok()));
            if marks && dir != workspace {
                // Made (birth time), or renamed into place or changed (change time): a `.git`
                // renamed from a tracked file keeps its birth time.
                match entry.metadata() {
                    Ok(meta) => {
                        if meta.created().is_ok_and(|created| created >= began)
                            || at_or_after(meta.ctime(), meta.ctime_nsec(), began)
                        {
                            found.push(dir.clone());
                        }
                    }
                    Err(error) => unseen.push(format!(
                        "could not look at {} ({error}) to see whether the sandbox made that \
                         git repository; look at it yourself before you run git there",
                        entry.path().display()
                    )),
                }
            }
            if name == ".git" {
                continue;
            }
            if kind.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    found.sort();
    found.dedup();
    Some((found, unseen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::testing::{fifo, git};

    /// A temporary directory (kept alive by the first value), its real path, and a fresh
    /// repository `main` in it.
    fn repository() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let main = root.join("main");
        std::fs::create_dir(&main).unwrap();
        git(&main, &["init", "-q"]);
        (dir, root, main)
    }

    #[test]
    fn layouts_are_found_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let main = root.join("main");
        std::fs::create_dir(&main).unwrap();
        assert_eq!(layout(&main), Ok(Layout::None));
        git(&main, &["init", "-q"]);
        git(&main, &["commit", "-q", "--allow-empty", "-m", "x"]);
        assert_eq!(
            layout(&main),
            Ok(Layout::Main {
                git_dir: main.join(".git")
            })
        );
        git(&main, &["worktree", "add", "-q", "../wt"]);
        let wt = root.join("wt");
        assert_eq!(
            layout(&wt),
            Ok(Layout::Linked {
                admin: main.join(".git/worktrees/wt"),
                common: main.join(".git")
            })
        );
        // Pointers the workspace could write: to the home, to /, to another worktree's
        // directory that does not name this one back.
        for pointer in [
            root.to_str().unwrap(),
            "/",
            main.join(".git").to_str().unwrap(),
        ] {
            std::fs::write(wt.join(".git"), format!("gitdir: {pointer}\n")).unwrap();
            assert!(layout(&wt).is_err(), "{pointer}");
        }
        let other = root.join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(
            other.join(".git"),
            format!("gitdir: {}\n", main.join(".git/worktrees/wt").display()),
        )
        .unwrap();
        assert!(layout(&other).unwrap_err().contains("names this one back"));
        // A main repository with a commondir, a .git that is a link.
        std::fs::write(main.join(".git/commondir"), "../elsewhere\n").unwrap();
        assert!(layout(&main).unwrap_err().contains("commondir"));
        std::fs::remove_file(main.join(".git/commondir")).unwrap();
        let linked = root.join("linked");
        std::fs::create_dir(&linked).unwrap();
        std::os::unix::fs::symlink(main.join(".git"), linked.join(".git")).unwrap();
        assert!(layout(&linked).unwrap_err().contains("symbolic link"));
        // A FIFO at .git, or where a pointer is read, is refused without waiting on it.
        let piped = root.join("piped");
        std::fs::create_dir(&piped).unwrap();
        fifo(&piped.join(".git"));
        assert!(
            layout(&piped)
                .unwrap_err()
                .contains("neither a directory nor a file")
        );
        std::fs::remove_file(piped.join(".git")).unwrap();
        let pointed = root.join("pointed");
        std::fs::create_dir_all(pointed.join("gd")).unwrap();
        fifo(&pointed.join("gd/commondir"));
        assert_eq!(read_pointer(&pointed.join("gd/commondir"), ""), None);
    }

    #[test]
    fn a_composition_binds_data_writable_and_control_files_read_only() {
        let (_dir, root, main) = repository();
        let private = root.join("private");
        let composition = compose(&layout(&main).unwrap(), &private).unwrap();
        let dot_git = main.join(".git");
        let first = &composition.binds[0];
        assert_eq!((&first.path, first.writable), (&dot_git, true));
        assert_eq!(first.source, private.join("0"));
        let mode = |name: &str| {
            composition
                .binds
                .iter()
                .find(|bind| bind.path == dot_git.join(name))
                .map(|bind| bind.writable)
        };
        assert_eq!(mode("objects"), Some(true));
        assert_eq!(mode("refs"), Some(true));
        assert_eq!(mode("config"), Some(false));
        assert_eq!(mode("hooks"), Some(false));
        assert_eq!(mode("info"), Some(false));
        assert_eq!(mode("HEAD"), None, "copied, not bound");
        assert!(private.join("0/HEAD").is_file());
        assert!(private.join("0/objects").is_dir());
        let files: Vec<&str> = composition.privates[0]
            .files
            .iter()
            .map(|file| file.name.as_str())
            .collect();
        assert!(
            files.contains(&"HEAD") && files.contains(&"index"),
            "{files:?}"
        );
    }

    #[test]
    fn names_of_objects_and_refs_come_back_only_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("none");
        let id = "a".repeat(40);
        let vet = |name: &str, text: &str| vetted(name, text.as_bytes().to_vec(), &host);
        for (name, text) in [
            ("HEAD", format!("{id}\n")),
            ("HEAD", "ref: refs/heads/topic/x\n".to_owned()),
            ("ORIG_HEAD", format!("{id}\n")),
            ("MERGE_HEAD", format!("{id}\n{}\n", "b".repeat(40))),
            ("AUTO_MERGE", "c".repeat(64)),
            ("FETCH_HEAD", format!("{id}\t\tbranch 'main' of ../up\n")),
            ("FETCH_HEAD", String::new()),
            (
                "packed-refs",
                format!(
                    "# pack-refs with: peeled fully-peeled sorted \n{id} refs/tags/v1.0\n^{id}\n"
                ),
            ),
            ("MERGE_MSG", "Merge ../../x; rm -rf ~\n".to_owned()),
        ] {
            assert_eq!(
                vet(name, &text),
                Ok(text.clone().into_bytes()),
                "{name}: {text:?}"
            );
        }
        for (name, text, said) in [
            ("HEAD", "ref: refs/../hooks/post-commit\n", "neither"),
            ("HEAD", "ref: refs/heads/.hidden\n", "neither"),
            ("ORIG_HEAD", "ref: HEAD\n", "not an object name"),
            ("ORIG_HEAD", "", "not an object name"),
            ("CHERRY_PICK_HEAD", "1111\n", "not an object name"),
            ("MERGE_HEAD", "\u{ff}\u{fe}", "not an object name"),
            ("FETCH_HEAD", "not fetched\n", "no fetched object"),
            ("packed-refs", "aaaa refs/heads/x\n", "not a packed ref"),
            (
                "packed-refs",
                &format!("{id} refs/heads/../../../x\n"),
                "not a packed ref",
            ),
            ("packed-refs", &format!("{id} HEAD\n"), "not a packed ref"),
            (
                "packed-refs",
                &format!("{id} refs/replace/{id}\n"),
                "replace ref",
            ),
        ] {
            let why = vet(name, text).expect_err(name);
            assert!(why.contains(said), "{name}: {text:?}: {why}");
        }
        assert!(
            vetted("HEAD", vec![0xff], &host)
                .unwrap_err()
                .contains("not text")
        );
    }

    #[test]
    fn copies_come_back_only_where_the_host_did_not_change() {
        let (_dir, root, main) = repository();
        let dot_git = main.join(".git");
        std::fs::write(dot_git.join("ORIG_HEAD"), "1111\n").unwrap();
        let composition = compose(&layout(&main).unwrap(), &root.join("p")).unwrap();
        let private = &composition.privates[0];
        let copy = &private.copy;
        // The sandbox changes HEAD and ORIG_HEAD, makes MERGE_HEAD and a config.worktree.
        std::fs::write(copy.join("HEAD"), "ref: refs/heads/other\n").unwrap();
        std::fs::write(copy.join("ORIG_HEAD"), "2222\n").unwrap();
        let merged = format!("{}\n", "3".repeat(40));
        std::fs::write(copy.join("MERGE_HEAD"), &merged).unwrap();
        std::fs::write(copy.join("config.worktree"), "[core]\nfsmonitor = evil\n").unwrap();
        // Meanwhile the host changes ORIG_HEAD.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(dot_git.join("ORIG_HEAD"), "host\n").unwrap();
        let lines = bring_back(private);
        assert_eq!(
            std::fs::read_to_string(dot_git.join("HEAD")).unwrap(),
            "ref: refs/heads/other\n"
        );
        assert_eq!(
            std::fs::read_to_string(dot_git.join("MERGE_HEAD")).unwrap(),
            merged
        );
        assert_eq!(
            std::fs::read_to_string(dot_git.join("ORIG_HEAD")).unwrap(),
            "host\n"
        );
        assert!(!dot_git.join("config.worktree").exists());
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("ORIG_HEAD changed on the host"),
            "{lines:?}"
        );
        assert!(copy.exists(), "kept while something did not come back");
        // A copy that is a FIFO does not hold the holder up.
        let composition = compose(&layout(&main).unwrap(), &root.join("r")).unwrap();
        let private = &composition.privates[0];
        std::fs::remove_file(private.copy.join("index")).ok();
        fifo(&private.copy.join("index"));
        let lines = bring_back(private);
        assert!(
            lines.iter().any(|line| line.contains("not a regular file")),
            "{lines:?}"
        );
        // A copy that is a link comes back as nothing (the host's is left as it was).
        let composition = compose(&layout(&main).unwrap(), &root.join("q")).unwrap();
        let private = &composition.privates[0];
        std::fs::remove_file(private.copy.join("HEAD")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", private.copy.join("HEAD")).unwrap();
        let lines = bring_back(private);
        assert!(lines[0].contains("not a regular file"), "{lines:?}");
        assert_eq!(
            std::fs::read_to_string(dot_git.join("HEAD")).unwrap(),
            "ref: refs/heads/other\n"
        );
    }

    #[test]
    fn reflogs_are_a_private_tree_that_comes_back_as_regular_files() {
        let (_dir, root, main) = repository();
        let dot_git = main.join(".git");
        std::fs::create_dir_all(dot_git.join("logs/refs/heads")).unwrap();
        std::fs::write(dot_git.join("logs/HEAD"), "one\n").unwrap();
        std::fs::write(dot_git.join("logs/refs/heads/gone"), "gone\n").unwrap();
        let composition = compose(&layout(&main).unwrap(), &root.join("p")).unwrap();
        assert!(
            !composition
                .binds
                .iter()
                .any(|bind| bind.path == dot_git.join("logs")),
            "logs are not bound"
        );
        let private = &composition.privates[0];
        let copy = &private.copy;
        // A hard link: what git appends inside is the host's at once.
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(copy.join("logs/HEAD"))
            .unwrap()
            .write_all(b"two\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dot_git.join("logs/HEAD")).unwrap(),
            "one\ntwo\n"
        );
        // The sandbox makes a reflog, removes one, and links another to a file outside.
        std::fs::create_dir_all(copy.join("logs/refs/heads/new")).unwrap();
        std::fs::write(copy.join("logs/refs/heads/new/x"), "made\n").unwrap();
        std::fs::remove_file(copy.join("logs/refs/heads/gone")).unwrap();
        std::fs::write(root.join("bashrc"), "# mine\n").unwrap();
        std::os::unix::fs::symlink(root.join("bashrc"), copy.join("logs/refs/heads/link")).unwrap();
        let lines = bring_back(private);
        assert_eq!(
            std::fs::read_to_string(dot_git.join("logs/refs/heads/new/x")).unwrap(),
            "made\n"
        );
        assert!(!dot_git.join("logs/refs/heads/gone").exists());
        assert!(!dot_git.join("logs/refs/heads/link").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("bashrc")).unwrap(),
            "# mine\n"
        );
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("not a regular file"), "{lines:?}");
    }

    #[test]
    fn links_made_in_shared_data_since_launch_are_swept() {
        let (_dir, root, main) = repository();
        let dot_git = main.join(".git");
        std::os::unix::fs::symlink(&root, dot_git.join("refs/old-link")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let began = std::time::SystemTime::now();
        let composition = compose(&layout(&main).unwrap(), &root.join("p")).unwrap();
        std::os::unix::fs::symlink(&root, dot_git.join("refs/heads/sub")).unwrap();
        std::os::unix::fs::symlink(&root, dot_git.join("objects/ab")).unwrap();
        let lines = sweep(&composition.privates[0], began);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            dot_git.join("refs/old-link").is_symlink(),
            "the user's own is kept"
        );
        assert!(!dot_git.join("refs/heads/sub").exists());
        assert!(!dot_git.join("objects/ab").exists());
    }

    /// A sandbox running in a directory that holds the workspace can swap the workspace's
    /// `.git` for a link while the inner sandbox runs: what the holder brings back still goes
    /// to the repository it composed, never where the link leads.
    #[test]
    fn copies_come_back_to_the_repository_held_not_where_its_name_leads() {
        let (_dir, root, main) = repository();
        let dot_git = main.join(".git");
        let composition = compose(&layout(&main).unwrap(), &root.join("p")).unwrap();
        let private = &composition.privates[0];
        std::fs::write(private.copy.join("MERGE_MSG"), "the sandbox's\n").unwrap();
        let target = root.join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::rename(&dot_git, main.join(".git.real")).unwrap();
        std::os::unix::fs::symlink(&target, &dot_git).unwrap();
        assert_eq!(bring_back(private), Vec::<String>::new());
        assert!(!target.join("MERGE_MSG").exists());
        assert_eq!(
            std::fs::read_to_string(main.join(".git.real/MERGE_MSG")).unwrap(),
            "the sandbox's\n"
        );
    }

    /// The sandbox can put a link in place of its copy's `logs/`: the holder neither follows
    /// it (it would copy what the link leads to into the host's reflogs) nor takes the
    /// missing tree as reflogs removed.
    #[test]
    fn a_private_tree_swapped_for_a_link_brings_nothing_back() {
        let (_dir, root, main) = repository();
        let dot_git = main.join(".git");
        std::fs::create_dir_all(dot_git.join("logs")).unwrap();
        std::fs::write(dot_git.join("logs/HEAD"), "one\n").unwrap();
        let composition = compose(&layout(&main).unwrap(), &root.join("p")).unwrap();
        let private = &composition.privates[0];
        std::fs::create_dir(root.join("secrets")).unwrap();
        std::fs::write(root.join("secrets/id_rsa"), "KEY\n").unwrap();
        std::fs::rename(private.copy.join("logs"), private.copy.join("logs.old")).unwrap();
        std::os::unix::fs::symlink(root.join("secrets"), private.copy.join("logs")).unwrap();
        let lines = bring_back(private);
        assert!(!dot_git.join("logs/id_rsa").exists());
        assert_eq!(
            std::fs::read_to_string(dot_git.join("logs/HEAD")).unwrap(),
            "one\n"
        );
        assert!(
            lines
                .iter()
                .any(|line| line.contains("something other than a directory")),
            "{lines:?}"
        );
    }

    /// A `HEAD` naming a path outside `refs/heads/` stays behind: host git's next commit would
    /// write the commit's name there (`ref: refs/../hooks/post-commit` makes a hook file).
    #[test]
    fn a_head_that_names_no_branch_stays_behind() {
        assert!(branch_name("main") && branch_name("feature/x-1"));
        for bad in [
            "",
            "../hooks/x",
            "a/../b",
            ".hidden",
            "a.lock",
            "a b",
            "a~1",
            "x/",
            "a@{0}",
        ] {
            assert!(!branch_name(bad), "{bad}");
        }
        let (_dir, root, main) = repository();
        let dot_git = main.join(".git");
        let before = std::fs::read_to_string(dot_git.join("HEAD")).unwrap();
        let composition = compose(&layout(&main).unwrap(), &root.join("p")).unwrap();
        let private = &composition.privates[0];
        std::fs::write(
            private.copy.join("HEAD"),
            "ref: refs/../hooks/post-commit\n",
        )
        .unwrap();
        let lines = bring_back(private);
        assert_eq!(
            std::fs::read_to_string(dot_git.join("HEAD")).unwrap(),
            before
        );
        assert!(
            lines[0].contains("git HEAD was not brought back"),
            "{lines:?}"
        );
        let composition = compose(&layout(&main).unwrap(), &root.join("q")).unwrap();
        let private = &composition.privates[0];
        let id = "0123456789abcdef0123456789abcdef01234567\n";
        std::fs::write(private.copy.join("HEAD"), id).unwrap();
        assert_eq!(bring_back(private), Vec::<String>::new());
        assert_eq!(std::fs::read_to_string(dot_git.join("HEAD")).unwrap(), id);
    }
}
