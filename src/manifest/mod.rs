//! The manifest: a Jsonnet program that says what an environment holds and how it runs.
//!
//! `load` evaluates Jsonnet (see [`eval`]) to JSON and `validate` turns that JSON into the typed,
//! checked [`Manifest`] below. Nothing downstream ever sees unchecked input: every path here is
//! absolute (where it must be), normalized and free of `..`, every mode is parsed, every error
//! names the field path (`mounts[2].target`) and, for misspelt fields, the near spelling.

pub mod eval;
pub mod isolated;
pub mod trust;
pub mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use eval::{FileRead, LoadOptions, Loaded, ManifestSource, load, read_file};
pub use validate::validate;

/// A validated v1 manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Requested host packages (`name` or `name:arch`), in manifest order, duplicates removed.
    pub packages: Vec<String>,
    /// Whether the host's `Essential: yes` packages (and what they need) are in the closure:
    /// no package declares a dependency on them, and every shell script assumes them.
    pub essential: bool,
    /// Host variables passed through when set on the host.
    pub env_keep: Vec<String>,
    /// Variables set inside (after `env_keep`, so they win).
    pub env_set: BTreeMap<String, String>,
    /// Whether the default mounts are added.
    pub mount_defaults: bool,
    /// The user's mounts, in manifest order.
    pub mounts: Vec<Mount>,
    /// Entries created in the rootfs; part of the cache key.
    pub fs_entries: Vec<FsEntry>,
    /// Python venv shadowing in the workspace.
    pub venv: VenvMode,
    /// Keep the sandbox's own venvs across runs instead of starting each run empty.
    pub venv_persist: bool,
    /// What network the sandbox gets.
    pub network: Network,
    /// Paths of the workspace kept read-only inside, relative to it.
    pub protect: Vec<PathBuf>,
    /// What `HOME` is inside.
    pub home: HomeMode,
    /// Whether the host's git identity for the workspace passes in (`GIT_AUTHOR_*`,
    /// `GIT_COMMITTER_*`), so that a commit made inside carries it.
    pub git_identity: bool,
}

/// What network the sandbox gets (`network`). Every form but [`Network::Host`] gives the
/// sandbox a network namespace of its own, so the host's loopback services and abstract Unix
/// sockets (which belong to the network namespace, not to the file system) are out of reach.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Network {
    /// `true`: the internet through user-mode networking (slirp4netns), and nothing of the
    /// host's own.
    Private,
    /// `false`: loopback only.
    Loopback,
    /// `"host"`: the host's network namespace, with all it holds.
    Host,
    /// `{allow: [...]}`: no route out; a proxy outside the sandbox lets through exactly these
    /// destinations, and resolves their names itself.
    Allow(Vec<Destination>),
}

impl Network {
    /// The manifest's words for it, for messages.
    pub fn describe(&self) -> String {
        match self {
            Network::Private => "true".into(),
            Network::Loopback => "false".into(),
            Network::Host => "\"host\"".into(),
            Network::Allow(list) => format!(
                "{{allow: [{}]}}",
                list.iter()
                    .map(|destination| format!("\"{destination}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// One entry of `network.allow`: `pypi.org`, `files.pythonhosted.org:443`, `*.github.com`,
/// `127.0.0.1:8080`, `[::1]:8080`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Destination {
    /// A lower-case name without a final dot, or an IP address as Rust writes it; for
    /// `*.github.com`, `github.com`.
    pub host: String,
    /// `*.`: any name below `host`, and not `host` itself.
    pub subdomains: bool,
    /// `None`: 80 and 443.
    pub port: Option<u16>,
}

impl Destination {
    /// The ports an entry without one allows.
    pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

    /// Whether a connection to `host` (as the client named it, lower-cased, without a final
    /// dot) and `port` is let through.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let port_ok = match self.port {
            Some(listed) => listed == port,
            None => Self::DEFAULT_PORTS.contains(&port),
        };
        let host_ok = if self.subdomains {
            // Names below a domain, never an address that ends like one (`*.1`), also as the
            // resolver reads numbers (`10.0.0.0x2`): a top-level domain begins with a letter.
            host.parse::<std::net::IpAddr>().is_err()
                && host
                    .rsplit('.')
                    .next()
                    .and_then(|label| label.bytes().next())
                    .is_some_and(|b| b.is_ascii_alphabetic())
                && host.len() > self.host.len() + 1
                && host.ends_with(self.host.as_str())
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host == self.host
        };
        port_ok && host_ok
    }

    /// Whether the entry names an address rather than a name (a name that resolves to the
    /// host's loopback is refused; an address the manifest lists is not).
    pub fn is_address(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wildcard = if self.subdomains { "*." } else { "" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => write!(f, "{wildcard}{host}:{port}"),
            None => write!(f, "{wildcard}{host}"),
        }
    }
}

/// The paths `protect` lists by default: none. The workspace's repository is protected on its
/// own (see `sandbox::git`), whatever `protect` says.
pub const DEFAULT_PROTECT: [&str; 0] = [];

/// What `HOME` is inside the sandbox. It is always the host's home path, so that paths
/// written into files and tools' defaults agree inside and out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HomeMode {
    /// An empty, private tmpfs: writable, gone when the sandbox ends.
    Tmpfs,
    /// This host directory, bound read-write.
    Bind(PathBuf),
    /// A directory of the workspace's own under `$PAUDE_HOME/state`, kept from one run to the
    /// next (per workspace rather than per environment, so it survives a package upgrade,
    /// which changes the environment's key).
    Persist,
}

/// A mount the manifest asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    pub kind: MountKind,
    /// Host path for bind kinds; `None` for tmpfs and proc.
    pub source: Option<PathBuf>,
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
    /// A missing source is skipped instead of being an error.
    pub optional: bool,
}

/// The five mount types of the v1 schema, named as bwrap names its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MountKind {
    Bind,
    RoBind,
    DevBind,
    Tmpfs,
    Proc,
}

/// An entry created in the rootfs at materialization.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum FsEntry {
    Dir {
        path: PathBuf,
        mode: u32,
    },
    File {
        path: PathBuf,
        mode: u32,
        contents: String,
        /// Whether it may replace a file of the closure (`override: true`); else that is an
        /// error, never a silent replacement of, say, `/usr/bin/bash`.
        #[serde(default)]
        overrides: bool,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
        #[serde(default)]
        overrides: bool,
    },
}

impl FsEntry {
    /// Whether the entry may replace a file of the closure.
    pub fn overrides(&self) -> bool {
        match self {
            FsEntry::Dir { .. } => false,
            FsEntry::File { overrides, .. } | FsEntry::Symlink { overrides, .. } => *overrides,
        }
    }
}

impl FsEntry {
    /// The absolute path the entry is created at.
    pub fn path(&self) -> &std::path::Path {
        match self {
            FsEntry::Dir { path, .. }
            | FsEntry::File { path, .. }
            | FsEntry::Symlink { path, .. } => path,
        }
    }
}

/// How Python venvs in the workspace are treated (seeds 000-002).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VenvMode {
    /// Shadow every top-level directory of the workspace that holds `pyvenv.cfg`.
    Auto,
    /// Share the host's venvs as they are.
    None,
    /// Shadow exactly these directories, relative to the workspace.
    List(Vec<PathBuf>),
}

/// Errors of loading and validating a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Jsonnet could not be parsed or evaluated; the message carries file:line:column.
    #[error("evaluating the manifest: {0}")]
    Jsonnet(String),
    /// The manifest file could not be read.
    #[error("reading the manifest {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The manifest evaluated to something other than an object; carries the JSON type it got.
    #[error("the manifest must evaluate to an object, got {0}")]
    NotAnObject(&'static str),
    /// A field has a bad value; `field` is a path like `mounts[2].target`.
    #[error("manifest field `{field}`: {message}")]
    Field { field: String, message: String },
    /// A bad command-line value for evaluation (an `--ext-str` without `=`, ...).
    #[error("{0}")]
    Usage(String),
}
