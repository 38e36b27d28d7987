//! What makes a repeated launch fast, beside the pipeline: the two stages whose work a
//! launch would otherwise repeat every time, each served from a cache ([`cache`]) while the
//! files it came from are unchanged.
//!
//! - [`load_manifest`]: `manifest::load` (Jsonnet evaluation), cached with a stamp of every
//!   file the evaluation read (taken from the descriptor it was read from) and every import
//!   path it looked for in vain, and with what the evaluation said of each file it read (the
//!   digest of the bytes evaluated), which the trust check judges on a hit as on a miss;
//! - [`PackageDatabase::environment`]: `packages::resolve` and `store::key` (the closure and
//!   the key of its tree), cached with a stamp of the database's files: on a hit the database
//!   is not even opened, and the closure is resolved only if the tree has to be built.
//!
//! Both are ordinary code run after ordinary start-up, and a hit gives what the stage itself
//! would: an entry holds the validated result of exactly its inputs, written by this same
//! build, and a stamp that does not hold is a miss.
//! What a launch learns is written only once its input passed every check ([`Learned`]), so
//! bad input leaves nothing in the cache.

pub mod cache;
pub mod identity;

use crate::manifest::{self, FileRead, FsEntry, LoadOptions, Loaded, Manifest, ManifestSource};
use crate::packages::{
    Closure, MissingDependency, PackageError, Provider,
    dpkg::{self, Dpkg},
};
use crate::store::{self, VenvKey};
use anyhow::{Context, Result};
use cache::{Cache, Stamp};
use std::cell::OnceCell;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::SystemTime;

/// Cache entries a launch has worked out, to be written once its input has passed every
/// check.
#[derive(Debug, Default)]
pub struct Learned(Vec<cache::Prepared>);

impl Learned {
    /// Writes every entry; a failure leaves the cache as it was.
    pub fn write(self, cache: &Cache) {
        for entry in self.0 {
            cache.write(entry);
        }
    }
}

/// The manifest, evaluated, or taken from the cache while none of its inputs changed (the
/// files it read, the paths its imports looked for in vain, the `-e` text, `-J`, ext and tla
/// values, and paude itself), with the files it read as the evaluation read them. What is
/// cached is the validated manifest and those files: a hit gives the digests of the bytes the
/// cached manifest was evaluated from, which are the files' bytes still (their stamps hold).
pub fn load_manifest(
    cache: &Cache,
    source: &ManifestSource,
    options: &LoadOptions,
    began: SystemTime,
    learned: &mut Learned,
) -> Result<(Manifest, Vec<FileRead>)> {
    let key = || {
        let (kind, text): (&[u8], &[u8]) = match source {
            ManifestSource::Code(code) => (b"code", code.as_bytes()),
            ManifestSource::File(path) => (b"file", path.as_os_str().as_bytes()),
            ManifestSource::Default => (b"default", b""),
        };
        cache::Key::new("manifest")
            .field(kind)
            .field(text)
            .field(options.cwd.as_os_str().as_bytes())
            .fields(options.jpath.iter().map(|dir| dir.as_os_str().as_bytes()))
            .pairs(&options.ext_str)
            .pairs(&options.ext_code)
            .pairs(&options.tla_str)
            .pairs(&options.tla_code)
    };
    if let Some(cached) = cache.get::<(Manifest, Vec<FileRead>)>(key()) {
        return Ok(cached);
    }
    let loaded = manifest::load(source, options)?;
    let stamps = stamps(&loaded);
    let loaded = (loaded.manifest, loaded.files_read);
    if let Some(stamps) = stamps {
        learned
            .0
            .extend(cache.prepare(key(), stamps, began, &loaded));
    }
    Ok(loaded)
}

/// The stamps of what an evaluation depended on, `None` when it cannot be cached. A file read
/// is stamped as the evaluator saw it once its bytes were read, from their descriptor: a path
/// swapped for another file meanwhile leads to a file that does not match, and a file written
/// while it was read has a fresh ctime, which does not settle. A path looked for in vain is
/// stamped after evaluating, and must still be missing.
fn stamps(loaded: &Loaded) -> Option<Vec<Stamp>> {
    let read = loaded.files_read.iter().map(|file| {
        Some(Stamp {
            path: file.path.clone(),
            seen: Some(file.seen),
        })
    });
    let probed = loaded
        .not_found
        .iter()
        .map(|path| Stamp::of(path).ok().filter(|stamp| stamp.seen.is_none()));
    read.chain(probed).collect()
}

/// Which optional options the bwrap at `path` has, from the cache while that file is
/// unchanged, else asked (`bwrap --help`, a few milliseconds); none when it cannot be asked.
/// The flag says whether bwrap was asked: a launch that was not is one like an earlier one
/// that went through.
pub fn bwrap_options(
    cache: &Cache,
    path: &std::path::Path,
    began: SystemTime,
    learned: &mut Learned,
) -> (crate::host::BwrapOptions, bool) {
    let key = || cache::Key::new("bwrap-options").field(path.as_os_str().as_bytes());
    if let Some(options) = cache.get(key()) {
        return (options, false);
    }
    // Stamped before asking: a file replaced meanwhile has a new stamp, and is asked again.
    let Ok(stamp) = Stamp::of(path) else {
        return (Default::default(), true);
    };
    let Ok(output) = std::process::Command::new(path)
        .arg("--help")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
    else {
        return (Default::default(), true);
    };
    let options = crate::host::BwrapOptions::from_help(&String::from_utf8_lossy(&output.stdout));
    learned
        .0
        .extend(cache.prepare(key(), vec![stamp], began, &options));
    (options, true)
}

/// What a launch needs to know of its environment before it looks in the store: the key of
/// its tree, and the dependencies the database names that are not installed (said on every
/// launch).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Environment {
    pub key: VenvKey,
    pub missing: Vec<MissingDependency>,
}

/// The host's package database: where it is, and the provider, opened only when needed (a
/// cache miss, a build).
pub struct PackageDatabase {
    /// The root the packages' files are copied from (`DPKG_ROOT`, default `/`).
    pub root: PathBuf,
    admindir: PathBuf,
    provider: OnceCell<Dpkg>,
}

impl PackageDatabase {
    /// The database `DPKG_ROOT` and `DPKG_ADMINDIR` name, as dpkg reads them.
    pub fn new(dpkg_root: Option<&OsStr>, dpkg_admindir: Option<&OsStr>) -> PackageDatabase {
        let (root, admindir) = dpkg::paths_from_env(dpkg_root, dpkg_admindir);
        PackageDatabase {
            root,
            admindir,
            provider: OnceCell::new(),
        }
    }

    /// The provider, opening the database the first time.
    pub fn provider(&self) -> Result<&Dpkg, PackageError> {
        if let Some(provider) = self.provider.get() {
            return Ok(provider);
        }
        let opened = Dpkg::open(&self.root, &self.admindir)?;
        Ok(self.provider.get_or_init(|| opened))
    }

    /// The environment of `requested` with `fs_entries`: from the cache while the database
    /// files are unchanged, else resolved, with the closure it was worked out from.
    pub fn environment(
        &self,
        cache: &Cache,
        requested: &[String],
        essential: bool,
        fs_entries: &[FsEntry],
        began: SystemTime,
        learned: &mut Learned,
    ) -> Result<(Environment, Option<Closure>)> {
        let key = || self.environment_key(requested, essential, fs_entries);
        if let Some(environment) = cache.get::<Environment>(key()) {
            return Ok((environment, None));
        }
        let provider = self.provider().context("opening the dpkg database")?;
        let closure = provider.resolve(&with_essential(provider, requested, essential))?;
        let environment = Environment {
            key: store::key::key(&closure, fs_entries, &self.root),
            missing: closure.missing.clone(),
        };
        let stamps: Result<Vec<Stamp>, _> = provider
            .database_files()
            .iter()
            .map(|path| Stamp::of(path))
            .collect();
        if let Ok(stamps) = stamps {
            learned
                .0
                .extend(cache.prepare(key(), stamps, began, &environment));
        }
        Ok((environment, Some(closure)))
    }

    /// The cache key of the environment of `requested` with `fs_entries`.
    fn environment_key(
        &self,
        requested: &[String],
        essential: bool,
        fs_entries: &[FsEntry],
    ) -> cache::Key {
        cache::Key::new("environment")
            .field(dpkg::NAME.as_bytes())
            .field(self.root.as_os_str().as_bytes())
            .field(self.admindir.as_os_str().as_bytes())
            .field(if essential {
                b"essential"
            } else {
                b"no essential"
            })
            .fields(requested.iter().map(|name| name.as_bytes()))
            .fs_entries(fs_entries)
    }

    /// The closure of `requested` for a build of `environment`: the one it was worked out
    /// from, else resolved again, which must give the same key. Where it does not (the
    /// database changed since the launch looked at it, or changed without changing a stamp),
    /// the cached entry goes, so the next launch works the environment out afresh.
    pub fn closure_for(
        &self,
        cache: &Cache,
        environment: &Environment,
        resolved: Option<Closure>,
        requested: &[String],
        essential: bool,
        fs_entries: &[FsEntry],
    ) -> Result<Closure, PackageError> {
        if let Some(closure) = resolved {
            return Ok(closure);
        }
        let provider = self.provider().map_err(|error| {
            PackageError::Invalid(format!("opening the dpkg database: {error}"))
        })?;
        let closure = provider.resolve(&with_essential(provider, requested, essential))?;
        if store::key::key(&closure, fs_entries, &self.root) != environment.key {
            cache.remove(self.environment_key(requested, essential, fs_entries));
            return Err(PackageError::Invalid(
                "the package database changed while paude was starting; run it again".into(),
            ));
        }
        Ok(closure)
    }
}

/// The packages to resolve: those the manifest asks for, and with `essential` the host's
/// `Essential: yes` ones, by name and architecture (a closure never reaches them otherwise:
/// no package declares a dependency on one).
fn with_essential(provider: &Dpkg, requested: &[String], essential: bool) -> Vec<String> {
    let mut names = requested.to_vec();
    if essential {
        names.extend(
            provider
                .essential_packages()
                .into_iter()
                .map(|id| format!("{}:{}", id.name, id.arch)),
        );
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file read is stamped as it was read, from its descriptor: when a sandbox swaps the
    /// name for another file after the evaluator read it (and before a stamp by name could be
    /// taken), the entry's stamp does not hold for what the name leads to now, so a cached
    /// evaluation is never served for a file whose bytes it was not made from.
    #[test]
    fn a_file_read_is_stamped_as_it_was_read_not_by_name_after() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("paude.jsonnet");
        let other = dir.path().join("other.jsonnet");
        std::fs::write(&main, r#"{ packages: ["bash"] }"#).unwrap();
        std::fs::write(&other, r#"{ packages: ["dash"] }"#).unwrap();
        let options = LoadOptions {
            cwd: dir.path().to_path_buf(),
            ..LoadOptions::default()
        };
        let loaded = manifest::load(&ManifestSource::File(main.clone()), &options).unwrap();
        assert!(stamps(&loaded).unwrap().iter().all(Stamp::holds));
        // The swap, as `renameat2(RENAME_EXCHANGE)` makes it, in three renames.
        let aside = dir.path().join("aside");
        std::fs::rename(&main, &aside).unwrap();
        std::fs::rename(&other, &main).unwrap();
        std::fs::rename(&aside, &other).unwrap();
        // A stamp taken by name now would hold for the other file: the old way was unsound.
        assert!(Stamp::of(&main).unwrap().holds());
        let stamps = stamps(&loaded).unwrap();
        assert_eq!(stamps[0].path, main);
        assert!(!stamps[0].holds(), "the name leads to another file now");
    }
}
