//! The cache's lifecycle with the real binary, bwrap and dpkg database: `paude list`,
//! `paude cleanup`, use-time locks that outlive paude's exec, killed builds, and launches
//! racing cleanups. Each test has its own `PAUDE_HOME`, since cleanups remove what they find.
//!
//! The long stress and kill runs are `#[ignore]`d; run them with
//! `cargo test --release --test lifecycle -- --ignored --nocapture` (sizes through
//! `PAUDE_STRESS_ROUNDS` and `PAUDE_STRESS_PARALLEL`).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// A small closure (dash and libc: about 15 packages), quick to build; `tag` makes a key of
/// its own through an fsEntry.
fn manifest(tag: &str) -> String {
    format!(
        r#"{{packages: ["dash"], fsEntries: [{{type: "file", path: "/etc/tag", contents: "{tag}"}}]}}"#
    )
}

/// A workspace and a home of their own for `who`.
fn setup(who: As) -> (TestDir, TestDir, Paude) {
    let home = TestDir::new(who);
    let workspace = TestDir::new(who);
    let paude = Paude::new(who, home.path(), workspace.path());
    (home, workspace, paude)
}

fn json(output: &Output) -> Value {
    let text = ok(output);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// Launches `sh -c SCRIPT` in the environment of `tag`.
fn launch(paude: &Paude, tag: &str, script: &str) -> Output {
    paude.run(["venv", "-e", &manifest(tag), "--", "/bin/sh", "-c", script])
}

/// The key of the only venv whose `/etc/tag` is `tag`.
fn key_of(paude: &Paude, tag: &str) -> String {
    let list = json(&paude.run(["list", "--json"]));
    let venvs = list["venvs"].as_array().expect("venvs");
    let found: Vec<&Value> = venvs
        .iter()
        .filter(|v| {
            let path = Path::new(v["path"].as_str().unwrap()).join("rootfs/etc/tag");
            std::fs::read_to_string(path).ok().as_deref() == Some(tag)
        })
        .collect();
    assert_eq!(found.len(), 1, "{list:#}");
    found[0]["key"].as_str().unwrap().to_string()
}

/// Sets a venv's last use `days` ago.
fn used_days_ago(paude: &Paude, key: &str, days: u64) {
    let path = paude.paude_home().join("venv").join(key).join("last-used");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("last-used")
        .set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
        .expect("set mtime");
}

/// Waits for `condition`, failing after a minute (a guard against hangs, not a timing check).
#[track_caller]
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a sandbox of `tag` that waits on its stdin; returns once it runs. paude gets
/// descriptor 7 open on `/dev/zero` without close-on-exec, as a careless caller would leave it.
fn start_sandbox(paude: &Paude, tag: &str, marker: &str) -> Child {
    let mut command = paude.command(["venv", "-e", &manifest(tag), "--", "/bin/sh", "-c"]);
    command
        .arg(format!(": > {marker}; read line"))
        .stdin(Stdio::piped());
    let zero = std::fs::File::open("/dev/zero").expect("open /dev/zero");
    leak_descriptor(&mut command, &zero, 7);
    let child = command.spawn().expect("spawn paude");
    let marker = paude.workspace.join(marker);
    wait_for("the sandbox to start", || marker.exists());
    child
}

/// The processes with a descriptor open on `path`.
fn processes_holding(path: &Path) -> Vec<u32> {
    pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).ok().as_deref() == Some(path))
        })
        .collect()
}

/// Where each descriptor of `pid` leads, sorted.
fn descriptors(pid: u32) -> Vec<String> {
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|target| target.display().to_string())
        .collect();
    targets.sort();
    targets
}

/// The command line of `pid`, its arguments separated by spaces.
fn cmdline(pid: u32) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(bytes.strip_suffix(b"\0").unwrap_or(&bytes)).replace('\0', " ")
}

/// The pid namespace `pid` is in.
fn pid_namespace(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// Every process below `ancestor`.
fn descendants(ancestor: u32) -> Vec<u32> {
    let parent = |pid: u32| -> Option<u32> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()
    };
    pids()
        .into_iter()
        .filter(|&pid| {
            let mut current = pid;
            while let Some(up) = parent(current).filter(|&up| up > 1) {
                if up == ancestor {
                    return true;
                }
                current = up;
            }
            false
        })
        .collect()
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

fn names(value: &Value, list: &str) -> Vec<String> {
    value[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} in {value:#}"))
        .iter()
        .map(|v| v["key"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn cleanup_ages_venvs_by_last_use_not_build_time() {
    require_bwrap!();
    for who in users() {
        let (_home, _workspace, paude) = setup(who);
        ok(&launch(&paude, "yesterday", "exit 0"));
        ok(&launch(&paude, "last-month", "exit 0"));
        let recent = key_of(&paude, "yesterday");
        let stale = key_of(&paude, "last-month");
        // Built a month ago, used yesterday.
        let meta_path = paude
            .paude_home()
            .join("venv")
            .join(&recent)
            .join("meta.json");
        let mut meta: Value =
            serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
        let month_ago = SystemTime::now() - Duration::from_secs(30 * 86_400);
        meta["created"] = month_ago
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .into();
        std::fs::write(&meta_path, meta.to_string()).unwrap();
        used_days_ago(&paude, &recent, 1);
        used_days_ago(&paude, &stale, 9);

        let table = ok(&paude.run(["list"]));
        let row = table.lines().find(|l| l.starts_with(&recent)).expect("row");
        assert!(
            row.contains("1 month ago") && row.contains("1 day ago"),
            "{table}"
        );
        assert!(row.contains("dash (") && row.contains(" no "), "{table}");

        let report = json(&paude.run(["cleanup", "--venvs", "--max-age-days", "7", "--json"]));
        assert_eq!(names(&report, "removed"), vec![stale.clone()], "{report:#}");
        assert_eq!(names(&report, "kept"), vec![recent.clone()], "{report:#}");
        assert_eq!(report["kept"][0]["reason"], "recently-used");
        // The two share every package: removing one frees its own directories and links,
        // while the package store keeps what the other still holds.
        let removed = &report["removed"][0];
        let freed = removed["freedBytes"].as_u64().unwrap();
        assert!(
            freed > 0 && freed < removed["sizeBytes"].as_u64().unwrap() / 4,
            "{report:#}"
        );
        assert_eq!(report["packages"]["removed"], Value::Array(vec![]));
        assert!(
            report["packages"]["inUse"].as_u64().unwrap() >= 10,
            "{report:#}"
        );
        assert_eq!(report["failed"], Value::Array(vec![]));
        let left = venv_entries(&paude.home);
        assert!(
            left.contains(&recent) && !left.iter().any(|n| n.starts_with(&stale)),
            "{left:?}"
        );

        // The survivor still launches, and that launch counts as a use.
        ok(&launch(&paude, "yesterday", "exit 0"));
        let report = json(&paude.run(["cleanup", "--max-age-days", "1", "--json"]));
        assert_eq!(names(&report, "kept"), vec![recent.clone()]);

        // The last environment goes: so do its packages, and the store is empty.
        let report = json(&paude.run(["cleanup", "--json"]));
        assert_eq!(names(&report, "removed"), vec![recent.clone()]);
        let packages = report["packages"]["removed"].as_array().unwrap();
        assert!(packages.len() >= 10, "{report:#}");
        let package_bytes: u64 = packages
            .iter()
            .map(|p| p["freedBytes"].as_u64().unwrap())
            .sum();
        assert!(package_bytes > 10_000_000, "{report:#}");
        assert_eq!(report["packages"]["inUse"], 0);
        let store = paude.paude_home().join("pkg");
        let left: Vec<_> = std::fs::read_dir(&store)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, [".lock"], "{left:?}");
    }
}

#[test]
fn a_running_sandbox_keeps_its_venv_while_paude_waits() {
    require_bwrap!();
    for who in users() {
        let (_home, _workspace, paude) = setup(who);
        let mut sandbox = start_sandbox(&paude, "busy", "started");
        let key = key_of(&paude, "busy");
        used_days_ago(&paude, &key, 30);

        let list = json(&paude.run(["list", "--json"]));
        assert_eq!(list["venvs"][0]["inUse"], true, "{list:#}");
        let output = paude.run(["cleanup", "--venvs", "--max-age-days", "0"]);
        let report = ok(&output);
        assert!(
            report.contains(&format!("kept {key}  in use by a running sandbox")),
            "{report}"
        );
        let document = json(&paude.run(["cleanup", "--max-age-days", "0", "--json"]));
        assert_eq!(document["kept"][0]["reason"], "in-use", "{document:#}");
        assert!(document["kept"][0]["lastUsed"].is_string(), "{document:#}");
        assert!(
            paude
                .paude_home()
                .join("venv")
                .join(&key)
                .join("rootfs/bin")
                .exists()
        );

        // The lock is held outside the sandbox, by paude's holder process, and by nothing in
        // the sandbox's own pid namespace (where bwrap's pid 1 holds only a pipe).
        let lock = paude.paude_home().join("venv").join(format!("{key}.lock"));
        let holders = processes_holding(&lock);
        assert!(!holders.is_empty(), "nobody holds {}", lock.display());
        let inside = descendants(sandbox.id())
            .into_iter()
            .filter(|pid| pid_namespace(*pid) != pid_namespace(std::process::id()))
            .collect::<Vec<_>>();
        let command: Vec<u32> = inside
            .iter()
            .copied()
            .filter(|pid| cmdline(*pid) == "/bin/sh -c : > started; read line")
            .collect();
        assert_eq!(command.len(), 1, "the sandboxed sh among {inside:?}");
        for holder in &holders {
            assert!(
                !inside.contains(holder),
                "{holder}, in the sandbox, holds the lock"
            );
        }
        // The holder (paude itself, waiting) keeps the lock, the read end of its pipe and the
        // signalfd it reads the signals it passes on from; its stdin and stdout lead nowhere
        // and its stderr is paude's (for what it says when the sandbox ends), and nothing
        // else of paude's stays open in it: not the caller's descriptor 7, not the pipe's
        // write end (or it would never see the sandbox end). With `network: true` it also
        // keeps the pipe whose closing ends slirp4netns (its `--exit-fd`).
        assert_eq!(holders.len(), 1, "{holders:?}");
        assert_eq!(holders[0], sandbox.id(), "the holder is paude itself");
        let open = descriptors(holders[0]);
        assert_eq!(open.len(), 7, "{open:?}");
        assert_eq!(
            open.iter()
                .filter(|target| target.starts_with("pipe:"))
                .count(),
            3,
            "stderr, the sandbox's pipe and slirp4netns's: {open:?}"
        );
        assert!(
            open.iter().any(|target| target.contains("signalfd")),
            "{open:?}"
        );
        assert_eq!(
            open.iter().filter(|target| *target == "/dev/null").count(),
            2,
            "{open:?}"
        );
        assert!(!open.iter().any(|target| target == "/dev/zero"), "{open:?}");
        assert!(open.contains(&lock.display().to_string()), "{open:?}");
        assert!(
            open.iter().any(|target| target.starts_with("pipe:")),
            "{open:?}"
        );

        // The sandbox ends: the lock goes with it.
        sandbox.kill().expect("kill");
        sandbox.wait().expect("wait");
        wait_for("the sandbox's lock to be released", || {
            json(&paude.run(["list", "--json"]))["venvs"][0]["inUse"] == false
        });
        let report = json(&paude.run(["cleanup", "--max-age-days", "0", "--json"]));
        assert_eq!(names(&report, "removed"), vec![key], "{report:#}");
        assert_eq!(venv_entries(&paude.home), vec![".cleanup.lock".to_string()]);
    }
}

#[test]
fn a_dry_run_changes_nothing_and_json_is_one_document() {
    require_bwrap!();
    let (_home, _workspace, paude) = setup(As::Me);
    ok(&launch(&paude, "dry", "exit 0"));
    let key = key_of(&paude, "dry");
    // A real cleanup first, which keeps the venv, so the dry run meets the store's locks.
    let report = json(&paude.run(["cleanup", "--max-age-days", "1", "--json"]));
    assert_eq!(names(&report, "kept"), vec![key.clone()]);
    used_days_ago(&paude, &key, 3);
    let snapshot = |home: &Path| -> Vec<(String, Option<SystemTime>)> {
        let mut entries = Vec::new();
        walk(&home.join(".paude"), &mut entries);
        entries
    };
    let before = snapshot(&paude.home);
    let output = paude.run(["cleanup", "--venvs", "--max-age-days", "0", "--dry-run"]);
    let report = ok(&output);
    assert!(
        report.starts_with(&format!("would remove {key}  ")),
        "{report}"
    );
    // The environment's packages go with it: no other environment holds them. The summary
    // is on stderr, as list's is.
    let summary = text(&output.stderr);
    assert!(
        summary.contains("paude: would remove 1 environment, ")
            && summary.contains(" packages, freeing "),
        "{summary}"
    );
    assert!(!report.contains("freeing"), "{report}");
    let document = json(&paude.run(["cleanup", "--max-age-days", "0", "--dry-run", "--json"]));
    assert_eq!(document["dryRun"], true);
    assert_eq!(document["version"], 1);
    assert_eq!(names(&document, "removed"), vec![key.clone()]);
    assert_eq!(snapshot(&paude.home), before, "a dry run changed the store");

    let list = json(&paude.run(["list", "--json"]));
    let venv = &list["venvs"][0];
    assert_eq!(venv["key"], key.as_str());
    assert_eq!(venv["packages"], serde_json::json!(["dash"]));
    assert!(venv["closure"].as_array().unwrap().len() > 5);
    assert!(venv["sizeBytes"].as_u64().unwrap() > 1_000_000);
    assert!(venv["lastUsed"].as_str().unwrap().ends_with('Z'));
    assert_eq!(list["leftovers"], Value::Array(vec![]));

    // An empty store: empty lists, exit 0.
    let (_home, _workspace, empty) = setup(As::Me);
    let list = json(&empty.run(["list", "--json"]));
    assert_eq!(list["venvs"], Value::Array(vec![]));
    let report = json(&empty.run(["cleanup", "--json"]));
    assert_eq!(report["removed"], Value::Array(vec![]));
    assert!(!empty.paude_home().exists(), "cleanup created the store");
}

/// Every path under `dir` with its mtime, sorted.
fn walk(dir: &Path, out: &mut Vec<(String, Option<SystemTime>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let meta = entry.path().symlink_metadata().unwrap();
        out.push((entry.path().display().to_string(), meta.modified().ok()));
        if meta.is_dir() {
            walk(&entry.path(), out);
        }
    }
    out.sort();
}

#[test]
fn dead_builds_are_cleaned_up_and_running_ones_left_alone() {
    require_bwrap!();
    let (_home, _workspace, paude) = setup(As::Me);
    ok(&launch(&paude, "kept", "exit 0"));
    let key = key_of(&paude, "kept");
    let root = paude.paude_home().join("venv");
    // A build of another key that is still running (its builder holds the key's lock), and a
    // dead build of the same key beside it.
    let other = "0123456789abcdef0123456789abcdef";
    let running = root.join(format!(".tmp-{other}-4242"));
    std::fs::create_dir_all(running.join("rootfs/usr")).unwrap();
    let builder = std::fs::File::create(root.join(format!("{other}.lock"))).unwrap();
    builder.lock().unwrap();
    let dead = root.join(format!(".tmp-{key}-4243"));
    std::fs::create_dir_all(dead.join("rootfs/usr/bin")).unwrap();
    std::fs::write(dead.join("rootfs/usr/bin/half"), vec![7u8; 100_000]).unwrap();
    let removal = root.join(format!(".del-{key}-4244"));
    std::fs::create_dir_all(removal.join("rootfs")).unwrap();

    let list = json(&paude.run(["list", "--json"]));
    let mut leftovers: Vec<(PathBuf, String, bool)> = list["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["path"].as_str().unwrap().into(),
                l["kind"].as_str().unwrap().into(),
                l["running"].as_bool().unwrap(),
            )
        })
        .collect();
    leftovers.sort();
    let mut expected = vec![
        (removal.clone(), "removal".to_string(), false),
        (running.clone(), "build".to_string(), true),
        (dead.clone(), "build".to_string(), false),
    ];
    expected.sort();
    assert_eq!(leftovers, expected);
    let report = json(&paude.run(["cleanup", "--max-age-days", "7", "--json"]));
    let mut removed: Vec<PathBuf> = report["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| PathBuf::from(l["path"].as_str().unwrap()))
        .collect();
    removed.sort();
    assert_eq!(removed, vec![removal.clone(), dead.clone()], "{report:#}");
    assert_eq!(report["kept"].as_array().unwrap().len(), 2, "{report:#}");
    assert!(
        report["kept"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["reason"] == "build-running")
    );
    assert!(running.exists() && !dead.exists() && !removal.exists());

    // The builder dies: its directory is a leftover now, and goes with its lock file.
    builder.unlock().unwrap();
    let report = json(&paude.run(["cleanup", "--max-age-days", "7", "--json"]));
    assert_eq!(
        report["leftovers"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    assert_eq!(
        venv_entries(&paude.home),
        vec![
            ".cleanup.lock".to_string(),
            key.clone(),
            format!("{key}.lock")
        ]
    );
}

#[test]
fn a_build_killed_midway_leaves_nothing_that_is_trusted() {
    require_bwrap!();
    for who in users() {
        let (_home, _workspace, paude) = setup(who);
        // The default closure is big enough to be caught mid-build.
        let mut first = paude
            .command(["venv", "--", "true"])
            .spawn()
            .expect("spawn");
        let root = paude.paude_home().join("venv");
        wait_for("the build to start, or the launch to end", || {
            venv_entries(&paude.home)
                .iter()
                .any(|name| name.starts_with(".tmp-"))
                || first.try_wait().expect("wait").is_some()
        });
        first.kill().expect("kill");
        first.wait().expect("wait");
        // The kill may land before or (rarely) after the tree was published; either way,
        // anything published is whole.
        assert_published_trees_are_whole(&paude);
        // The next launch rebuilds (removing the dead build's directory) and works.
        let second = paude.run(["venv", "--", "git", "--version"]);
        assert!(ok(&second).starts_with("git version"));
        let entries = venv_entries(&paude.home);
        assert!(
            !entries.iter().any(|n| n.starts_with(".tmp-")),
            "{entries:?}"
        );
        assert!(root.is_dir());
    }
}

#[test]
fn one_venv_that_cannot_be_removed_does_not_stop_the_others() {
    require_bwrap!();
    if !is_root() {
        eprintln!("SKIPPED: needs root to make a venv that its user cannot remove");
        return;
    }
    let (_home, _workspace, paude) = setup(As::Nobody);
    ok(&launch(&paude, "stuck", "exit 0"));
    ok(&launch(&paude, "free", "exit 0"));
    let stuck = key_of(&paude, "stuck");
    let free = key_of(&paude, "free");
    // A directory of the tree owned by root: nobody cannot empty it.
    let etc = paude
        .paude_home()
        .join("venv")
        .join(&stuck)
        .join("rootfs/etc");
    std::os::unix::fs::chown(&etc, Some(0), Some(0)).unwrap();
    let output = paude.run(["cleanup", "--max-age-days", "0"]);
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    let report = text(&output.stdout);
    assert!(report.contains(&format!("removed {free}")), "{report}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("1 failed"),
        "the summary, on stderr: {stderr}"
    );
    assert!(
        stderr.contains("could not remove")
            && stderr.contains("rootfs/etc/")
            && stderr.contains("Permission denied"),
        "{stderr}"
    );
    assert!(
        stderr.contains("paude: error: 1 of 2 removals failed"),
        "{stderr}"
    );
    // Whatever remains is not a venv a launch would trust, and root can clear it.
    let left = venv_entries(&paude.home);
    assert!(!left.contains(&stuck) && !left.contains(&free), "{left:?}");
    let root = Paude::new(As::Me, &paude.home, &paude.workspace);
    let report = json(&root.run(["cleanup", "--json"]));
    assert_eq!(
        report["leftovers"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
}

#[test]
fn launches_racing_a_cleanup_never_see_a_half_deleted_tree() {
    require_bwrap!();
    let (_home, _workspace, paude) = setup(As::Me);
    race(&paude, 2, 4);
}

/// `rounds` rounds of `parallel` first launches of one manifest with cleanups of every venv
/// running until the last launch ends; every launch must succeed and see a whole tree, and at the end exactly one venv
/// per key and no leftovers remain. Returns how many venvs the cleanups removed while launches ran.
fn race(paude: &Paude, rounds: usize, parallel: usize) -> usize {
    let mut removed = 0;
    // The probe fails if the tree it runs in lacks a file every whole tree has.
    let check = "test -s /etc/tag && test -x /bin/sh && test -d /usr/share/doc/libc6";
    for round in 0..rounds {
        let mut children = Vec::new();
        for _ in 0..parallel {
            children.push(
                paude
                    .command([
                        "venv",
                        "-e",
                        &manifest("race"),
                        "--",
                        "/bin/sh",
                        "-c",
                        check,
                    ])
                    .spawn()
                    .expect("spawn"),
            );
        }
        // Cleanups of every venv not in use, one after another for as long as a launch runs.
        let mut cleanups = 0;
        while cleanups < 2
            || children
                .iter_mut()
                .any(|c| c.try_wait().expect("wait").is_none())
        {
            let report = json(&paude.run(["cleanup", "--max-age-days", "0", "--json"]));
            assert_eq!(
                report["failed"],
                Value::Array(vec![]),
                "round {round}: {report:#}"
            );
            removed += report["removed"].as_array().map_or(0, Vec::len);
            cleanups += 1;
        }
        for child in children {
            let output = child.wait_with_output().expect("wait");
            ok(&output);
        }
        // One more launch: there is exactly one venv for the key and nothing else.
        ok(&launch(paude, "race", check));
        let entries: Vec<String> = venv_entries(&paude.home)
            .into_iter()
            .filter(|n| n != ".cleanup.lock")
            .collect();
        assert_eq!(entries.len(), 2, "round {round}: {entries:?}");
        assert!(entries[0].len() == 32 && entries[1] == format!("{}.lock", entries[0]));
    }
    removed
}

#[test]
#[ignore = "long: parallel first launches and cleanups, many rounds"]
fn stress_parallel_launches_and_cleanups() {
    require_bwrap!();
    let rounds = env_number("PAUDE_STRESS_ROUNDS", 20);
    let parallel = env_number("PAUDE_STRESS_PARALLEL", 12);
    for who in users() {
        let (_home, _workspace, paude) = setup(who);
        let removed = race(&paude, rounds, parallel);
        assert!(
            removed > 0,
            "no cleanup removed the venv while launches ran"
        );
        eprintln!(
            "{who:?}: {rounds} rounds of {parallel} parallel launches with cleanups throughout: all passed; \
             the cleanups removed the venv {removed} times while launches ran"
        );
    }
}

#[test]
#[ignore = "long: kills builds at random instants"]
fn stress_killed_builds() {
    require_bwrap!();
    let rounds = env_number("PAUDE_STRESS_ROUNDS", 20);
    let (_home, _workspace, paude) = setup(As::Me);
    // One whole first launch, to spread the kills over its duration and a little beyond.
    let started = Instant::now();
    ok(&paude.run(["venv", "--", "true"]));
    let span = (started.elapsed().as_millis() as u64 * 13 / 10).max(1);
    ok(&paude.run(["cleanup", "--max-age-days", "0"]));
    let mut seed: u64 = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(seed % span);
        let mut child = paude
            .command(["venv", "--", "true"])
            .spawn()
            .expect("spawn");
        std::thread::sleep(delay);
        child.kill().ok();
        child.wait().ok();
        let published = assert_published_trees_are_whole(&paude);
        let output = paude.run(["venv", "--", "git", "--version"]);
        assert!(ok(&output).starts_with("git version"), "round {round}");
        let report = json(&paude.run(["cleanup", "--max-age-days", "0", "--json"]));
        assert_eq!(report["failed"], Value::Array(vec![]));
        assert_eq!(venv_entries(&paude.home), vec![".cleanup.lock".to_string()]);
        eprintln!("round {round}: killed after {delay:?}, {published} published");
    }
}

/// Checks that every published tree of the default manifest has its meta.json and git;
/// returns how many there are.
fn assert_published_trees_are_whole(paude: &Paude) -> usize {
    let published: Vec<String> = venv_entries(&paude.home)
        .into_iter()
        .filter(|name| name.len() == 32)
        .collect();
    for key in &published {
        let dir = paude.paude_home().join("venv").join(key);
        assert!(
            dir.join("meta.json").is_file() && dir.join("rootfs/usr/bin/git").is_file(),
            "{} is published but not whole",
            dir.display()
        );
    }
    published.len()
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn directories_without_search_permission_do_not_stop_removal() {
    require_bwrap!();
    for who in users() {
        let (_home, _workspace, paude) = setup(who);
        // /usr/share/doc holds the packages' directories; 0444 and 0644 make it readable
        // but not searchable, so nothing below it can be looked at until it is opened up.
        for mode in ["0444", "0644"] {
            let manifest = format!(
                r#"{{packages: ["dash"], fsEntries: [{{type: "dir", path: "/usr/share/doc", mode: "{mode}"}}]}}"#
            );
            ok(&paude.run(["venv", "-e", &manifest, "--", "/bin/sh", "-c", "exit 0"]));
        }
        let list = json(&paude.run(["list", "--json"]));
        assert_eq!(list["venvs"].as_array().unwrap().len(), 2, "{list:#}");
        let report = json(&paude.run(["cleanup", "--max-age-days", "0", "--json"]));
        assert_eq!(report["removed"].as_array().unwrap().len(), 2, "{report:#}");
        assert_eq!(venv_entries(&paude.home), vec![".cleanup.lock".to_string()]);
    }
}

#[test]
fn a_lock_file_that_is_a_link_is_refused_not_followed() {
    require_bwrap!();
    let (home, _workspace, paude) = setup(As::Me);
    ok(&launch(&paude, "linked", "exit 0"));
    let key = key_of(&paude, "linked");
    let lock = paude.paude_home().join("venv").join(format!("{key}.lock"));
    std::fs::remove_file(&lock).unwrap();
    let elsewhere = home.path().join("elsewhere.lock");
    std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
    let output = launch(&paude, "linked", "exit 0");
    fails_with(&output, 125, "is a symbolic link");
    assert!(!elsewhere.exists(), "the link was followed");
}

#[test]
fn a_failed_build_racing_another_launch_reports_its_own_error_in_both() {
    require_bwrap!();
    let (_home, _workspace, paude) = setup(As::Me);
    // The fsEntry clashes with a file of the closure: the build fails, after the store and
    // the key's lock file were created.
    let manifest = r#"{packages: ["dash"], fsEntries: [{type: "dir", path: "/usr/bin/dash"}]}"#;
    let children: Vec<Child> = (0..3)
        .map(|_| {
            paude
                .command(["venv", "-e", manifest, "--", "/bin/sh", "-c", "exit 0"])
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        fails_with(&output, 125, "fsEntries[0]");
        assert!(
            !text(&output.stderr).contains("set PAUDE_HOME"),
            "{}",
            text(&output.stderr)
        );
    }
    assert!(
        venv_entries(&paude.home).is_empty(),
        "{:?}",
        venv_entries(&paude.home)
    );
}

#[test]
fn environments_share_their_packages_files_through_the_package_store() {
    require_bwrap!();
    use std::os::unix::fs::MetadataExt;
    for who in users() {
        let (_home, _workspace, paude) = setup(who);
        let first = launch(&paude, "first", "exit 0");
        let stderr = text(&first.stderr);
        assert!(stderr.contains("(all unpacked now)"), "{who:?}: {stderr}");
        let second = launch(&paude, "second", "exit 0");
        let stderr = text(&second.stderr);
        assert!(
            stderr.contains("(all from the package store)"),
            "{who:?}: {stderr}"
        );
        // One inode for dash in both trees and in the package store.
        let venvs = paude.paude_home().join("venv");
        let dash = |key: &str| {
            std::fs::metadata(venvs.join(key).join("rootfs/usr/bin/dash")).expect("dash")
        };
        let (a, b) = (
            dash(&key_of(&paude, "first")),
            dash(&key_of(&paude, "second")),
        );
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "{who:?}");
        assert!(a.nlink() >= 3, "{who:?}: {} links", a.nlink());
        // Shared means read-only inside: nothing in a sandbox may change a shared file.
        let output = launch(
            &paude,
            "second",
            "chmod 0777 /usr/bin/dash || echo x >> /usr/bin/dash || exit 0; exit 1",
        );
        ok(&output);
        assert_eq!(dash(&key_of(&paude, "first")).mode() & 0o7777, 0o755);

        // While a build uses the package store, cleanup leaves it alone.
        let lock = std::fs::File::open(paude.paude_home().join("pkg/.lock")).expect("lock");
        lock.lock_shared().expect("flock");
        let report = json(&paude.run(["cleanup", "--json"]));
        assert_eq!(names(&report, "removed").len(), 2, "{report:#}");
        assert_eq!(report["packages"]["busy"], true, "{report:#}");
        assert_eq!(report["packages"]["removed"], Value::Array(vec![]));
        lock.unlock().expect("unlock");
        drop(lock);
        let report = json(&paude.run(["cleanup", "--json"]));
        assert_eq!(report["packages"]["busy"], false, "{report:#}");
        let removed = report["packages"]["removed"].as_array().expect("removed");
        assert!(removed.len() >= 10, "{report:#}");
        let list = json(&paude.run(["list", "--json"]));
        assert_eq!(list["packages"]["count"], 0, "{list:#}");
    }
}

#[test]
fn a_build_shows_progress_on_a_terminal_and_one_line_elsewhere() {
    require_bwrap!();
    let (home, workspace, paude) = setup(As::Me);
    // Not a terminal: the build leaves exactly one line, its summary.
    let output = launch(&paude, "log", "exit 0");
    let lines: Vec<String> = text(&output.stderr).lines().map(String::from).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("paude: built environment "),
        "{lines:?}"
    );
    assert!(
        lines[0].contains(" packages (all unpacked now), "),
        "{lines:?}"
    );

    // A terminal (through `script`): the progress line is drawn and redrawn in place, then
    // cleared before the summary. A fresh store, so that packages are unpacked again.
    let store = home.path().join("other-store");
    let line = format!(
        "{} venv -e '{}' -- /bin/sh -c 'exit 0'",
        env!("CARGO_BIN_EXE_paude"),
        manifest("terminal")
    );
    let output = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(workspace.path())
        .env("HOME", home.path())
        .env("PAUDE_HOME", &store)
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let shown = text(&output.stdout);
    assert!(output.status.success(), "{shown}");
    // At least one drawing (how many depends on how fast the packages unpack), the last one
    // with every package done.
    let drawn: Vec<&str> = shown
        .split("\r\x1b[2K")
        .filter(|part| part.starts_with("paude: unpacking packages "))
        .collect();
    assert!(!drawn.is_empty(), "{shown:?}");
    let counts = drawn[drawn.len() - 1]
        .trim_start_matches("paude: unpacking packages ")
        .split(',')
        .next()
        .unwrap_or("");
    let (done, total) = counts.split_once('/').expect("N/M");
    assert_eq!(done, total, "{shown:?}");
    let last = shown.rsplit("\r\x1b[2K").next().unwrap_or("");
    assert!(last.starts_with("paude: built environment "), "{shown:?}");
}
