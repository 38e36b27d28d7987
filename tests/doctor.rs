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

/// A dpkg root of one real package of this host (`sed`): its status stanza without its
/// dependencies, its `.list` and `.md5sums`, and a copy of each file its sums name, installed
/// an hour ago. Then, as a host whose files drifted: one file edited, one removed, one
/// replaced by a link.
fn drifted_root(who: As) -> (TestDir, [String; 3]) {
    let root = TestDir::new(who);
    let status = Command::new("dpkg-query")
        .args(["-s", "sed"])
        .output()
        .expect("dpkg-query");
    let stanza: String = text(&status.stdout)
        .lines()
        .filter(|line| !line.starts_with("Depends:") && !line.starts_with("Pre-Depends:"))
        .map(|line| format!("{line}\n"))
        .collect();
    let admindir = root.path().join("var/lib/dpkg");
    common::write(&admindir.join("status"), &stanza);
    let info = Path::new("/var/lib/dpkg/info");
    let sums = std::fs::read_to_string(info.join("sed.md5sums")).expect("sed.md5sums");
    std::fs::create_dir_all(admindir.join("info")).expect("mkdir info");
    for name in ["sed.list", "sed.md5sums"] {
        std::fs::copy(info.join(name), admindir.join("info").join(name))
            .expect("copying the database");
    }
    let paths: Vec<String> = sums
        .lines()
        .map(|line| format!("/{}", &line[34..]))
        .collect();
    for path in &paths {
        let copy = root.path().join(&path[1..]);
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(path, &copy).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(admindir.join("info/sed.list"))
        .and_then(|list| list.set_modified(hour_ago))
        .expect("dating the list");
    let sed = paths
        .iter()
        .find(|p| p.ends_with("/sed"))
        .expect("sed's binary")
        .clone();
    let (gone, linked) = (
        paths[paths.len() - 1].clone(),
        paths[paths.len() - 2].clone(),
    );
    let at = |path: &str| root.path().join(&path[1..]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(at(&sed))
        .and_then(|mut file| std::io::Write::write_all(&mut file, b"planted"))
        .unwrap();
    std::fs::remove_file(at(&gone)).unwrap();
    std::fs::remove_file(at(&linked)).unwrap();
    std::os::unix::fs::symlink(at(&sed), at(&linked)).unwrap();
    hand_over(who, root.path());
    (root, [sed, gone, linked])
}

#[test]
fn the_packages_files_are_checked_against_dpkgs_sums() {
    require_bwrap!();
    let manifest = r#"{packages: ["sed"], essential: false, network: false}"#;
    for who in users() {
        let (root, [edited, gone, linked]) = drifted_root(who);
        let (home, workspace) = (TestDir::new(who), TestDir::new(who));
        let paude = Paude::new(who, home.path(), workspace.path())
            .env("DPKG_ROOT", root.path().to_str().expect("utf-8"));
        // What `md5sum -c` says of the root is what paude must say: three files, each for
        // its own reason.
        let control = Command::new("md5sum")
            .args(["-c", "--quiet", "var/lib/dpkg/info/sed.md5sums"])
            .current_dir(root.path())
            .output()
            .expect("md5sum");
        let failed = text(&control.stdout);
        assert_eq!(
            failed.lines().count(),
            3,
            "{failed}{}",
            text(&control.stderr)
        );
        for path in [&edited, &gone, &linked] {
            assert!(failed.contains(&path[1..]), "{path}: {failed}");
        }

        let report = paude.run(["doctor", "-e", manifest]);
        let stdout = text(&report.stdout);
        assert_eq!(report.status.code(), Some(0), "{}", text(&report.stderr));
        let (status, fix) = line(&stdout, "package-files").unwrap_or_else(|| panic!("{stdout}"));
        assert_eq!(status, "warning", "{stdout}");
        assert!(
            fix.is_some_and(|fix| fix.contains("apt-get install --reinstall sed")),
            "{stdout}"
        );
        for (path, finding) in [
            (&edited, "changed"),
            (&gone, "missing"),
            (&linked, "not a file"),
        ] {
            assert!(
                stdout.contains(&format!("{path} (sed, {finding})")),
                "{stdout}"
            );
        }
        assert!(stdout.contains("3 files not as installed"), "{stdout}");
        let json = paude.run(["doctor", "--json", "-e", manifest]);
        let document: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let listed: Vec<(String, String)> = document["package_files"]
            .as_array()
            .unwrap_or_else(|| panic!("{document:#}"))
            .iter()
            .map(|file| {
                (
                    file["path"].as_str().unwrap().into(),
                    file["finding"].as_str().unwrap().into(),
                )
            })
            .collect();
        let mut expected = vec![
            (edited.clone(), "changed".to_string()),
            (linked.clone(), "not-a-file".into()),
            (gone.clone(), "missing".into()),
        ];
        let mut listed_sorted = listed.clone();
        listed_sorted.sort();
        expected.sort();
        assert_eq!(listed_sorted, expected);
        // Without a manifest, no such check.
        let plain = text(&paude.run(["doctor"]).stdout);
        assert!(line(&plain, "package-files").is_none(), "{plain}");

        // A build says so once, on stderr, and names the fix; a launch from the cache does not
        // read the files again.
        let build = paude.run(["venv", "--dry-run", "-e", manifest, "--", "/bin/sed"]);
        let stderr = text(&build.stderr);
        assert!(build.status.success(), "{stderr}");
        assert_eq!(
            stderr.matches("not what dpkg installed").count(),
            1,
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "3 files of sed are not what dpkg installed: {edited} (changed)"
            )),
            "{stderr}"
        );
        let again = text(
            &paude
                .run(["venv", "--dry-run", "-e", manifest, "--", "/bin/sed"])
                .stderr,
        );
        assert!(!again.contains("not what dpkg installed"), "{again}");
    }
}

#[test]
fn the_hosts_own_packages_are_checked_in_full() {
    require_bwrap!();
    for who in users() {
        let (_home, paude) = doctor(who);
        let json = paude.run(["doctor", "--json", "-e", r#"{packages: ["bash"]}"#]);
        let document: serde_json::Value = serde_json::from_slice(&json.stdout)
            .unwrap_or_else(|_| panic!("{}", text(&json.stderr)));
        let check = document["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|check| check["name"] == "package-files")
            .unwrap_or_else(|| panic!("{document:#}"))
            .clone();
        // Every file bash's closure records: at least bash's own sums, read in full.
        let bash_sums = std::fs::read_to_string("/var/lib/dpkg/info/bash.md5sums").unwrap();
        let detail = check["detail"].as_str().unwrap();
        let files: usize = detail
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{detail}"));
        assert!(files > bash_sums.lines().count(), "{detail}");
        assert!(
            detail.contains("read and compared with dpkg's MD5 sums"),
            "{detail}"
        );
        // Whatever this host's state, the document lists what the check counts.
        let listed = document["package_files"].as_array().unwrap().len();
        assert_eq!(
            check["status"] == "ok",
            listed == 0 || detail.contains("all as installed"),
            "{detail}"
        );
    }
}
