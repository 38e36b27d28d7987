//! Shared harness of the integration tests: run the real `paude` binary, with the real bwrap
//! and the host's real dpkg database, as root or as an unprivileged user.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The uid and gid tests use for "an unprivileged user" (nobody).
pub const NOBODY: u32 = 65534;

/// Who runs paude in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    /// Whoever runs the tests (root in CI).
    Me,
    /// uid/gid 65534 through `setpriv`, when the tests run as root.
    Nobody,
}

/// Whether the sandbox can run here. Under `CI=true` a missing bwrap is a failure, never a skip.
pub fn bwrap_available() -> bool {
    let found = Command::new("bwrap")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "bwrap is not installed, and CI=true: the sandbox tests must run (apt-get install bubblewrap)"
            );
        }
        eprintln!("SKIPPED: bwrap is not installed; install bubblewrap to run the sandbox tests");
    }
    found
}

/// Skips (returns) from a test when bwrap is missing outside CI.
#[macro_export]
macro_rules! require_bwrap {
    () => {
        if !$crate::common::bwrap_available() {
            return;
        }
    };
}

pub fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

/// A directory the test owns, readable by and owned by `who` (so an unprivileged paude can
/// use it), under a parent every user can traverse.
pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl Drop for TestDir {
    /// Removes the directory even where a test made parts of it read-only (a tree with an
    /// fsEntry directory of mode 0555, say), which `TempDir` alone would leave behind.
    fn drop(&mut self) {
        remove_tree(self.dir.path());
    }
}

/// Removes `path`, first giving its owner rwx on every directory in it; errors are ignored
/// (this is cleanup after a test).
pub fn remove_tree(path: &Path) {
    fn open_up(path: &Path) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if !meta.is_dir() {
            return;
        }
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o700)).ok();
        }
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            open_up(&entry.path());
        }
    }
    open_up(path);
    std::fs::remove_dir_all(path).ok();
}

impl TestDir {
    pub fn new(who: As) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("paude-test-")
            .tempdir_in(base_dir())
            .expect("tempdir");
        if who == As::Nobody {
            chown_tree(dir.path(), NOBODY);
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        TestDir { dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Where test directories go: the system temporary directory, which every user can traverse
/// and which is in no git repository (a test workspace inside the project's own checkout would
/// make the checkout the workspace).
fn base_dir() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(std::env::temp_dir)
}

pub fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).expect("chown");
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path).expect("read_dir") {
            chown_tree(&entry.expect("entry").path(), uid);
        }
    }
}

/// One paude invocation: a workspace, a PAUDE_HOME, a user.
#[derive(Clone)]
pub struct Paude {
    pub who: As,
    pub home: PathBuf,
    pub workspace: PathBuf,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Paude {
    pub fn new(who: As, home: &Path, workspace: &Path) -> Paude {
        Paude {
            who,
            home: home.to_path_buf(),
            workspace: workspace.to_path_buf(),
            cwd: workspace.to_path_buf(),
            env: Vec::new(),
        }
    }

    pub fn env(mut self, name: &str, value: &str) -> Paude {
        self.env.push((name.into(), value.into()));
        self
    }

    /// With the store the tests of this user share (see [`shared_home`]): the store is not
    /// what such a test is about, and one build per user is enough.
    pub fn shared_store(self) -> Paude {
        let store = shared_home(self.who).join(".paude");
        self.env("PAUDE_HOME", store.to_str().expect("UTF-8 path"))
    }

    pub fn cwd(mut self, cwd: &Path) -> Paude {
        self.cwd = cwd.to_path_buf();
        self
    }

    /// Runs `paude ARGS` and returns its output (stdin is /dev/null: not a terminal).
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(args).output().expect("running paude")
    }

    /// `paude ARGS` as a command to spawn: stdin /dev/null, stdout and stderr piped.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = command_as(self.who, env!("CARGO_BIN_EXE_paude"));
        command
            .args(args)
            .current_dir(&self.cwd)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &self.home)
            .env("PAUDE_HOME", self.paude_home())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// `paude trust`: the workspace's own manifest, as it is now, is the user's.
    #[track_caller]
    pub fn trust(&self) {
        let output = self.run(["trust"]);
        assert!(
            output.status.success(),
            "paude trust: {}",
            text(&output.stderr)
        );
    }

    /// The `PAUDE_HOME` this invocation uses.
    pub fn paude_home(&self) -> PathBuf {
        self.home.join(".paude")
    }
}

/// `program` run as `who`: itself, or through `setpriv` as uid/gid 65534 (setpriv execs the
/// program, so the child's pid is the program's).
pub fn command_as(who: As, program: impl AsRef<OsStr>) -> Command {
    match who {
        As::Me => Command::new(program),
        As::Nobody => {
            // By path: a test may give the child a PATH without it.
            let mut command = Command::new("/usr/bin/setpriv");
            command
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(program);
            command
        }
    }
}

/// `bash -c SCRIPT` on the host as `who`, in `dir`, with `home` as HOME and stdin /dev/null:
/// a probe's run outside the sandbox.
pub fn bash_as(who: As, home: &Path, dir: &Path, script: &str) -> Command {
    let mut command = command_as(who, "bash");
    command
        .args(["-c", script])
        .current_dir(dir)
        .env("HOME", home)
        .stdin(Stdio::null());
    command
}

/// Output as text, for assertions and failure messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a successful run and returns its stdout.
#[track_caller]
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "paude failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Asserts a run that failed with `code` and said `message` on stderr, as `paude: error: …`,
/// with nothing on stdout.
#[track_caller]
pub fn fails_with(output: &Output, code: i32, message: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit {code}; stderr:\n{stderr}"
    );
    assert!(stderr.contains("paude: error: "), "{stderr}");
    assert!(
        stderr.contains(message),
        "expected {message:?} in:\n{stderr}"
    );
    assert!(output.stdout.is_empty(), "stdout: {}", text(&output.stdout));
}

/// The users to test as: always the current one, and nobody when we can become it.
pub fn users() -> Vec<As> {
    if is_root() {
        vec![As::Me, As::Nobody]
    } else {
        vec![As::Me]
    }
}

/// The entries of `$PAUDE_HOME/venv` (empty when it does not exist).
pub fn venv_entries(home: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(home.join(".paude/venv"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Writes a file (creating parents).
pub fn write(path: &Path, contents: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, contents).expect("write");
}

/// Gives a test directory to `who` after the test wrote into it as root.
pub fn hand_over(who: As, dir: &Path) {
    if who == As::Nobody {
        chown_tree(dir, NOBODY);
    }
}

/// A `PAUDE_HOME` parent shared by the tests of one user, so that one environment is built
/// once per test binary and per user (the store's lock makes concurrent first builds safe).
/// Statics are never dropped, so these are removed when the test binary exits.
// Registers an exit handler, which only libc offers.
#[allow(unsafe_code)]
pub fn shared_home(who: As) -> &'static Path {
    static ME: OnceLock<TestDir> = OnceLock::new();
    static NOBODY_HOME: OnceLock<TestDir> = OnceLock::new();
    extern "C" fn remove_shared_homes() {
        for cell in [&ME, &NOBODY_HOME] {
            if let Some(dir) = cell.get() {
                remove_tree(dir.path());
            }
        }
    }
    let cell = if who == As::Me { &ME } else { &NOBODY_HOME };
    cell.get_or_init(|| {
        static REGISTERED: std::sync::Once = std::sync::Once::new();
        // SAFETY: the handler only removes files; it runs once, when the process exits.
        REGISTERED.call_once(|| unsafe {
            libc::atexit(remove_shared_homes);
        });
        TestDir::new(who)
    })
    .path()
}

/// Has `command`'s child start with `file` open as descriptor `fd`, without close-on-exec,
/// as a careless caller would leave it.
#[allow(unsafe_code)]
pub fn leak_descriptor(command: &mut Command, file: &std::fs::File, fd: i32) {
    use std::os::unix::process::CommandExt;
    let from = std::os::fd::AsRawFd::as_raw_fd(file);
    // SAFETY: dup2 and fcntl are async-signal-safe. dup2 onto itself (the file may already be
    // `fd`) keeps close-on-exec, so it is cleared explicitly.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(from, fd) == -1 || libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Has `command`'s child start with the descriptors `fds` closed.
#[allow(unsafe_code)]
pub fn close_descriptors(command: &mut Command, fds: &'static [i32]) {
    use std::os::unix::process::CommandExt;
    // SAFETY: close is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            for fd in fds {
                libc::close(*fd);
            }
            Ok(())
        });
    }
}
