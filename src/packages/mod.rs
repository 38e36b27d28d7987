//! Packages: the host's package database and the runtime closure of a package set.
//!
//! A [`Provider`] answers two questions about the host: which installed packages make up the
//! runtime closure of a requested set ([`Provider::resolve`]), and which host files each of those
//! packages contributes to a rootfs ([`Provider::export_plan`]). dpkg is the first provider;
//! rpm, pacman, apk and nix can follow behind the same trait.
//!
//! Invariants: a [`Closure`] is deterministic (sorted by name, then architecture, no duplicates)
//! and holds only installed packages; an [`ExportPlan`] names paths, it never touches them. The
//! store turns a plan into a tree.

pub mod dpkg;
pub mod verify;

use std::path::PathBuf;

/// One installed package, exactly as the database knows it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct PackageId {
    pub name: String,
    pub version: String,
    pub arch: String,
}

impl std::fmt::Display for PackageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} ({})", self.name, self.arch, self.version)
    }
}

/// The requested packages plus everything they need at run time, sorted by (name, arch).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Closure {
    pub packages: Vec<PackageId>,
    /// Dependencies that the database names but that are not installed (a host whose package
    /// state is inconsistent, or trimmed by force). Reported as warnings, never silently lost.
    pub missing: Vec<MissingDependency>,
}

/// A dependency that no installed package satisfies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MissingDependency {
    /// The package that declares the dependency.
    pub required_by: String,
    /// The dependency field as written, e.g. `libfoo1 (>= 2) | libbar1`.
    pub relation: String,
}

/// What a provider says a closure contributes to a rootfs: paths relative to the source root
/// (the host's `/`, or the provider's configured root in tests).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportPlan {
    /// Every path the closure owns, in a deterministic order (package order, then list order).
    pub entries: Vec<ExportEntry>,
    /// Alternatives groups (update-alternatives) that the exporter may install when one of
    /// their choices is part of the closure.
    pub alternatives: Vec<Alternative>,
    /// Problems that did not stop the plan (a malformed alternatives file, skipped), each
    /// naming its file. The command layer shows them as warnings.
    pub warnings: Vec<String>,
}

/// One path owned by a package. `path` is where the host keeps it, which differs from the
/// packaged path when another package (or the admin) diverted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportEntry {
    /// Index into [`Closure::packages`].
    pub package: usize,
    /// Absolute path, as on the source root, where the file is found and where it goes.
    pub path: PathBuf,
}

/// An update-alternatives group: a generic link (`/usr/bin/editor`) pointing through
/// `/etc/alternatives/<name>` at one of several choices, plus slave links that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    /// The group name; also the link name under `/etc/alternatives`.
    pub name: String,
    /// The generic (master) link path, e.g. `/usr/bin/editor`.
    pub link: PathBuf,
    /// Slave links: (name, link path).
    pub slaves: Vec<(String, PathBuf)>,
    /// The choices, in database order.
    pub choices: Vec<AlternativeChoice>,
}

/// One candidate of an alternatives group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlternativeChoice {
    pub path: PathBuf,
    pub priority: i64,
    /// One entry per slave of the group, in the same order; `None` where this choice has none.
    pub slaves: Vec<Option<PathBuf>>,
}

/// What the database recorded of a package's files when it installed them: what the host's
/// files are checked against ([`verify`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recorded {
    /// When the package's files were last installed (dpkg: the time of its `.list` file,
    /// which dpkg writes once it has unpacked them); `None` where the database does not say.
    pub installed: Option<std::time::SystemTime>,
    /// Each regular file the package shipped, at its on-disk (diverted) path.
    pub files: Vec<RecordedFile>,
}

/// One regular file as its package shipped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedFile {
    /// Absolute path, as on the source root.
    pub path: PathBuf,
    pub md5: [u8; 16],
}

/// A source of installed packages.
pub trait Provider {
    /// A short name for messages ("dpkg").
    fn name(&self) -> &'static str;
    /// The runtime closure of `requested` (names, optionally `name:arch`).
    fn resolve(&self, requested: &[String]) -> Result<Closure, PackageError>;
    /// The paths the closure contributes, ready for the exporter.
    fn export_plan(&self, closure: &Closure) -> Result<ExportPlan, PackageError>;
    /// The filesystem root the plan's paths are relative to (`/` on a real host).
    fn source_root(&self) -> &std::path::Path;
    /// Files whose change may change what `resolve` answers (for cache validation).
    fn database_files(&self) -> Vec<PathBuf>;
    /// What the database recorded of the package's files (no sums, where it keeps none).
    fn recorded(&self, package: &PackageId) -> Result<Recorded, PackageError>;
}

/// Errors of the package layer. Each names the package or file it is about.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("package `{name}` is not installed on this host{hint}")]
    NotInstalled { name: String, hint: String },
    #[error("reading the package database {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}
