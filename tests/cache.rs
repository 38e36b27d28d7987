//! The launch caches with the real binary: an evaluated manifest and a package closure are
//! reused on a cache hit, and dropped as soon as one of their inputs changes (an imported file,
//! a file appearing earlier on the import path, the package database); a launch record serves
//! the same launch again until any answer it depended on changes (a venv, a `.git`, a mount
//! source, a script's permissions).
//!
//! A result is cached only once its inputs are older than the cache's settle time (2.5 s, see
//! `store::cache`), so each test writes its inputs, waits that long once, and then proves a
//! hit by editing the cached entry: a launch that shows the edit was served from the cache.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longer than the cache's settle time.
const SETTLE: Duration = Duration::from_millis(2700);

/// The files of `kind` ending in `.extension` under a `PAUDE_HOME`'s caches, of every build.
fn cache_files(paude_home: &Path, kind: &str, extension: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for build in std::fs::read_dir(paude_home.join("cache"))
        .into_iter()
        .flatten()
    {
        let dir = build.expect("entry").path().join(kind);
        for entry in std::fs::read_dir(dir).into_iter().flatten() {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == extension) {
                found.push(path);
            }
        }
    }
    found
}

/// The cache entries of `kind` under a `PAUDE_HOME`.
fn entries(paude_home: &Path, kind: &str) -> Vec<PathBuf> {
    cache_files(paude_home, kind, "json")
}

/// Rewrites the one cache entry of `kind`, replacing `from` by `to` in its text.
fn tamper(paude_home: &Path, kind: &str, from: &str, to: &str) {
    let found = entries(paude_home, kind);
    assert_eq!(found.len(), 1, "{kind} entries: {found:?}");
    let text = std::fs::read_to_string(&found[0]).expect("read");
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(&found[0], text.replace(from, to)).expect("write");
}

/// The launch records under a `PAUDE_HOME`.
fn records(paude_home: &Path) -> Vec<PathBuf> {
    cache_files(paude_home, "launch", "rec")
}

/// Removes every launch record.
fn forget_launches(paude_home: &Path) {
    for record in records(paude_home) {
        std::fs::remove_file(record).expect("remove");
    }
}

/// Rewrites every launch record, replacing the last `from` by `to` (of the same length, so
/// that the record stays well-formed): the last is in the bwrap arguments, which come after
/// the checks. Returns how many records held `from`.
fn tamper_records(paude_home: &Path, from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut changed = 0;
    for record in records(paude_home) {
        let mut bytes = std::fs::read(&record).expect("read");
        let Some(at) = bytes.windows(from.len()).rposition(|w| w == from) else {
            continue;
        };
        bytes[at..at + from.len()].copy_from_slice(to);
        std::fs::write(&record, bytes).expect("write");
        changed += 1;
    }
    changed
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
    std::thread::sleep(SETTLE);

    assert_eq!(mark(), "one");
    let paude_home = paude.paude_home();
    assert_eq!(entries(&paude_home, "manifest").len(), 1);
    // Served from the cache: the edited entry is what the sandbox sees (once the launch's
    // own record, which would answer first, is gone).
    tamper(&paude_home, "manifest", "\"one\"", "\"cached\"");
    forget_launches(&paude_home);
    assert_eq!(mark(), "cached");
    // The imported file changes, even to text of the same size: evaluated again.
    write(&imported, r#"{ mark: "two" }"#);
    assert_eq!(mark(), "two");
    // A file of the same name appears in the importing file's directory, which is searched
    // before -J: the import now resolves there.
    write(
        &workspace.path().join("mark.libsonnet"),
        r#"{ mark: "near" }"#,
    );
    assert_eq!(mark(), "near");
    // Other -J values are other inputs: a different key, evaluated on its own.
    let output = paude.run(["venv", "--", "/bin/sh", "-c", "echo $MARK"]);
    assert_eq!(ok(&output).trim(), "near");
}

#[test]
fn a_closure_is_reused_until_the_package_database_changes() {
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
    let launch = || {
        let output = paude.run(["venv", "-e", r#"{packages: ["tar"]}"#, "--", "true"]);
        assert_eq!(output.status.code(), Some(127), "{}", text(&output.stderr));
    };
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

    launch();
    assert_eq!(tar_versions(), ["1.34+dfsg-1.2"]);
    let paude_home = paude.paude_home();
    assert_eq!(entries(&paude_home, "closure").len(), 1);
    // Served from the cache: the edited closure is what the next environment is built from.
    tamper(&paude_home, "closure", "1.34+dfsg-1.2", "1.34+cached");
    launch();
    assert_eq!(tar_versions(), ["1.34+cached", "1.34+dfsg-1.2"]);
    // An upgrade: dpkg writes a new status file and renames it into place.
    let text = std::fs::read_to_string(&status).expect("status");
    let upgraded = text.replace("Version: 1.34+dfsg-1.2", "Version: 1.35+dfsg-1");
    assert_ne!(text, upgraded);
    let new = root.path().join("var/lib/dpkg/status-new");
    std::fs::write(&new, upgraded).expect("write");
    std::fs::rename(&new, &status).expect("rename");
    launch();
    assert_eq!(
        tar_versions(),
        ["1.34+cached", "1.34+dfsg-1.2", "1.35+dfsg-1"]
    );
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

/// A launch record answers for the same launch, says what the launch said, and is given up as
/// soon as any answer it was built from changes: the workspace's `.git` above the current
/// directory, a venv appearing or going, an optional mount source appearing. What it serves is
/// what working it out again gives.
#[test]
fn a_launch_record_is_reused_until_an_answer_changes() {
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
                r#"{{ packages: ["dash", "coreutils"], mounts: [{{ type: "bind", source: "{}", target: "/opt/data", optional: true }}] }}"#,
                optional.display()
            ),
        );
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
        assert_eq!(records(&paude_home).len(), 1, "{who:?}");
        assert!(first.contains(&format!("--bind {} {}", sub.display(), sub.display())));
        // Served from the record: an edit of the record shows.
        assert_eq!(
            tamper_records(&paude_home, b"--unshare-user", b"--unshare-USER"),
            1
        );
        let (served, _) = dry();
        assert!(served.contains("--unshare-USER"), "{who:?}: {served}");
        // What a record serves is what working it out gives.
        assert_eq!(
            tamper_records(&paude_home, b"--unshare-USER", b"--unshare-user"),
            1
        );
        let (served, said) = dry();
        forget_launches(&paude_home);
        assert_eq!(dry(), (served.clone(), said));
        assert_eq!(served, first);

        // A `.git` above: the workspace becomes its directory.
        std::fs::create_dir(workspace.path().join(".git")).expect("mkdir");
        let (line, _) = dry();
        let root = workspace.path().display();
        assert!(
            line.contains(&format!("--bind {root} {root}")),
            "{who:?}: {line}"
        );
        // A venv appears at the workspace's top level: shadowed, and said so on every launch,
        // the one that works it out and the one its record serves.
        std::fs::create_dir(workspace.path().join(".venv")).expect("mkdir");
        write(&workspace.path().join(".venv/pyvenv.cfg"), "home = /usr\n");
        for _ in 0..2 {
            let (line, said) = dry();
            assert!(
                line.contains(&format!("--tmpfs {root}/.venv")),
                "{who:?}: {line}"
            );
            assert!(
                said.contains("shadowing the host's venv"),
                "{who:?}: {said}"
            );
        }
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
        // The environment is removed and built again: a new tree, so the record (edited to
        // show if it were used) is not.
        assert_eq!(
            tamper_records(&paude_home, b"--unshare-user", b"--unshare-USER"),
            1
        );
        let output = paude.run(["cleanup", "--venvs", "--max-age-days", "0"]);
        ok(&output);
        // Another launch (not a --dry-run: other inputs, another record) builds it again.
        ok(&paude.run(["venv", "-f", &manifest, "--", "true"]));
        let (line, _) = dry();
        assert!(!line.contains("--unshare-USER"), "{who:?}: {line}");
    }
}

/// One record serves a command with any arguments, which reach the sandbox as given, and
/// whatever the variables the launch never reads; a variable it keeps (`envKeep`) changing is
/// seen; and a script that stops being executable is refused (126), never run from a stale
/// record.
#[test]
fn a_record_serves_every_argument_list_and_no_stale_answer() {
    require_bwrap!();
    let who = As::Me;
    let home = TestDir::new(who);
    let workspace = TestDir::new(who);
    std::fs::create_dir(workspace.path().join(".git")).expect("mkdir");
    write(
        &workspace.path().join("paude.jsonnet"),
        r#"{ packages: ["dash", "coreutils"], envKeep: ["GREETING"] }"#,
    );
    let script = workspace.path().join("say.sh");
    write(&script, "#!/bin/sh\necho \"$GREETING $*\"\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let paude = |greeting: &str, unrelated: &str| {
        Paude::new(who, home.path(), workspace.path())
            .env("GREETING", greeting)
            .env("UNRELATED", unrelated)
    };
    std::thread::sleep(SETTLE);

    for (unrelated, words) in [("1", ["a", "b"]), ("2", ["c d", "-e"])] {
        let output = paude("hello", unrelated).run(["venv", "--", "./say.sh", words[0], words[1]]);
        assert_eq!(ok(&output), format!("hello {} {}\n", words[0], words[1]));
    }
    let paude_home = paude("", "").paude_home();
    assert_eq!(records(&paude_home).len(), 1);
    // Served from the record, whatever UNRELATED says: an edit of the record shows.
    assert_eq!(tamper_records(&paude_home, b"hello", b"HELLO"), 1);
    let output = paude("hello", "3").run(["venv", "--", "./say.sh", "x"]);
    assert_eq!(ok(&output), "HELLO x\n");
    // Another command name, or --dry-run, is a launch of its own.
    let output = paude("hello", "3").run(["venv", "--", "sh", "-c", "echo $GREETING"]);
    assert_eq!(ok(&output), "hello\n");
    let output = paude("hello", "3").run(["venv", "--dry-run", "--", "./say.sh"]);
    assert!(ok(&output).contains("GREETING hello"));
    // The kept variable changes: its new value reaches the sandbox.
    let output = paude("bye", "4").run(["venv", "--", "./say.sh", "x"]);
    assert_eq!(ok(&output), "bye x\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let output = paude("bye", "4").run(["venv", "--", "./say.sh", "x"]);
    fails_with(&output, 126, "not executable");
}

/// The store stays read-only inside the sandbox when the workspace holds it, also when
/// `PAUDE_HOME` names it through a link: a sandbox that could write there could write the
/// launch record of the next launch.
#[test]
fn the_store_is_read_only_inside_also_through_a_link() {
    require_bwrap!();
    for who in users() {
        let home = TestDir::new(who);
        let workspace = TestDir::new(who);
        let links = TestDir::new(who);
        std::fs::create_dir(workspace.path().join(".git")).expect("mkdir");
        let link = links.path().join("link");
        std::os::unix::fs::symlink(workspace.path(), &link).expect("symlink");
        let store = link.join(".paude");
        let paude = Paude::new(who, home.path(), workspace.path())
            .env("PAUDE_HOME", store.to_str().expect("utf-8"));
        let inside = workspace.path().join(".paude/cache/written-inside");
        let output = paude.run([
            "venv",
            "-e",
            r#"{ packages: ["dash", "coreutils"] }"#,
            "--",
            "touch",
            inside.to_str().expect("utf-8"),
        ]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{who:?}: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains("Read-only file system"),
            "{who:?}: {}",
            text(&output.stderr)
        );
        assert!(!inside.exists());
    }
}

/// A launch that its record serves (the launch front) runs like one worked out: bwrap gets the
/// lock's pipe and none of the descriptors paude's caller leaked to it, the environment counts
/// as in use while the sandbox runs and not after. (A caller that closed a standard
/// descriptor is left to the full program, and gets its sandbox.)
#[test]
fn a_launch_served_by_its_record_holds_the_lock_and_leaks_nothing() {
    require_bwrap!();
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    for who in users() {
        let home = TestDir::new(who);
        let workspace = TestDir::new(who);
        std::fs::create_dir(workspace.path().join(".git")).expect("mkdir");
        hand_over(who, workspace.path());
        let paude = Paude::new(who, home.path(), workspace.path());
        let script =
            r#"for f in /proc/$$/fd/*; do echo "fd ${f##*/}"; done; echo started; read line || :"#;
        let args = [
            "venv",
            "-e",
            r#"{packages: ["dash"]}"#,
            "--",
            "sh",
            "-c",
            script,
        ];
        let in_use = || {
            let list: Value =
                serde_json::from_str(&ok(&paude.run(["list", "--json"]))).expect("JSON");
            list["venvs"][0]["inUse"] == true
        };
        std::thread::sleep(SETTLE);
        ok(&paude.run(args));
        let paude_home = paude.paude_home();
        assert_eq!(records(&paude_home).len(), 1, "{who:?}");
        // bwrap takes an option twice as well as once: the edit shows which line ran.
        assert_eq!(
            tamper_records(&paude_home, b"--unshare-uts", b"--unshare-ipc"),
            1
        );

        let mut command = paude.command(args);
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        // SAFETY: open and dup2 are async-signal-safe; the leaked descriptor is 7, not
        // close-on-exec.
        unsafe {
            command.pre_exec(|| {
                let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
                libc::dup2(fd, 7);
                Ok(())
            });
        }
        let mut sandbox = command.spawn().expect("spawn");
        let mut stdout = BufReader::new(sandbox.stdout.take().expect("stdout"));
        let mut descriptors = Vec::new();
        loop {
            let mut line = String::new();
            assert_ne!(
                stdout.read_line(&mut line).expect("read"),
                0,
                "{who:?}: no start"
            );
            match line.trim_end() {
                "started" => break,
                fd => descriptors.push(fd.to_string()),
            }
        }
        // 0-2, and 3: the directory sh is listing.
        assert_eq!(descriptors, ["fd 0", "fd 1", "fd 2", "fd 3"], "{who:?}");
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", sandbox.id())).expect("cmdline");
        let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let count = |word: &[u8]| words.iter().filter(|w| **w == word).count();
        assert_eq!(
            (count(b"--unshare-ipc"), count(b"--unshare-uts")),
            (2, 0),
            "{who:?}: not served"
        );
        assert_eq!(count(b"--sync-fd"), 1, "{who:?}");
        assert!(in_use(), "{who:?}: the lock is not held");
        sandbox
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"\n")
            .expect("write");
        assert!(sandbox.wait().expect("wait").success(), "{who:?}");
        // The holder sees the pipe's end and lets the lock go.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while in_use() {
            assert!(
                std::time::Instant::now() < deadline,
                "{who:?}: still in use"
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        // The caller closed stdin: the front leaves the launch to the full program, which
        // opens /dev/null in its place first, and the sandbox runs all the same.
        let mut command = paude.command([
            "venv",
            "-e",
            r#"{packages: ["dash"]}"#,
            "--",
            "sh",
            "-c",
            "echo ran",
        ]);
        // SAFETY: close is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                libc::close(0);
                Ok(())
            });
        }
        let output = command.output().expect("run");
        assert_eq!(ok(&output), "ran\n", "{who:?}");
    }
}

/// How many launch records hold `bytes` (a record a launch worked out again is rewritten,
/// so an edit still there shows the record was served, not replaced).
fn records_holding(paude_home: &Path, bytes: &[u8]) -> usize {
    records(paude_home)
        .iter()
        .filter(|record| {
            let text = std::fs::read(record).expect("read");
            text.windows(bytes.len()).any(|window| window == bytes)
        })
        .count()
}

/// Where a served launch cannot go on as planned, it ends as the full program does: a
/// `--dry-run` line into a closed pipe is error 125 with the system's words, and a bwrap the
/// kernel cannot run (a script without `#!`) is handed to the shell, as the C library's
/// `execvp` does for the full program.
#[test]
fn a_served_launch_that_cannot_go_on_ends_as_the_full_program_does() {
    require_bwrap!();
    use std::os::fd::{FromRawFd, OwnedFd};
    let who = As::Me;
    let home = TestDir::new(who);
    let workspace = TestDir::new(who);
    let tools = TestDir::new(who);
    std::fs::create_dir(workspace.path().join(".git")).expect("mkdir");
    let bwrap = tools.path().join("bwrap");
    let installed = std::env::split_paths(&std::env::var_os("PATH").expect("PATH"))
        .map(|dir| dir.join("bwrap"))
        .find(|path| path.is_file())
        .expect("bwrap on PATH");
    std::fs::copy(&installed, &bwrap).expect("copy bwrap");
    let paude = Paude::new(who, home.path(), workspace.path())
        .env("PAUDE_BWRAP", bwrap.to_str().expect("utf-8"));
    let manifest = r#"{packages: ["dash"]}"#;
    let dry_run = ["venv", "-e", manifest, "--dry-run", "--", "sh", "-c", ":"];
    let launch = ["venv", "-e", manifest, "--", "sh", "-c", ":"];
    std::thread::sleep(SETTLE);
    ok(&paude.run(dry_run));
    ok(&paude.run(launch));
    let paude_home = paude.paude_home();
    assert_eq!(records(&paude_home).len(), 2);
    assert_eq!(
        tamper_records(&paude_home, b"--unshare-uts", b"--unshare-ipc"),
        2
    );
    let served = || records_holding(&paude_home, b"--unshare-uts") == 0;

    // stdout is a pipe nobody reads.
    let mut fds = [0; 2];
    // SAFETY: pipe fills two new descriptors, owned below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both are this test's own.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let output = paude.command(dry_run).stdout(write).output().expect("run");
    fails_with(&output, 125, "writing to stdout: Broken pipe (os error 32)");
    assert!(served());

    // A bwrap that is a script without `#!`, with the same file's kind and permissions.
    let script = format!("echo \"by sh: $1\"; exec {} \"$@\"\n", installed.display());
    std::fs::write(&bwrap, script).expect("write");
    let output = paude.run(launch);
    assert_eq!(ok(&output), "by sh: --unshare-user\n");
    assert!(served());
    // Worked out, the same.
    forget_launches(&paude_home);
    let output = paude.run(launch);
    assert_eq!(ok(&output), "by sh: --unshare-user\n");
}
