//! `paude list`: the cached environments, as a table or one JSON document.
//!
//! The table and the JSON go to stdout (they are this command's output); notes about
//! leftovers and unreadable entries go to stderr. The JSON document's shape is stable within
//! its `version` and described in the README.

use super::{ago, rfc3339, warn};
use crate::cli::ListArgs;
use crate::host::HostFacts;
use crate::packages::PackageId;
use crate::store::packages::PackageStore;
use crate::store::prune::{self, VenvInfo};
use crate::store::{Store, human_bytes, tree};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

/// Version of the JSON document.
const JSON_VERSION: u32 = 1;

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListDocument {
    version: u32,
    /// `$PAUDE_HOME/venv`.
    store: PathBuf,
    /// Most recently used first.
    venvs: Vec<VenvJson>,
    leftovers: Vec<LeftoverJson>,
    /// The package store the environments' files are linked from.
    packages: PackagesJson,
    /// Bytes on disk of everything above, each file once.
    total_bytes: u64,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PackagesJson {
    /// `$PAUDE_HOME/pkg`.
    path: PathBuf,
    /// Unpacked packages.
    count: usize,
    /// Of those, the ones no environment uses (`paude cleanup` removes them).
    unused: usize,
    /// Bytes on disk; `null` when they could not be measured (see `error`).
    size_bytes: Option<u64>,
    error: Option<String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct VenvJson {
    key: String,
    path: PathBuf,
    /// Bytes on disk, each file once.
    size_bytes: Option<u64>,
    /// What removing it would free (files also linked from elsewhere do not count).
    freeable_bytes: Option<u64>,
    created: Option<String>,
    last_used: Option<String>,
    /// `null` when it could not be told (see `error`).
    in_use: Option<bool>,
    provider: Option<String>,
    /// The packages the manifest asked for.
    packages: Option<Vec<String>>,
    /// Every package of the closure.
    closure: Option<Vec<PackageJson>>,
    /// Why some of the fields above are null (an unreadable `meta.json`, ...).
    error: Option<String>,
}

/// One package of a closure, as the JSON document names it (independent of paude's own
/// types, so that it stays stable).
#[derive(serde::Serialize)]
struct PackageJson {
    name: String,
    version: String,
    arch: String,
}

impl From<&PackageId> for PackageJson {
    fn from(id: &PackageId) -> PackageJson {
        PackageJson {
            name: id.name.clone(),
            version: id.version.clone(),
            arch: id.arch.clone(),
        }
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LeftoverJson {
    path: PathBuf,
    /// `build` or `removal`.
    kind: &'static str,
    /// Whether the build or removal is still running (else `paude cleanup` removes it).
    running: bool,
    size_bytes: Option<u64>,
    /// Why `sizeBytes` is null.
    error: Option<String>,
}

/// Runs `paude list`.
pub fn run(args: ListArgs, host: &HostFacts) -> Result<ExitCode> {
    let store = Store::new(host.paude_home.clone());
    let scan = prune::scan(&store)?;
    let mut venvs: Vec<VenvInfo> = scan.venvs.iter().map(|v| prune::info(&store, v)).collect();
    venvs.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(a.key.cmp(&b.key)));
    let leftovers: Vec<LeftoverJson> = scan
        .leftovers
        .iter()
        .map(|leftover| {
            let size = tree::size(&leftover.path);
            LeftoverJson {
                path: leftover.path.clone(),
                kind: leftover.kind.name(),
                running: prune::leftover_running(&store, leftover),
                size_bytes: size.as_ref().ok().map(|size| size.total),
                error: size.err().map(|error| error.to_string()),
            }
        })
        .collect();
    let package_store = PackageStore::new(&host.paude_home);
    let found = package_store.scan()?;
    let package_size = tree::size(package_store.root());
    let packages = PackagesJson {
        path: package_store.root().to_path_buf(),
        count: found.entries.len(),
        unused: found
            .entries
            .iter()
            .filter(|entry| entry.references.unwrap_or(0) == 0)
            .count(),
        size_bytes: package_size.as_ref().ok().map(|size| size.total),
        error: package_size.as_ref().err().map(|error| error.to_string()),
    };
    let document = ListDocument {
        version: JSON_VERSION,
        store: store.venv_root(),
        venvs: venvs.iter().map(venv_json).collect(),
        total_bytes: prune::store_bytes(
            &venvs,
            leftovers.iter().filter_map(|l| l.size_bytes),
            packages.size_bytes,
        ),
        leftovers,
        packages,
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string_pretty(&document).context("encoding JSON")?;
        writeln!(stdout, "{text}").context("writing to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    for venv in &venvs {
        for problem in venv.problems() {
            warn(&format!("environment {}: {problem}", venv.key));
        }
    }
    if venvs.is_empty() {
        eprintln!("paude: no environments in {}", store.venv_root().display());
    } else {
        stdout
            .write_all(table(&venvs, SystemTime::now()).as_bytes())
            .context("writing to stdout")?;
        eprintln!(
            "paude: {} environment{} and {} package{} in the package store ({} used by none), {} in {}",
            venvs.len(),
            if venvs.len() == 1 { "" } else { "s" },
            document.packages.count,
            if document.packages.count == 1 {
                ""
            } else {
                "s"
            },
            document.packages.unused,
            human_bytes(document.total_bytes),
            host.paude_home.display()
        );
    }
    let (running, dead): (Vec<_>, Vec<_>) = document.leftovers.iter().partition(|l| l.running);
    if !running.is_empty() {
        eprintln!(
            "paude: {} build{} or removal{} in progress",
            running.len(),
            if running.len() == 1 { "" } else { "s" },
            if running.len() == 1 { "" } else { "s" },
        );
    }
    if !dead.is_empty() {
        let bytes: u64 = dead.iter().filter_map(|l| l.size_bytes).sum();
        eprintln!(
            "paude: {} leftover{} of interrupted builds or removals ({}); `paude cleanup` removes them",
            dead.len(),
            if dead.len() == 1 { "" } else { "s" },
            human_bytes(bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn venv_json(venv: &VenvInfo) -> VenvJson {
    let meta = venv.meta.as_ref().ok();
    let errors: Vec<&str> = venv.problems().collect();
    VenvJson {
        key: venv.key.to_string(),
        path: venv.dir.clone(),
        size_bytes: venv.size.as_ref().ok().map(|s| s.total),
        freeable_bytes: venv.size.as_ref().ok().map(|s| s.exclusive),
        created: meta
            .map(|m| rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.created))),
        last_used: venv.last_used.map(rfc3339),
        in_use: venv.in_use.clone().ok(),
        provider: meta.map(|m| m.provider.clone()),
        packages: meta.map(|m| m.requested.clone()),
        closure: meta.map(|m| m.closure.iter().map(PackageJson::from).collect()),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// The human table: one row per venv, columns padded to their widest cell.
fn table(venvs: &[VenvInfo], now: SystemTime) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "KEY".into(),
        "SIZE".into(),
        "CREATED".into(),
        "LAST USED".into(),
        "IN USE".into(),
        "PACKAGES".into(),
    ]];
    for venv in venvs {
        let meta = venv.meta.as_ref().ok();
        rows.push([
            venv.key.to_string(),
            venv.size
                .as_ref()
                .map(|s| human_bytes(s.total))
                .unwrap_or_else(|_| "?".into()),
            meta.map(|m| {
                ago(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.created),
                    now,
                )
            })
            .unwrap_or_else(|| "?".into()),
            venv.last_used
                .map(|t| ago(t, now))
                .unwrap_or_else(|| "?".into()),
            match venv.in_use {
                Ok(true) => "yes",
                Ok(false) => "no",
                Err(_) => "?",
            }
            .into(),
            meta.map(|m| format!("{} ({} in closure)", m.requested.join(" "), m.closure.len()))
                .unwrap_or_else(|| "? (unreadable meta.json)".into()),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[column]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
