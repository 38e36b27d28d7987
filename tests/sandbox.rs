//! The sandbox, end to end: the real `paude` binary, the real bwrap, the host's real dpkg
//! database. Each behaviour is checked as the current user and, when the tests run as root,
//! as an unprivileged user (nobody), because rootless is the point.

mod common;

use common::{
    As, Paude, TestDir, close_descriptors, command_as, fails_with, hand_over, leak_descriptor, ok,
    shared_home, text, users, venv_entries, write,
};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// A small closure (bash and coreutils and their dependencies) for most tests: fast to build.
const SMALL: &str = r#"{
  packages: ["bash", "coreutils"],
  envKeep: ["KEEP_ME"],
  envSet: { SET_ME: "inside" },
  fsEntries: [
    { type: "dir", path: "/opt/tool", mode: "0750" },
    { type: "file", path: "/opt/tool/config", contents: "answer=42\n", mode: "0640" },
    { type: "symlink", path: "/opt/tool/link", target: "config" },
  ],
}"#;

fn small_workspace(who: As) -> (TestDir, Paude) {
    let workspace = TestDir::new(who);
    write(&workspace.path().join("paude.jsonnet"), SMALL);
    hand_over(who, workspace.path());
    let paude = Paude::new(who, shared_home(who), workspace.path());
    paude.trust();
    (workspace, paude)
}

fn sh(paude: &Paude, script: &str) -> std::process::Output {
    paude.run(["venv", "--", "bash", "-c", script])
}

#[test]
fn root_is_read_only_and_workspace_is_writable() {
    require_bwrap!();
    for who in users() {
        let (workspace, paude) = small_workspace(who);
        let out = ok(&sh(
            &paude,
            "touch /newfile 2>/dev/null && echo root-writable; \
             touch /usr/newfile 2>/dev/null && echo usr-writable; \
             echo hello > written-inside && echo workspace-ok; pwd",
        ));
        assert_eq!(
            out,
            format!("workspace-ok\n{}\n", workspace.path().display()),
            "{who:?}"
        );
        let seen = std::fs::read_to_string(workspace.path().join("written-inside")).unwrap();
        assert_eq!(seen, "hello\n", "{who:?}: the write is seen on the host");
    }
}

#[test]
fn packages_outside_the_closure_are_absent() {
    require_bwrap!();
    // The probe works outside: the host has these files.
    for path in ["/usr/bin/apt", "/usr/bin/git", "/usr/bin/python3"] {
        assert!(
            Path::new(path).exists(),
            "the host must have {path} for this test to mean anything"
        );
    }
    for who in users() {
        let (_workspace, paude) = small_workspace(who);
        let out = ok(&sh(
            &paude,
            "for f in /usr/bin/apt /usr/bin/git /usr/bin/python3 /usr/bin/ls /usr/bin/bash; do test -e $f && echo $f; done",
        ));
        assert_eq!(out, "/usr/bin/ls\n/usr/bin/bash\n", "{who:?}");
    }
}

#[test]
fn environment_is_cleared_kept_and_set() {
    require_bwrap!();
    for who in users() {
        let (_workspace, paude) = small_workspace(who);
        let paude = paude.env("KEEP_ME", "from-host").env("DROP_ME", "leaked");
        let out = ok(&paude.run(["venv", "--", "env"]));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.contains(&"KEEP_ME=from-host"), "{who:?}: {out}");
        assert!(lines.contains(&"SET_ME=inside"), "{who:?}: {out}");
        assert!(!out.contains("DROP_ME"), "{who:?}: {out}");
        assert!(!out.contains("PAUDE_HOME"), "{who:?}: {out}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("PATH=/usr/local/bin:/usr/bin:/bin")),
            "{who:?}: {out}"
        );
    }
}

#[test]
fn fs_entries_exist_with_their_modes() {
    require_bwrap!();
    for who in users() {
        let (_workspace, paude) = small_workspace(who);
        let out = ok(&sh(
            &paude,
            "stat -c '%a %F %n' /opt/tool /opt/tool/config; readlink /opt/tool/link; cat /opt/tool/link",
        ));
        assert_eq!(
            out, "750 directory /opt/tool\n640 regular file /opt/tool/config\nconfig\nanswer=42\n",
            "{who:?}"
        );
    }
}

#[test]
fn exit_status_passes_through() {
    require_bwrap!();
    for who in users() {
        let (workspace, paude) = small_workspace(who);
        write(&workspace.path().join("notes.txt"), "echo not a program\n");
        // A script whose interpreter the environment lacks.
        write(
            &workspace.path().join("run.py"),
            "#!/usr/bin/python3 -u\nprint(1)\n",
        );
        std::fs::set_permissions(
            workspace.path().join("run.py"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        hand_over(who, workspace.path());
        let out = sh(&paude, "exit 7");
        assert_eq!(out.status.code(), Some(7), "{who:?}: {}", text(&out.stderr));
        for (command, code, message) in [
            (
                "no-such-command-here",
                127,
                "command not found in the environment: no-such-command-here",
            ),
            (
                "./notes.txt",
                126,
                "notes.txt is not executable by this user",
            ),
            ("/usr/bin", 126, "/usr/bin is a directory"),
            ("./run.py", 127, "its interpreter /usr/bin/python3"),
        ] {
            fails_with(&paude.run(["venv", "--", command]), code, message);
        }
    }
}

#[test]
fn closed_standard_descriptors_reach_the_sandbox_as_dev_null() {
    require_bwrap!();
    for who in users() {
        let (_workspace, paude) = small_workspace(who);
        // paude's caller closed stdin and stdout: paude reopens them on /dev/null before it
        // opens anything, so no file of its own (the store's lock, a cache entry) gets one of
        // their numbers and reaches the sandboxed command as its stdin or stdout.
        let mut command = paude.command([
            "venv",
            "--",
            "bash",
            "-c",
            "readlink /proc/$$/fd/0 /proc/$$/fd/1 >&2; :",
        ]);
        close_descriptors(&mut command, &[0, 1]);
        let out = command.output().expect("running paude");
        assert!(out.status.success(), "{who:?}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr.ends_with("\n/dev/null\n/dev/null\n") || stderr == "/dev/null\n/dev/null\n",
            "{who:?}: {stderr}"
        );
    }
}
/// bwrap gets the lock's pipe and the standard descriptors, and nothing paude's caller left
/// open: the sandboxed command sees 0-2 alone.
#[test]
fn descriptors_the_caller_leaked_do_not_reach_the_sandbox() {
    require_bwrap!();
    for who in users() {
        let (_workspace, paude) = small_workspace(who);
        let leaked = std::fs::File::open("/dev/zero").expect("open /dev/zero");
        let mut command = paude.command([
            "venv",
            "--",
            "bash",
            "-c",
            "cd /proc/$$/fd && echo *; tr '\\0' x < /proc/$PPID/cmdline",
        ]);
        leak_descriptor(&mut command, &leaked, 7);
        let output = command.output().expect("running paude");
        let out = ok(&output);
        // 0-2, and 3: the directory the shell lists.
        assert!(out.starts_with("0 1 2 3\n"), "{who:?}: {out}");
        // bwrap's pid 1 is the command's parent, holding the pipe it was given.
        assert!(out.contains("x--sync-fdx"), "{who:?}: {out}");
    }
}

/// Where the exec cannot go as planned, paude says so and exits 125: a `--dry-run` line into
/// a closed pipe is an error with the system's words. A bwrap that the kernel cannot run (a
/// script without `#!`) is handed to the shell, as `execvp` does.
#[test]
fn the_exec_s_failures_and_a_bwrap_script() {
    require_bwrap!();
    let who = As::Me;
    let (workspace, paude) = small_workspace(who);
    let (read, unread) = std::io::pipe().expect("pipe");
    drop(read);
    let output = paude
        .command(["venv", "--dry-run", "--", "true"])
        .stdout(unread)
        .output()
        .expect("run");
    fails_with(&output, 125, "writing to stdout: Broken pipe (os error 32)");

    let installed = std::env::split_paths(&std::env::var_os("PATH").expect("PATH"))
        .map(|dir| dir.join("bwrap"))
        .find(|path| path.is_file())
        .expect("bwrap on PATH");
    let bwrap = workspace.path().join("bwrap-script");
    write(
        &bwrap,
        &format!("echo \"by sh: $1\"; exec {} \"$@\"\n", installed.display()),
    );
    std::fs::set_permissions(&bwrap, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let output = paude
        .clone()
        .env("PAUDE_BWRAP", bwrap.to_str().expect("utf-8"))
        .run(["venv", "--", "true"]);
    assert_eq!(ok(&output), "by sh: --unshare-user\n");
}

#[test]
fn host_python_venv_is_shadowed() {
    require_bwrap!();
    for who in users() {
        let (workspace, paude) = small_workspace(who);
        write(
            &workspace.path().join(".venv/pyvenv.cfg"),
            "home = /host/python\n",
        );
        write(&workspace.path().join(".venv/bin/python"), "host\n");
        write(&workspace.path().join("src/main.py"), "print(1)\n");
        hand_over(who, workspace.path());
        let out = ok(&sh(
            &paude,
            "ls -A .venv | wc -l; cat src/main.py; touch .venv/inside",
        ));
        assert_eq!(out, "0\nprint(1)\n", "{who:?}");
        assert!(
            !workspace.path().join(".venv/inside").exists(),
            "{who:?}: the shadow is not the host's venv"
        );
        assert!(
            workspace.path().join(".venv/bin/python").exists(),
            "{who:?}: the host venv is intact"
        );
        // Each launch says so, but with --quiet.
        let said = text(&sh(&paude, "true").stderr);
        assert!(
            said.contains("shadowing the host's venv"),
            "{who:?}: {said}"
        );
        let quiet = paude.run(["venv", "--quiet", "--", "true"]);
        assert!(quiet.status.success());
        assert_eq!(text(&quiet.stderr), "", "{who:?}");
    }
}

/// `USER` and `LOGNAME` are the user's inside, as a login sets them; and a command given
/// without `--` gets a hint with the line that was meant.
#[test]
fn the_user_is_named_inside_and_a_command_without_dashes_gets_a_hint() {
    require_bwrap!();
    for who in users() {
        let (_workspace, paude) = small_workspace(who);
        let out = ok(&sh(&paude, "echo $USER $LOGNAME; id -un"));
        let name = out.lines().last().unwrap_or_default().to_string();
        assert_eq!(out, format!("{name} {name}\n{name}\n"), "{who:?}");
        let out = paude.run(["venv", "git", "status"]);
        fails_with(&out, 125, "unexpected argument 'git'");
        assert!(
            text(&out.stderr)
                .contains("hint: the command to run goes after `--`: paude venv -- git status"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn second_launch_reuses_the_rootfs() {
    require_bwrap!();
    for who in users() {
        let home = TestDir::new(who);
        let workspace = TestDir::new(who);
        write(
            &workspace.path().join("paude.jsonnet"),
            r#"{ packages: ["coreutils"] }"#,
        );
        hand_over(who, workspace.path());
        let paude = Paude::new(who, home.path(), workspace.path());
        paude.trust();
        let first = paude.run(["venv", "--", "true"]);
        ok(&first);
        assert!(
            text(&first.stderr).contains("built environment"),
            "{who:?}: {}",
            text(&first.stderr)
        );
        let entries = venv_entries(home.path());
        let key = entries
            .iter()
            .find(|e| !e.ends_with(".lock"))
            .expect("a venv")
            .clone();
        let rootfs = home.path().join(".paude/venv").join(&key).join("rootfs");
        let before = std::fs::metadata(&rootfs).unwrap().modified().unwrap();
        let second = paude.run(["venv", "--", "true"]);
        ok(&second);
        assert!(
            !text(&second.stderr).contains("building"),
            "{who:?}: {}",
            text(&second.stderr)
        );
        assert_eq!(
            venv_entries(home.path()),
            entries,
            "{who:?}: nothing new in the store"
        );
        assert_eq!(
            std::fs::metadata(&rootfs).unwrap().modified().unwrap(),
            before,
            "{who:?}: rootfs untouched"
        );
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(rootfs.with_file_name("meta.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta["key"], key.as_str());
        assert!(
            meta["closure"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "coreutils")
        );
    }
}

/// Debian packages never declare a dependency on an Essential one, and scripts assume them
/// all: the default manifest (like every manifest) has them, and `essential: false` leaves
/// them out. The probe's tools are on the host, so their absence inside means something.
#[test]
fn the_essential_set_is_in_every_closure() {
    require_bwrap!();
    let script = "echo a | grep a | sed s/a/b/; echo x > /tmp/f; cmp /tmp/f /tmp/f && echo same; \
                  find /usr/bin -name gzip; gzip -c /tmp/f | gzip -dc; tar --version | head -1; \
                  test -n \"$(hostname)\" && echo named";
    for tool in [
        "/usr/bin/grep",
        "/usr/bin/sed",
        "/usr/bin/cmp",
        "/usr/bin/find",
        "/usr/bin/tar",
    ] {
        assert!(Path::new(tool).exists(), "the host must have {tool}");
    }
    for who in users() {
        let workspace = TestDir::new(who);
        let paude = Paude::new(who, shared_home(who), workspace.path());
        let out = ok(&paude.run(["venv", "--", "sh", "-c", script]));
        assert_eq!(
            out,
            "b\nsame\n/usr/bin/gzip\nx\ntar (GNU tar) 1.34\nnamed\n"
                .replace("1.34", tar_version().as_str()),
            "{who:?}"
        );
        let minimal = "{packages: ['bash'], essential: false}";
        let out = ok(&paude.run([
            "venv",
            "-e",
            minimal,
            "--",
            "bash",
            "-c",
            "for t in grep sed cmp find gzip tar; do type $t >/dev/null 2>&1 && echo $t; done; echo done",
        ]));
        assert_eq!(out, "done\n", "{who:?}");
    }
}

/// The version GNU tar says it is on the host (and so inside, where it is the host's).
fn tar_version() -> String {
    let out = std::process::Command::new("tar")
        .arg("--version")
        .output()
        .unwrap();
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    first.trim_start_matches("tar (GNU tar) ").to_string()
}

#[test]
fn default_manifest_runs_git() {
    require_bwrap!();
    for who in users() {
        let workspace = TestDir::new(who);
        let init = std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(workspace.path())
            .status()
            .unwrap();
        assert!(init.success());
        write(&workspace.path().join("README"), "hi\n");
        hand_over(who, workspace.path());
        let paude = Paude::new(who, shared_home(who), workspace.path());
        let out = ok(&paude.run(["venv", "--", "git", "status", "--porcelain"]));
        assert_eq!(out, "?? README\n", "{who:?}");
        // Started in the same relative directory.
        let sub = workspace.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        hand_over(who, workspace.path());
        let out = ok(&paude.cwd(&sub).run(["venv", "--", "pwd"]));
        assert_eq!(out.trim(), sub.display().to_string());
    }
}

#[test]
fn dry_run_prints_the_bwrap_command_and_runs_nothing() {
    require_bwrap!();
    let (workspace, paude) = small_workspace(As::Me);
    let out = ok(&paude.run(["venv", "--dry-run", "--", "touch", "marker"]));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("bwrap --unshare-user"), "{out}");
    // The seccomp filter comes from descriptor 3, redirected from its file in the store.
    assert!(out.contains("-- touch marker 3<"), "{out}");
    assert!(out.trim_end().ends_with("seccomp.bpf"), "{out}");
    assert!(!workspace.path().join("marker").exists());
    // The printed line runs as it is, and does the same thing.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(out.trim())
        .current_dir(workspace.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(workspace.path().join("marker").exists());
}

#[test]
fn mount_targets_that_the_rootfs_lacks_work() {
    require_bwrap!();
    for who in users() {
        let (workspace, paude) = small_workspace(who);
        let data = workspace.path().join("data");
        write(&data.join("file"), "data\n");
        hand_over(who, workspace.path());
        let manifest = format!(
            r#"(import "paude.jsonnet") + {{ mounts: [
                {{ type: "ro-bind", source: "{data}", target: "/usr/local/share/data" }},
                {{ type: "tmpfs", target: "/opt/tool/scratch" }},
                {{ type: "ro-bind", source: "/nonexistent-{n}", optional: true }},
            ] }}"#,
            data = data.display(),
            n = std::process::id()
        );
        let out = ok(&paude.run([
            "venv",
            "-e",
            &manifest,
            "--",
            "bash",
            "-c",
            "cat /usr/local/share/data/file; touch /opt/tool/scratch/x && echo scratch; cat /opt/tool/config; touch /usr/local/x || echo ro",
        ]));
        assert_eq!(out, "data\nscratch\nanswer=42\nro\n", "{who:?}");
    }
}

#[test]
fn bad_inputs_exit_125_and_leave_the_cache_empty() {
    require_bwrap!();
    let cases: &[(&str, &str)] = &[
        (r#"{ pakages: ["bash"] }"#, "did you mean `packages`"),
        (r#"{ packages: [] }"#, "packages"),
        (
            r#"{ packages: ["bash"], mounts: [{ type: "bind", source: "/nonexistent-paude", target: "/x" }] }"#,
            "mounts[0].source",
        ),
        (
            r#"{ packages: ["bash"], mounts: [{ type: "tmpfs", target: "relative" }] }"#,
            "mounts[0].target",
        ),
        (
            r#"{ packages: ["bash"], mounts: ["/usr/../etc"] }"#,
            "mounts[0]",
        ),
        (
            r#"{ packages: ["bash"], fsEntries: [{ type: "symlink", path: "/x" }] }"#,
            "fsEntries[0]",
        ),
        (
            r#"{ packages: ["bash"], fsEntries: [{ type: "file", path: "/x", mode: "0999" }] }"#,
            "fsEntries[0].mode",
        ),
        (
            r#"{ packages: ["no-such-package-paude"] }"#,
            "no-such-package-paude",
        ),
        (r#"{ packages: ["bash"] "#, "<cmdline>"),
        (r#"error "boom""#, "boom"),
        (r#"[1, 2]"#, "object"),
        (r#"{ packages: ["bash"], network: "yes" }"#, "network"),
        (
            r#"{ packages: ["bash"], fsEntries: [{ type: "file", path: "/x", mode: "4755" }] }"#,
            "set-user-ID",
        ),
        (
            r#"{ packages: ["bash"], fsEntries: [{ type: "file", path: "/x" }, { type: "dir", path: "/x/y" }] }"#,
            "fsEntries[1].path",
        ),
        // Found only while building: still nothing left in the cache, and the entry is named.
        (
            r#"{ packages: ["bash"], fsEntries: [{ type: "dir", path: "/usr/bin/bash" }] }"#,
            "fsEntries[0] (/usr/bin/bash)",
        ),
        (
            r#"{ packages: ["bash"], mounts: [{ type: "ro-bind", source: "/proc/self/fd/999/dangling", target: "/x" }] }"#,
            "mounts[0].source",
        ),
        // A file of the closure is replaced only where the entry says so.
        (
            r#"{ packages: ["bash"], fsEntries: [{ type: "file", path: "/usr/bin/bash", contents: "x" }] }"#,
            "add `override: true`",
        ),
        (
            r#"{ packages: ["bash"], fsEntries: [{ type: "dir", path: "/opt/x", override: true }] }"#,
            "fsEntries[0].override",
        ),
        (
            r#"{ packages: ["bash"], venv: ["a", "a/b"] }"#,
            "`a/b` lies inside `a`",
        ),
        // A file's name that is not there is said to be missing, not evaluated as code.
        ("nothere.jsonnet", "-e nothere.jsonnet: no such file"),
        (r#"{ packages: ["bash"], essential: "no" }"#, "essential"),
    ];
    for who in users() {
        let home = TestDir::new(who);
        let workspace = TestDir::new(who);
        let paude = Paude::new(who, home.path(), workspace.path());
        for (manifest, expected) in cases {
            let out = paude.run(["venv", "-e", manifest, "--", "true"]);
            eprintln!("{who:?}: {manifest}");
            fails_with(&out, 125, expected);
            assert!(
                venv_entries(home.path()).is_empty(),
                "{who:?} {manifest}: the cache was written"
            );
        }
    }
}

#[test]
fn unprivileged_store_is_owned_by_the_user() {
    require_bwrap!();
    if !common::is_root() {
        return;
    }
    let (_workspace, paude) = small_workspace(As::Nobody);
    ok(&paude.run(["venv", "--", "true"]));
    let venv = shared_home(As::Nobody).join(".paude/venv");
    for entry in std::fs::read_dir(&venv).unwrap().flatten() {
        use std::os::unix::fs::MetadataExt;
        let meta = entry.metadata().unwrap();
        assert_eq!(meta.uid(), common::NOBODY, "{}", entry.path().display());
        assert_eq!(
            meta.permissions().mode() & 0o002,
            0,
            "not world-writable: {}",
            entry.path().display()
        );
    }
}

#[test]
fn no_command_starts_a_shell_reading_stdin() {
    require_bwrap!();
    let (_workspace, paude) = small_workspace(As::Me);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_paude"))
        .arg("venv")
        .current_dir(&paude.workspace)
        .env("PAUDE_HOME", paude.home.join(".paude"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo shell:$BASH_VERSION | cut -c1-8; exit 3\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "shell:5.\n");
}

#[test]
fn manifest_sources_and_jsonnet_options() {
    require_bwrap!();
    let (workspace, paude) = small_workspace(As::Me);
    write(
        &workspace.path().join("conf/m.jsonnet"),
        r#"function(who="nobody") (import "../paude.jsonnet") + { envSet+: { WHO: who, EXT: std.extVar("ext") } }"#,
    );
    let env_of = |args: &[&str]| {
        let mut all = vec!["venv"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "bash", "-c", "echo $WHO $EXT $SET_ME"]);
        ok(&paude.run(&all))
    };
    // -f FILE, -e with an existing file path, -e code importing a file; --tla-str, --ext-str.
    assert_eq!(
        env_of(&["-f", "conf/m.jsonnet", "-A", "who=alice", "-V", "ext=e1"]),
        "alice e1 inside\n"
    );
    assert_eq!(
        env_of(&[
            "-e",
            "conf/m.jsonnet",
            "--tla-code",
            "who='bob'",
            "--ext-str",
            "ext=e2"
        ]),
        "bob e2 inside\n"
    );
    assert_eq!(
        env_of(&[
            "-e",
            r#"(import "conf/m.jsonnet")(who="carol") + {envSet+: {SET_ME: "over"}}"#,
            "-V",
            "ext=e3"
        ]),
        "carol e3 over\n"
    );
    // -V NAME alone takes the host's variable, as the jsonnet CLI does.
    let paude = Paude::new(As::Me, &paude.home, &paude.workspace).env("ext", "from-env");
    let out = ok(&paude.run([
        "venv",
        "-f",
        "conf/m.jsonnet",
        "-V",
        "ext",
        "--",
        "bash",
        "-c",
        "echo $EXT",
    ]));
    assert_eq!(out, "from-env\n");
    // -J adds a library directory.
    write(
        &workspace.path().join("lib/extra.libsonnet"),
        r#"{ packages: ["coreutils"] }"#,
    );
    let out = ok(&paude.run([
        "venv",
        "-J",
        "lib",
        "-e",
        r#"import "extra.libsonnet""#,
        "--",
        "true",
    ]));
    assert_eq!(out, "");
}

#[test]
fn racing_first_launches_build_once() {
    require_bwrap!();
    let home = TestDir::new(As::Me);
    let workspace = TestDir::new(As::Me);
    write(
        &workspace.path().join("paude.jsonnet"),
        r#"{ packages: ["coreutils", "sed"] }"#,
    );
    Paude::new(As::Me, home.path(), workspace.path()).trust();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let home = home.path().to_path_buf();
            let workspace = workspace.path().to_path_buf();
            std::thread::spawn(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_paude"))
                    .args(["venv", "--", "true"])
                    .current_dir(&workspace)
                    .env("PAUDE_HOME", home.join(".paude"))
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap()
            })
        })
        .collect();
    let outputs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut builds = 0;
    for out in &outputs {
        ok(out);
        builds += text(&out.stderr).matches("built environment").count();
    }
    assert_eq!(builds, 1, "exactly one launch builds");
    let entries: Vec<String> = std::fs::read_dir(home.path().join(".paude/venv"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "one venv and its lock, no leftovers: {entries:?}"
    );
}

#[test]
fn missing_bwrap_is_a_clear_error() {
    require_bwrap!();
    let (_workspace, paude) = small_workspace(As::Me);
    let paude = paude.env("PATH", "/nonexistent");
    let out = paude.run(["venv", "--", "true"]);
    fails_with(&out, 125, "bwrap (bubblewrap) is not installed");
    fails_with(&out, 125, "apt-get install bubblewrap");
}

#[test]
fn every_example_runs() {
    require_bwrap!();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for example in names {
        let workspace = TestDir::new(As::Me);
        let paude = Paude::new(As::Me, shared_home(As::Me), workspace.path());
        let out = ok(&paude.run([
            "venv".as_ref(),
            "-e".as_ref(),
            example.as_os_str(),
            "--".as_ref(),
            "bash".as_ref(),
            "-c".as_ref(),
            "echo ok".as_ref(),
        ] as [&std::ffi::OsStr; 7]));
        assert_eq!(out, "ok\n", "{}", example.display());
    }
}

#[test]
fn python_example_makes_a_working_venv_beside_a_shadowed_host_venv() {
    require_bwrap!();
    let workspace = TestDir::new(As::Me);
    // A host venv whose interpreter would not work inside.
    write(
        &workspace.path().join(".venv/pyvenv.cfg"),
        "home = /opt/host-python/bin\n",
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python-venv.jsonnet");
    let paude = Paude::new(As::Me, shared_home(As::Me), workspace.path());
    let out = ok(&paude.run([
        "venv".as_ref(),
        "-e".as_ref(),
        example.as_os_str(),
        "--".as_ref(),
        "bash".as_ref(),
        "-c".as_ref(),
        "ls -A .venv | wc -l; python3 -m venv .venv && .venv/bin/python -c 'import sys; print(sys.prefix)'".as_ref(),
    ] as [&std::ffi::OsStr; 7]));
    assert_eq!(out, format!("0\n{}/.venv\n", workspace.path().display()));
    // The host's venv is as it was.
    assert_eq!(
        std::fs::read_to_string(workspace.path().join(".venv/pyvenv.cfg")).unwrap(),
        "home = /opt/host-python/bin\n"
    );
    assert!(!workspace.path().join(".venv/bin").exists());
}

#[test]
fn git_works_in_a_linked_worktree_and_runs_shell_aliases() {
    require_bwrap!();
    for who in users() {
        let root = TestDir::new(who);
        let main = root.path().join("main");
        std::fs::create_dir(&main).unwrap();
        let git = |dir: &Path, args: &[&str]| {
            let status = std::process::Command::new("git")
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "init.defaultBranch=main",
                ])
                .args(args)
                .current_dir(dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "git {args:?}");
        };
        git(&main, &["init", "-q"]);
        write(&main.join("file"), "1\n");
        git(&main, &["add", "file"]);
        git(&main, &["commit", "-qm", "one"]);
        git(&main, &["worktree", "add", "-q", "../wt"]);
        hand_over(who, root.path());
        let worktree = root.path().join("wt");
        let paude = Paude::new(who, shared_home(who), &worktree);
        let out = ok(&paude.run([
            "venv",
            "--",
            "bash",
            "-c",
            "git status --porcelain; git log --format=%s; git -c alias.hi='!echo hi from sh' hi",
        ]));
        assert_eq!(out, "one\nhi from sh\n", "{who:?}");
    }
}

/// The seeds' checklist with a real `python3 -m venv` on both sides, and `venvPersist`: the
/// host venv works before; the sandbox sees it empty and says so; a venv made inside works,
/// and with `venvPersist` is still there in the next run; the host venv works after.
#[test]
fn python_venvs_are_shadowed_and_can_be_kept() {
    require_bwrap!();
    for who in users() {
        let workspace = TestDir::new(who);
        hand_over(who, workspace.path());
        let host_python = |script: &str| {
            let mut command = command_as(who, "bash");
            command.args(["-c", script]).current_dir(workspace.path());
            ok(&command.output().expect("bash"))
        };
        host_python("python3 -m venv .venv");
        let host_check = ".venv/bin/python -c 'import sys; print(sys.prefix)'";
        let prefix = format!("{}/.venv\n", workspace.path().display());
        assert_eq!(
            host_python(host_check),
            prefix,
            "the host venv works before"
        );

        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python-venv.jsonnet");
        let manifest = format!("(import '{}') + {{venvPersist: true}}", example.display());
        let paude = Paude::new(who, shared_home(who), workspace.path());
        let run = |script: &str| paude.run(["venv", "-e", &manifest, "--", "bash", "-c", script]);
        let first = run(&format!(
            "ls -A .venv | wc -l; python3 -m venv .venv && {host_check} && touch .venv/made-inside"
        ));
        assert_eq!(ok(&first), format!("0\n{prefix}"), "{who:?}");
        let stderr = text(&first.stderr);
        assert!(
            stderr.contains(&format!(
                "shadowing the host's venv {}/.venv",
                workspace.path().display()
            )),
            "{stderr}"
        );
        let second = ok(&run(&format!("test -e .venv/made-inside && {host_check}")));
        assert_eq!(second, prefix, "{who:?}: the sandbox's venv was kept");
        assert!(!workspace.path().join(".venv/made-inside").exists());
        assert_eq!(host_python(host_check), prefix, "the host venv works after");
    }
}

/// A commit made inside carries the host's git identity for the workspace, as host git
/// resolves it (here through a conditional include), and the next launch follows a change of
/// the host's config (also once the identity was cached); `gitIdentity: false` passes none.
#[test]
fn a_commit_inside_carries_the_hosts_identity() {
    require_bwrap!();
    for who in users() {
        let home = TestDir::new(who);
        let workspace = TestDir::new(who);
        let ws = workspace.path();
        let init = std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(ws)
            .status()
            .unwrap();
        assert!(init.success());
        let config = home.path().join(".gitconfig");
        let with_email = |email: &str| {
            write(
                &config,
                &format!(
                    "[user]\n\tname = Host Person\n\temail = home@example.com\n\
                     [includeIf \"gitdir:{}/\"]\n\tpath = {}/work.inc\n",
                    ws.display(),
                    home.path().display()
                ),
            );
            write(
                &home.path().join("work.inc"),
                &format!("[user]\n\temail = {email}\n"),
            );
            hand_over(who, home.path());
        };
        with_email("work@example.com");
        hand_over(who, ws);
        let paude = Paude::new(who, home.path(), ws).env(
            "PAUDE_HOME",
            shared_home(who).join(".paude").to_str().unwrap(),
        );
        let commit = |message: &str| {
            ok(&paude.run([
                "venv",
                "--",
                "sh",
                "-c",
                &format!(
                    "git commit -q --allow-empty -m {message} && git log -1 --format='%an <%ae> %cn <%ce>'"
                ),
            ]))
        };
        assert_eq!(
            commit("one"),
            "Host Person <work@example.com> Host Person <work@example.com>\n",
            "{who:?}"
        );
        // Once its inputs are old enough to be cached, a launch caches the identity; a change
        // of an included file is a miss all the same.
        std::thread::sleep(std::time::Duration::from_millis(2700));
        commit("two");
        with_email("changed@example.com");
        assert_eq!(
            commit("three"),
            "Host Person <changed@example.com> Host Person <changed@example.com>\n",
            "{who:?}"
        );
        let out = ok(&paude.run([
            "venv",
            "-e",
            "{packages: ['git'], gitIdentity: false}",
            "--",
            "sh",
            "-c",
            "env | grep -c '^GIT_AUTHOR' || true",
        ]));
        assert_eq!(out, "0\n", "{who:?}");
    }
}

/// With no host venv, a venv made inside in one run is used by the next: paude keeps it in
/// its state (the workspace keeps an empty directory for it), so the host never runs what the
/// sandbox wrote, and the next run binds it where it was made.
#[test]
fn a_venv_made_inside_is_used_by_the_next_run() {
    require_bwrap!();
    for who in users() {
        let workspace = TestDir::new(who);
        // A store of its own: the test ends with a cleanup.
        let home = TestDir::new(who);
        hand_over(who, workspace.path());
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python-venv.jsonnet");
        let manifest = example.display().to_string();
        let paude = Paude::new(who, home.path(), workspace.path());
        let run = |script: &str| paude.run(["venv", "-e", &manifest, "--", "bash", "-c", script]);
        let prefix = format!("{}/.venv", workspace.path().display());
        let check = ".venv/bin/python -c 'import sys; print(sys.prefix)'";
        let first = run(&format!(
            "python3 -m venv .venv && {check} && touch .venv/made-inside"
        ));
        assert_eq!(ok(&first), format!("{prefix}\n"), "{who:?}");
        assert!(
            text(&first.stderr).contains("kept the venv"),
            "{who:?}: {}",
            text(&first.stderr)
        );
        // On the host: an empty directory, nothing the host could run.
        let left: Vec<_> = std::fs::read_dir(workspace.path().join(".venv"))
            .expect("read")
            .collect();
        assert!(left.is_empty(), "{who:?}: {left:?}");
        let second = run(&format!("test -e .venv/made-inside && {check}"));
        assert_eq!(ok(&second), format!("{prefix}\n"), "{who:?}");
        assert!(
            text(&second.stderr).contains("using the venv"),
            "{who:?}: {}",
            text(&second.stderr)
        );
        // Unused for the max age, cleanup removes it.
        let state = paude.paude_home().join("state");
        let cleaned = ok(&paude.run(["cleanup", "--max-age-days", "0"]));
        assert!(
            cleaned.contains("the venvs the sandbox made"),
            "{who:?}: {cleaned}"
        );
        let left: Vec<_> = std::fs::read_dir(&state)
            .expect("state")
            .flatten()
            .filter(|entry| entry.path().join("venvs").exists())
            .collect();
        assert!(left.is_empty(), "{who:?}");
    }
}

/// The README's examples, as written: every Jsonnet block it shows is a manifest that runs,
/// and every `paude` line of the block under the examples table runs in a workspace holding
/// the examples (a repository with a commit, for its `git log`).
#[test]
fn the_readme_examples_run_as_written() {
    require_bwrap!();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if let Some(kind) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|line| *line != "```").collect();
            blocks.push((kind.to_owned(), body.join("\n")));
        }
    }
    let manifests: Vec<&String> = blocks
        .iter()
        .filter(|(kind, _)| kind == "jsonnet")
        .map(|(_, body)| body)
        .collect();
    assert!(!manifests.is_empty());
    let workspace = TestDir::new(As::Me);
    let paude = Paude::new(As::Me, shared_home(As::Me), workspace.path());
    for manifest in manifests {
        let out = paude.run(["venv", "-e", manifest, "--", "bash", "-c", "echo ok"]);
        assert_eq!(ok(&out), "ok\n", "{manifest}");
    }
    // The example lines: copies of the examples in a repository of their own.
    let examples = blocks
        .iter()
        .map(|(_, body)| body)
        .find(|body| body.contains("paude venv -e examples/"))
        .expect("the examples block");
    std::fs::create_dir_all(workspace.path().join("examples")).unwrap();
    for entry in std::fs::read_dir(root.join("examples")).unwrap().flatten() {
        std::fs::copy(
            entry.path(),
            workspace.path().join("examples").join(entry.file_name()),
        )
        .unwrap();
    }
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(workspace.path())
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "examples"]);
    git(&["commit", "-q", "-m", "the examples"]);
    let binary = env!("CARGO_BIN_EXE_paude");
    for line in examples.lines().filter(|line| line.starts_with("paude ")) {
        let line = line.replacen("paude", binary, 1);
        let out = Command::new("bash")
            .args(["-c", &line])
            .current_dir(workspace.path())
            .env("PAUDE_HOME", shared_home(As::Me).join(".paude"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{line}\n{stderr}");
        // What each line is there to show.
        let shown = if line.contains("git log") {
            stdout.contains("the examples")
        } else if line.ends_with("-- env") {
            stdout.lines().any(|variable| variable == "A=1")
        } else if line.contains("-m venv") {
            stderr.contains("kept the venv")
        } else {
            panic!("a README example line this test does not know: {line}")
        };
        assert!(shown, "{line}\nstdout: {stdout}\nstderr: {stderr}");
    }
}

/// A program the host runs from outside the packages (a tool in `~/.cargo/bin`, a newer git
/// in /usr/local) is not in the environment: paude says where the host has it and how to
/// bind it, when the command is missing inside and when the environment has another.
#[test]
fn a_host_program_outside_the_packages_is_named() {
    require_bwrap!();
    let (workspace, paude) = small_workspace(As::Me);
    let tools = TestDir::new(As::Me);
    for name in ["mytool", "bash"] {
        write(&tools.path().join(name), "#!/bin/sh\necho host\n");
        std::fs::set_permissions(
            tools.path().join(name),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", tools.path().display());
    let paude = paude.env("PATH", &path);
    let out = paude.run(["venv", "--", "mytool"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "on the host it is {}/mytool",
            tools.path().display()
        )) && stderr.contains("paude.hostLocal.mounts"),
        "{stderr}"
    );
    let out = paude.run(["venv", "--", "bash", "-c", "echo inside"]);
    assert_eq!(ok(&out), "inside\n");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "`bash` is {}/bash on the host, and /usr/bin/bash inside",
            tools.path().display()
        )),
        "{stderr}"
    );
    // Where the two are the same file (merged /usr), nothing is said.
    let out = Paude::new(As::Me, shared_home(As::Me), workspace.path())
        .env("PATH", "/bin:/usr/bin")
        .run(["venv", "--", "bash", "-c", "true"]);
    ok(&out);
    assert!(
        !text(&out.stderr).contains("on the host"),
        "{}",
        text(&out.stderr)
    );
}
