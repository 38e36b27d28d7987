//! The dpkg provider: Debian and Ubuntu hosts.
//!
//! Reads dpkg's own database (the admin directory, `/var/lib/dpkg` by default) and answers the
//! [`Provider`] questions from it:
//!
//! - `status` (plus any pending `updates/` journal entries, which dpkg folds into `status` on its
//!   next run) gives the installed packages and their Depends, Pre-Depends and Provides;
//!   [`Provider::resolve`] computes the closure over them (rules in [`resolve`]).
//! - `info/<name>[:<arch>].list` gives the paths each package owns, `diversions` where a
//!   diverted path really lives, and `alternatives/*` the update-alternatives groups;
//!   [`Provider::export_plan`] combines them.
//!
//! Layering: [`control`], [`files`], [`version`] and [`resolve`] are pure (text or bytes in,
//! values out, errors with a line number); this module is the thin loader that reads files and
//! attaches the path to every error. Invariants: nothing here writes to the database or to
//! the root; paths stay bytes end to end (never a lossy UTF-8 conversion); every answer is
//! deterministic for a given database.

pub mod control;
pub mod files;
pub mod resolve;
pub mod version;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use self::control::ParseError;
use self::files::{Diversions, TopLevelLinks};
use self::resolve::Database;
use super::{Closure, ExportEntry, ExportPlan, PackageError, PackageId, Provider, Recorded};

/// The provider's name, in `meta.json` and messages.
pub const NAME: &str = "dpkg";

/// The root and the admin directory dpkg uses, given the values of `DPKG_ROOT` (default `/`)
/// and `DPKG_ADMINDIR` (default `$DPKG_ROOT/var/lib/dpkg`); empty values count as unset.
pub fn paths_from_env(
    dpkg_root: Option<&OsStr>,
    dpkg_admindir: Option<&OsStr>,
) -> (PathBuf, PathBuf) {
    let root = dpkg_root
        .filter(|root| !root.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from);
    let admindir = dpkg_admindir
        .filter(|admindir| !admindir.is_empty())
        .map_or_else(|| root.join("var/lib/dpkg"), PathBuf::from);
    (root, admindir)
}

/// The dpkg database of one root, loaded and indexed.
#[derive(Debug, Clone)]
pub struct Dpkg {
    root: PathBuf,
    admindir: PathBuf,
    database: Database,
    diversions: Diversions,
}

impl Dpkg {
    /// Loads the database in `admindir` for packages installed under `root` (`/` on a real
    /// host; dpkg's default admindir is `root/var/lib/dpkg`). Reads `status`, the `updates/`
    /// journal and `diversions`; the `.list` files and alternatives are read by
    /// [`Provider::export_plan`], which is the only step that needs them.
    pub fn open(root: &Path, admindir: &Path) -> Result<Self, PackageError> {
        let status_path = admindir.join("status");
        let mut records = parse_with_path(&status_path, &read_text(&status_path)?)?;
        for update in update_files(admindir)? {
            records.extend(parse_with_path(&update, &read_text(&update)?)?);
        }
        let diversions_path = admindir.join("diversions");
        let diversions = match read_optional(&diversions_path)? {
            Some(bytes) => files::parse_diversions(&bytes)
                .map_err(|error| parse_error(&diversions_path, error))?,
            None => Vec::new(),
        };
        Ok(Dpkg {
            root: root.to_path_buf(),
            admindir: admindir.to_path_buf(),
            database: Database::new(records),
            diversions: Diversions::new(diversions),
        })
    }

    /// Opens the database dpkg itself would use, given the values of its environment variables
    /// `DPKG_ROOT` (default `/`) and `DPKG_ADMINDIR` (default `$DPKG_ROOT/var/lib/dpkg`). The
    /// caller reads the environment; empty values count as unset, as in dpkg.
    pub fn from_env(
        dpkg_root: Option<&OsStr>,
        dpkg_admindir: Option<&OsStr>,
    ) -> Result<Self, PackageError> {
        let (root, admindir) = paths_from_env(dpkg_root, dpkg_admindir);
        Self::open(&root, &admindir)
    }

    /// How many packages the database records as installed (every architecture counts).
    pub fn installed_count(&self) -> usize {
        self.database.installed_count()
    }

    /// The dpkg database directory this provider reads.
    pub fn admindir(&self) -> &Path {
        &self.admindir
    }

    /// The host architecture as the database sees it (that of the `dpkg` package).
    pub fn native_arch(&self) -> &str {
        self.database.native_arch()
    }

    /// Installed `Essential: yes` packages. Packages never declare dependencies on essential
    /// packages, so a closure lacks them (no shell, no coreutils) unless the caller adds them.
    pub fn essential_packages(&self) -> Vec<PackageId> {
        self.database.essential()
    }

    /// A package's file in `info/` (`list`, `md5sums`): `name:arch.EXT` for packages
    /// installed under their qualified name (Multi-Arch: same), else `name.EXT`.
    fn info_path(&self, package: &PackageId, extension: &str) -> PathBuf {
        let info = self.admindir.join("info");
        let qualified = info.join(format!("{}:{}.{extension}", package.name, package.arch));
        if qualified.exists() {
            qualified
        } else {
            info.join(format!("{}.{extension}", package.name))
        }
    }

    /// The root's top-level symlinks (`/bin -> usr/bin`), to compare paths as the file system
    /// resolves them.
    fn top_level_links(&self) -> Result<TopLevelLinks, PackageError> {
        let io_error = |source| PackageError::Io {
            path: self.root.clone(),
            source,
        };
        let mut links = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            if entry.file_type().map_err(io_error)?.is_symlink() {
                let path = entry.path();
                let target = std::fs::read_link(&path).map_err(|source| PackageError::Io {
                    path: path.clone(),
                    source,
                })?;
                links.push((PathBuf::from(entry.file_name()), target));
            }
        }
        Ok(TopLevelLinks::new(links))
    }

    /// Parses every file of `alternatives/`, in name order. A file that does not parse is
    /// skipped with a warning: one broken group must not stop a sandbox from being built.
    fn alternatives(
        &self,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<super::Alternative>, PackageError> {
        let directory = self.admindir.join("alternatives");
        let io_error = |source| PackageError::Io {
            path: directory.clone(),
            source,
        };
        let entries = match std::fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error(error)),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error)?;
            if entry.file_type().map_err(io_error)?.is_file() {
                paths.push(entry.path());
            }
        }
        paths.sort();
        let mut alternatives = Vec::new();
        for path in paths {
            let Some(name) = path.file_name().and_then(OsStr::to_str) else {
                warnings.push(format!(
                    "skipping alternatives file {}: its name is not UTF-8",
                    path.display()
                ));
                continue;
            };
            let bytes = std::fs::read(&path).map_err(|source| PackageError::Io {
                path: path.clone(),
                source,
            })?;
            match files::parse_alternative(name, &bytes) {
                Ok(alternative) => alternatives.push(alternative),
                Err(error) => warnings.push(format!(
                    "skipping malformed alternatives file {}:{}: {}",
                    path.display(),
                    error.line,
                    error.message
                )),
            }
        }
        Ok(alternatives)
    }
}

impl Provider for Dpkg {
    fn name(&self) -> &'static str {
        NAME
    }

    fn resolve(&self, requested: &[String]) -> Result<Closure, PackageError> {
        self.database.resolve(requested)
    }

    /// Entries in closure order, then `.list` order, each at its on-disk (diverted) path.
    /// Alternatives: every group with a choice among those paths, compared after resolving the
    /// root's top-level symlinks, so `/bin/ed` matches a listed `/usr/bin/ed`.
    fn export_plan(&self, closure: &Closure) -> Result<ExportPlan, PackageError> {
        let mut entries = Vec::new();
        for (index, package) in closure.packages.iter().enumerate() {
            let list_path = self.info_path(package, "list");
            let bytes = std::fs::read(&list_path).map_err(|source| PackageError::Io {
                path: list_path.clone(),
                source,
            })?;
            let paths =
                files::parse_list(&bytes).map_err(|error| parse_error(&list_path, error))?;
            for path in paths {
                let path = self.diversions.locate(&path, &package.name).to_path_buf();
                entries.push(ExportEntry {
                    package: index,
                    path,
                });
            }
        }
        let links = self.top_level_links()?;
        let owned: std::collections::HashSet<PathBuf> = entries
            .iter()
            .map(|entry| links.normalize(&entry.path))
            .collect();
        let mut warnings = Vec::new();
        let alternatives = self
            .alternatives(&mut warnings)?
            .into_iter()
            .filter(|alternative| {
                alternative
                    .choices
                    .iter()
                    .any(|choice| owned.contains(&links.normalize(&choice.path)))
            })
            .collect();
        Ok(ExportPlan {
            entries,
            alternatives,
            warnings,
        })
    }

    fn source_root(&self) -> &Path {
        &self.root
    }

    /// `info/<package>.md5sums` at the diverted paths, and the `.list` file's time.
    fn recorded(&self, package: &PackageId) -> Result<Recorded, PackageError> {
        let list_path = self.info_path(package, "list");
        let installed = std::fs::metadata(&list_path)
            .and_then(|meta| meta.modified())
            .ok();
        let sums_path = self.info_path(package, "md5sums");
        let Some(bytes) = read_optional(&sums_path)? else {
            return Ok(Recorded {
                installed,
                files: Vec::new(),
            });
        };
        let mut files =
            files::parse_md5sums(&bytes).map_err(|error| parse_error(&sums_path, error))?;
        for file in &mut files {
            file.path = self
                .diversions
                .locate(&file.path, &package.name)
                .to_path_buf();
        }
        Ok(Recorded { installed, files })
    }

    /// `status`, `updates/`, `diversions` and `alternatives/`: what `resolve` and the
    /// alternatives depend on. The `.list` files change only together with `status`.
    fn database_files(&self) -> Vec<PathBuf> {
        database_files(&self.admindir)
    }
}

/// The files of the database in `admindir` that [`Provider::database_files`] names: known
/// without loading the database, so a cache can be checked before it is read.
pub fn database_files(admindir: &Path) -> Vec<PathBuf> {
    ["status", "updates", "diversions", "alternatives"]
        .iter()
        .map(|name| admindir.join(name))
        .collect()
}

fn parse_error(path: &Path, error: ParseError) -> PackageError {
    PackageError::Parse {
        path: path.to_path_buf(),
        line: error.line,
        message: error.message,
    }
}

fn parse_with_path(path: &Path, text: &str) -> Result<Vec<control::PackageRecord>, PackageError> {
    control::parse_status(text).map_err(|error| parse_error(path, error))
}

/// Reads a status-like file as text. Field values other than names and versions (which are
/// ASCII) may be in any encoding in old packages' descriptions; those bytes do not matter here,
/// so they are replaced rather than failing the load.
fn read_text(path: &Path) -> Result<String, PackageError> {
    let bytes = std::fs::read(path).map_err(|source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    })
}

/// The file's bytes, or `None` if it does not exist (an empty database has no `diversions`).
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, PackageError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PackageError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The pending journal entries in `updates/`, in the order dpkg applies them (numeric order of
/// their names). Other files (`tmp.i`, being written) are not entries.
fn update_files(admindir: &Path) -> Result<Vec<PathBuf>, PackageError> {
    let directory = admindir.join("updates");
    let entries = match std::fs::read_dir(&directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PackageError::Io {
                path: directory,
                source,
            });
        }
    };
    let mut updates = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PackageError::Io {
            path: directory.clone(),
            source,
        })?;
        let number = entry
            .file_name()
            .to_str()
            .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|name| name.parse::<u64>().ok());
        if let Some(number) = number {
            updates.push((number, entry.path()));
        }
    }
    updates.sort();
    Ok(updates.into_iter().map(|(_, path)| path).collect())
}

#[cfg(test)]
mod tests;
