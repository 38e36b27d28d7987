//! Path resolution confined to a directory tree, as if that tree were `/`.
//!
//! Both ends of paude look at a tree from the outside: the exporter reads the host root (or a
//! test root) to find where a packaged path really lives, and the sandbox planner looks into a
//! cached rootfs to learn whether a mount target exists. In both, a symbolic link must resolve
//! the way it will once the tree *is* `/`: an absolute target restarts at the tree's top, and
//! `..` never climbs above it. Resolving with the host's own `canonicalize` would follow an
//! absolute link out of the tree — and the exporter would then write into the host.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// How many links a resolution may follow before it gives up, as the kernel's ELOOP limit.
const MAX_LINKS: usize = 40;

/// The result of resolving a path inside a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The absolute path, as seen with the tree as `/`, with every link that exists followed.
    pub path: PathBuf,
    /// How many leading components of `path` exist in the tree; the rest do not (yet).
    pub existing: usize,
}

impl Resolved {
    /// Whether the whole path exists.
    pub fn exists(&self) -> bool {
        self.existing == self.path.components().count() - 1
    }

    /// The deepest existing ancestor-or-self of the path.
    pub fn deepest_existing(&self) -> PathBuf {
        let mut out = PathBuf::from("/");
        for component in self.path.components().skip(1).take(self.existing) {
            out.push(component);
        }
        out
    }
}

/// What resolution needs to know of one path in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A symbolic link, and its target as written.
    Link(PathBuf),
    Directory,
    /// Anything else that exists.
    File,
}

/// The entry at `path` on disk (not following a link at the end); `None` when there is none.
pub fn entry(path: &Path) -> io::Result<Option<Entry>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Ok(Some(Entry::Link(std::fs::read_link(path)?)))
        }
        Ok(meta) if meta.is_dir() => Ok(Some(Entry::Directory)),
        Ok(_) => Ok(Some(Entry::File)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Resolves `path` (absolute) inside `root`, following every symbolic link that exists,
/// including the last component. Components past the first missing one are kept as written
/// (with `.` removed and `..` applied lexically).
pub fn resolve(root: &Path, path: &Path) -> io::Result<Resolved> {
    resolve_with(root, path, &mut entry)
}

/// [`resolve`], learning each path's entry from `look` instead of the disk: a caller that looks
/// at the same tree many times answers again from what it has seen.
pub fn resolve_with(
    root: &Path,
    path: &Path,
    look: &mut dyn FnMut(&Path) -> io::Result<Option<Entry>>,
) -> io::Result<Resolved> {
    debug_assert!(!root.as_os_str().is_empty(), "a tree's root is a directory");
    let mut done: Vec<OsString> = Vec::new();
    let mut todo: Vec<OsString> = components_reversed(path);
    let mut links = 0;
    // `root` and the components done, as bytes, and where each component starts in it: each
    // candidate is this and one more name, built without a path of its own per step.
    let root_bytes = bytes(root).strip_suffix(b"/").unwrap_or(bytes(root));
    let mut prefix: Vec<u8> = root_bytes.to_vec();
    let mut starts: Vec<usize> = Vec::new();
    let mut candidate: Vec<u8> = Vec::new();
    while let Some(name) = todo.pop() {
        if name == ".." {
            done.pop();
            prefix.truncate(starts.pop().unwrap_or(root_bytes.len()));
            continue;
        }
        candidate.clear();
        candidate.extend_from_slice(&prefix);
        candidate.push(b'/');
        candidate.extend_from_slice(name.as_bytes());
        match look(Path::new(std::ffi::OsStr::from_bytes(&candidate))) {
            Ok(Some(Entry::Link(target))) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving {} in {}",
                        path.display(),
                        root.display()
                    )));
                }
                if target.is_absolute() {
                    done.clear();
                    starts.clear();
                    prefix.truncate(root_bytes.len());
                }
                todo.extend(components_reversed(&target));
            }
            Ok(Some(_)) => {
                starts.push(prefix.len());
                prefix.extend_from_slice(&candidate[prefix.len()..]);
                done.push(name);
            }
            Ok(None) => {
                // Existence stops here; the rest is appended as written.
                let existing = done.len();
                done.push(name);
                return finish(done, todo, existing);
            }
            Err(error)
                if error.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
            {
                return Err(io::Error::other(format!(
                    "{} is not a directory in {}",
                    PathBuf::from("/")
                        .join(done.iter().collect::<PathBuf>())
                        .display(),
                    root.display()
                )));
            }
            Err(error) => return Err(error),
        }
    }
    let existing = done.len();
    Ok(Resolved {
        path: absolute(&done),
        existing,
    })
}

fn finish(
    mut done: Vec<OsString>,
    mut todo: Vec<OsString>,
    existing: usize,
) -> io::Result<Resolved> {
    while let Some(name) = todo.pop() {
        if name == ".." {
            if done.len() > existing {
                done.pop();
            } else {
                // `..` out of a missing directory: the kernel would fail here too.
                return Err(io::Error::from(io::ErrorKind::NotFound));
            }
        } else {
            done.push(name);
        }
    }
    Ok(Resolved {
        path: absolute(&done),
        existing,
    })
}

fn absolute(parts: &[OsString]) -> PathBuf {
    let mut out = PathBuf::from("/");
    out.extend(parts);
    out
}

/// The normal components of `path`, last first, with `.` dropped and `..` kept.
fn components_reversed(path: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = path
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    out.reverse();
    out
}

/// `root` joined with the absolute `path` (whose leading `/` would otherwise replace `root`).
pub fn under(root: &Path, path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    if relative.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(relative)
    }
}

/// Whether `path` is `base` or lies below it, component-wise (`/ab` is not below `/a`).
/// Normalized absolute paths (which the plan's are) are compared as bytes; others go through
/// the components.
pub fn is_within(path: &Path, base: &Path) -> bool {
    let (path_bytes, base_bytes) = (bytes(path), bytes(base));
    if !is_normalized(path_bytes) || !is_normalized(base_bytes) {
        return path.starts_with(base);
    }
    base_bytes == b"/"
        || path_bytes
            .strip_prefix(base_bytes)
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

/// Whether `path` is absolute with no empty, `.` or `..` component and no trailing `/`.
fn is_normalized(path: &[u8]) -> bool {
    path == b"/"
        || (path.starts_with(b"/")
            && path[1..]
                .split(|byte| *byte == b'/')
                .all(|part| !matches!(part, b"" | b"." | b"..")))
}

/// Bytes of a path, for encodings that must not be lossy.
pub fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/tool"), "").unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // An absolute link must resolve inside the tree, never on the host.
        symlink("/usr/bin/tool", root.join("etc/abs")).unwrap();
        symlink("../../../../../../etc", root.join("usr/up")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        dir
    }

    #[test]
    fn within_is_component_wise_whatever_the_spelling() {
        let cases = [
            ("/a/b", "/a", true),
            ("/a", "/a", true),
            ("/ab", "/a", false),
            ("/a", "/a/b", false),
            ("/x", "/", true),
            ("/", "/", true),
            ("/a//b", "/a", true),
            ("/a/./b", "/a/b", true),
            ("/a/b/", "/a/b", true),
            ("/a", "/a/", true),
            ("/a/../b", "/a", true),
            ("a/b", "a", true),
            ("/a/b", "a", false),
        ];
        for (path, base, within) in cases {
            assert_eq!(
                is_within(Path::new(path), Path::new(base)),
                within,
                "{path} in {base}"
            );
            assert_eq!(
                Path::new(path).starts_with(base),
                within,
                "{path} in {base}"
            );
        }
    }

    #[test]
    fn follows_relative_links_inside_the_tree() {
        let dir = tree();
        let got = resolve(dir.path(), Path::new("/bin/tool")).unwrap();
        assert_eq!(got.path, PathBuf::from("/usr/bin/tool"));
        assert!(got.exists());
    }

    #[test]
    fn absolute_links_restart_at_the_tree_top() {
        let dir = tree();
        let got = resolve(dir.path(), Path::new("/etc/abs")).unwrap();
        assert_eq!(got.path, PathBuf::from("/usr/bin/tool"));
    }

    #[test]
    fn dotdot_never_climbs_above_the_tree() {
        let dir = tree();
        let got = resolve(dir.path(), Path::new("/usr/up/abs")).unwrap();
        assert_eq!(got.path, PathBuf::from("/usr/bin/tool"));
    }

    #[test]
    fn missing_tail_is_kept_and_counted() {
        let dir = tree();
        let got = resolve(dir.path(), Path::new("/bin/new/deeper")).unwrap();
        assert_eq!(got.path, PathBuf::from("/usr/bin/new/deeper"));
        assert_eq!(got.existing, 2);
        assert!(!got.exists());
        assert_eq!(got.deepest_existing(), PathBuf::from("/usr/bin"));
    }

    #[test]
    fn the_root_itself_exists() {
        let dir = tree();
        let got = resolve(dir.path(), Path::new("/")).unwrap();
        assert_eq!(got.path, PathBuf::from("/"));
        assert!(got.exists());
    }

    #[test]
    fn link_loops_are_an_error() {
        let dir = tree();
        assert!(resolve(dir.path(), Path::new("/loop1")).is_err());
    }

    #[test]
    fn a_file_used_as_a_directory_is_an_error() {
        let dir = tree();
        let error = resolve(dir.path(), Path::new("/usr/bin/tool/x")).unwrap_err();
        assert!(error.to_string().contains("not a directory"), "{error}");
    }

    #[test]
    fn a_caller_can_answer_for_the_disk() {
        // No tree on disk: /bin -> usr/bin, and /usr/bin holds nothing yet.
        let mut asked = Vec::new();
        let got = resolve_with(Path::new("/r"), Path::new("/bin/tool"), &mut |path| {
            asked.push(path.to_path_buf());
            Ok(match path.to_str().unwrap() {
                "/r/bin" => Some(Entry::Link("usr/bin".into())),
                "/r/usr" | "/r/usr/bin" => Some(Entry::Directory),
                _ => None,
            })
        })
        .unwrap();
        assert_eq!(got.path, PathBuf::from("/usr/bin/tool"));
        assert_eq!(got.existing, 2);
        let asked: Vec<&str> = asked.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(asked, ["/r/bin", "/r/usr", "/r/usr/bin", "/r/usr/bin/tool"]);
    }

    #[test]
    fn within_is_component_wise() {
        assert!(is_within(Path::new("/a/b"), Path::new("/a")));
        assert!(is_within(Path::new("/a"), Path::new("/a")));
        assert!(!is_within(Path::new("/ab"), Path::new("/a")));
    }
}
