//! Sandbox integrity: nothing done inside can widen the next sandbox, reach the caller's
//! secrets, or plant something that the host runs later. Each route is tried the way a hostile
//! program would try it, as the current user and as nobody: first without paude's defence (on
//! the host, or in a bwrap sandbox set up without it), where the attack must work, so that a
//! pass cannot be vacuous; then through paude, where it must fail.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A git workspace, a home holding a key, and paude with a store shared by this user's tests.
struct Setup {
    who: As,
    home: TestDir,
    workspace: TestDir,
}

impl Setup {
    fn new(who: As) -> Setup {
        let setup = Setup {
            who,
            home: TestDir::new(who),
            workspace: TestDir::new(who),
        };
        write(&setup.home.path().join(".ssh/id_test"), "PRIVATE-KEY\n");
        let git = Command::new("git")
            .args(["init", "-q"])
            .current_dir(setup.workspace.path())
            .status()
            .expect("git init");
        assert!(git.success());
        hand_over(who, setup.home.path());
        hand_over(who, setup.workspace.path());
        setup
    }

    fn paude(&self) -> Paude {
        paude_in(self.who, self.home.path(), self.workspace.path())
    }

    /// [`Setup::new`] with [`repository_with_a_trap`] in it, and the trap's marker.
    fn trapped(who: As) -> (Setup, std::path::PathBuf) {
        let setup = Setup::new(who);
        let marker = setup.home.path().join("pwned");
        repository_with_a_trap(&setup, &marker);
        (setup, marker)
    }
}

/// paude as `who` with `home`, in `workspace`, with the store shared by this user's tests.
fn paude_in(who: As, home: &Path, workspace: &Path) -> Paude {
    Paude::new(who, home, workspace).shared_store()
}

fn says(output: &Output, needle: &str) -> bool {
    text(&output.stdout).contains(needle)
}

/// `sh -c SCRIPT` in a bwrap sandbox with `home` bound read-write: what a sandbox given the
/// home (as its workspace, or through a pointer) can do.
fn with_home_bound(who: As, home: &Path, script: &str) -> Command {
    let home = home.display().to_string();
    raw_bwrap(who, &["--bind", &home, &home], script)
}

/// bwrap as `who`, with the host's root read-only, `args` before `sh -c SCRIPT`.
fn raw_bwrap(who: As, args: &[&str], script: &str) -> Command {
    raw_bwrap_running(who, args, &["sh", "-c", script])
}

/// bwrap as `who`, with the host's root read-only, `args` before the command `argv`.
fn raw_bwrap_running(who: As, args: &[&str], argv: &[&str]) -> Command {
    let mut command = command_as(who, "bwrap");
    command
        .args(["--unshare-user", "--unshare-pid", "--ro-bind", "/", "/"])
        .args(["--proc", "/proc", "--dev", "/dev"])
        .args(args)
        .arg("--")
        .args(argv)
        .stdin(Stdio::null());
    command
}

/// The caller's environment (API keys, tokens) is not readable inside: bwrap's own pid 1
/// inside the sandbox once carried it, whatever `--clearenv` gave the command.
#[test]
fn the_callers_environment_is_not_readable_inside() {
    require_bwrap!();
    let script = "cat /proc/1/environ /proc/$$/environ 2>/dev/null | tr '\\0' '\\n'";
    for who in users() {
        let setup = Setup::new(who);
        // Without the defence: bwrap exec'd with the caller's environment.
        let mut control = raw_bwrap(who, &["--clearenv"], script);
        control.env("CALLER_TOKEN", "t0ken-secret");
        let control = control.output().expect("bwrap");
        assert!(
            says(&control, "t0ken-secret"),
            "{who:?}: {}",
            text(&control.stdout)
        );
        let inside = setup.paude().env("CALLER_TOKEN", "t0ken-secret").run([
            "venv",
            "-e",
            r#"{packages: ["dash", "coreutils"]}"#,
            "--",
            "sh",
            "-c",
            script,
        ]);
        let out = ok(&inside);
        assert!(!out.contains("t0ken-secret"), "{who:?}: {out}");
        // What the manifest passes does arrive.
        assert!(out.contains("HOME="), "{who:?}: {out}");
    }
}

/// A workspace too big to hand a sandbox is refused: the home directory (its keys, the files
/// the shell runs), a directory above it, or `/`; a project inside the home works.
#[test]
fn a_workspace_that_is_the_home_is_refused() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let home = setup.home.path();
        let read_key = "cat \"$HOME/.ssh/id_test\"";
        // Without the defence: a sandbox whose workspace is the home reads the key.
        let control = with_home_bound(who, home, read_key)
            .env("HOME", home)
            .output()
            .expect("bwrap");
        assert!(
            says(&control, "PRIVATE-KEY"),
            "{who:?}: {}",
            text(&control.stderr)
        );
        let from_home = setup.paude().cwd(home);
        let output = from_home.run(["venv", "--", "sh", "-c", read_key]);
        fails_with(&output, 125, "your home directory");
        assert!(text(&output.stderr).contains("--workspace DIR"));
        let output = setup.paude().run([
            "venv",
            "--workspace",
            home.parent().expect("parent").to_str().expect("utf-8"),
            "--",
            "true",
        ]);
        fails_with(&output, 125, "above your home directory");
        let output = setup
            .paude()
            .cwd(Path::new("/"))
            .run(["venv", "--", "true"]);
        fails_with(&output, 125, "the workspace would be /");
        // A project inside the home is a workspace like any other; --workspace names it.
        let project = home.join("project");
        std::fs::create_dir(&project).expect("mkdir");
        hand_over(who, &project);
        let output = setup.paude().run([
            "venv",
            "--workspace",
            project.to_str().expect("utf-8"),
            "--",
            "sh",
            "-c",
            &format!("pwd; {read_key} || echo no-key"),
        ]);
        assert_eq!(
            ok(&output),
            format!("{}\nno-key\n", project.display()),
            "{who:?}"
        );
    }
}

/// A manifest that nests deeper than the evaluator's stack is an error (125), not a crash,
/// and leaves nothing in the cache; a `.git` file of gigabytes is not read whole.
#[test]
fn bad_input_ends_in_an_error_not_a_crash() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let home = TestDir::new(who);
        let paude = Paude::new(who, home.path(), setup.workspace.path());
        for nested in [
            format!("{}1{}", "[".repeat(1_000_000), "]".repeat(1_000_000)),
            format!("{}1", "local a = 1;\n".repeat(1_000_000)),
            format!("{}1", "1+".repeat(1_000_000)),
        ] {
            let manifest =
                format!("{{packages: [\"dash\"], envSet: {{x: std.toString({nested})}}}}");
            let path = setup.workspace.path().join("deep.jsonnet");
            write(&path, &manifest);
            hand_over(who, &path);
            let output = paude.run(["venv", "-f", "deep.jsonnet", "--", "true"]);
            assert_eq!(
                output.status.code(),
                Some(125),
                "{who:?}: {}",
                text(&output.stderr)
            );
            assert!(text(&output.stderr).contains("evaluating the manifest"));
            assert!(!paude.paude_home().exists(), "{who:?}");
        }
        // A `.git` file of 4 GiB (sparse): a line's worth is read, which is no pointer, and
        // the launch is refused at once rather than after reading gigabytes.
        let big = TestDir::new(who);
        let file = std::fs::File::create(big.path().join(".git")).expect("create");
        file.set_len(4 << 30).expect("truncate");
        hand_over(who, big.path());
        let started = std::time::Instant::now();
        let output = Paude::new(who, home.path(), big.path()).run([
            "venv",
            "-e",
            r#"{packages: ["dash"]}"#,
            "--",
            "true",
        ]);
        fails_with(&output, 125, "`gitdir:` cannot be read");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{who:?}"
        );
    }
}

/// Ctrl-C (SIGINT) stops a long evaluation: paude and its evaluator end at once.
#[test]
fn an_interrupt_stops_a_long_evaluation() {
    require_bwrap!();
    let setup = Setup::new(As::Me);
    let manifest = r#"{packages: ["dash"], envSet: {x: std.toString(std.foldl(function(a, b) a + b, std.range(1, 1000000000), 0))}}"#;
    let mut child = setup
        .paude()
        .command(["venv", "-e", manifest, "--dry-run", "--", "true"])
        .spawn()
        .expect("spawn");
    let id = child.id();
    let evaluators = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let parent = format!("PPid:\t{id}\n");
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|line| line.windows(10).any(|w| w == b"__evaluate"))
                    && status.contains(&parent)
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while evaluators().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no evaluator started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let evaluator = evaluators()[0];
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(id as i32).expect("pid"),
        rustix::process::Signal::INT,
    )
    .expect("kill");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while Path::new(&format!("/proc/{evaluator}")).exists()
        && std::fs::read_to_string(format!("/proc/{evaluator}/status"))
            .is_ok_and(|status| !status.contains("State:\tZ"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the evaluator lives on"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Each family of system calls the seccomp filter refuses, called the way a hostile program
/// would (python3's ctypes, the numbers from this build's C library): without the filter (a
/// bwrap sandbox set up without it) each answers otherwise (success, or the host's own
/// refusal), through paude each gets the filter's answer.
#[test]
fn the_seccomp_filter_refuses_each_family() {
    require_bwrap!();
    let (enosys, eperm, eafnosupport) = (libc::ENOSYS, libc::EPERM, libc::EAFNOSUPPORT);
    // (family, the call as Python, the filter's errno)
    let probes: Vec<(&str, String, i32)> = vec![
        (
            "keyring",
            format!("sc({}, 0, -3, 0)", libc::SYS_keyctl),
            enosys,
        ),
        (
            "io_uring",
            format!(
                "sc({}, 1, ctypes.create_string_buffer(120))",
                libc::SYS_io_uring_setup
            ),
            enosys,
        ),
        (
            "perf_event_open",
            format!(
                "sc({}, ctypes.create_string_buffer(128), 0, -1, -1, 0)",
                libc::SYS_perf_event_open
            ),
            enosys,
        ),
        (
            "bpf",
            format!(
                "sc({}, 0, ctypes.create_string_buffer(128), 128)",
                libc::SYS_bpf
            ),
            enosys,
        ),
        (
            "userfaultfd",
            format!("sc({}, 0)", libc::SYS_userfaultfd),
            enosys,
        ),
        (
            "kexec",
            format!("sc({}, 0, 0, 0, 0)", libc::SYS_kexec_load),
            enosys,
        ),
        (
            "new mount API",
            format!("sc({}, b'tmpfs', 0)", libc::SYS_fsopen),
            enosys,
        ),
        ("clone3", format!("sc({}, 0, 0)", libc::SYS_clone3), enosys),
        (
            "modules",
            format!("sc({}, 0, 0, b'')", libc::SYS_init_module),
            enosys,
        ),
        (
            "syslog",
            format!("sc({}, 10, 0, 0)", libc::SYS_syslog),
            enosys,
        ),
        (
            "nested user namespace",
            format!("sc({}, {})", libc::SYS_unshare, libc::CLONE_NEWUSER),
            eperm,
        ),
        (
            "personality",
            format!("sc({}, 0x0040000)", libc::SYS_personality),
            eperm,
        ),
        (
            "vsock",
            format!("sc({}, 40, 1, 0)", libc::SYS_socket),
            eafnosupport,
        ),
    ];
    let mut script = String::from(
        "import ctypes, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         def sc(*args):\n    \
             ctypes.set_errno(0)\n    \
             r = libc.syscall(*args)\n    \
             return 0 if r >= 0 else ctypes.get_errno()\n",
    );
    for (name, call, _) in &probes {
        script.push_str(&format!("print({name:?}, {call}, sep=':')\n"));
    }
    let answers = |output: &Output| -> Vec<(String, i32)> {
        text(&output.stdout)
            .lines()
            .filter_map(|line| {
                let (name, errno) = line.rsplit_once(':')?;
                Some((name.to_string(), errno.parse().ok()?))
            })
            .collect()
    };
    for who in users() {
        let setup = Setup::new(who);
        let control = raw_bwrap_running(who, &[], &["python3", "-c", &script])
            .output()
            .expect("bwrap");
        let control = answers(&control);
        let inside = setup.paude().run([
            "venv",
            "-e",
            r#"{packages: ["python3"]}"#,
            "--",
            "python3",
            "-c",
            &script,
        ]);
        let inside_answers = answers(&inside);
        assert_eq!(
            inside_answers.len(),
            probes.len(),
            "{who:?}: {}",
            text(&inside.stderr)
        );
        assert_eq!(control.len(), probes.len(), "{who:?}: {control:?}");
        for (((name, _, refused), (_, outside)), (_, got)) in
            probes.iter().zip(&control).zip(&inside_answers)
        {
            assert_eq!(got, refused, "{who:?} {name}: not refused by the filter");
            // A kernel built without the call (this one may lack kexec) answers ENOSYS
            // itself: there is nothing to refuse, and the unit tests hold the table's number.
            if *outside == enosys && *refused == enosys {
                eprintln!("{who:?} {name}: this kernel has no such call");
                continue;
            }
            assert_ne!(
                outside, refused,
                "{who:?} {name}: the same answer without the filter"
            );
        }
        eprintln!("{who:?}: without the filter {control:?}; through paude {inside_answers:?}");
    }
}

/// A program inside cannot make a user namespace of its own (where it would hold every
/// capability over new mounts): `unshare -U` works in a sandbox without paude's defences,
/// and fails through paude (the seccomp filter first; bwrap's `--disable-userns` behind it).
#[test]
fn nested_user_namespaces_are_refused() {
    require_bwrap!();
    let script = "unshare -U true && echo nested";
    for who in users() {
        let setup = Setup::new(who);
        let control = raw_bwrap(who, &[], script).output().expect("bwrap");
        assert!(
            says(&control, "nested"),
            "{who:?}: {}",
            text(&control.stderr)
        );
        let inside = setup.paude().run([
            "venv",
            "-e",
            r#"{packages: ["dash", "util-linux"]}"#,
            "--",
            "sh",
            "-c",
            script,
        ]);
        assert!(
            !says(&inside, "nested"),
            "{who:?}: {}",
            text(&inside.stdout)
        );
        assert!(
            text(&inside.stderr).contains("Operation not permitted"),
            "{who:?}: {}",
            text(&inside.stderr)
        );
        let line = ok(&setup.paude().run(["venv", "--dry-run", "--", "true"]));
        assert!(line.contains("--disable-userns"), "{line}");
        assert!(line.contains("--seccomp 3"), "{line}");
    }
}

/// `git` as `who` on the host, in `dir`, with a clean global config; its output.
fn host_git(who: As, home: &Path, dir: &Path, args: &[&str]) -> Output {
    command_as(who, "git")
        .args(["-c", "user.name=Host", "-c", "user.email=host@example.com"])
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .output()
        .expect("git")
}

/// `sh -c SCRIPT` as `who` on the host, in `dir`, with `home`: a sandbox's writes made
/// without paude. It must succeed.
fn sh_on_the_host(who: As, dir: &Path, home: &Path, script: &str) {
    let made = command_as(who, "sh")
        .args(["-c", script])
        .current_dir(dir)
        .env("HOME", home)
        .output()
        .expect("sh");
    assert!(made.status.success(), "{who:?}: {}", text(&made.stderr));
}

/// [`host_git`], which must succeed; its output, trimmed.
fn git_ok(who: As, home: &Path, dir: &Path, args: &[&str]) -> String {
    let output = host_git(who, home, dir, args);
    assert!(
        output.status.success(),
        "{who:?}: git {args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout).trim().to_owned()
}

/// A repository of one empty commit made at `source`, added to the repository `workspace` as
/// the submodule `sub` (its repository in `.git/modules/sub`) and committed.
fn add_a_submodule(who: As, home: &Path, workspace: &Path, source: &Path) {
    let git = |dir: &Path, args: &[&str]| git_ok(who, home, dir, args);
    git(source, &["init", "-q"]);
    git(source, &["commit", "-q", "--allow-empty", "-m", "m"]);
    let url = source.display().to_string();
    let add = [
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        &url,
        "sub",
    ];
    git(workspace, &add);
    git(workspace, &["commit", "-q", "-m", "sub"]);
}

/// A repository with one commit, and a program that marks `marker` when run: what a planted
/// hook or `core.fsmonitor` would run on the host.
fn repository_with_a_trap(setup: &Setup, marker: &Path) {
    let ws = setup.workspace.path();
    write(&ws.join("a"), "a\n");
    write(
        &ws.join("evil.sh"),
        &format!("#!/bin/sh\ntouch {}\n", marker.display()),
    );
    std::fs::set_permissions(
        ws.join("evil.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    hand_over(setup.who, ws);
    for args in [&["add", "a"][..], &["commit", "-q", "-m", "first"]] {
        let output = host_git(setup.who, setup.home.path(), ws, args);
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
}

/// Each way a sandbox could make host git run a program of its choice: tried in a bwrap
/// sandbox with the workspace bound read-write (as paude once did, with only hooks and config
/// read-only where asked), where host git then runs it; then through paude, where it does not.
#[test]
fn host_git_runs_nothing_the_sandbox_chose() {
    require_bwrap!();
    // (route, the attack inside, what the host runs next)
    let routes: &[(&str, &str, &[&str])] = &[
        (
            "a hook where none was",
            "mkdir -p .git/hooks && cp evil.sh .git/hooks/post-commit",
            &["commit", "-q", "--allow-empty", "-m", "x"],
        ),
        (
            "core.fsmonitor in the config",
            "git config core.fsmonitor \"$PWD/evil.sh\"",
            &["status", "--short"],
        ),
        (
            ".git renamed away and made again",
            "mv .git .git-away && cp -r .git-away .git && git config core.fsmonitor \"$PWD/evil.sh\"",
            &["status", "--short"],
        ),
        (
            "a commondir with its own config",
            "mkdir -p elsewhere && cp -r .git/. elsewhere/ && printf '[core]\\n\\tfsmonitor = %s\\n' \"$PWD/evil.sh\" > elsewhere/config && echo \"$PWD/elsewhere\" > .git/commondir",
            &["status", "--short"],
        ),
        (
            "config.worktree switched on",
            "printf '[core]\\n\\tfsmonitor = %s\\n' \"$PWD/evil.sh\" > .git/config.worktree && git config extensions.worktreeConfig true",
            &["status", "--short"],
        ),
    ];
    for who in users() {
        for (route, attack, host_command) in routes {
            // Without paude: the workspace bound read-write, .git/hooks and .git/config
            // read-only when they exist (the old defence).
            let (setup, marker) = Setup::trapped(who);
            let ws = setup.workspace.path().display().to_string();
            let mut args = vec!["--bind", &ws, &ws, "--chdir", &ws];
            let hooks = format!("{ws}/.git/hooks");
            let config = format!("{ws}/.git/config");
            if Path::new(&hooks).exists() {
                args.extend(["--ro-bind", &hooks, &hooks]);
            }
            args.extend(["--ro-bind", &config, &config]);
            let env = [
                "--setenv",
                "HOME",
                "/tmp",
                "--setenv",
                "GIT_CONFIG_NOSYSTEM",
                "1",
            ];
            args.extend(env);
            raw_bwrap(who, &args, attack).output().expect("bwrap");
            host_git(who, setup.home.path(), setup.workspace.path(), host_command);
            let worked = marker.exists();
            // Through paude.
            let (setup, marker) = Setup::trapped(who);
            let inside = setup.paude().run(["venv", "--", "sh", "-c", attack]);
            let after = host_git(who, setup.home.path(), setup.workspace.path(), host_command);
            assert!(
                !marker.exists(),
                "{who:?} {route}: host git ran the sandbox's program"
            );
            assert!(
                after.status.success(),
                "{who:?} {route}: host git broken: {}\nthe sandbox said: {}",
                text(&after.stderr),
                text(&inside.stderr)
            );
            eprintln!(
                "{who:?} {route}: {} without paude, refused through paude",
                if worked { "ran" } else { "did not run" }
            );
            // Where the old defence held already, the route must still be one that works
            // against a sandbox with no defence at all.
            if !worked {
                let (setup, marker) = Setup::trapped(who);
                let ws = setup.workspace.path().display().to_string();
                let mut args = vec!["--bind", &ws, &ws, "--chdir", &ws];
                args.extend(env);
                raw_bwrap(who, &args, attack).output().expect("bwrap");
                host_git(who, setup.home.path(), setup.workspace.path(), host_command);
                assert!(
                    marker.exists(),
                    "{who:?} {route}: the attack proves nothing"
                );
            }
        }
    }
}

/// The reflogs: host git appends to `.git/logs/HEAD` by following a link, so a sandbox that
/// links it to `~/.bashrc` and checks out a branch whose name is a command has host git's
/// next checkout write that command into the file the user's shell runs. Inside paude the
/// reflogs are a private tree: the link stays in it, and the host's file is untouched.
#[test]
fn a_reflog_link_writes_nothing_outside() {
    require_bwrap!();
    for who in users() {
        let attack = "git branch 'x;touch${IFS}'\"$HOME\"'/pwned;#' && \
                      git checkout -q 'x;touch${IFS}'\"$HOME\"'/pwned;#' && \
                      ln -sf \"$HOME/.bashrc\" .git/logs/HEAD";
        let run = |setup: &Setup| {
            let home = setup.home.path();
            let branch = host_git(
                who,
                home,
                setup.workspace.path(),
                &["symbolic-ref", "--short", "HEAD"],
            );
            let branch = text(&branch.stdout).trim().to_string();
            let back = host_git(
                who,
                home,
                setup.workspace.path(),
                &["checkout", "-q", &branch],
            );
            let sourced = command_as(who, "sh")
                .arg(home.join(".bashrc"))
                .env("HOME", home)
                .output()
                .expect("sh");
            (back, sourced)
        };
        // Without paude: the workspace bound read-write.
        let (setup, marker) = Setup::trapped(who);
        write(&setup.home.path().join(".bashrc"), "# the user's\n");
        hand_over(who, setup.home.path());
        let ws = setup.workspace.path().display().to_string();
        let home = setup.home.path().display().to_string();
        raw_bwrap(
            who,
            &[
                "--bind", &ws, &ws, "--chdir", &ws, "--setenv", "HOME", &home,
            ],
            attack,
        )
        .output()
        .expect("bwrap");
        run(&setup);
        assert!(marker.exists(), "{who:?}: the attack proves nothing");
        // Through paude.
        let (setup, marker) = Setup::trapped(who);
        write(&setup.home.path().join(".bashrc"), "# the user's\n");
        hand_over(who, setup.home.path());
        let inside = setup.paude().run(["venv", "--", "sh", "-c", attack]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        assert!(
            text(&inside.stderr).contains("not a regular file"),
            "{who:?}: {}",
            text(&inside.stderr)
        );
        let (back, _) = run(&setup);
        assert!(back.status.success(), "{who:?}: {}", text(&back.stderr));
        assert_eq!(
            std::fs::read_to_string(setup.home.path().join(".bashrc")).expect("read"),
            "# the user's\n"
        );
        assert!(!marker.exists(), "{who:?}");
        // The reflog kept what git did inside: the checkout of the sandbox's branch.
        let reflog = host_git(
            who,
            setup.home.path(),
            setup.workspace.path(),
            &["reflog", "-n", "3"],
        );
        assert!(
            text(&reflog.stdout).contains("checkout: moving from"),
            "{who:?}"
        );
    }
}

/// A git index with one entry at `path` for the blob `blob` (hex), as git writes version 2,
/// with its checksum: what a sandbox can write into its copy of `.git/index` byte by byte.
fn crafted_index(path: &str, blob: &str) -> Vec<u8> {
    let mut index = b"DIRC".to_vec();
    index.extend(2u32.to_be_bytes());
    index.extend(1u32.to_be_bytes());
    let start = index.len();
    index.extend([0u8; 24]); // ctime, mtime, dev, ino
    index.extend(0o100644u32.to_be_bytes());
    index.extend([0u8; 12]); // uid, gid, size
    for pair in blob.as_bytes().chunks(2) {
        let hex = std::str::from_utf8(pair).expect("hex");
        index.push(u8::from_str_radix(hex, 16).expect("hex"));
    }
    index.extend((path.len() as u16).to_be_bytes());
    index.extend(path.as_bytes());
    index.push(0);
    while !(index.len() - start).is_multiple_of(8) {
        index.push(0);
    }
    with_checksum(index)
}

/// `body` (an index without its checksum) with its SHA-1 appended, as git writes it.
fn with_checksum(mut body: Vec<u8>) -> Vec<u8> {
    let mut sha1sum = Command::new("sha1sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha1sum");
    use std::io::Write;
    sha1sum
        .stdin
        .take()
        .expect("stdin")
        .write_all(&body)
        .expect("write");
    let digest = text(&sha1sum.wait_with_output().expect("sha1sum").stdout);
    for pair in digest.as_bytes()[..40].chunks(2) {
        body.push(u8::from_str_radix(std::str::from_utf8(pair).expect("hex"), 16).expect("hex"));
    }
    body
}

/// The bytes of the object name `hex`.
fn object_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
        .collect()
}

/// The index comes back from the sandbox, and host git does not check again the paths of its
/// entries: one at `../<file>` has the user's next `git checkout -- .` write outside the
/// worktree (an entry in `.git/hooks/` would plant a hook). Such an index stays behind.
#[test]
fn an_index_with_paths_git_would_not_make_stays_behind() {
    require_bwrap!();
    for who in users() {
        let (setup, _) = Setup::trapped(who);
        let (home, ws) = (setup.home.path(), setup.workspace.path());
        let name = format!(
            "{}-planted",
            ws.file_name().expect("name").to_string_lossy()
        );
        let outside = ws.parent().expect("parent").join(&name);
        write(&ws.join("payload"), "planted by the sandbox\n");
        hand_over(who, ws);
        let blob = host_git(who, home, ws, &["hash-object", "-w", "payload"]);
        let blob = text(&blob.stdout).trim().to_string();
        let index = crafted_index(&format!("../{name}"), &blob);
        std::fs::write(ws.join("crafted-index"), &index).expect("write");
        hand_over(who, ws);
        // Without paude's check: the index in place, host git writes outside the worktree.
        let saved = std::fs::read(ws.join(".git/index")).expect("read");
        std::fs::write(ws.join(".git/index"), &index).expect("write");
        host_git(who, home, ws, &["checkout", "--", "."]);
        assert!(outside.exists(), "{who:?}: the route proves nothing");
        std::fs::remove_file(&outside).expect("rm");
        std::fs::write(ws.join(".git/index"), &saved).expect("write");
        hand_over(who, ws);
        // Through paude.
        let inside = setup
            .paude()
            .run(["venv", "--", "sh", "-c", "cp crafted-index .git/index"]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        assert!(
            text(&inside.stderr).contains("index was not brought back"),
            "{who:?}: {}",
            text(&inside.stderr)
        );
        assert_eq!(std::fs::read(ws.join(".git/index")).expect("read"), saved);
        host_git(who, home, ws, &["checkout", "--", "."]);
        assert!(!outside.exists(), "{who:?}");
    }
}

/// An index can say more than its entries do. Its cache tree (`TREE`) names the tree of each
/// directory, which the user's next `git commit` takes instead of writing one from the
/// entries: a root tree of the sandbox's making is committed, whatever `git status` showed.
/// Its stat data can copy a changed file's (with the modification time set long past), and
/// `git status` then takes the file for unchanged. Both work with the index in place; brought
/// back through paude, the index is written afresh and neither does.
#[test]
fn an_index_that_says_more_than_its_entries_is_written_afresh() {
    require_bwrap!();
    for who in users() {
        let (setup, marker) = Setup::trapped(who);
        let (home, ws) = (setup.home.path(), setup.workspace.path());
        let git = |args: &[&str]| git_ok(who, home, ws, args);
        let index_path = ws.join(".git/index");
        let read_index = || std::fs::read(&index_path).expect("index");
        // A tree with evil.sh in it, then an index of a and b whose root tree is that one.
        git(&["add", "evil.sh"]);
        let evil = git(&["write-tree"]);
        git(&["rm", "-q", "--cached", "evil.sh"]);
        write(&ws.join("b"), "b\n");
        hand_over(who, ws);
        git(&["add", "b"]);
        git(&["write-tree"]);
        let saved = read_index();
        let tree = saved
            .windows(4)
            .rposition(|w| w == b"TREE")
            .expect("a cache tree");
        let root = tree
            + 8
            + 1
            + saved[tree + 9..]
                .iter()
                .position(|&b| b == b'\n')
                .expect("line")
            + 1;
        let mut crafted = saved[..saved.len() - 20].to_vec();
        crafted[root..root + 20].copy_from_slice(&object_bytes(&evil));
        let crafted = with_checksum(crafted);
        std::fs::write(ws.join("crafted-tree"), &crafted).expect("write");
        // Without paude: the next commit holds evil.sh.
        std::fs::write(&index_path, &crafted).expect("write");
        git(&["commit", "-q", "-m", "b"]);
        let committed = git(&["ls-tree", "--name-only", "HEAD"]);
        assert!(
            committed.contains("evil.sh"),
            "{who:?}: the route proves nothing"
        );
        git(&["reset", "-q", "--soft", "HEAD~1"]);
        std::fs::write(&index_path, &saved).expect("write");
        hand_over(who, ws);
        // Through paude.
        let inside = setup
            .paude()
            .run(["venv", "--", "sh", "-c", "cp crafted-tree .git/index"]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        assert!(
            !text(&inside.stderr).contains("brought back"),
            "{who:?}: {}",
            text(&inside.stderr)
        );
        git(&["commit", "-q", "-m", "b"]);
        assert_eq!(git(&["ls-tree", "--name-only", "HEAD"]), "a\nb", "{who:?}");

        // A file changed to the same size, its time set long past, its stat data copied.
        let saved = read_index();
        write(&ws.join("a"), "x\n");
        let file = std::fs::File::options()
            .write(true)
            .open(ws.join("a"))
            .expect("a");
        file.set_modified(std::time::UNIX_EPOCH).expect("touch");
        hand_over(who, ws);
        let meta = std::fs::metadata(ws.join("a")).expect("stat");
        use std::os::unix::fs::MetadataExt;
        let mut crafted = saved[..saved.len() - 20].to_vec();
        // The first entry is a's, right after the 12-byte header.
        assert_eq!(&crafted[12 + 62..12 + 64], b"a\0");
        let fields = [
            meta.ctime(),
            meta.ctime_nsec(),
            0,
            0,
            meta.dev() as i64,
            meta.ino() as i64,
        ];
        for (number, value) in fields.into_iter().enumerate() {
            let at = 12 + 4 * number;
            crafted[at..at + 4].copy_from_slice(&(value as u32).to_be_bytes());
        }
        let crafted = with_checksum(crafted);
        std::fs::write(ws.join("crafted-stat"), &crafted).expect("write");
        // Without paude: git status does not see the change.
        std::fs::write(&index_path, &crafted).expect("write");
        hand_over(who, ws);
        let status = git(&["status", "--short", "--untracked-files=no"]);
        assert_eq!(status, "", "{who:?}: the route proves nothing");
        std::fs::write(&index_path, &saved).expect("write");
        hand_over(who, ws);
        // Through paude.
        let inside = setup
            .paude()
            .run(["venv", "--", "sh", "-c", "cp crafted-stat .git/index"]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        let status = git(&["status", "--short", "--untracked-files=no"]);
        assert_eq!(status, "M a", "{who:?}");
        assert!(!marker.exists());
    }
}

/// What the sandbox leaves in the repository that host git obeys without running anything
/// named in it: a submodule entry in the index, whose repository (made by the sandbox, with a
/// `core.fsmonitor`) the host's `git status` recurses into; a replace ref, which has host git
/// show another commit in place of HEAD and hides a staged change from `git status`; a loose
/// ref linking to `refs/heads/../../../<name>`, through which the host's next commit writes a
/// file outside the repository. Each works when the sandbox's writes are made on the host;
/// through paude, none does.
#[test]
fn what_host_git_obeys_in_refs_and_submodules_does_not_come_back() {
    require_bwrap!();
    for who in users() {
        let marker_of = |setup: &Setup| setup.home.path().join("pwned");
        let outside_of = |setup: &Setup| {
            let ws = setup.workspace.path();
            let name = format!(
                "{}-written",
                ws.file_name().expect("name").to_string_lossy()
            );
            ws.parent().expect("parent").join(name)
        };
        let attacks = |setup: &Setup| {
            let outside = outside_of(setup);
            let name = outside
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            format!(
                "set -e; export GIT_AUTHOR_NAME=In GIT_AUTHOR_EMAIL=in@x GIT_COMMITTER_NAME=In \
                 GIT_COMMITTER_EMAIL=in@x; \
                 git init -q sub; git -C sub commit -q --allow-empty -m s; \
                 git -C sub config core.fsmonitor 'touch {marker}; false'; git add sub; \
                 echo evil >> a; git add a; T=$(git write-tree); \
                 N=$(git commit-tree -m first $T); \
                 git replace HEAD $N; \
                 printf 'ref: refs/heads/../../../../{name}\\n' > .git/refs/heads/topic",
                marker = marker_of(setup).display(),
            )
        };
        // What host git does next: a status (which recurses into submodules and obeys replace
        // refs), and a commit on the branch the loose ref is.
        let host_next = |setup: &Setup| {
            let (home, ws) = (setup.home.path(), setup.workspace.path());
            let status = host_git(
                who,
                home,
                ws,
                &["status", "--porcelain", "--untracked-files=no"],
            );
            host_git(who, home, ws, &["symbolic-ref", "HEAD", "refs/heads/topic"]);
            host_git(
                who,
                home,
                ws,
                &["commit", "-q", "--allow-empty", "-m", "mine"],
            );
            text(&status.stdout)
        };

        // Without paude: the writes made on the host.
        let control = Setup::new(who);
        repository_with_a_trap(&control, &marker_of(&control));
        let script = attacks(&control);
        sh_on_the_host(who, control.workspace.path(), control.home.path(), &script);
        let status = host_next(&control);
        assert!(
            marker_of(&control).exists(),
            "{who:?}: the submodule route proves nothing"
        );
        assert!(
            !status.contains(" a"),
            "{who:?}: the replace route proves nothing: {status}"
        );
        assert!(
            outside_of(&control).exists(),
            "{who:?}: the ref route proves nothing"
        );
        std::fs::remove_file(outside_of(&control)).expect("rm");

        // Through paude.
        let setup = Setup::new(who);
        repository_with_a_trap(&setup, &marker_of(&setup));
        let inside = setup
            .paude()
            .run(["venv", "--", "sh", "-c", &attacks(&setup)]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        let said = text(&inside.stderr);
        assert!(said.contains("submodule \"sub\""), "{who:?}: {said}");
        assert!(said.contains("is a replace ref"), "{who:?}: {said}");
        assert!(said.contains("refs/heads/topic"), "{who:?}: {said}");
        assert!(
            said.contains("changed the git repository"),
            "{who:?}: {said}"
        );
        let status = host_next(&setup);
        assert!(!marker_of(&setup).exists(), "{who:?}");
        assert!(status.contains("M a"), "{who:?}: {status}");
        assert!(!outside_of(&setup).exists(), "{who:?}");
    }
}

/// A submodule checked out in the workspace has a `.git` file naming its repository, and host
/// `git status` recurses into it and obeys the repository that file names: rewritten to name
/// one the sandbox made (with a `core.fsmonitor`), the user's next `git status` runs that
/// program. The file is read-only inside, and its directory cannot be renamed away.
#[test]
fn a_submodules_git_file_cannot_be_rewritten() {
    require_bwrap!();
    for who in users() {
        let attack = |marker: &Path| {
            format!(
                "set -e; export GIT_AUTHOR_NAME=In GIT_AUTHOR_EMAIL=in@x GIT_COMMITTER_NAME=In \
                 GIT_COMMITTER_EMAIL=in@x; git init -q evil; \
                 printf 'gitdir: ../evil/.git\\n' > sub/.git; echo rewrote; \
                 echo x > sub/f; git -C sub add -A; git -C sub commit -q -m e; \
                 git -C evil config core.fsmonitor 'touch {}; false'",
                marker.display()
            )
        };
        let with_submodule = || {
            let (setup, marker) = Setup::trapped(who);
            let (home, ws) = (setup.home.path(), setup.workspace.path());
            let source = setup.home.path().join("source");
            std::fs::create_dir(&source).expect("mkdir");
            hand_over(who, home);
            add_a_submodule(who, home, ws, &source);
            (setup, marker)
        };

        // Without paude: the rewrite made on the host, and host git status runs the program.
        let (control, marker) = with_submodule();
        sh_on_the_host(
            who,
            control.workspace.path(),
            control.home.path(),
            &attack(&marker),
        );
        host_git(
            who,
            control.home.path(),
            control.workspace.path(),
            &["status"],
        );
        assert!(marker.exists(), "{who:?}: the route proves nothing");

        // Through paude: neither the rewrite nor a rename of the directory goes through.
        let (setup, marker) = with_submodule();
        let script = format!("{}; true", attack(&marker).replacen("set -e; ", "", 1))
            + "; mv sub sub-away 2>/dev/null && echo moved; true";
        let inside = setup.paude().run(["venv", "--", "sh", "-c", &script]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        let out = text(&inside.stdout);
        assert!(!out.contains("moved"), "{who:?}: {out}");
        host_git(who, setup.home.path(), setup.workspace.path(), &["status"]);
        assert!(!marker.exists(), "{who:?}");
        let pointer =
            std::fs::read_to_string(setup.workspace.path().join("sub/.git")).expect("sub/.git");
        assert!(pointer.contains("modules/sub"), "{who:?}: {pointer}");
    }
}

/// `.git` files host git follows without the sandbox having to make a repository look like a
/// submodule: a linked worktree's own `.git` (rewritten to name a repository the sandbox made
/// in the shared `objects/`, with a `core.fsmonitor`), and the `.git` of a submodule that is
/// not checked out (a plain clone, or `deinit`), made inside and hidden from a listing with
/// `chmod 0111`. Made on the host, each has the next `git status` run the program; through
/// paude, the first is read-only and the second is moved aside when the sandbox ends.
#[test]
fn git_files_host_git_follows_are_not_the_sandboxs() {
    require_bwrap!();
    for who in users() {
        let own = |marker: &Path| {
            format!(
                "set -e; C=$(git rev-parse --git-common-dir); git init -q --bare $C/objects/zz; \
                 printf \"gitdir: $(cd $C/objects/zz && pwd)\\n\" > .git; \
                 git config core.bare false; git config status.showUntrackedFiles no; \
                 git config core.fsmonitor 'touch {}; false'",
                marker.display()
            )
        };
        let unchecked = |marker: &Path| {
            format!(
                "set -e; git init -q --bare .git/objects/zz; \
                 printf \"gitdir: $(pwd)/.git/objects/zz\\n\" > sub/.git; \
                 git -C sub config core.bare false; \
                 git -C sub config status.showUntrackedFiles no; \
                 git -C sub config core.fsmonitor 'touch {}; false'; chmod 0111 sub",
                marker.display()
            )
        };
        // A linked worktree of the workspace's repository, with its own `.git` file.
        let worktree_of = |setup: &Setup, name: &str| {
            let dir = setup.home.path().join(name);
            let dir_text = dir.display().to_string();
            git_ok(
                who,
                setup.home.path(),
                setup.workspace.path(),
                &["worktree", "add", "-q", &dir_text],
            );
            dir
        };
        // A submodule, then `deinit`: its gitlink in the index, and no `.git` in `sub/`.
        let deinit = |setup: &Setup| {
            let (home, ws) = (setup.home.path(), setup.workspace.path());
            let source = home.join("source");
            std::fs::create_dir(&source).expect("mkdir");
            hand_over(who, home);
            add_a_submodule(who, home, ws, &source);
            git_ok(who, home, ws, &["submodule", "deinit", "-q", "-f", "sub"]);
            assert!(!ws.join("sub/.git").exists());
        };

        // Without paude.
        let (control, marker) = Setup::trapped(who);
        let home = control.home.path();
        let worktree = worktree_of(&control, "wt");
        sh_on_the_host(who, &worktree, home, &own(&marker));
        host_git(who, home, &worktree, &["status"]);
        assert!(
            marker.exists(),
            "{who:?}: the worktree route proves nothing"
        );
        std::fs::remove_file(&marker).expect("rm");
        deinit(&control);
        sh_on_the_host(who, control.workspace.path(), home, &unchecked(&marker));
        host_git(who, home, control.workspace.path(), &["status"]);
        assert!(
            marker.exists(),
            "{who:?}: the submodule route proves nothing"
        );

        // Through paude.
        let (setup, marker) = Setup::trapped(who);
        let home = setup.home.path();
        let worktree = worktree_of(&setup, "wt");
        let pointer = std::fs::read_to_string(worktree.join(".git")).expect("read");
        let inside = paude_in(who, home, &worktree).run(["venv", "--", "sh", "-c", &own(&marker)]);
        assert!(
            !inside.status.success(),
            "{who:?}: {}",
            text(&inside.stdout)
        );
        assert_eq!(
            std::fs::read_to_string(worktree.join(".git")).expect("read"),
            pointer
        );
        host_git(who, home, &worktree, &["status"]);
        assert!(!marker.exists(), "{who:?}");
        deinit(&setup);
        let inside = setup
            .paude()
            .run(["venv", "--", "sh", "-c", &unchecked(&marker)]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        assert!(
            text(&inside.stderr).contains("sub/.git to .git.paude-"),
            "{who:?}: {}",
            text(&inside.stderr)
        );
        host_git(who, home, setup.workspace.path(), &["status"]);
        assert!(!marker.exists(), "{who:?}");
    }
}

/// A replace ref hides a staged change from `git status`. The holder removes the sandbox's,
/// also where the sandbox took the permissions from `refs/replace/` (the removal once failed
/// there, and said nothing), and also one renamed into `refs/replace/` in a later launch
/// from where an earlier one parked it (a rename keeps a file's change time).
#[test]
fn replace_refs_hidden_by_permissions_or_renames_are_removed() {
    require_bwrap!();
    let stage = "set -e; export GIT_AUTHOR_NAME=In GIT_AUTHOR_EMAIL=in@x GIT_COMMITTER_NAME=In \
                 GIT_COMMITTER_EMAIL=in@x; echo evil >> a; git add a; \
                 N=$(git commit-tree -m first $(git write-tree));";
    let routes: [(&str, Vec<String>); 2] = [
        (
            "permissions",
            vec![format!(
                "{stage} git replace HEAD $N; chmod 0555 .git/refs/replace"
            )],
        ),
        (
            "a rename in the next launch",
            vec![
                format!("{stage} git update-ref refs/q/$(git rev-parse HEAD) $N"),
                "mv .git/refs/q .git/refs/replace".to_string(),
            ],
        ),
    ];
    for who in users() {
        for (route, launches) in &routes {
            // Without paude: the host's status shows nothing of the staged change.
            let (control, _) = Setup::trapped(who);
            for script in launches {
                sh_on_the_host(who, control.workspace.path(), control.home.path(), script);
            }
            let status = git_ok(
                who,
                control.home.path(),
                control.workspace.path(),
                &["status", "--porcelain", "--untracked-files=no"],
            );
            assert_eq!(status, "", "{who:?} {route}: the route proves nothing");
            // Through paude: it shows.
            let (setup, _) = Setup::trapped(who);
            for script in launches {
                let inside = setup.paude().run(["venv", "--", "sh", "-c", script]);
                assert!(
                    inside.status.success(),
                    "{who:?} {route}: {}",
                    text(&inside.stderr)
                );
            }
            let status = git_ok(
                who,
                setup.home.path(),
                setup.workspace.path(),
                &["status", "--porcelain", "--untracked-files=no"],
            );
            assert!(status.contains("a"), "{who:?} {route}: {status}");
        }
    }
}

/// The repository's shared data directories keep no link the sandbox made: a directory of
/// refs linked elsewhere would have host git write there. The holder removes it when the
/// sandbox ends, and says so.
#[test]
fn links_in_shared_repository_data_are_removed() {
    require_bwrap!();
    for who in users() {
        let (setup, _) = Setup::trapped(who);
        let elsewhere = setup.home.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        hand_over(who, setup.home.path());
        // Without paude's sweep: host git writes a ref into the directory the link names.
        let ws = setup.workspace.path();
        std::os::unix::fs::symlink(&elsewhere, ws.join(".git/refs/heads/sub")).expect("link");
        let branch = host_git(who, setup.home.path(), ws, &["branch", "sub/x"]);
        assert!(branch.status.success(), "{}", text(&branch.stderr));
        assert!(
            elsewhere.join("x").exists(),
            "{who:?}: the route proves nothing"
        );
        std::fs::remove_file(elsewhere.join("x")).expect("rm");
        std::fs::remove_file(ws.join(".git/refs/heads/sub")).expect("rm");
        // Through paude.
        let inside = setup.paude().run([
            "venv",
            "--",
            "sh",
            "-c",
            &format!("ln -s '{}' .git/refs/heads/sub", elsewhere.display()),
        ]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        assert!(
            text(&inside.stderr).contains("refs/heads/sub"),
            "{who:?}: {}",
            text(&inside.stderr)
        );
        assert!(!ws.join(".git/refs/heads/sub").exists(), "{who:?}");
        let branch = host_git(who, setup.home.path(), ws, &["branch", "sub/x"]);
        assert!(branch.status.success(), "{}", text(&branch.stderr));
        assert!(!elsewhere.join("x").exists(), "{who:?}");
    }
}

/// Everyday git inside works, and what it did is the host's afterwards: status, add, commit,
/// branch, switch, stash, log, diff; `git config` fails, saying why.
#[test]
fn everyday_git_inside_works_and_comes_back() {
    require_bwrap!();
    for who in users() {
        let (setup, marker) = Setup::trapped(who);
        let script = "set -e; export GIT_AUTHOR_NAME=In GIT_AUTHOR_EMAIL=in@x GIT_COMMITTER_NAME=In GIT_COMMITTER_EMAIL=in@x; \
                      git status --short; echo b > b; git add b; git commit -q -m second; \
                      git branch topic; git switch -q topic; echo c > c; git add c; git stash -q; \
                      git stash list | wc -l; git log --oneline | wc -l; git diff HEAD~1 --stat | tail -1; \
                      git config core.fsmonitor x 2>&1 || echo config-refused";
        // A store of its own, to see its launch directory go.
        let store = TestDir::new(who);
        let paude = setup
            .paude()
            .env("PAUDE_HOME", store.path().to_str().expect("utf-8"));
        let output = paude.run(["venv", "--", "sh", "-c", script]);
        let out = ok(&output);
        assert!(out.contains("config-refused"), "{who:?}: {out}");
        assert!(
            !text(&output.stderr).contains("brought back"),
            "{}",
            text(&output.stderr)
        );
        let ws = setup.workspace.path();
        let home = setup.home.path();
        let log = host_git(who, home, ws, &["log", "--oneline"]);
        assert_eq!(
            text(&log.stdout).lines().count(),
            2,
            "{who:?}: {}",
            text(&log.stderr)
        );
        let branch = host_git(who, home, ws, &["branch", "--show-current"]);
        assert_eq!(text(&branch.stdout), "topic\n", "{who:?}");
        let stash = host_git(who, home, ws, &["stash", "list"]);
        assert_eq!(text(&stash.stdout).lines().count(), 1, "{who:?}");
        let status = host_git(who, home, ws, &["status", "--short"]);
        assert_eq!(text(&status.stdout), "?? evil.sh\n", "{who:?}");
        assert!(!marker.exists());
        // The launch directory is gone with the sandbox.
        let launch = store.path().join("launch");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_dir(&launch).map(|d| d.count()).unwrap_or(0) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{who:?}: launch dirs left"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// What a workspace's `.git` file says never adds a host path to the next sandbox: `gitdir:`
/// naming the home, `/`, or a directory that is not a worktree of a repository naming it back
/// is refused; a real linked worktree works.
#[test]
fn a_gitdir_pointer_adds_no_host_path() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let home = setup.home.path();
        let read_key = "cat \"$0/.ssh/id_test\"";
        // Without paude: a sandbox given what the pointer names reads the key.
        let control = with_home_bound(who, home, read_key)
            .arg(home)
            .output()
            .expect("bwrap");
        assert!(
            says(&control, "PRIVATE-KEY"),
            "{who:?}: {}",
            text(&control.stderr)
        );
        let ws = setup.workspace.path();
        std::fs::remove_dir_all(ws.join(".git")).expect("rm");
        for pointer in [
            home.display().to_string(),
            "/".to_string(),
            "/etc".to_string(),
        ] {
            std::fs::write(ws.join(".git"), format!("gitdir: {pointer}\n")).expect("write");
            let output = setup.paude().run(["venv", "--", "sh", "-c", "true"]);
            fails_with(&output, 125, "`gitdir:` names");
        }
    }
}

/// A git repository the sandbox makes in the workspace is named when the sandbox ends (its
/// config is the sandbox's, and host git obeys it there).
#[test]
fn a_repository_made_inside_is_named() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let output = setup.paude().run([
            "venv",
            "--",
            "sh",
            "-c",
            "mkdir -p vendor/lib && git -C vendor/lib init -q && git init -q --bare docs && \
             mkdir -p notes/objects notes/refs && ln -s refs/heads/main notes/HEAD && echo made",
        ]);
        assert_eq!(ok(&output), "made\n");
        // The holder says it as the sandbox ends, on paude's stderr, which it holds open
        // until then.
        let said = text(&output.stderr);
        assert!(
            said.contains("made or changed the git repository") && said.contains("vendor/lib"),
            "{who:?}: {said}"
        );
        // A bare one too: a `cd` into it, and host git obeys its config.
        assert!(said.contains("/docs in the workspace"), "{who:?}: {said}");
        // And one whose HEAD is a link, which git takes for a repository all the same.
        assert!(said.contains("/notes in the workspace"), "{who:?}: {said}");
        // In a workspace too big to walk before the shell comes back, the walk goes on after
        // paude has exited, and still says it.
        let output = setup.paude().run([
            "venv",
            "--",
            "sh",
            "-c",
            "mkdir many && cd many && seq 25000 | xargs touch && cd .. && \
             mkdir -p more/lib && git -C more/lib init -q",
        ]);
        assert!(output.status.success(), "{who:?}: {}", text(&output.stderr));
        let said = text(&output.stderr);
        assert!(
            said.contains("/more/lib in the workspace"),
            "{who:?}: {said}"
        );
    }
}

/// The workspace cannot change its own policy: its `paude.jsonnet` is used only as the user
/// trusted it (a new or changed one is refused with what changed), it and its imports from
/// the workspace are read-only inside, and a `paude.libsonnet` beside it does not shadow the
/// embedded library. Without paude's defence, a sandbox rewrites the manifest to give its
/// next run the home directory.
#[test]
fn the_workspace_cannot_change_its_own_policy() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let ws = setup.workspace.path();
        let manifest = ws.join("paude.jsonnet");
        write(
            &manifest,
            "local lib = import \"paude.libsonnet\";\n{ packages: lib.core }\n",
        );
        hand_over(who, ws);
        let widen = format!(
            "printf '{{ packages: [\"dash\"], mounts: [\"{}\"] }}\\n' > paude.jsonnet && echo widened",
            setup.home.path().display()
        );
        // Without the defence: the workspace read-write, and the manifest is rewritten.
        let wsd = ws.display().to_string();
        let control = raw_bwrap(who, &["--bind", &wsd, &wsd, "--chdir", &wsd], &widen)
            .output()
            .expect("bwrap");
        assert!(
            says(&control, "widened"),
            "{who:?}: {}",
            text(&control.stderr)
        );
        assert!(
            std::fs::read_to_string(&manifest)
                .unwrap()
                .contains("mounts")
        );
        write(
            &manifest,
            "local lib = import \"paude.libsonnet\";\n{ packages: lib.core }\n",
        );
        hand_over(who, ws);
        // Through paude: not trusted yet, then trusted, then read-only inside.
        let paude = setup.paude();
        let output = paude.run(["venv", "--", "true"]);
        fails_with(&output, 125, "paude.jsonnet is not trusted yet");
        assert!(text(&output.stderr).contains("paude trust"));
        paude.trust();
        let output = paude.run(["venv", "--", "bash", "-c", &widen]);
        assert!(!says(&output, "widened"), "{who:?}");
        assert!(
            text(&output.stderr).contains("Read-only file system"),
            "{who:?}"
        );
        // The file is changed by other means (the user, or a sandbox of an older paude): the
        // next launch says what changed, and runs nothing.
        write(
            &manifest,
            &format!(
                "{{ packages: [\"dash\"], mounts: [\"{}\"] }}\n",
                setup.home.path().display()
            ),
        );
        hand_over(who, ws);
        let output = paude.run(["venv", "--", "true"]);
        fails_with(&output, 125, "changed since you trusted it");
        assert!(text(&output.stderr).contains("+ { packages: [\"dash\"], mounts:"));
        // A paude.libsonnet beside the manifest does not shadow the embedded library.
        write(
            &manifest,
            "local lib = import \"paude.libsonnet\";\n{ packages: lib.core }\n",
        );
        write(
            &ws.join("paude.libsonnet"),
            "{ core: [\"dash\"], mounts: [\"/\"] }\n",
        );
        hand_over(who, ws);
        paude.trust();
        let output = paude.run(["venv", "--", "bash", "-c", "command -v git"]);
        assert!(
            ok(&output).contains("git"),
            "{who:?}: the embedded library's core"
        );
    }
}

/// A workspace's trust covers every file its manifest's evaluation reads, by real path,
/// wherever it lies: here an import by absolute path from a directory outside the workspace
/// (which a sandbox running in a directory above, or anything else, may write), and an import
/// whose absolute path lies outside but leads back into the workspace through a link. Once
/// only the imports lexically inside the workspace were hashed, and these were used as they
/// were. Without the check, a change takes effect: through `-f` (the user's own manifest,
/// which needs no trust) the changed import gives the sandbox the home directory, and a raw
/// sandbox of the workspace rewrites the import behind the link. Through paude the changed
/// import is refused, naming the file, with what changed, and the import behind the link is
/// read-only inside.
#[test]
fn a_manifest_is_trusted_with_every_file_it_reads() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let ws = std::fs::canonicalize(setup.workspace.path()).expect("canonicalize");
        let outside = TestDir::new(who);
        let out = std::fs::canonicalize(outside.path()).expect("canonicalize");
        let common = out.join("common.libsonnet");
        write(&common, "{ mounts: [] }\n");
        let back = out.join("back");
        std::os::unix::fs::symlink(&ws, &back).expect("symlink");
        let packages = ws.join("conf/packages.libsonnet");
        write(&packages, "[\"dash\"]\n");
        let manifest = ws.join("paude.jsonnet");
        write(
            &manifest,
            &format!(
                "local common = import \"{}\";\n\
                 {{ packages: import \"{}/conf/packages.libsonnet\", mounts: common.mounts }}\n",
                common.display(),
                back.display()
            ),
        );
        hand_over(who, &ws);
        hand_over(who, &out);
        let paude = setup.paude();
        // `paude trust` says what it trusted, outside the workspace too.
        let output = paude.run(["trust"]);
        let said = text(&output.stderr);
        assert!(output.status.success(), "{who:?}: {said}");
        assert!(said.contains(&common.display().to_string()), "{said}");
        assert!(said.contains("conf/packages.libsonnet"), "{said}");
        assert!(said.contains("1 of them outside the workspace"), "{said}");
        let key = setup.home.path().join(".ssh/id_test");
        let read_key = format!(
            "{{ read -r line < {} && echo \"$line\"; }} 2>/dev/null || echo unreadable",
            key.display()
        );
        let output = paude.run(["venv", "--", "/bin/sh", "-c", &read_key]);
        assert!(
            ok(&output).contains("unreadable"),
            "{who:?}: the home is not inside"
        );

        // The import outside changes, as anything that can write its directory can change it.
        write(
            &common,
            &format!("{{ mounts: [\"{}\"] }}\n", setup.home.path().display()),
        );
        hand_over(who, &out);
        // Without the check: the user's own manifest takes the change, and the key is read.
        let manifest_arg = manifest.to_str().expect("UTF-8 path");
        let control = paude.run(["venv", "-f", manifest_arg, "--", "/bin/sh", "-c", &read_key]);
        assert!(
            ok(&control).contains("PRIVATE-KEY"),
            "{who:?}: the changed import takes effect"
        );
        // Through the workspace's manifest: refused, naming the file, with what changed.
        let output = paude.run(["venv", "--", "/bin/sh", "-c", &read_key]);
        fails_with(
            &output,
            125,
            &format!("{} changed since you trusted it:", common.display()),
        );
        let said = text(&output.stderr);
        assert!(said.contains("    - { mounts: [] }"), "{said}");
        assert!(said.contains("    + { mounts: [\""), "{said}");
        assert!(said.contains("paude trust"), "{said}");
        write(&common, "{ mounts: [] }\n");
        hand_over(who, &out);
        ok(&paude.run(["venv", "--", "/bin/sh", "-c", ":"]));

        // The import behind the link lies in the workspace. Without paude's defence a sandbox
        // of the workspace rewrites it; through paude it is read-only inside.
        let widen = "printf '[\"dash\", \"bash\"]\\n' > conf/packages.libsonnet && echo widened";
        let wsd = ws.display().to_string();
        let control = raw_bwrap(who, &["--bind", &wsd, &wsd, "--chdir", &wsd], widen)
            .output()
            .expect("bwrap");
        assert!(
            says(&control, "widened"),
            "{who:?}: {}",
            text(&control.stderr)
        );
        // Changed by other means (here the raw sandbox): refused, by its real path.
        let output = paude.run(["venv", "--", "/bin/sh", "-c", ":"]);
        fails_with(
            &output,
            125,
            &format!(
                "{} changed since you trusted it (read as {}/conf/packages.libsonnet)",
                packages.display(),
                back.display()
            ),
        );
        write(&packages, "[\"dash\"]\n");
        hand_over(who, &ws);
        let output = paude.run(["venv", "--", "/bin/sh", "-c", widen]);
        assert!(!says(&output, "widened"), "{who:?}");
        assert!(
            text(&output.stderr).contains("Read-only file system"),
            "{who:?}: {}",
            text(&output.stderr)
        );
    }
}

/// The trust decision is made on exactly the bytes that were evaluated. A sandbox can swap
/// the workspace's `paude.jsonnet` with a file of its own (`renameat2(RENAME_EXCHANGE)`) over
/// and over; a launch that hashed the file by name and then evaluated it by name again was
/// caught between the two about once in twenty launches, and evaluated the hostile manifest,
/// which mounted a secret directory. Here a thread swaps the trusted manifest with one that
/// mounts a secret directory, as fast as it can, while paude launches: every launch either
/// runs the trusted manifest or is refused (the refusals show the swap racing the launches),
/// and none binds the secret. The deterministic form of this is
/// `manifest::trust::tests::the_check_is_on_the_bytes_evaluated_not_on_a_reread`.
#[test]
fn a_manifest_swapped_while_it_is_read_is_never_used() {
    require_bwrap!();
    use std::sync::atomic::{AtomicBool, Ordering};
    let who = As::Me;
    let home = TestDir::new(who);
    let workspace = TestDir::new(who);
    let secret = TestDir::new(who);
    let ws = std::fs::canonicalize(workspace.path()).expect("canonicalize");
    let secret = std::fs::canonicalize(secret.path()).expect("canonicalize");
    let manifest = ws.join("paude.jsonnet");
    let evil = ws.join("evil.jsonnet");
    write(&manifest, "{ packages: [\"dash\"] }\n");
    write(
        &evil,
        &format!(
            "{{ packages: [\"dash\"], mounts: [\"{}\"] }}\n",
            secret.display()
        ),
    );
    let paude = paude_in(who, home.path(), &ws);
    paude.trust();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let (manifest, evil) = (manifest.clone(), evil.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let swapped = rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &manifest,
                    rustix::fs::CWD,
                    &evil,
                    rustix::fs::RenameFlags::EXCHANGE,
                );
                if swapped.is_err() {
                    break;
                }
                swaps += 1;
                std::thread::yield_now();
            }
            swaps
        })
    };
    let (mut ran, mut refused) = (0, 0);
    for _ in 0..60 {
        let output = paude.run(["venv", "--dry-run", "--", "/bin/sh", "-c", ":"]);
        let line = text(&output.stdout);
        assert!(
            !line.contains(&secret.display().to_string()),
            "the swapped-in manifest was used:\n{line}"
        );
        match output.status.code() {
            Some(0) => ran += 1,
            Some(125) => refused += 1,
            other => panic!("exit {other:?}: {}", text(&output.stderr)),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().expect("the swapping thread");
    assert!(
        swaps > 0 && refused > 0,
        "{swaps} swaps, {refused} refused, {ran} ran"
    );
}

/// A launch directory (the sandbox's copies of the repository's files) outlives its launch
/// only while its sandbox runs: `paude cleanup` removes one a `--dry-run` left, keeps the
/// running sandbox's, and the holder removes that one when the sandbox ends.
#[test]
fn launch_directories_go_with_their_sandbox() {
    require_bwrap!();
    let setup = Setup::new(As::Me);
    let store = TestDir::new(As::Me);
    let paude = setup
        .paude()
        .env("PAUDE_HOME", store.path().to_str().expect("utf-8"));
    let launch = store.path().join("launch");
    let dirs = || -> Vec<std::path::PathBuf> {
        let mut dirs: Vec<_> = std::fs::read_dir(&launch)
            .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs
    };
    ok(&paude.run(["venv", "--dry-run", "--", "true"]));
    let left = dirs();
    assert_eq!(left.len(), 1, "{left:?}");
    let mut running = paude
        .command(["venv", "--", "sh", "-c", "echo started; read line || :"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(running.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("read");
    assert_eq!(line, "started\n");
    assert_eq!(dirs().len(), 2);
    let report = ok(&paude.run(["cleanup"]));
    assert!(report.contains(&left[0].display().to_string()), "{report}");
    let kept = dirs();
    assert_eq!(kept.len(), 1);
    assert_ne!(kept, left);
    drop(running.stdin.take());
    assert!(running.wait().expect("wait").success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !dirs().is_empty() {
        assert!(std::time::Instant::now() < deadline, "left: {:?}", dirs());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// In a linked worktree and in a superproject, the other repositories' control files are as
/// safe as the workspace's own: the sandbox cannot set a `core.fsmonitor` in the repository a
/// worktree belongs to, or in a submodule's repository, which host git then runs. Without
/// paude's defence (those repositories bound read-write, as git inside needs them), it can.
#[test]
fn worktrees_and_submodules_keep_their_control_files() {
    require_bwrap!();
    for who in users() {
        // A repository, a linked worktree of it, and a submodule in it.
        let (setup, marker) = Setup::trapped(who);
        let (home, main) = (setup.home.path(), setup.workspace.path());
        let others = TestDir::new(who);
        let module_source = others.path().join("source");
        std::fs::create_dir(&module_source).expect("mkdir");
        hand_over(who, others.path());
        add_a_submodule(who, home, main, &module_source);
        let git = |dir: &Path, args: &[&str]| git_ok(who, home, dir, args);
        let worktree = others.path().join("wt");
        git(
            main,
            &["worktree", "add", "-q", worktree.to_str().expect("utf-8")],
        );
        let evil = main.join("evil.sh").display().to_string();
        let routes: [(&str, &Path, String, &Path); 2] = [
            (
                "the repository a worktree belongs to",
                &worktree,
                format!("git config core.fsmonitor {evil}"),
                &worktree,
            ),
            (
                "a submodule's repository",
                main,
                format!("git -C sub config core.fsmonitor {evil}"),
                &main.join("sub"),
            ),
        ];
        for (route, workspace, attack, checked) in routes {
            // Without the defence: the workspace and the repository's git directory bound
            // read-write.
            let (ws, git_dir) = (
                workspace.display().to_string(),
                main.join(".git").display().to_string(),
            );
            let args = [
                "--bind", &ws, &ws, "--bind", &git_dir, &git_dir, "--chdir", &ws, "--setenv",
                "HOME", "/tmp",
            ];
            raw_bwrap(who, &args, &attack).output().expect("bwrap");
            host_git(who, home, checked, &["status", "--short"]);
            assert!(
                marker.exists(),
                "{who:?} {route}: the attack proves nothing"
            );
            std::fs::remove_file(&marker).expect("rm");
            // Undone before the same attack through paude (git's answer when nothing is set
            // does not matter).
            for dir in [main.join(".git"), main.join(".git/modules/sub")] {
                host_git(who, home, &dir, &["config", "--unset", "core.fsmonitor"]);
            }
            // Through paude.
            let paude = paude_in(who, home, workspace);
            let inside = paude.run(["venv", "--", "sh", "-c", &attack]);
            assert!(
                !inside.status.success(),
                "{who:?} {route}: {}",
                text(&inside.stderr)
            );
            let after = host_git(who, home, checked, &["status", "--short"]);
            assert!(
                after.status.success(),
                "{who:?} {route}: {}",
                text(&after.stderr)
            );
            assert!(
                !marker.exists(),
                "{who:?} {route}: host git ran the sandbox's program"
            );
        }
        // A submodule's `.git` that names a sibling submodule's repository is refused: that
        // repository (and what it holds) is not this workspace's.
        let sibling_source = others.path().join("sibling");
        std::fs::create_dir(&sibling_source).expect("mkdir");
        write(&sibling_source.join("secret"), "SIBLING-SECRET\n");
        hand_over(who, others.path());
        git(&sibling_source, &["init", "-q"]);
        git(&sibling_source, &["add", "secret"]);
        git(&sibling_source, &["commit", "-q", "-m", "s"]);
        let sibling = sibling_source.display().to_string();
        git(
            main,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                &sibling,
                "other",
            ],
        );
        let sub = main.join("sub");
        // The submodule itself is a workspace paude composes.
        let in_sub = paude_in(who, home, &sub);
        ok(&in_sub.run(["venv", "--", "git", "status", "--short"]));
        let pointer = format!("gitdir: {}\n", main.join(".git/modules/other").display());
        std::fs::write(sub.join(".git"), pointer).expect("write");
        // Without the check: git there reads the sibling's repository.
        let shown = host_git(who, home, &sub, &["show", "HEAD:secret"]);
        assert_eq!(text(&shown.stdout), "SIBLING-SECRET\n", "{who:?}");
        let paude = paude_in(who, home, &sub);
        fails_with(&paude.run(["venv", "--", "true"]), 125, "core.worktree");
        // Git inside the worktree works, and its commit is the host's.
        let paude = paude_in(who, home, &worktree);
        let commit = "GIT_AUTHOR_NAME=a GIT_AUTHOR_EMAIL=a@b GIT_COMMITTER_NAME=a GIT_COMMITTER_EMAIL=a@b git commit -q --allow-empty -m inside && git log --oneline | wc -l";
        let out = ok(&paude.run(["venv", "--", "sh", "-c", commit]));
        assert_eq!(out.trim(), "3", "{who:?}");
        let log = host_git(who, home, &worktree, &["log", "--oneline", "-1"]);
        assert!(
            text(&log.stdout).contains("inside"),
            "{who:?}: {}",
            text(&log.stdout)
        );
    }
}

/// Checked paths stay the checked paths. A sandbox still running in the workspace can swap a
/// name for a link over and over until a launch catches the swap between its checks and
/// bwrap's mounts; here a wrapper around bwrap strikes exactly there, swapping a manifest
/// mount's source in the workspace, the repository's hooks and a protected path's directory
/// for relative links to the home (relative, as bwrap resolves a mount's target inside the
/// new root, where such a link leads to the home's path too). Bound by name, as the line
/// paude prints binds them, the home is read and written. paude's launch mounts the sources
/// it checked, and where the swap moved a mount's target as well, bwrap refuses to start.
#[test]
fn pin_held_binds_survive_a_swap() {
    require_bwrap!();
    let real_bwrap = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v bwrap"])
            .output()
            .expect("sh")
            .stdout,
    )
    .expect("UTF-8");
    for who in users() {
        let setup = Setup::new(who);
        let (ws, home) = (setup.workspace.path(), setup.home.path());
        write(&ws.join("deep/dir/file"), "protected\n");
        write(&ws.join("data/ok.txt"), "data\n");
        // The attacker's link target has the names the binds need.
        write(&home.join("dir/file"), "the home's\n");
        hand_over(who, home);
        hand_over(who, ws);
        let tools = TestDir::new(who);
        hand_over(who, tools.path());
        let wrapper = tools.path().join("bwrap");
        let mark = tools.path().join("struck");
        let all = ["data", ".git/hooks", "deep"];
        // The wrapper swaps `names` once, right before the sandbox is set up.
        let strike = |names: &[&str]| {
            let swaps: String = names
                .iter()
                .map(|name| {
                    let up = "../".repeat(name.matches('/').count() + 1);
                    format!(
                        "mv '{w}/{name}' '{w}/{name}.moved' && ln -s '{up}{h}' '{w}/{name}' && ",
                        w = ws.display(),
                        h = home.file_name().expect("name").to_string_lossy()
                    )
                })
                .collect();
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nif [ \"$1\" = --unshare-user ] && [ ! -e '{mark}' ]; then\n  \
                     : > '{mark}' && {swaps}true\nfi\nexec {real} \"$@\"\n",
                    mark = mark.display(),
                    real = real_bwrap.trim(),
                ),
            )
            .expect("write");
            std::fs::set_permissions(
                &wrapper,
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .expect("chmod");
            hand_over(who, tools.path());
        };
        let restore = || {
            assert!(mark.exists(), "{who:?}: the wrapper did not strike");
            std::fs::remove_file(&mark).expect("rm");
            for name in all {
                if ws.join(name).is_symlink() {
                    std::fs::remove_file(ws.join(name)).expect("rm link");
                    std::fs::rename(ws.join(format!("{name}.moved")), ws.join(name))
                        .expect("mv back");
                }
            }
        };
        let manifest = format!(
            r#"{{packages: ["bash", "coreutils"], protect: ["deep/dir/file"],
                mounts: [{{type: "bind", source: "{}/data", target: "/data"}}]}}"#,
            ws.display()
        );
        let script = "cat deep/.ssh/id_test /data/.ssh/id_test .git/hooks/.ssh/id_test 2>/dev/null; \
                      echo x > deep/planted; ls deep/dir; cat /data/ok.txt";
        let paude = setup
            .paude()
            .env("PAUDE_BWRAP", wrapper.to_str().expect("UTF-8"));
        let launch = || paude.run(["venv", "-e", &manifest, "--", "bash", "-c", script]);
        // Without paude's defence: the same line, binding by name, follows the links.
        strike(&all);
        let line = ok(&paude.run([
            "venv",
            "-e",
            &manifest,
            "--dry-run",
            "--",
            "bash",
            "-c",
            script,
        ]));
        let control = command_as(who, "sh")
            .arg("-c")
            .arg(line.trim_end())
            .current_dir(ws)
            .stdin(Stdio::null())
            .output()
            .expect("sh");
        let keys = text(&control.stdout).matches("PRIVATE-KEY").count();
        assert_eq!(keys, 3, "{who:?}: {}", text(&control.stderr));
        assert!(home.join("planted").exists(), "{who:?}");
        std::fs::remove_file(home.join("planted")).expect("rm");
        restore();
        // Through paude, sources swapped: what was checked is what is mounted.
        strike(&all[..2]);
        let inside = ok(&launch());
        assert_eq!(inside, "file\ndata\n", "{who:?}");
        restore();
        // A protected path's directory swapped, which moves its mount's target too: bwrap
        // finds the descriptor and the target apart, and refuses.
        strike(&all[2..]);
        let refused = launch();
        assert!(!refused.status.success(), "{who:?}");
        assert!(!says(&refused, "PRIVATE-KEY"), "{who:?}");
        assert!(
            text(&refused.stderr).contains("Race condition"),
            "{who:?}: {}",
            text(&refused.stderr)
        );
        assert!(!home.join("planted").exists(), "{who:?}");
        restore();
        // A manifest mount whose source leads through a link in the workspace is refused.
        std::os::unix::fs::symlink(home, ws.join("to-home")).expect("symlink");
        let refused = paude.run([
            "venv",
            "-e",
            &format!(
                r#"{{packages: ["dash"], mounts: [{{type: "bind", source: "{}/to-home", target: "/h"}}]}}"#,
                ws.display()
            ),
            "--",
            "true",
        ]);
        fails_with(&refused, 125, "mounts[0].source");
        assert!(text(&refused.stderr).contains("a symbolic link in the workspace"));
    }
}

/// A script that makes `dir` a repository whose `core.fsmonitor` marks `marker`: what host git
/// runs once it works in `dir`, which it does on `git status` where `dir` is a submodule's
/// path, and after a `cd` into a worktree whose `.git` names it.
fn plant(dir: &str, marker: &Path) -> String {
    format!(
        "mkdir -p {dir} && (cd {dir} && git init -q . && echo x > x && git add x && \
         git -c user.name=e -c user.email=e@x commit -qm x && \
         git config core.fsmonitor 'touch {}; false')",
        marker.display()
    )
}

/// One way to have host git obey a repository the sandbox made in the workspace: how the
/// workspace is set up, what each launch runs, and the host git that obeys it (in which
/// directory of the workspace, and what runs first).
struct Nested {
    route: &'static str,
    /// Whether the holder moves the sandbox's `.git` aside (else the sandbox cannot make it).
    moved: bool,
    set_up: fn(who: As, home: &Path, workspace: &Path),
    launches: fn(marker: &Path) -> Vec<String>,
    host: (&'static str, &'static [&'static [&'static str]]),
}

/// A submodule `sub` whose own repository has a submodule `inner`, added without
/// `--recursive`: `sub` is checked out, and `sub/inner` is an empty directory whose gitlink
/// is in `.git/modules/sub/index`.
fn nested_submodule(who: As, home: &Path, workspace: &Path) {
    let (inner, mid) = (home.join("inner"), home.join("mid"));
    for dir in [&inner, &mid] {
        std::fs::create_dir(dir).expect("mkdir");
    }
    hand_over(who, home);
    git_ok(who, home, &mid, &["init", "-q"]);
    add_a_submodule(who, home, &mid, &inner);
    add_a_submodule(who, home, workspace, &mid);
    assert!(workspace.join("sub/sub").is_dir() && !workspace.join("sub/sub/.git").exists());
}

/// A submodule `sub`, then `deinit`: its gitlink in the index, and no `.git` in `sub/`.
fn submodule_not_checked_out(who: As, home: &Path, workspace: &Path) {
    let source = home.join("source");
    std::fs::create_dir(&source).expect("mkdir");
    hand_over(who, home);
    add_a_submodule(who, home, workspace, &source);
    git_ok(
        who,
        home,
        workspace,
        &["submodule", "deinit", "-q", "-f", "sub"],
    );
    assert!(!workspace.join("sub/.git").exists());
}

/// The routes the sixth round of attacks found, each once the time of a `.git` was all the
/// holder went by, or only the workspace's own index at the end: a nested submodule, a
/// gitlink the sandbox unstaged (the user's `git reset` puts it back), a repository made in
/// one launch and renamed onto a submodule's path in the next (a rename keeps the times of
/// what is inside), the user's linked worktree inside the workspace, and a SHA-256
/// repository. Each works without paude; through paude, host git runs nothing.
#[test]
fn nested_repositories_host_git_obeys_stay_the_users() {
    require_bwrap!();
    let routes = [
        Nested {
            route: "a nested submodule not checked out",
            moved: true,
            set_up: nested_submodule,
            launches: |marker| vec![plant("sub/sub", marker)],
            host: ("", &[&["status"]]),
        },
        Nested {
            route: "a gitlink the sandbox unstaged",
            moved: true,
            set_up: submodule_not_checked_out,
            launches: |marker| {
                vec![format!(
                    "git rm -q --cached sub && {}",
                    plant("sub", marker)
                )]
            },
            host: ("", &[&["reset", "-q"], &["status"]]),
        },
        Nested {
            route: "a repository renamed onto a submodule's path in a later launch",
            moved: true,
            set_up: submodule_not_checked_out,
            launches: |marker| {
                vec![
                    format!("{} && chmod 000 .stash", plant(".stash", marker)),
                    "chmod 755 .stash && rmdir sub && mv .stash sub".to_string(),
                ]
            },
            host: ("", &[&["status"]]),
        },
        Nested {
            route: "the user's linked worktree inside the workspace",
            moved: false,
            set_up: |who, home, workspace| {
                git_ok(who, home, workspace, &["worktree", "add", "-q", "wt"]);
            },
            launches: |marker| {
                vec![format!(
                    "{}; printf 'gitdir: ../.cache/evil/.git\\n' > wt/.git",
                    plant(".cache/evil", marker)
                )]
            },
            host: ("wt", &[&["status"]]),
        },
        Nested {
            route: "a submodule's path in a SHA-256 repository",
            moved: true,
            set_up: |who, home, workspace| {
                std::fs::remove_dir_all(workspace.join(".git")).expect("rm");
                git_ok(
                    who,
                    home,
                    workspace,
                    &["init", "-q", "--object-format=sha256"],
                );
                let id = "ab".repeat(32);
                let entry = format!("160000,{id},sub");
                git_ok(
                    who,
                    home,
                    workspace,
                    &["update-index", "--add", "--cacheinfo", &entry],
                );
                std::fs::create_dir(workspace.join("sub")).expect("mkdir");
                hand_over(who, workspace);
            },
            launches: |marker| vec![plant("sub", marker)],
            host: ("", &[&["status"]]),
        },
        Nested {
            route: "a submodule of the user's linked worktree inside the workspace",
            moved: true,
            set_up: |who, home, workspace| {
                let source = home.join("source");
                std::fs::create_dir(&source).expect("mkdir");
                hand_over(who, home);
                add_a_submodule(who, home, workspace, &source);
                // The worktree has the gitlink, and (not initialized there) no `.git` in it.
                git_ok(who, home, workspace, &["worktree", "add", "-q", "wt"]);
                assert!(!workspace.join("wt/sub/.git").exists());
            },
            launches: |marker| vec![plant("wt/sub", marker)],
            host: ("wt", &[&["status"]]),
        },
    ];
    for who in users() {
        for nested in &routes {
            let route = nested.route;
            let host_git_there = |setup: &Setup| {
                let (dir, commands) = nested.host;
                let dir = setup.workspace.path().join(dir);
                for args in commands {
                    host_git(who, setup.home.path(), &dir, args);
                }
            };
            // Without paude.
            let (control, marker) = Setup::trapped(who);
            let (home, ws) = (control.home.path(), control.workspace.path());
            (nested.set_up)(who, home, ws);
            for script in (nested.launches)(&marker) {
                sh_on_the_host(who, ws, home, &script);
            }
            host_git_there(&control);
            assert!(marker.exists(), "{who:?} {route}: the route proves nothing");

            // Through paude.
            let (setup, marker) = Setup::trapped(who);
            let (home, ws) = (setup.home.path(), setup.workspace.path());
            (nested.set_up)(who, home, ws);
            let mut said = String::new();
            for script in (nested.launches)(&marker) {
                let inside = setup.paude().run(["venv", "--", "sh", "-c", &script]);
                said.push_str(&text(&inside.stderr));
            }
            host_git_there(&setup);
            assert!(!marker.exists(), "{who:?} {route}: {said}");
            // Moved aside, and said (but the worktree's `.git`, which the sandbox cannot write).
            if nested.moved {
                assert!(said.contains("moved "), "{who:?} {route}: {said}");
            }
        }
    }
}

/// The sandbox cannot keep the list of repositories it made from being said: a directory it
/// made unreadable is named as not looked into. (Root reads it all the same: as an
/// unprivileged user only.)
#[test]
fn what_the_holder_could_not_look_at_is_said() {
    require_bwrap!();
    for who in users()
        .into_iter()
        .filter(|who| !(is_root() && *who == As::Me))
    {
        let setup = Setup::new(who);
        let output = setup.paude().run([
            "venv",
            "--",
            "sh",
            "-c",
            "mkdir -p hidden/lib && git -C hidden/lib init -q && chmod 000 hidden",
        ]);
        ok(&output);
        let said = text(&output.stderr);
        assert!(
            said.contains("could not look into") && said.contains("hidden"),
            "{who:?}: {said}"
        );
        std::fs::set_permissions(
            setup.workspace.path().join("hidden"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
    }
}

/// A replace ref the user had at launch stays only with the content it had: the sandbox
/// parks its own commit under the same name elsewhere in one launch and renames the
/// directory into `refs/replace/` in the next (which keeps the file's change time), and host
/// `git log` would show the sandbox's commit in place of the user's.
#[test]
fn a_replace_ref_keeps_its_launch_content() {
    require_bwrap!();
    let launches = [
        "set -e; export GIT_AUTHOR_NAME=In GIT_AUTHOR_EMAIL=in@x GIT_COMMITTER_NAME=In \
         GIT_COMMITTER_EMAIL=in@x; C=$(git --no-replace-objects rev-parse HEAD); \
         E=$(git commit-tree -m EVIL $(git write-tree)); mkdir -p .git/refs/tags/park; \
         echo $E > .git/refs/tags/park/$C",
        "cd .git/refs && mv replace old && mv tags/park replace",
    ];
    for who in users() {
        let subject = |setup: &Setup| {
            git_ok(
                who,
                setup.home.path(),
                setup.workspace.path(),
                &["log", "-1", "--format=%s"],
            )
        };
        let users_replacement = |setup: &Setup| {
            let (home, ws) = (setup.home.path(), setup.workspace.path());
            let tree = git_ok(who, home, ws, &["write-tree"]);
            let alternative = git_ok(who, home, ws, &["commit-tree", "-m", "mine", &tree]);
            git_ok(who, home, ws, &["replace", "HEAD", &alternative]);
            assert_eq!(subject(setup), "mine");
        };
        let (control, _) = Setup::trapped(who);
        users_replacement(&control);
        for script in launches {
            sh_on_the_host(who, control.workspace.path(), control.home.path(), script);
        }
        assert_eq!(
            subject(&control),
            "EVIL",
            "{who:?}: the route proves nothing"
        );

        let (setup, _) = Setup::trapped(who);
        users_replacement(&setup);
        for script in launches {
            let inside = setup.paude().run(["venv", "--", "sh", "-c", script]);
            assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        }
        assert_ne!(subject(&setup), "EVIL", "{who:?}");
    }
}

/// A ref's lock the sandbox leaves would fail every host commit on that branch: the holder
/// removes it, once a host git's own lock would have gone.
#[test]
fn a_ref_lock_the_sandbox_left_is_removed() {
    require_bwrap!();
    for who in users() {
        let (setup, _) = Setup::trapped(who);
        let (home, ws) = (setup.home.path(), setup.workspace.path());
        let branch = git_ok(who, home, ws, &["symbolic-ref", "--short", "HEAD"]);
        let script = format!("git rev-parse HEAD > .git/refs/heads/{branch}.lock");
        // Without paude, the next commit fails.
        sh_on_the_host(who, ws, home, &script);
        let commit = ["commit", "-q", "--allow-empty", "-m", "next"];
        assert!(
            !host_git(who, home, ws, &commit).status.success(),
            "{who:?}"
        );
        std::fs::remove_file(ws.join(format!(".git/refs/heads/{branch}.lock"))).expect("rm");

        let inside = setup.paude().run(["venv", "--", "sh", "-c", &script]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        assert!(
            text(&inside.stderr).contains("a lock the sandbox left"),
            "{who:?}"
        );
        git_ok(who, home, ws, &commit);
    }
}

/// The user's next command runs only once the holder's work is done: paude returns when the
/// sandbox's `.git` at a submodule's path is moved aside (a holder that ran beside the shell
/// left a window in which a `git status` right after obeyed it), also when paude's stderr is a
/// pipe nobody reads any more (`2>&1 | head`), which once ended the holder at its first line.
#[test]
fn paude_returns_once_the_holders_work_is_done() {
    require_bwrap!();
    for who in users() {
        // Without paude: the plant works (see `nested_repositories_host_git_obeys_stay_the_users`).
        let (control, marker) = Setup::trapped(who);
        let (home, ws) = (control.home.path(), control.workspace.path());
        submodule_not_checked_out(who, home, ws);
        sh_on_the_host(who, ws, home, &plant("sub", &marker));
        host_git(who, home, ws, &["status"]);
        assert!(marker.exists(), "{who:?}: the route proves nothing");

        for stderr in ["null", "a closed pipe"] {
            let (setup, marker) = Setup::trapped(who);
            let (home, ws) = (setup.home.path(), setup.workspace.path());
            submodule_not_checked_out(who, home, ws);
            let script = format!(
                "{}; echo 1 >&2; echo 2 >&2; echo 3 >&2",
                plant("sub", &marker)
            );
            let mut command = setup.paude().command(["venv", "--", "sh", "-c", &script]);
            command.stdout(Stdio::null());
            let status = if stderr == "null" {
                command.stderr(Stdio::null()).status().expect("paude")
            } else {
                let mut child = command.stderr(Stdio::piped()).spawn().expect("paude");
                drop(child.stderr.take());
                child.wait().expect("paude")
            };
            // Straight after paude returns, not once its stderr closes.
            host_git(who, home, ws, &["status"]);
            assert!(!marker.exists(), "{who:?}, stderr {stderr}: {status:?}");
            assert!(!ws.join("sub/.git").exists(), "{who:?}, stderr {stderr}");
        }
    }
}

/// A signal sent to paude alone, as a supervisor sends it, reaches the sandbox: the command
/// ends with it, and paude exits as a shell reports that (128 and the signal).
#[test]
fn a_signal_sent_to_paude_reaches_the_sandbox() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let mut child = setup
            .paude()
            .command(["venv", "--", "sleep", "60"])
            .spawn()
            .expect("paude");
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("kill");
        let began = std::time::Instant::now();
        let status = child.wait().expect("wait");
        assert!(
            began.elapsed() < std::time::Duration::from_secs(20),
            "{who:?}"
        );
        assert_eq!(status.code(), Some(128 + 15), "{who:?}: {status:?}");
    }
}

/// Links in `objects/` the sandbox hid behind a directory it can list but not search
/// (`chmod 0400`), then made searchable again in a later launch, are removed all the same:
/// host git's next commit would write object files through them, outside the repository.
#[test]
fn links_hidden_behind_an_unsearchable_directory_are_removed() {
    require_bwrap!();
    for who in users() {
        let (setup, _) = Setup::trapped(who);
        let home = setup.home.path();
        let elsewhere = home.join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        hand_over(who, home);
        let links = format!(
            "cd .git/objects && for i in $(seq 0 255); do x=$(printf %02x $i); \
             [ -e $x ] || ln -s '{}' $x; done",
            elsewhere.display()
        );
        let commit = |setup: &Setup| {
            let ws = setup.workspace.path();
            write(&ws.join("g"), "new\n");
            hand_over(who, ws);
            git_ok(who, setup.home.path(), ws, &["add", "g"]);
            git_ok(who, setup.home.path(), ws, &["commit", "-q", "-m", "g"]);
        };
        // Without paude.
        let (control, _) = Setup::trapped(who);
        let control_out = control.home.path().join("elsewhere");
        std::fs::create_dir(&control_out).expect("mkdir");
        hand_over(who, control.home.path());
        sh_on_the_host(
            who,
            control.workspace.path(),
            control.home.path(),
            &links.replace(
                &elsewhere.display().to_string(),
                &control_out.display().to_string(),
            ),
        );
        commit(&control);
        assert!(
            std::fs::read_dir(&control_out)
                .expect("read")
                .next()
                .is_some(),
            "{who:?}: the route proves nothing"
        );
        // Through paude, in two launches.
        for script in [
            format!("{links}; chmod 0400 ../objects"),
            "chmod 755 .git/objects".into(),
        ] {
            let inside = setup.paude().run(["venv", "--", "sh", "-c", &script]);
            assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        }
        commit(&setup);
        assert!(
            std::fs::read_dir(&elsewhere)
                .expect("read")
                .next()
                .is_none(),
            "{who:?}: host git wrote through a link"
        );
    }
}

/// At a terminal (where bwrap has no `--new-session`, so that a shell inside has job
/// control), a `kill -KILL 0` inside reaches only the sandbox's process group, not paude:
/// without a group of its own, it ends the launcher before it does its work (here: moving
/// aside a `.git` planted at a submodule's path); and a `kill -STOP 0` does not stop paude.
#[test]
fn a_kill_of_its_process_group_does_not_reach_paude() {
    require_bwrap!();
    let quote = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
    for who in users() {
        // The mechanism, without paude: at a terminal, `kill -KILL 0` ends its caller's group.
        let control = command_as(who, "script")
            .args([
                "-qec",
                "sh -c 'sh -c \"kill -KILL 0\"; echo survived'",
                "/dev/null",
            ])
            .output()
            .expect("script");
        assert!(
            !text(&control.stdout).contains("survived"),
            "{who:?}: the route proves nothing"
        );

        for (ending, exit) in [
            ("kill -KILL 0", "137"),
            ("kill -STOP 0; echo continued", "0"),
        ] {
            let (setup, marker) = Setup::trapped(who);
            let (home, ws) = (setup.home.path(), setup.workspace.path());
            submodule_not_checked_out(who, home, ws);
            let store = shared_home(who).join(".paude");
            let inside = format!("{} && {ending}", plant("sub", &marker));
            let line = format!(
                "cd {} && env -i HOME={} PATH=/usr/bin:/bin PAUDE_HOME={} {} venv -- sh -c {}; echo paude-exit=$?",
                quote(&ws.display().to_string()),
                quote(&home.display().to_string()),
                quote(&store.display().to_string()),
                env!("CARGO_BIN_EXE_paude"),
                quote(&inside)
            );
            let out = command_as(who, "script")
                .args(["-qec", &line, "/dev/null"])
                .output()
                .expect("script");
            let said = text(&out.stdout);
            // A sandbox that stops itself is continued, not taken for a Ctrl-Z that gives the
            // shell back with paude's work undone.
            assert!(
                said.contains(&format!("paude-exit={exit}")),
                "{who:?}: {said}"
            );
            assert!(said.contains("moved "), "{who:?}: {said}");
            host_git(who, home, ws, &["status"]);
            assert!(!marker.exists(), "{who:?}");
        }
    }
}

/// The index the sandbox removes stays the host's: its submodules are what the next launch
/// guards, and with none, a repository put at a submodule's path in a later launch would be
/// obeyed once the user's `git reset` wrote the index again.
#[test]
fn an_index_removed_inside_stays_on_the_host() {
    require_bwrap!();
    for who in users() {
        let (setup, _) = Setup::trapped(who);
        let (home, ws) = (setup.home.path(), setup.workspace.path());
        submodule_not_checked_out(who, home, ws);
        let index = std::fs::read(ws.join(".git/index")).expect("index");
        let inside = setup
            .paude()
            .run(["venv", "--", "sh", "-c", "rm .git/index"]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        assert!(
            text(&inside.stderr).contains("index was not brought back"),
            "{who:?}"
        );
        assert_eq!(
            std::fs::read(ws.join(".git/index")).expect("index"),
            index,
            "{who:?}"
        );
    }
}

/// What comes back of git's reflogs is bounded: sparse files of a gigabyte each, left in the
/// sandbox's copy, would have the holder (which the user's shell waits for) copy them whole.
#[test]
fn huge_reflogs_the_sandbox_left_do_not_come_back() {
    require_bwrap!();
    for who in users() {
        let (setup, _) = Setup::trapped(who);
        let ws = setup.workspace.path();
        let began = std::time::Instant::now();
        let inside = setup.paude().run([
            "venv",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3; do truncate -s 1G .git/logs/refs/heads/zz$i; done",
        ]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        assert!(
            began.elapsed() < std::time::Duration::from_secs(30),
            "{who:?}"
        );
        assert!(text(&inside.stderr).contains("more than 64 MiB"), "{who:?}");
        for i in 1..=3 {
            let host = ws.join(format!(".git/logs/refs/heads/zz{i}"));
            assert!(!host.exists(), "{who:?}: {}", host.display());
        }
    }
}

/// The venvs the sandbox made move into paude's state only from where they were made: a
/// listed venv path whose directory the sandbox turned into a link to a host directory
/// holding a venv does not lead the holder to move that host venv (which the next sandbox
/// would then get, writable).
#[test]
fn a_kept_venv_is_never_taken_through_a_link() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let home = setup.home.path();
        let elsewhere = home.join("project/.venv");
        write(&elsewhere.join("pyvenv.cfg"), "home = /usr\n");
        write(&elsewhere.join("bin/activate"), "# the host's\n");
        hand_over(who, home);
        let manifest = "{packages: ['bash', 'coreutils'], venv: ['a/.venv']}";
        let script = format!("rm -rf a && ln -s '{}' a", home.join("project").display());
        let inside = setup
            .paude()
            .run(["venv", "-e", manifest, "--", "bash", "-c", &script]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        assert!(
            !text(&inside.stderr).contains("kept the venv"),
            "{who:?}: {}",
            text(&inside.stderr)
        );
        assert!(
            elsewhere.join("bin/activate").exists(),
            "{who:?}: the host's venv was moved"
        );
    }
}

/// A directory that was there at launch, with the user's files in it, never moves into
/// paude's state as a venv the sandbox made, whatever `pyvenv.cfg` the sandbox writes into it
/// (here one holding a protected file, which would leave the workspace with it).
#[test]
fn a_directory_of_the_users_is_never_kept_as_the_sandboxs_venv() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let ws = setup.workspace.path();
        write(&ws.join("conf/policy.sh"), "the user's\n");
        hand_over(who, ws);
        let manifest = "{packages: ['bash', 'coreutils'], protect: ['conf/policy.sh']}";
        let inside = setup.paude().run([
            "venv",
            "-e",
            manifest,
            "--",
            "bash",
            "-c",
            "echo 'home = /usr' > conf/pyvenv.cfg",
        ]);
        assert!(inside.status.success(), "{who:?}: {}", text(&inside.stderr));
        assert!(!text(&inside.stderr).contains("kept the venv"), "{who:?}");
        assert_eq!(
            std::fs::read_to_string(ws.join("conf/policy.sh")).expect("read"),
            "the user's\n"
        );
    }
}
