//! The launch caches with the real binary: an evaluated manifest and a package closure are
//! reused on a cache hit, and dropped as soon as one of their inputs changes (an imported file,
//! a file appearing earlier on the import path, the package database); everything else a
//! launch depends on (a venv, a `.git`, a mount source, a kept variable, a script's
//! permissions) is looked at again by every launch.
//!
//! A result is cached only once its inputs are older than the cache's settle time (2.5 s, see
//! `launch::cache`), so each test writes its inputs, waits that long once, and then proves a
//! hit by editing the cached entry: a launch that shows the edit was served from the cache.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longer than the cache's settle time.
const SETTLE: Duration = Duration::from_millis(2700);

/// The cache entries of `kind` under a `PAUDE_HOME`, of every build.
fn entries(paude_home: &Path, kind: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for build in std::fs::read_dir(paude_home.join("cache"))
        .into_iter()
        .flatten()
    {
        let dir = build.expect("entry").path().join(kind);
        for entry in std::fs::read_dir(dir).into_iter().flatten() {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                found.push(path);
            }
        }
    }
    found
}

/// Rewrites the one cache entry of `kind`, replacing `from` by `to` in its text.
fn tamper(paude_home: &Path, kind: &str, from: &str, to: &str) {
    let found = entries(paude_home, kind);
    assert_eq!(found.len(), 1, "{kind} entries: {found:?}");
    let text = std::fs::read_to_string(&found[0]).expect("read");
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(&found[0], text.replace(from, to)).expect("write");
}

#[test]
fn an_evaluated_manifest_is_reused_until_an_input_changes() {
    require_bwrap!();
    let who = As::Me;
    let home = TestDir::new(who);
    let workspace = TestDir::new(who);
    let library = TestDir::new(who);
    std::fs::create_dir(workspace.path().join(".git")).expect("mkdir");
    write(
        &workspace.path().join("paude.jsonnet"),
        r#"local lib = import "mark.libsonnet";
{ packages: ["dash"], envSet: { MARK: lib.mark } }
"#,
    );
    let imported = library.path().join("mark.libsonnet");
    write(&imported, r#"{ mark: "one" }"#);
    let paude = Paude::new(who, home.path(), workspace.path());
    let library_dir = library.path().to_str().expect("utf-8").to_string();
    let mark = || {
        let output = paude.run([
            "venv",
            "-J",
            &library_dir,
            "--",
            "/bin/sh",
            "-c",
            "echo $MARK",
        ]);
        ok(&output).trim().to_string()
    };
    ok(&paude.run(["trust", "-J", &library_dir]));
    std::thread::sleep(SETTLE);

    assert_eq!(mark(), "one");
    let paude_home = paude.paude_home();
    assert_eq!(entries(&paude_home, "manifest").len(), 1);
    // Served from the cache: the edited entry is what the sandbox sees.
    tamper(&paude_home, "manifest", "\"one\"", "\"cached\"");
    assert_eq!(mark(), "cached");
    // The imported file changes, even to text of the same size: evaluated again, which the
    // trust check shows (a cached evaluation would carry the trusted file's digest), and,
    // once trusted, what the sandbox sees.
    write(&imported, r#"{ mark: "two" }"#);
    let output = paude.run(["venv", "-J", &library_dir, "--", "true"]);
    fails_with(&output, 125, "mark.libsonnet changed since you trusted it");
    ok(&paude.run(["trust", "-J", &library_dir]));
    assert_eq!(mark(), "two");
    // A file of the same name appears in the importing file's directory, which is searched
    // before -J: the import now resolves there, to a file of the workspace that is not
    // trusted yet; once it is, it is what the sandbox sees.
    write(
        &workspace.path().join("mark.libsonnet"),
        r#"{ mark: "near" }"#,
    );
    let output = paude.run(["venv", "-J", &library_dir, "--", "true"]);
    fails_with(&output, 125, "mark.libsonnet is not trusted yet");
    ok(&paude.run(["trust", "-J", &library_dir]));
    assert_eq!(mark(), "near");
    // Other -J values are other inputs: a different key, evaluated on its own.
    let output = paude.run(["venv", "--", "/bin/sh", "-c", "echo $MARK"]);
    assert_eq!(ok(&output).trim(), "near");
}

/// The trust check runs on a cache hit as on a miss. The user's own `-f` of the workspace's
/// manifest has the same inputs as the workspace's manifest itself, so the two share one
/// entry: an evaluation cached from an import the user has not trusted is served to the
/// workspace's manifest only with the digests of the bytes it was made from, and is refused.
#[test]
fn a_cached_evaluation_is_judged_for_trust_on_every_launch() {
    require_bwrap!();
    let who = As::Me;
    let home = TestDir::new(who);
    let workspace = TestDir::new(who);
    let ws = std::fs::canonicalize(workspace.path()).expect("canonicalize");
    std::fs::create_dir(ws.join(".git")).expect("mkdir");
    let manifest = ws.join("paude.jsonnet");
    write(
        &manifest,
        r#"local lib = import "mark.libsonnet";
{ packages: ["dash"], envSet: { MARK: lib.mark } }
"#,
    );
    let imported = ws.join("mark.libsonnet");
    write(&imported, r#"{ mark: "one" }"#);
    let paude = Paude::new(who, home.path(), &ws);
    ok(&paude.run(["trust"]));
    write(&imported, r#"{ mark: "two" }"#);
    std::thread::sleep(SETTLE);
    let manifest = manifest.to_str().expect("utf-8");
    let own = || {
        let output = paude.run(["venv", "-f", manifest, "--", "/bin/sh", "-c", "echo $MARK"]);
        ok(&output).trim().to_string()
    };
    assert_eq!(own(), "two");
    let paude_home = paude.paude_home();
    tamper(&paude_home, "manifest", "\"two\"", "\"hit\"");
    assert_eq!(own(), "hit", "served from the cache");
    let output = paude.run(["venv", "--", "/bin/sh", "-c", "echo $MARK"]);
    fails_with(&output, 125, "mark.libsonnet changed since you trusted it:");
    assert!(text(&output.stderr).contains(r#"    + { mark: "two" }"#));
    assert_eq!(own(), "hit", "the entry was there to be served");
}

#[test]
fn an_environment_key_is_reused_until_the_package_database_changes() {
    require_bwrap!();
    let who = As::Me;
    let home = TestDir::new(who);
    let workspace = TestDir::new(who);
    let root = TestDir::new(who);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dpkg/root");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", fixture.display()))
        .arg(root.path())
        .status()
        .expect("cp");
    assert!(copied.success());
    let status = root.path().join("var/lib/dpkg/status");
    let paude = Paude::new(who, home.path(), workspace.path())
        .env("DPKG_ROOT", root.path().to_str().expect("utf-8"));
    // The fixture's files are not there, so the command is not found (127) once the
    // environment is built: what matters here is the closure it was built from.
    let launch = || paude.run(["venv", "-e", r#"{packages: ["tar"]}"#, "--", "true"]);
    let tar_versions = || -> Vec<String> {
        let output = paude.run(["list", "--json"]);
        let list: Value = serde_json::from_str(&ok(&output)).expect("JSON");
        let mut versions: Vec<String> = list["venvs"]
            .as_array()
            .expect("venvs")
            .iter()
            .flat_map(|venv| venv["closure"].as_array().expect("closure").clone())
            .filter(|package| package["name"] == "tar")
            .map(|package| package["version"].as_str().expect("version").to_string())
            .collect();
        versions.sort();
        versions
    };
    std::thread::sleep(SETTLE);

    assert_eq!(text(&launch().stderr).matches("depends on").count(), 0);
    assert_eq!(tar_versions(), ["1.34+dfsg-1.2"]);
    let paude_home = paude.paude_home();
    assert_eq!(entries(&paude_home, "environment").len(), 1);
    // Served from the cache: what the edited entry says is what the launch says.
    tamper(
        &paude_home,
        "environment",
        r#""missing":[]"#,
        r#""missing":[{"required_by":"tar","relation":"cached-dep"}]"#,
    );
    let said = text(&launch().stderr);
    assert!(said.contains("tar depends on `cached-dep`"), "{said}");
    // The tree goes; the database has not changed, so the closure resolved again has the
    // cached key, and the tree is built again under it.
    ok(&paude.run(["cleanup", "--venvs", "--max-age-days", "0"]));
    launch();
    assert_eq!(tar_versions(), ["1.34+dfsg-1.2"]);
    // A key the database does not give (as if it changed after the launch looked): no tree is
    // built under it.
    let key = list_keys(&paude)[0].clone();
    tamper(&paude_home, "environment", &key, &"0".repeat(key.len()));
    fails_with(
        &launch(),
        125,
        "the package database changed while paude was starting",
    );
    assert_eq!(list_keys(&paude), [key]);
    // An upgrade: dpkg writes a new status file and renames it into place.
    let text = std::fs::read_to_string(&status).expect("status");
    let upgraded = text.replace("Version: 1.34+dfsg-1.2", "Version: 1.35+dfsg-1");
    assert_ne!(text, upgraded);
    let new = root.path().join("var/lib/dpkg/status-new");
    std::fs::write(&new, upgraded).expect("write");
    std::fs::rename(&new, &status).expect("rename");
    let said = common::text(&launch().stderr);
    assert!(!said.contains("depends on"), "{said}");
    assert_eq!(tar_versions(), ["1.34+dfsg-1.2", "1.35+dfsg-1"]);
}

/// The keys of the environments `paude list` shows.
fn list_keys(paude: &Paude) -> Vec<String> {
    let list: Value = serde_json::from_str(&ok(&paude.run(["list", "--json"]))).expect("JSON");
    list["venvs"]
        .as_array()
        .expect("venvs")
        .iter()
        .map(|venv| venv["key"].as_str().expect("key").to_string())
        .collect()
}

#[test]
fn bad_input_caches_nothing() {
    require_bwrap!();
    let who = As::Me;
    let home = TestDir::new(who);
    let workspace = TestDir::new(who);
    let paude = Paude::new(who, home.path(), workspace.path());
    std::thread::sleep(SETTLE);
    // Evaluates and resolves, then fails on a missing mount source: nothing is written.
    let output = paude.run([
        "venv",
        "-e",
        r#"{packages: ["dash"], mounts: [{type: "bind", source: "/nonexistent/src", target: "/src"}]}"#,
        "--",
        "true",
    ]);
    fails_with(&output, 125, "mounts[0].source");
    assert!(!paude.paude_home().exists());
}

/// With the manifest and the closure served from the caches, every launch still looks at the
/// workspace as it is now: the `.git` above the current directory, a venv appearing or going,
/// an optional mount source appearing, a kept variable changing, a script losing its `x` bit.
#[test]
fn a_cached_launch_sees_the_workspace_as_it_is_now() {
    require_bwrap!();
    for who in users() {
        let home = TestDir::new(who);
        let workspace = TestDir::new(who);
        let sub = workspace.path().join("sub");
        let optional = workspace.path().join("optional");
        std::fs::create_dir(&sub).expect("mkdir");
        let manifest = workspace.path().join("m.jsonnet");
        write(
            &manifest,
            &format!(
                r#"{{ packages: ["dash", "coreutils"], envKeep: ["GREETING"], mounts: [{{ type: "bind", source: "{}", target: "/opt/data", optional: true }}] }}"#,
                optional.display()
            ),
        );
        let script = sub.join("say.sh");
        write(&script, "#!/bin/sh\necho \"$GREETING $*\"\n");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        hand_over(who, workspace.path());
        let paude = Paude::new(who, home.path(), workspace.path()).cwd(&sub);
        let manifest = manifest.to_str().expect("utf-8").to_string();
        let dry = || {
            let output = paude.run(["venv", "-f", &manifest, "--dry-run", "--", "true"]);
            (ok(&output), text(&output.stderr))
        };
        std::thread::sleep(SETTLE);

        // No `.git` anywhere: the workspace is the current directory.
        let (first, _) = dry();
        let paude_home = paude.paude_home();
        assert_eq!(entries(&paude_home, "manifest").len(), 1, "{who:?}");
        assert_eq!(entries(&paude_home, "environment").len(), 1, "{who:?}");
        assert!(first.contains(&format!("--bind {} {}", sub.display(), sub.display())));

        // A `.git` above: the workspace becomes its directory.
        std::fs::create_dir(workspace.path().join(".git")).expect("mkdir");
        let (line, _) = dry();
        let root = workspace.path().display();
        assert!(
            line.contains(&format!("--bind {root} {root}")),
            "{who:?}: {line}"
        );
        // A venv appears at the workspace's top level: shadowed (by the sandbox's own, kept in
        // paude's state), and said so.
        std::fs::create_dir(workspace.path().join(".venv")).expect("mkdir");
        write(&workspace.path().join(".venv/pyvenv.cfg"), "home = /usr\n");
        let (line, said) = dry();
        assert!(
            line.contains(&format!("/venvs/.venv {root}/.venv ")),
            "{who:?}: {line}"
        );
        assert!(
            said.contains("shadowing the host's venv"),
            "{who:?}: {said}"
        );
        // It stops being a venv: no longer shadowed.
        std::fs::remove_file(workspace.path().join(".venv/pyvenv.cfg")).expect("rm");
        let (line, said) = dry();
        assert!(!line.contains(".venv"), "{who:?}: {line}");
        assert!(!said.contains("shadowing"), "{who:?}: {said}");
        // The optional mount's source appears: bound.
        std::fs::create_dir(&optional).expect("mkdir");
        hand_over(who, &optional);
        let (line, _) = dry();
        assert!(
            line.contains(&format!("--bind {} /opt/data", optional.display())),
            "{who:?}: {line}"
        );
        // A kept variable reaches the sandbox with the value it has at each launch.
        for greeting in ["hello", "bye"] {
            let output = paude
                .clone()
                .env("GREETING", greeting)
                .run(["venv", "-f", &manifest, "--", "./say.sh", "x"]);
            assert_eq!(ok(&output), format!("{greeting} x\n"), "{who:?}");
        }
        // The script stops being executable: refused (126), never run.
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .expect("chmod");
        let output = paude.run(["venv", "-f", &manifest, "--", "./say.sh", "x"]);
        fails_with(&output, 126, "not executable");
        // The caches were used all along: an edit of the environment's entry shows.
        assert_eq!(entries(&paude_home, "manifest").len(), 1, "{who:?}");
        assert_eq!(entries(&paude_home, "environment").len(), 1, "{who:?}");
        tamper(
            &paude_home,
            "environment",
            r#""missing":[]"#,
            r#""missing":[{"required_by":"dash","relation":"served-from-the-cache"}]"#,
        );
        let (_, said) = dry();
        assert!(said.contains("served-from-the-cache"), "{who:?}: {said}");
    }
}

/// A workspace that holds the store is refused, also when `PAUDE_HOME` names it through a
/// link, and so is a read-write bind of a directory above the store: a sandbox that could
/// write there (or rename a directory above it and leave a store of its own) could write the
/// launch caches of the next launch. The same launch with the store elsewhere runs, and
/// writes where the refused one would have.
#[test]
fn a_store_the_sandbox_could_write_is_refused() {
    require_bwrap!();
    for who in users() {
        let home = TestDir::new(who);
        let workspace = TestDir::new(who);
        let links = TestDir::new(who);
        std::fs::create_dir(workspace.path().join(".git")).expect("mkdir");
        let link = links.path().join("link");
        std::os::unix::fs::symlink(workspace.path(), &link).expect("symlink");
        let inside = workspace.path().join(".paude/cache/written-inside");
        let touch = |paude: &Paude| {
            paude.run([
                "venv",
                "-e",
                r#"{ packages: ["dash", "coreutils"] }"#,
                "--",
                "sh",
                "-c",
                &format!("mkdir -p {0} && touch {0}/x", inside.display()),
            ])
        };
        for store in [link.join(".paude"), workspace.path().join(".paude")] {
            let paude = Paude::new(who, home.path(), workspace.path())
                .env("PAUDE_HOME", store.to_str().expect("utf-8"));
            fails_with(&touch(&paude), 125, "holds paude's store");
            assert!(!inside.exists(), "{who:?}");
        }
        // A bind of the directory above the store.
        let store = links.path().join("store");
        let manifest = format!(
            r#"{{ packages: ["dash"], mounts: [{{ type: "bind", source: "{}", target: "/mnt/up" }}] }}"#,
            links.path().display()
        );
        let paude = Paude::new(who, home.path(), workspace.path())
            .env("PAUDE_HOME", store.to_str().expect("utf-8"));
        let output = paude.run(["venv", "-e", &manifest, "--", "true"]);
        fails_with(&output, 125, "mounts[0].target would make");
        assert!(
            !store.exists(),
            "{who:?}: refused before the store was made"
        );
        // The control: with the store elsewhere, the sandbox writes that directory.
        let paude = Paude::new(who, home.path(), workspace.path());
        ok(&touch(&paude));
        assert!(inside.join("x").exists(), "{who:?}");
    }
}
