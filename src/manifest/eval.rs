//! Jsonnet evaluation (to be written).
use super::{Manifest, ManifestError};
use std::path::PathBuf;

/// Where the manifest's Jsonnet comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestSource {
    /// Jsonnet code given on the command line (`-e CODE`); imports resolve from `LoadOptions::cwd`.
    Code(String),
    /// A file (`-f FILE`, `-e PATH` of an existing file, or the workspace's `paude.jsonnet`).
    File(PathBuf),
    /// The default manifest embedded in the binary.
    Default,
}

/// Evaluation options, as the `jsonnet` command line gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The directory `-e` code is evaluated from.
    pub cwd: PathBuf,
    /// `-J DIR` library paths, searched after the importing file's directory.
    pub jpath: Vec<PathBuf>,
    pub ext_str: Vec<(String, String)>,
    pub ext_code: Vec<(String, String)>,
    pub tla_str: Vec<(String, String)>,
    pub tla_code: Vec<(String, String)>,
}

/// A loaded manifest and the files its evaluation read (for cache validation).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub manifest: Manifest,
    pub files_read: Vec<PathBuf>,
}

/// Evaluates and validates a manifest.
pub fn load(_source: &ManifestSource, _options: &LoadOptions) -> Result<Loaded, ManifestError> {
    Err(ManifestError::Usage("not yet written".into()))
}
