//! `paude cleanup`: remove venvs not used recently, the package store's entries no venv uses
//! any more, and leftovers of killed builds.
//!
//! One cleanup runs at a time (the store's cleanup lock). Each venv is decided under its own
//! lock (see [`crate::store::prune`]): in use → kept, used within the cut-off → kept, else
//! removed. A venv that cannot be removed is reported and the others still go; the exit status
//! is then 125, and 0 when everything asked was done (keeping a venv in use is not a failure).
//!
//! The report's lines (or the JSON document) go to stdout: they are this command's output;
//! the summary line goes to stderr, as `list`'s does.

use super::{ago, rfc3339, status};
use crate::cli::CleanupArgs;
use crate::host::HostFacts;
use crate::launch::cache::Cache;
use crate::store::lock::Attempt;
use crate::store::packages::{self, PackageStore};
use crate::store::prune::{self, LeftoverOutcome, Verdict};
use crate::store::{Store, human_bytes, tree};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Version of the JSON document.
const JSON_VERSION: u32 = 1;

#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CleanupDocument {
    version: u32,
    dry_run: bool,
    /// `null`: every venv not in use was a candidate.
    max_age_days: Option<u32>,
    /// Venvs removed (in a dry run: that would be).
    removed: Vec<Removed>,
    /// Venvs kept, with the reason.
    kept: Vec<Kept>,
    /// Leftovers of interrupted builds and removals that were removed.
    leftovers: Vec<LeftoverRemoved>,
    /// The package store: entries no environment holds any more.
    packages: PackagesPruned,
    /// Launch caches of other paude builds.
    caches: Vec<LeftoverRemoved>,
    /// What could not be done.
    failed: Vec<Failed>,
    /// Bytes freed (in a dry run: that would be).
    freed_bytes: u64,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Removed {
    key: String,
    size_bytes: u64,
    freed_bytes: u64,
    last_used: Option<String>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Kept {
    /// The venv's key (or the key a running build is for; `null` if its name has none).
    key: Option<String>,
    path: PathBuf,
    /// `in-use`, `recently-used` or `build-running`.
    reason: &'static str,
    last_used: Option<String>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LeftoverRemoved {
    path: PathBuf,
    /// `build`, `removal`, `launch` (copies of a repository's files a launch left),
    /// `kept-venvs` (the Python venvs paude kept for a workspace) or `cache`.
    kind: &'static str,
    freed_bytes: u64,
}

#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PackagesPruned {
    /// Entries removed (in a dry run: that would be), each named `<name>_<version>_<arch>-<hash>`.
    removed: Vec<PackageRemoved>,
    /// Entries kept because environments hold them.
    in_use: usize,
    /// The store was left alone because a build was using it.
    busy: bool,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PackageRemoved {
    name: String,
    freed_bytes: u64,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Failed {
    path: PathBuf,
    error: String,
}

/// Runs `paude cleanup`.
pub fn run(args: CleanupArgs, host: &HostFacts) -> Result<ExitCode> {
    // `--venvs` names the only kind of cached thing there is today, so `paude cleanup` with
    // no kind (which means every kind) does the same.
    let store = Store::new(host.paude_home.clone());
    let now = SystemTime::now();
    let cutoff = args
        .max_age_days
        .map(|days| Duration::from_secs(u64::from(days) * 86_400));
    let keep = |last_used: Option<SystemTime>| match (cutoff, last_used) {
        (None, _) | (_, None) => false,
        // A time in the future (a clock that was wrong) counts as now.
        (Some(cutoff), Some(time)) => now.duration_since(time).unwrap_or_default() < cutoff,
    };
    let mut report = CleanupDocument {
        version: JSON_VERSION,
        dry_run: args.dry_run,
        max_age_days: args.max_age_days,
        ..CleanupDocument::default()
    };
    let _cleanup_lock = prune::lock_cleanup(&store, args.dry_run, &mut || {
        status("waiting for another paude cleanup to finish")
    })?;
    let scan = prune::scan(&store)?;
    for venv in &scan.venvs {
        let outcome = match prune::remove_venv(&store, &venv.key, &keep, args.dry_run) {
            Ok(outcome) => outcome,
            Err(error) => {
                report.failed.push(Failed {
                    path: venv.dir.clone(),
                    error: format!("{:#}", anyhow::Error::from(error)),
                });
                continue;
            }
        };
        let last_used = outcome.last_used.map(rfc3339);
        let mut keep_for = |reason| {
            report.kept.push(Kept {
                key: Some(venv.key.to_string()),
                path: venv.dir.clone(),
                reason,
                last_used: last_used.clone(),
            })
        };
        match outcome.verdict {
            Verdict::Removed(size) => {
                report.freed_bytes += size.exclusive;
                report.removed.push(Removed {
                    key: venv.key.to_string(),
                    size_bytes: size.total,
                    freed_bytes: size.exclusive,
                    last_used,
                });
            }
            Verdict::InUse => keep_for("in-use"),
            Verdict::Recent => keep_for("recently-used"),
            Verdict::Gone => {}
        }
    }
    for leftover in &scan.leftovers {
        match prune::remove_leftover(&store, leftover, args.dry_run) {
            Ok(LeftoverOutcome::Removed(size)) => {
                report.freed_bytes += size.exclusive;
                report.leftovers.push(LeftoverRemoved {
                    path: leftover.path.clone(),
                    kind: leftover.kind.name(),
                    freed_bytes: size.exclusive,
                });
            }
            Ok(LeftoverOutcome::Running) => report.kept.push(Kept {
                key: leftover.key.as_ref().map(|k| k.to_string()),
                path: leftover.path.clone(),
                reason: "build-running",
                last_used: None,
            }),
            Ok(LeftoverOutcome::Skipped) => {}
            Err(error) => report.failed.push(Failed {
                path: leftover.path.clone(),
                error: format!("{:#}", anyhow::Error::from(error)),
            }),
        }
    }
    if !args.dry_run {
        for key in &scan.orphan_locks {
            if let Err(error) = prune::remove_orphan_lock(&store, key) {
                report.failed.push(Failed {
                    path: store.lock_path(key),
                    error: format!("{:#}", anyhow::Error::from(error)),
                });
            }
        }
    }
    prune_packages(host, &store, args.dry_run, &mut report);
    prune_kept_venvs(&store, &keep, args.dry_run, &mut report);
    prune_caches(host, args.dry_run, &mut report);
    prune_launch_dirs(&store, args.dry_run, &mut report);

    let mut stdout = std::io::stdout().lock();
    let (text, summary) = if args.json {
        (
            serde_json::to_string_pretty(&report).context("encoding JSON")? + "\n",
            None,
        )
    } else {
        let (lines, summary) = human(&report, now);
        (lines, Some(summary))
    };
    stdout
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    // The summary is a note about the lines above, on stderr as `list`'s is.
    if let Some(summary) = summary {
        eprintln!("paude: {summary}");
    }
    if !report.failed.is_empty() {
        if !args.json {
            for failed in &report.failed {
                eprintln!(
                    "paude: could not remove {}: {}",
                    failed.path.display(),
                    failed.error
                );
            }
        }
        bail!(
            "{} of {} removals failed; the rest were done",
            report.failed.len(),
            report.failed.len() + report.removed.len() + report.leftovers.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes the Python venvs paude keeps for workspaces (`state/<workspace>/venvs`, the
/// sandbox's own) that no launch used within the max age, by the mark each launch that binds
/// them touches (`venvs.last-used`, else the directory's own time).
fn prune_kept_venvs(
    store: &Store,
    keep: &dyn Fn(Option<SystemTime>) -> bool,
    dry_run: bool,
    report: &mut CleanupDocument,
) {
    let Ok(workspaces) = std::fs::read_dir(store.home().join("state")) else {
        return;
    };
    for workspace in workspaces.flatten() {
        let dir = workspace.path();
        let venvs = dir.join("venvs");
        let Ok(meta) = venvs.symlink_metadata() else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let mark = dir.join("venvs.last-used");
        let used = mark
            .metadata()
            .and_then(|meta| meta.modified())
            .or_else(|_| meta.modified())
            .ok();
        if keep(used) {
            continue;
        }
        match remove_or_measure(&venvs, dry_run) {
            Ok(freed) => {
                if !dry_run {
                    std::fs::remove_file(&mark).ok();
                }
                report.freed_bytes += freed;
                report.leftovers.push(LeftoverRemoved {
                    path: venvs,
                    kind: "kept-venvs",
                    freed_bytes: freed,
                });
            }
            Err(error) => report.failed.push(Failed {
                path: venvs,
                error: error.to_string(),
            }),
        }
    }
}

/// Removes the package store's entries that no environment holds (after the environments'
/// removal, so that what they alone held goes too), and the leftovers of interrupted
/// unpackings. Done only while no build uses the store; a dry run predicts from the
/// references the environments it would remove hold.
fn prune_packages(host: &HostFacts, store: &Store, dry_run: bool, report: &mut CleanupDocument) {
    let packages = PackageStore::new(&host.paude_home);
    if !packages.root().exists() {
        return;
    }
    let mut fail = |path: &std::path::Path, error: anyhow::Error| {
        report.failed.push(Failed {
            path: path.to_path_buf(),
            error: format!("{error:#}"),
        })
    };
    let lock = match packages.lock() {
        Ok(lock) => lock,
        Err(error) => return fail(packages.root(), error.into()),
    };
    match lock.attempt(true) {
        Ok(Attempt::Locked) => {}
        Ok(Attempt::Busy) => {
            report.packages.busy = true;
            return;
        }
        Err(error) => return fail(lock.path(), error.into()),
    }
    // A dry run changes nothing, so it need not keep builds waiting while it measures.
    if dry_run {
        lock.unlock().ok();
    }
    let found = match packages.scan() {
        Ok(found) => found,
        Err(error) => return fail(packages.root(), error.into()),
    };
    // References that go with what this cleanup removes (already gone unless a dry run).
    let mut going: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    if dry_run {
        let removed = report
            .removed
            .iter()
            .map(|venv| store.venv_root().join(&venv.key));
        let leftovers = report
            .leftovers
            .iter()
            .map(|leftover| leftover.path.clone());
        for dir in removed.chain(leftovers) {
            for name in packages::references_of(&dir) {
                *going.entry(name).or_default() += 1;
            }
        }
    }
    for entry in &found.entries {
        let held = entry
            .references
            .map(|n| n.saturating_sub(going.get(&entry.name).copied().unwrap_or(0)))
            .unwrap_or(0);
        if held > 0 {
            report.packages.in_use += 1;
            continue;
        }
        let freed = if dry_run {
            tree::size(&entry.dir)
                .map(|size| size.total)
                .map_err(anyhow::Error::from)
        } else {
            packages
                .remove(entry)
                .map(|size| size.exclusive)
                .map_err(anyhow::Error::from)
        };
        match freed {
            Ok(bytes) => {
                report.freed_bytes += bytes;
                report.packages.removed.push(PackageRemoved {
                    name: entry.name.clone(),
                    freed_bytes: bytes,
                });
            }
            Err(error) => fail(&entry.dir, error),
        }
    }
    // Under the exclusive lock every unpacking is a dead one.
    for leftover in &found.leftovers {
        let freed = remove_or_measure(leftover, dry_run);
        match freed {
            Ok(bytes) => {
                report.freed_bytes += bytes;
                let name = leftover
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                report.leftovers.push(LeftoverRemoved {
                    path: leftover.clone(),
                    kind: if name.is_some_and(|n| n.starts_with(packages::REMOVAL_PREFIX)) {
                        "removal"
                    } else {
                        "build"
                    },
                    freed_bytes: bytes,
                });
            }
            Err(error) => fail(leftover, error.into()),
        }
    }
    if !dry_run {
        lock.unlock().ok();
    }
}

/// Removes the tree at `path` and returns the bytes that freed; in a dry run, returns what
/// removing it would free, supposing whatever shares its files goes too.
fn remove_or_measure(path: &std::path::Path, dry_run: bool) -> std::io::Result<u64> {
    if dry_run {
        tree::size(path).map(|size| size.total)
    } else {
        tree::remove(path).map(|size| size.exclusive)
    }
}

/// Removes (or, in a dry run, measures) a leftover of `kind`, counting what it frees; a
/// failure goes to the report's failures.
fn remove_leftover(
    path: PathBuf,
    kind: &'static str,
    dry_run: bool,
    report: &mut CleanupDocument,
) -> Option<LeftoverRemoved> {
    match remove_or_measure(&path, dry_run) {
        Ok(bytes) => {
            report.freed_bytes += bytes;
            Some(LeftoverRemoved {
                path,
                kind,
                freed_bytes: bytes,
            })
        }
        Err(error) => {
            report.failed.push(Failed {
                path,
                error: error.to_string(),
            });
            None
        }
    }
}

/// Removes the launch caches of other paude builds (a rebuilt or upgraded paude starts with
/// caches of its own; see [`crate::launch::cache`]).
fn prune_caches(host: &HostFacts, dry_run: bool, report: &mut CleanupDocument) {
    let cache = Cache::new(&host.paude_home);
    let Some(current) = cache.current_build() else {
        return;
    };
    let root = Cache::root(&host.paude_home);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name() == current {
            continue;
        }
        if let Some(removed) = remove_leftover(entry.path(), "cache", dry_run, report) {
            report.caches.push(removed);
        }
    }
}

/// Removes the launch directories no running launch holds (see `store::LaunchDir`): left by
/// a `--dry-run`, or by a holder that was killed before it could bring its copies back.
fn prune_launch_dirs(store: &Store, dry_run: bool, report: &mut CleanupDocument) {
    let Ok(entries) = std::fs::read_dir(store.launch_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // The holder keeps the directory locked while its sandbox runs.
        let free = std::fs::File::open(&path).is_ok_and(|dir| dir.try_lock().is_ok());
        if !free {
            continue;
        }
        if let Some(removed) = remove_leftover(path, "launch", dry_run, report) {
            report.leftovers.push(removed);
        }
    }
}

/// The human report: one line per venv or leftover, then a summary.
/// The report's lines (stdout), and the summary line (stderr).
fn human(report: &CleanupDocument, now: SystemTime) -> (String, String) {
    let removed = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let since = |time: &Option<String>, fallback: &str| -> String {
        time.as_deref()
            .and_then(parse_rfc3339)
            .map(|t| format!("last used {}", ago(t, now)))
            .unwrap_or_else(|| fallback.into())
    };
    let mut out = String::new();
    for venv in &report.removed {
        out.push_str(&format!(
            "{removed} {}  {}  {}\n",
            venv.key,
            human_bytes(venv.freed_bytes),
            since(&venv.last_used, "never used")
        ));
    }
    for kept in &report.kept {
        let what = kept
            .key
            .clone()
            .unwrap_or_else(|| kept.path.display().to_string());
        let why = match kept.reason {
            "in-use" => "in use by a running sandbox".to_string(),
            "recently-used" => since(&kept.last_used, "recently used"),
            _ => format!("build still running in {}", kept.path.display()),
        };
        out.push_str(&format!("kept {what}  {why}\n"));
    }
    for leftover in &report.leftovers {
        let what = match leftover.kind {
            "launch" => "copies of a repository's files a launch left".to_string(),
            "kept-venvs" => "the venvs the sandbox made in a workspace, unused".to_string(),
            kind => format!("interrupted {kind}"),
        };
        out.push_str(&format!(
            "{removed} {}  {}  ({what})\n",
            leftover.path.display(),
            human_bytes(leftover.freed_bytes),
        ));
    }
    if !report.packages.removed.is_empty() {
        let bytes: u64 = report.packages.removed.iter().map(|p| p.freed_bytes).sum();
        out.push_str(&format!(
            "{removed} {} that no environment uses from the package store  {}\n",
            if report.packages.removed.len() == 1 {
                "1 package".to_string()
            } else {
                format!("{} packages", report.packages.removed.len())
            },
            human_bytes(bytes)
        ));
    }
    if report.packages.busy {
        out.push_str("kept the package store as it is: a build is using it\n");
    }
    for cache in &report.caches {
        out.push_str(&format!(
            "{removed} {}  {}  (caches of another paude build)\n",
            cache.path.display(),
            human_bytes(cache.freed_bytes)
        ));
    }
    let in_use = report.kept.iter().filter(|k| k.reason == "in-use").count();
    let recent = report
        .kept
        .iter()
        .filter(|k| k.reason == "recently-used")
        .count();
    let plural = |n: usize, word: &str| crate::text::counted(n as u64, word);
    let mut summary = format!("{removed} {}", plural(report.removed.len(), "environment"));
    if !report.packages.removed.is_empty() {
        summary.push_str(&format!(
            ", {}",
            plural(report.packages.removed.len(), "package")
        ));
    }
    if !report.leftovers.is_empty() {
        summary.push_str(&format!(
            " and {}",
            plural(report.leftovers.len(), "leftover")
        ));
    }
    summary.push_str(&format!(
        ", {} {}; kept {} in use",
        if report.dry_run { "freeing" } else { "freed" },
        human_bytes(report.freed_bytes),
        in_use
    ));
    if let Some(days) = report.max_age_days.filter(|days| *days > 0) {
        summary.push_str(&format!(
            " and {recent} used within {}",
            plural(days as usize, "day")
        ));
    }
    if !report.failed.is_empty() {
        summary.push_str(&format!(
            "; {} {}",
            report.failed.len(),
            if report.dry_run {
                "could not be checked"
            } else {
                "failed"
            }
        ));
    }
    (out, summary)
}

/// Reads back what [`rfc3339`] wrote.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 20 || bytes[19] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    // Days from the civil date, the inverse of `civil_date` (years counted from March).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(seconds)
        .ok()
        .map(|s| std::time::UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_reads_back() {
        for seconds in [0u64, 951_782_400, 1_798_014_645, 4_107_542_399] {
            let time = std::time::UNIX_EPOCH + Duration::from_secs(seconds);
            assert_eq!(parse_rfc3339(&rfc3339(time)), Some(time));
        }
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn report_names_each_decision_and_sums_up() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let day_ago = rfc3339(now - Duration::from_secs(86_400 * 9));
        let report = CleanupDocument {
            version: 1,
            dry_run: true,
            max_age_days: Some(7),
            removed: vec![Removed {
                key: "a".repeat(32),
                size_bytes: 3 << 20,
                freed_bytes: 2 << 20,
                last_used: Some(day_ago),
            }],
            kept: vec![Kept {
                key: Some("b".repeat(32)),
                path: "/s/venv/b".into(),
                reason: "in-use",
                last_used: None,
            }],
            leftovers: vec![],
            failed: vec![],
            freed_bytes: 2 << 20,
            ..CleanupDocument::default()
        };
        let (lines, summary) = human(&report, now);
        assert_eq!(
            lines,
            format!(
                "would remove {}  2.0 MiB  last used 9 days ago\n\
                 kept {}  in use by a running sandbox\n",
                "a".repeat(32),
                "b".repeat(32)
            )
        );
        assert_eq!(
            summary,
            "would remove 1 environment, freeing 2.0 MiB; kept 1 in use and 0 used within 7 days"
        );
    }
}
