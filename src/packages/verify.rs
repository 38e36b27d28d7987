//! The host's files of a closure, checked against what the package database recorded when it
//! installed them (dpkg: `info/*.md5sums`), as `dpkg --verify` checks them.
//!
//! paude builds an environment from the host's files as they are. A file changed in place
//! since its package installed it (an `npm` that upgraded itself, a hand-edited script), one
//! replaced by something that is not a file, or one removed, goes into the environment
//! changed or not at all, and what runs inside is not what the package holds.
//!
//! Two depths: [`Depth::Every`] reads and hashes every recorded file (`paude doctor`);
//! [`Depth::Touched`] hashes only the files whose inode changed after the package was
//! installed (a status-change time later than the install time), which costs a build one
//! `lstat` per file. A change leaves a later status-change time whatever it does to the
//! modification time, so what `Touched` skips has not been written since the install; what it
//! hashes and finds equal (a `chmod`, a maintainer script's `chown`) is not reported.

use super::{Closure, PackageError, PackageId, Provider, RecordedFile};
use crate::rootpath;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

/// How much to read: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Every,
    Touched,
}

/// What is wrong with one recorded file on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finding {
    /// Its bytes are not those the package shipped.
    Changed,
    /// Nothing is at its path.
    Missing,
    /// Something other than a regular file is at its path (a link, a directory).
    NotAFile,
    /// This user may not read it, so it could not be checked (and is not in environments).
    Unreadable,
}

impl Finding {
    pub fn word(self) -> &'static str {
        match self {
            Finding::Changed => "changed",
            Finding::Missing => "missing",
            Finding::NotAFile => "not a file",
            Finding::Unreadable => "unreadable",
        }
    }
}

/// One recorded file that is not as its package shipped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub package: String,
    pub path: PathBuf,
    pub finding: Finding,
}

/// What a check found, over a closure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verified {
    /// Recorded files looked at, and of those, read and hashed.
    pub files: u64,
    pub hashed: u64,
    /// In closure order, then the database's order of each package's files.
    pub differences: Vec<Difference>,
}

impl Verified {
    /// The differences a reinstall mends: all but the unreadable files, which are no fault
    /// of the host's (environments leave them out, and say so).
    pub fn differing(&self) -> Vec<&Difference> {
        self.differences
            .iter()
            .filter(|d| d.finding != Finding::Unreadable)
            .collect()
    }

    /// The packages of [`Verified::differing`], each once, in closure order.
    pub fn packages(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for difference in self.differing() {
            if names.last() != Some(&difference.package.as_str()) {
                names.push(&difference.package);
            }
        }
        names
    }

    /// One line for a build's stderr: how many files of which packages, the first few paths,
    /// and the fix; `None` when nothing differs. Unreadable files are left out: the build's
    /// summary counts them already.
    pub fn summary(&self) -> Option<String> {
        let differing = self.differing();
        if differing.is_empty() {
            return None;
        }
        let packages = self.packages();
        let shown: Vec<String> = differing
            .iter()
            .take(3)
            .map(|d| format!("{} ({})", d.path.display(), d.finding.word()))
            .collect();
        let more = differing.len().saturating_sub(shown.len());
        Some(format!(
            "{} of {} {} not what dpkg installed: {}{}; the environment has {} as the host \
             does. Reinstall (`apt-get install --reinstall {}`), or bind the host's copy with a \
             mount; `paude doctor` with this manifest checks every file",
            crate::text::counted(differing.len() as u64, "file"),
            packages.join(", "),
            if differing.len() == 1 { "is" } else { "are" },
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
            if differing.len() == 1 { "it" } else { "them" },
            packages.join(" "),
        ))
    }
}

/// Checks the recorded files of every package of `closure` under the provider's source root,
/// on as many threads as the machine has cores (at most eight).
pub fn verify(
    provider: &(dyn Provider + Sync),
    closure: &Closure,
    depth: Depth,
) -> Result<Verified, PackageError> {
    let packages = &closure.packages;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(packages.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<Checked, PackageError>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(package) = packages.get(index) else {
                        break;
                    };
                    let checked = check_package(provider, package, depth);
                    if let Ok(mut results) = results.lock() {
                        results.push((index, checked));
                    }
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    results.sort_by_key(|(index, _)| *index);
    let mut verified = Verified::default();
    for (_, checked) in results {
        let checked = checked?;
        verified.files += checked.files;
        verified.hashed += checked.hashed;
        verified.differences.extend(checked.differences);
    }
    Ok(verified)
}

struct Checked {
    files: u64,
    hashed: u64,
    differences: Vec<Difference>,
}

fn check_package(
    provider: &(dyn Provider + Sync),
    package: &PackageId,
    depth: Depth,
) -> Result<Checked, PackageError> {
    let recorded = provider.recorded(package)?;
    let root = provider.source_root();
    // Touched: a status change within the second dpkg wrote the list is its own unpacking.
    // Without an install time, every file is read.
    let since = match depth {
        Depth::Every => None,
        Depth::Touched => recorded.installed.map(|t| t + Duration::from_secs(1)),
    };
    let mut checked = Checked {
        files: 0,
        hashed: 0,
        differences: Vec::new(),
    };
    for file in &recorded.files {
        checked.files += 1;
        let (finding, hashed) = check_file(root, file, since);
        checked.hashed += u64::from(hashed);
        if let Some(finding) = finding {
            checked.differences.push(Difference {
                package: package.name.clone(),
                path: file.path.clone(),
                finding,
            });
        }
    }
    Ok(checked)
}

/// One file: what is wrong with it, and whether it was read. With `since` (the install time,
/// for [`Depth::Touched`]), a file whose inode has not changed after it is not read.
fn check_file(
    root: &Path,
    file: &RecordedFile,
    since: Option<SystemTime>,
) -> (Option<Finding>, bool) {
    let Some(path) = host_path(root, &file.path) else {
        return (Some(Finding::Missing), false);
    };
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(error) => return (Some(not_there(&error)), false),
    };
    if !meta.file_type().is_file() {
        return (Some(Finding::NotAFile), false);
    }
    if let Some(installed) = since {
        let changed = SystemTime::UNIX_EPOCH
            + Duration::new(
                u64::try_from(meta.ctime()).unwrap_or(0),
                u32::try_from(meta.ctime_nsec()).unwrap_or(0),
            );
        if changed <= installed {
            return (None, false);
        }
    }
    match md5_of(&path) {
        Ok(sum) if sum == file.md5 => (None, true),
        Ok(_) => (Some(Finding::Changed), true),
        Err(error) => (Some(not_there(&error)), true),
    }
}

fn not_there(error: &io::Error) -> Finding {
    match error.kind() {
        io::ErrorKind::PermissionDenied => Finding::Unreadable,
        _ => Finding::Missing,
    }
}

/// Where the file recorded at `path` is on the host: its directory resolved inside `root` (a
/// test root's `/bin` link to `/usr/bin` leads into the root, not the host), the name not
/// followed. `None` when the directory is not there.
fn host_path(root: &Path, path: &Path) -> Option<PathBuf> {
    let (parent, name) = (path.parent()?, path.file_name()?);
    let resolved = rootpath::resolve(root, parent).ok()?;
    resolved
        .exists()
        .then(|| rootpath::under(root, &resolved.path.join(name)))
}

fn md5_of(path: &Path) -> io::Result<[u8; 16]> {
    let mut file = std::fs::File::open(path)?;
    let mut context = md5::Context::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        context.consume(&buffer[..read]);
    }
    Ok(context.finalize().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(path: &str, bytes: &[u8]) -> RecordedFile {
        RecordedFile {
            path: PathBuf::from(path),
            md5: md5::compute(bytes).0,
        }
    }

    #[test]
    fn each_finding_on_a_root_of_its_own() {
        let root = tempfile::tempdir().unwrap();
        let usr_bin = root.path().join("usr/bin");
        std::fs::create_dir_all(&usr_bin).unwrap();
        // A merged-/usr root whose /bin is an absolute link: resolved inside the root.
        std::os::unix::fs::symlink("/usr/bin", root.path().join("bin")).unwrap();
        std::fs::write(usr_bin.join("same"), b"as shipped").unwrap();
        std::fs::write(usr_bin.join("edited"), b"edited").unwrap();
        std::os::unix::fs::symlink("same", usr_bin.join("link")).unwrap();
        let check = |file: &RecordedFile| check_file(root.path(), file, None).0;
        assert_eq!(check(&recorded("/bin/same", b"as shipped")), None);
        assert_eq!(
            check(&recorded("/bin/edited", b"as shipped")),
            Some(Finding::Changed)
        );
        assert_eq!(
            check(&recorded("/usr/bin/gone", b"x")),
            Some(Finding::Missing)
        );
        assert_eq!(
            check(&recorded("/opt/none/x", b"x")),
            Some(Finding::Missing)
        );
        assert_eq!(
            check(&recorded("/usr/bin/link", b"as shipped")),
            Some(Finding::NotAFile)
        );
    }

    #[test]
    fn touched_reads_only_what_changed_after_the_install() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("f"), b"edited").unwrap();
        let file = recorded("/f", b"as shipped");
        let now = SystemTime::now();
        // Installed after the file's last change: not read, so not found.
        let later = now + Duration::from_secs(60);
        assert_eq!(check_file(root.path(), &file, Some(later)), (None, false));
        let earlier = now - Duration::from_secs(60);
        assert_eq!(
            check_file(root.path(), &file, Some(earlier)),
            (Some(Finding::Changed), true)
        );
        // No install time: every file is read.
        assert_eq!(
            check_file(root.path(), &file, None),
            (Some(Finding::Changed), true)
        );
    }

    #[test]
    fn the_summary_names_files_packages_and_the_fix() {
        let difference = |package: &str, path: &str, finding| Difference {
            package: package.into(),
            path: PathBuf::from(path),
            finding,
        };
        let mut verified = Verified::default();
        assert_eq!(verified.summary(), None);
        verified.differences = vec![
            difference("nodejs", "/usr/bin/npm", Finding::Changed),
            difference("nodejs", "/usr/lib/a", Finding::Missing),
            difference("nodejs", "/usr/lib/secret", Finding::Unreadable),
            difference("sed", "/bin/sed", Finding::NotAFile),
            difference("sed", "/usr/share/x", Finding::Changed),
        ];
        let line = verified.summary().unwrap();
        assert!(
            line.starts_with(
                "4 files of nodejs, sed are not what dpkg installed: \
                 /usr/bin/npm (changed), /usr/lib/a (missing), /bin/sed (not a file) and 1 more;"
            ),
            "{line}"
        );
        assert!(
            line.contains("apt-get install --reinstall nodejs sed"),
            "{line}"
        );
        assert!(
            line.ends_with("`paude doctor` with this manifest checks every file"),
            "{line}"
        );
        assert_eq!(verified.packages(), ["nodejs", "sed"]);
    }
}
