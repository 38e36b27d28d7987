//! The escape checklist: what a program run by paude must not be able to do. Each probe runs
//! twice, as the same user: on the host, where it must succeed (so the probe is proven to
//! detect what it looks for), and inside `paude venv`, where it must fail. Run as root and as
//! an unprivileged user.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A workspace with a git repository, a home holding a secret, and a directory outside both.
struct Setup {
    who: As,
    home: TestDir,
    workspace: TestDir,
    elsewhere: TestDir,
}

impl Setup {
    fn new(who: As) -> Setup {
        let setup = Setup {
            who,
            home: TestDir::new(who),
            workspace: TestDir::new(who),
            elsewhere: TestDir::new(who),
        };
        write(&setup.home.path().join("secret.txt"), "s3cret-home\n");
        write(&setup.elsewhere.path().join("secret.txt"), "s3cret-fd\n");
        let git = Command::new("git")
            .args(["init", "-q"])
            .current_dir(setup.workspace.path())
            .status()
            .expect("git init");
        assert!(git.success());
        hand_over(who, setup.home.path());
        hand_over(who, setup.workspace.path());
        hand_over(who, setup.elsewhere.path());
        setup
    }

    /// paude with this HOME, and a store shared by the tests of this user (the store is not
    /// what these tests are about, and one build per user is enough).
    fn paude(&self) -> Paude {
        Paude::new(self.who, self.home.path(), self.workspace.path()).shared_store()
    }

    /// `bash -c SCRIPT` on the host, as the same user, in the workspace, with the same HOME.
    fn host(&self, script: &str) -> Command {
        bash_as(self.who, self.home.path(), self.workspace.path(), script)
    }

    /// `bash -c SCRIPT` inside `paude venv` with `manifest` (the default when `None`).
    fn inside(&self, manifest: Option<&str>, script: &str) -> Command {
        let mut args = vec!["venv"];
        if let Some(manifest) = manifest {
            args.extend(["-e", manifest]);
        }
        args.extend(["--", "bash", "-c", script]);
        self.paude().command(args)
    }
}

/// Runs `argv` with a pseudo-terminal as its stdin, stdout and stderr (through `script`, from
/// util-linux), as `setup`'s user, with its HOME and store.
fn in_terminal(setup: &Setup, argv: &[&str]) -> Output {
    let line: Vec<String> = argv
        .iter()
        .map(|word| format!("'{}'", word.replace('\'', "'\\''")))
        .collect();
    let mut command = command_as(setup.who, "script");
    command
        .args(["-qec", &line.join(" "), "/dev/null"])
        .current_dir(setup.workspace.path())
        .env("HOME", setup.home.path())
        .env("PAUDE_HOME", shared_home(setup.who).join(".paude"))
        .stdin(Stdio::null());
    run(command)
}

fn run(mut command: Command) -> Output {
    command.output().expect("run")
}

/// Runs the probe outside and inside; asserts it works outside and fails inside; returns a
/// table row.
#[track_caller]
fn check(name: &str, outside: Output, inside: Output, escaped: impl Fn(&Output) -> bool) -> String {
    assert!(
        escaped(&outside),
        "{name}: the probe does not work on the host (so it proves nothing)\nstdout: {}\nstderr: {}",
        text(&outside.stdout),
        text(&outside.stderr)
    );
    assert!(
        !escaped(&inside),
        "{name}: escaped the sandbox\nstdout: {}\nstderr: {}",
        text(&inside.stdout),
        text(&inside.stderr)
    );
    format!("{name}: outside succeeded, inside failed")
}

fn says(needle: &'static str) -> impl Fn(&Output) -> bool {
    move |output: &Output| text(&output.stdout).contains(needle)
}

#[test]
fn escape_checklist() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let mut rows = Vec::new();

        // 1. Write outside the workspace.
        let target = setup.elsewhere.path().join("written");
        let script = format!("echo x > {} && echo wrote", target.display());
        let outside = run(setup.host(&script));
        std::fs::remove_file(&target).ok();
        let inside = run(setup.inside(None, &script));
        rows.push(check(
            "write outside the workspace",
            outside,
            inside,
            says("wrote"),
        ));
        assert!(!target.exists());

        // 2. Read a file in the host home.
        let script = "cat \"$HOME/secret.txt\"";
        rows.push(check(
            "read a file in the host home",
            run(setup.host(script)),
            run(setup.inside(None, script)),
            says("s3cret-home"),
        ));

        // 3. See host processes.
        let script = format!("test -d /proc/{} && echo visible", std::process::id());
        rows.push(check(
            "see host processes in /proc",
            run(setup.host(&script)),
            run(setup.inside(None, &script)),
            says("visible"),
        ));

        // 4. Use a descriptor inherited from paude's caller.
        let secret = std::fs::File::open(setup.elsewhere.path().join("secret.txt")).unwrap();
        let with_fd = |mut command: Command| {
            leak_descriptor(&mut command, &secret, 7);
            run(command)
        };
        let script = "cat <&7";
        rows.push(check(
            "use an inherited descriptor",
            with_fd(setup.host(script)),
            with_fd(setup.inside(None, script)),
            says("s3cret-fd"),
        ));

        // 5. Plant a git hook, or change the config git obeys on the host.
        let hook = setup.workspace.path().join(".git/hooks/post-checkout");
        let script = "echo 'echo pwned' > .git/hooks/post-checkout && echo planted";
        let outside = run(setup.host(script));
        std::fs::remove_file(&hook).ok();
        let inside = run(setup.inside(None, script));
        rows.push(check("modify .git/hooks", outside, inside, says("planted")));
        assert!(!hook.exists());
        let config = setup.workspace.path().join(".git/config");
        let before = std::fs::read(&config).unwrap();
        let script = "git config core.hooksPath /tmp && echo changed";
        let outside = run(setup.host(script));
        std::fs::write(&config, &before).unwrap();
        let inside = run(setup.inside(None, script));
        rows.push(check(
            "modify .git/config",
            outside,
            inside,
            says("changed"),
        ));
        assert_eq!(std::fs::read(&config).unwrap(), before);

        // 6. Hold a capability. On the host an unprivileged user has none, so the probe is
        // proven by bwrap without `--cap-drop` as root, where it sees all of them.
        let script = "while read -r k v; do [ \"$k\" = CapEff: ] && [ \"$v\" != 0000000000000000 ] && echo capable; done < /proc/self/status";
        let inside = run(setup.inside(None, script));
        if who == As::Me && is_root() {
            let mut raw = Command::new("bwrap");
            raw.args([
                "--unshare-user",
                "--ro-bind",
                "/",
                "/",
                "bash",
                "-c",
                script,
            ]);
            rows.push(check(
                "hold a capability",
                run(raw),
                inside,
                says("capable"),
            ));
        } else {
            assert!(!says("capable")(&inside), "{}", text(&inside.stdout));
            rows.push("hold a capability: inside failed (no unprivileged probe outside)".into());
        }

        // 7. Reach the network with `network: false`.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || for _ in listener.incoming() {});
        let script = format!("echo hi > /dev/tcp/127.0.0.1/{port} && echo connected");
        let offline = r#"{packages: ["bash", "coreutils"], network: false}"#;
        rows.push(check(
            "reach the network with network: false",
            run(setup.host(&script)),
            run(setup.inside(Some(offline), &script)),
            says("connected"),
        ));
        let interfaces = ok(&run(setup.inside(Some(offline), "cat /proc/net/dev")));
        let names: Vec<&str> = interfaces
            .lines()
            .skip(2)
            .filter_map(|line| line.split(':').next().map(str::trim))
            .collect();
        assert_eq!(names, vec!["lo"], "{interfaces}");

        // 8. Type into the terminal (TIOCSTI), with the terminal kept (an interactive run, so
        // no --new-session): the seccomp filter refuses it; an ordinary ioctl still works.
        let probe = "import fcntl, termios\n\
                     try:\n    fcntl.ioctl(0, termios.TIOCSTI, b'#'); print('injected')\n\
                     except OSError as e: print('refused', e.errno)\n\
                     print('winsize', len(fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(8))))";
        let outside = in_terminal(&setup, &["python3", "-c", probe]);
        let manifest = r#"{packages: ["python3"]}"#;
        let paude = env!("CARGO_BIN_EXE_paude");
        let inside = in_terminal(
            &setup,
            &[paude, "venv", "-e", manifest, "--", "python3", "-c", probe],
        );
        if says("refused 5")(&outside) {
            // dev.tty.legacy_tiocsti=0: the kernel itself refuses (EIO) unprivileged callers.
            rows.push("inject into the terminal: the kernel refuses it outside too".into());
        } else {
            rows.push(check(
                "inject into the terminal (TIOCSTI)",
                outside,
                inside.clone(),
                says("injected"),
            ));
        }
        assert!(says("refused 1")(&inside), "{}", text(&inside.stdout));
        assert!(says("winsize 8")(&inside), "{}", text(&inside.stdout));

        eprintln!("{who:?}:\n  {}", rows.join("\n  "));
    }
}

#[test]
fn identity_and_home() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let home = setup.home.path().display().to_string();
        let output = run(setup.inside(
            None,
            "id -un; id -gn; echo \"$HOME\"; touch \"$HOME/new\" && ls -A \"$HOME\"; stat -c %U \"$HOME/new\"",
        ));
        let out = ok(&output);
        let lines: Vec<&str> = out.lines().collect();
        let (name, group) = if who == As::Nobody || !is_root() {
            (None, None)
        } else {
            (Some("root"), Some("root"))
        };
        if let (Some(name), Some(group)) = (name, group) {
            assert_eq!(&lines[..2], &[name, group], "{out}");
        } else {
            assert!(
                !lines[0].chars().all(|c| c.is_ascii_digit()),
                "a name, not a number: {out}"
            );
        }
        // HOME is the host's path, writable, empty (the host's files are not there), and
        // gone afterwards.
        assert_eq!(lines[2], home, "{out}");
        assert_eq!(lines[3], "new", "{out}");
        assert_eq!(
            lines[4], lines[0],
            "files are owned by the user, by name: {out}"
        );
        assert!(!Path::new(&home).join("new").exists());
    }
}

#[test]
fn git_works_in_a_workspace_owned_by_another_user() {
    require_bwrap!();
    if !is_root() {
        eprintln!("SKIPPED: needs root to give the workspace to another user");
        return;
    }
    // The workspace belongs to nobody; root runs paude in it.
    let setup = Setup::new(As::Nobody);
    let root = Paude::new(As::Me, setup.home.path(), setup.workspace.path()).shared_store();
    let outside = Command::new("git")
        .args(["status", "--short"])
        .current_dir(setup.workspace.path())
        .env("HOME", setup.home.path())
        .env_remove("GIT_CONFIG_COUNT")
        .output()
        .unwrap();
    assert!(
        text(&outside.stderr).contains("dubious ownership"),
        "the host's git should refuse: {}",
        text(&outside.stderr)
    );
    let inside = root.run(["venv", "--", "git", "status", "--short", "--branch"]);
    assert!(ok(&inside).starts_with("## "), "{}", text(&inside.stdout));
    // A submodule, which git checks on its own when it works in it or recurses into it.
    let source = TestDir::new(As::Me);
    let git = |dir: &Path, args: &[&str]| {
        let output = Command::new("git")
            .args(["-c", "safe.directory=*", "-c", "protocol.file.allow=always"])
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .env("HOME", setup.home.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            text(&output.stderr)
        );
    };
    git(source.path(), &["init", "-q"]);
    git(source.path(), &["commit", "-q", "--allow-empty", "-m", "m"]);
    let url = source.path().display().to_string();
    git(
        setup.workspace.path(),
        &["submodule", "add", "-q", &url, "sub"],
    );
    git(setup.workspace.path(), &["commit", "-q", "-m", "sub"]);
    hand_over(As::Nobody, setup.workspace.path());
    let outside = Command::new("git")
        .args([
            "-c",
            &format!("safe.directory={}", setup.workspace.path().display()),
        ])
        .args(["-C", "sub", "status", "--short"])
        .current_dir(setup.workspace.path())
        .env("HOME", setup.home.path())
        .output()
        .unwrap();
    assert!(
        text(&outside.stderr).contains("dubious ownership"),
        "the host's git should refuse the submodule: {}",
        text(&outside.stderr)
    );
    let inside = root.run([
        "venv", "--", "git", "-C", "sub", "status", "--short", "--branch",
    ]);
    assert!(ok(&inside).starts_with("## "), "{}", text(&inside.stderr));
    // The user's own GIT_CONFIG_* entries are kept, and paude's comes after them.
    let inside = root
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "user.name")
        .env("GIT_CONFIG_VALUE_0", "Tester")
        .run([
            "venv",
            "-e",
            r#"{packages: ["git", "bash"], envKeep: ["GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0"]}"#,
            "--",
            "git",
            "config",
            "--get-all",
            "user.name",
        ]);
    assert_eq!(ok(&inside), "Tester\n");
}

#[test]
fn protected_paths_can_be_listed_or_emptied() {
    require_bwrap!();
    let setup = Setup::new(As::Me);
    write(&setup.workspace.path().join("Makefile"), "all:\n");
    write(&setup.workspace.path().join("deep/dir/file"), "x\n");
    let paude = setup.paude();
    let script = "echo x >> Makefile && echo make-ok; echo x > .git/hooks/pre-push && echo hook-ok; \
                  mv deep gone && echo moved";
    let guarded = paude.run([
        "venv",
        "-e",
        r#"{packages: ["bash", "coreutils"], protect: ["Makefile", "deep/dir/file"]}"#,
        "--",
        "bash",
        "-c",
        script,
    ]);
    // The repository is protected whatever `protect` says; a protected path's directories
    // cannot be renamed away.
    assert_eq!(text(&guarded.stdout), "", "{}", text(&guarded.stderr));
    assert!(setup.workspace.path().join("deep/dir/file").exists());
    let open = ok(&paude.run([
        "venv",
        "-e",
        r#"{packages: ["bash", "coreutils"], protect: []}"#,
        "--",
        "bash",
        "-c",
        script,
    ]));
    assert_eq!(open, "make-ok\nmoved\n");
    // A protected path that does not exist is not created on the host.
    ok(&paude.run([
        "venv",
        "-e",
        r#"{packages: ["bash"], protect: ["missing/file"]}"#,
        "--",
        "bash",
        "-c",
        "true",
    ]));
    assert!(!setup.workspace.path().join("missing").exists());
    // A protected path that is a link is refused: the bind would follow it anywhere.
    std::os::unix::fs::symlink(setup.home.path(), setup.workspace.path().join("link"))
        .expect("symlink");
    let output = paude.run([
        "venv",
        "-e",
        r#"{packages: ["bash"], protect: ["link/secret.txt"]}"#,
        "--",
        "true",
    ]);
    fails_with(&output, 125, "protect[0]");
    assert!(text(&output.stderr).contains("is a symbolic link"));
}

#[test]
fn a_persistent_home_is_kept_per_workspace() {
    require_bwrap!();
    let setup = Setup::new(As::Me);
    let paude = setup.paude();
    let manifest = r#"{packages: ["bash", "coreutils"], home: "persist"}"#;
    let run = |script: &str| paude.run(["venv", "-e", manifest, "--", "bash", "-c", script]);
    ok(&run("echo kept > \"$HOME/.history\""));
    assert_eq!(ok(&run("cat \"$HOME/.history\"")), "kept\n");
    // Not the host's home, and not another workspace's.
    assert!(!setup.home.path().join(".history").exists());
    let other = Setup::new(As::Me);
    let out = other.paude().run([
        "venv",
        "-e",
        manifest,
        "--",
        "bash",
        "-c",
        "ls -A \"$HOME\" | wc -l",
    ]);
    assert_eq!(ok(&out), "0\n");
}
