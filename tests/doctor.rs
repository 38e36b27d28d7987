//! `paude doctor` end to end: the real binary, the real bwrap, the host's real dpkg database,
//! as the current user and, when the tests run as root, as an unprivileged user (nobody).

mod common;

use common::{As, Paude, TestDir, hand_over, is_root, ok, text, users};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// What `bwrap --version` prints here, such as `bubblewrap 0.8.0`.
fn bwrap_version() -> String {
    let output = Command::new("bwrap")
        .arg("--version")
        .output()
        .expect("bwrap --version");
    text(&output.stdout).trim().to_string()
}

/// A doctor run whose `PAUDE_HOME` is a fresh directory of `who`.
fn doctor(who: As) -> (TestDir, Paude) {
    let home = TestDir::new(who);
    let paude = Paude::new(who, home.path(), home.path());
    (home, paude)
}

/// The report's line for `name` (`status name detail`), and the fix under it if any.
fn line<'a>(report: &'a str, name: &str) -> Option<(&'a str, Option<&'a str>)> {
    let mut lines = report.lines();
    while let Some(line) = lines.next() {
        let mut words = line.split_whitespace();
        let status = words.next();
        if words.next() == Some(name) {
            let fix = lines
                .clone()
                .next()
                .filter(|next| next.trim_start().starts_with("fix: "));
            return Some((status.unwrap_or(""), fix));
        }
    }
    None
}

/// Asserts a run that exited 125 after a complete report, saying so on stderr.
#[track_caller]
fn found_problems(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "stderr:\n{stderr}");
    assert!(stderr.contains("paude: error: "), "{stderr}");
    assert!(stderr.contains("problem"), "{stderr}");
    text(&output.stdout)
}

#[test]
fn healthy_machine_is_all_ok_and_shows_bwraps_version() {
    require_bwrap!();
    let version = bwrap_version();
    for who in users() {
        let (home, paude) = doctor(who);
        // An existing store: the write test happens in venv/, and must leave nothing there.
        let venv = home.path().join(".paude/venv");
        std::fs::create_dir_all(&venv).unwrap();
        hand_over(who, home.path());
        let report = ok(&paude.run(["doctor"]));
        assert!(report.contains(&version), "{who:?}:\n{report}");
        for name in [
            "bwrap",
            "user-namespaces",
            "sandbox",
            "packages",
            "paude-home",
            "cache",
            "network",
        ] {
            let (status, _) = line(&report, name).unwrap_or_else(|| panic!("{name}:\n{report}"));
            assert_ne!(status, "problem", "{who:?}: {name}\n{report}");
        }
        assert!(
            report.contains("0 environments"),
            "{who:?}: the cache line counts the store\n{report}"
        );
        let left: Vec<_> = std::fs::read_dir(&venv).unwrap().flatten().collect();
        assert!(left.is_empty(), "{who:?}: the write test left {left:?}");
    }
}

#[test]
fn missing_home_is_fine_when_it_can_be_created() {
    require_bwrap!();
    for who in users() {
        let (home, paude) = doctor(who);
        let report = ok(&paude.run(["doctor"]));
        let (status, _) = line(&report, "paude-home").unwrap();
        assert_eq!(status, "ok", "{who:?}:\n{report}");
        assert!(report.contains("not created yet"), "{report}");
        assert!(
            !home.path().join(".paude").exists(),
            "{who:?}: doctor must not create PAUDE_HOME"
        );
        // No store, no cache line.
        assert!(line(&report, "cache").is_none(), "{report}");
    }
}

#[test]
fn json_document_has_a_status_for_every_check() {
    require_bwrap!();
    for who in users() {
        let (_home, paude) = doctor(who);
        let output = paude.run(["doctor", "--json"]);
        let document: serde_json::Value =
            serde_json::from_str(&ok(&output)).expect("doctor --json prints JSON");
        assert_eq!(document["version"], 1);
        let checks = document["checks"].as_array().expect("checks");
        assert!(checks.len() >= 5, "{document}");
        for check in checks {
            let status = check["status"].as_str().expect("status");
            assert!(["ok", "warning", "problem"].contains(&status), "{check}");
            assert!(check["name"].is_string() && check["detail"].is_string());
            // A fix exactly when something is wrong.
            assert_eq!(check["fix"].is_null(), status == "ok", "{check}");
        }
        let bwrap = checks.iter().find(|c| c["name"] == "bwrap").unwrap();
        assert!(
            bwrap["detail"].as_str().unwrap().contains(&bwrap_version()),
            "{bwrap}"
        );
    }
}

#[test]
fn missing_bwrap_is_a_problem_with_the_install_fix() {
    // No bwrap needed: this is the machine without one.
    for who in users() {
        let (_home, paude) = doctor(who);
        let output = paude.env("PAUDE_BWRAP", "/nonexistent").run(["doctor"]);
        let report = found_problems(&output);
        let (status, fix) = line(&report, "bwrap").unwrap();
        assert_eq!(status, "problem", "{report}");
        assert!(report.contains("/nonexistent"), "{report}");
        let fix = fix.expect("a fix under the bwrap line");
        assert!(fix.contains("apt-get install bubblewrap"), "{fix}");
        assert!(fix.contains("PAUDE_BWRAP"), "{fix}");
        // Nothing was tried without bwrap: no trial sandbox line.
        assert!(line(&report, "sandbox").is_none(), "{report}");
        assert!(text(&output.stderr).contains("bwrap"));
    }
}

#[test]
fn read_only_home_is_a_problem() {
    require_bwrap!();
    for who in users() {
        // Root writes anywhere; the case is an unprivileged user's.
        if who == As::Me && is_root() {
            continue;
        }
        // Owned by the test's user (root, when nobody runs paude), and read-only to all.
        let parent = TestDir::new(As::Me);
        let locked = parent.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        for home in [locked.clone(), locked.join("paude")] {
            let (_workspace, paude) = doctor(who);
            let output = paude
                .env("PAUDE_HOME", home.to_str().unwrap())
                .run(["doctor"]);
            let report = found_problems(&output);
            let (status, fix) = line(&report, "paude-home").unwrap();
            assert_eq!(status, "problem", "{who:?} {}:\n{report}", home.display());
            assert!(fix.unwrap().contains("PAUDE_HOME"), "{report}");
            assert!(report.contains(&display(&home)), "{report}");
            // The other checks still ran, and this machine passes them.
            let (status, _) = line(&report, "bwrap").unwrap();
            assert_ne!(status, "problem", "{report}");
        }
        let left: Vec<_> = std::fs::read_dir(&locked).unwrap().flatten().collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn doctor_and_list_give_one_size_for_the_store() {
    require_bwrap!();
    let home = TestDir::new(As::Me);
    let workspace = TestDir::new(As::Me);
    let paude = Paude::new(As::Me, home.path(), workspace.path());
    // Two environments whose files are mostly the same packages', linked from the package
    // store: counted once, not once per environment.
    for manifest in [
        r#"{packages: ["bash"], network: false}"#,
        r#"{packages: ["bash", "python3-minimal"], network: false}"#,
    ] {
        ok(&paude.run(["venv", "-e", manifest, "--", "true"]));
    }
    let list = paude.run(["list"]);
    ok(&list);
    let summary = text(&list.stderr);
    let figure = summary
        .split(", ")
        .last()
        .and_then(|tail| tail.split(" in ").next())
        .unwrap_or_else(|| panic!("{summary}"))
        .to_owned();
    let report = paude.run(["doctor", "--json"]);
    let document: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let cache = document["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "cache")
        .unwrap_or_else(|| panic!("{document:#}"));
    let detail = cache["detail"].as_str().unwrap();
    assert_eq!(
        detail,
        format!("2 environments, {figure}"),
        "list said: {summary}"
    );
}
