//! Host facts, gathered once and up front: identity, current directory, environment,
//! terminals, where the store is, which bwrap to run, and whether the kernel's settings
//! refuse user namespaces. Later stages get them as plain data (STYLE.md, "gather host facts
//! once"); what a stage learns from the file system (the workspace, the store, the package
//! database) it asks where it needs it.

use anyhow::{Context, Result, bail};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What paude knows about the host it runs on.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub uid: u32,
    pub gid: u32,
    /// The current directory, as the kernel reports it (no links).
    pub cwd: PathBuf,
    /// The whole environment paude was started with.
    pub env: Vec<(OsString, OsString)>,
    /// The supplementary group ids.
    pub groups: Vec<u32>,
    pub stdin_is_terminal: bool,
    /// Whether progress can be drawn in place.
    pub stderr_is_terminal: bool,
    /// `$PAUDE_HOME`, default `$HOME/.paude`.
    pub paude_home: PathBuf,
}

impl HostFacts {
    /// Reads the facts of this process.
    pub fn gather() -> Result<HostFacts> {
        let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let get = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let cwd = std::env::current_dir().context(
            "finding the current directory (was it deleted? cd to an existing directory)",
        )?;
        let paude_home = store_home(get("PAUDE_HOME").as_deref(), get("HOME").as_deref())?;
        Ok(HostFacts {
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            groups: rustix::process::getgroups()
                .context("reading this process's groups")?
                .into_iter()
                .map(|gid| gid.as_raw())
                .collect(),
            cwd,
            // The descriptors themselves, not `std::io::stdin()`, which would set up a buffer.
            stdin_is_terminal: rustix::termios::isatty(rustix::stdio::stdin()),
            stderr_is_terminal: rustix::termios::isatty(rustix::stdio::stderr()),
            paude_home,
            env,
        })
    }

    /// The value of a host variable.
    pub fn var(&self, name: &str) -> Option<&OsString> {
        self.env
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The bwrap to run: `$PAUDE_BWRAP` if set, else `bwrap` found through `PATH`: the first
    /// file this user may execute.
    pub fn bwrap(&self) -> Result<PathBuf> {
        if let Some(path) = self.var("PAUDE_BWRAP").filter(|v| !v.is_empty()) {
            // A bare name is a file in the current directory, as checked here; `./` keeps the
            // exec from searching PATH for it instead.
            let path = match path.as_bytes().contains(&b'/') {
                true => PathBuf::from(path),
                false => Path::new(".").join(path),
            };
            if is_executable(&path) {
                return Ok(path);
            }
            bail!(
                "PAUDE_BWRAP is {}, which is not an executable file",
                path.display()
            );
        }
        match self.program("bwrap") {
            Some(path) => Ok(path),
            None => bail!("{BWRAP_MISSING}; {BWRAP_INSTALL}"),
        }
    }

    /// The first file named `name` in a directory of `PATH` that this user may execute.
    pub fn program(&self, name: &str) -> Option<PathBuf> {
        let search = self
            .var("PATH")
            .cloned()
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        // A directory listed twice (shell profiles often add one again) is looked in once.
        let mut tried: Vec<&[u8]> = Vec::new();
        for dir in search
            .as_bytes()
            .split(|b| *b == b':')
            .filter(|d| !d.is_empty())
        {
            if tried.contains(&dir) {
                continue;
            }
            tried.push(dir);
            let candidate = Path::new(OsStr::from_bytes(dir)).join(name);
            if is_executable(&candidate) {
                return Some(candidate);
            }
        }
        None
    }

    /// A reason the kernel will refuse an unprivileged user namespace, if one is visible
    /// without trying (two small /proc reads).
    pub fn userns_refusal(&self) -> Option<UsernsRefusal> {
        refusal_from_sysctls(self.uid, &read_sysctl)
    }
}

/// Whether `path` is a file this user may execute.
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file())
        && rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}

/// The store's directory under `$HOME` when `PAUDE_HOME` is not set.
pub const STORE_IN_HOME: &str = ".paude";

/// Where paude's store is: `$PAUDE_HOME` when it is set and not empty, else
/// [`STORE_IN_HOME`] under `$HOME`; either must be absolute.
pub fn store_home(paude_home: Option<&OsStr>, home: Option<&OsStr>) -> Result<PathBuf> {
    let absolute = |dir: &OsStr| dir.as_bytes().starts_with(b"/");
    match (paude_home.filter(|dir| !dir.is_empty()), home) {
        (Some(dir), _) if absolute(dir) => Ok(PathBuf::from(dir)),
        (Some(dir), _) => bail!(
            "PAUDE_HOME must be an absolute path, got {}",
            Path::new(dir).display()
        ),
        (None, Some(home)) if absolute(home) => Ok(Path::new(home).join(STORE_IN_HOME)),
        (None, Some(home)) if !home.is_empty() => bail!(
            "HOME is {}, not an absolute path, so paude cannot place its cache in it; \
             set HOME or PAUDE_HOME to an absolute path",
            Path::new(home).display()
        ),
        (None, _) => bail!(
            "neither PAUDE_HOME nor HOME is set; set PAUDE_HOME to a directory for paude's cache"
        ),
    }
}

/// A bubblewrap release: `(major, minor, patch)`.
pub type BwrapVersion = (u32, u32, u32);

/// The first bubblewrap with `--disable-userns`.
pub const BWRAP_DISABLE_USERNS: BwrapVersion = (0, 8, 0);

/// The first bubblewrap with `--bind-fd` and `--ro-bind-fd` (distributions backported them to
/// older releases with a security fix: Debian 12's 0.8.0 has them).
pub const BWRAP_BIND_FD: BwrapVersion = (0, 10, 0);

/// The options paude uses where bwrap has them, each with the release that brought it and
/// what a launch goes without when it is missing.
pub const BWRAP_OPTIONAL: [(&str, BwrapVersion, &str); 3] = [
    (
        "--disable-userns",
        BWRAP_DISABLE_USERNS,
        "only paude's seccomp filter keeps a sandbox from making user namespaces of its own",
    ),
    (
        "--bind-fd",
        BWRAP_BIND_FD,
        "the workspace is bound by name, so a sandbox still running in it could swap a path \
         for a link while the next sandbox is set up",
    ),
    (
        "--ro-bind-fd",
        BWRAP_BIND_FD,
        "protected paths are bound by name, so a sandbox still running in the workspace \
         could swap one for a link while the next sandbox is set up",
    ),
];

/// Which of [`BWRAP_OPTIONAL`] a bwrap has, as its `--help` lists them: a backport shows
/// there, not in the version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BwrapOptions {
    pub disable_userns: bool,
    pub bind_fd: bool,
}

impl BwrapOptions {
    pub fn from_help(help: &str) -> BwrapOptions {
        let has = |option: &str| {
            help.split(|c: char| c.is_whitespace() || c == ',' || c == '=')
                .any(|word| word == option)
        };
        BwrapOptions {
            disable_userns: has("--disable-userns"),
            bind_fd: has("--bind-fd") && has("--ro-bind-fd"),
        }
    }

    /// The options of [`BWRAP_OPTIONAL`] that are missing.
    pub fn lacking(
        &self,
    ) -> impl Iterator<Item = &'static (&'static str, BwrapVersion, &'static str)> {
        let has = [self.disable_userns, self.bind_fd, self.bind_fd];
        BWRAP_OPTIONAL
            .iter()
            .zip(has)
            .filter(|(_, has)| !has)
            .map(|(option, _)| option)
    }
}

/// `bubblewrap 0.4.1` → `(0, 4, 1)`: the first word that starts with a digit, in up to three
/// dot-separated numbers (missing ones are 0, a suffix such as `-rc1` is ignored).
pub fn parse_bwrap_version(output: &str) -> Option<BwrapVersion> {
    let word = output
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut numbers = word.split('.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = numbers.next().flatten()?;
    let minor = numbers.next().flatten().unwrap_or(0);
    let patch = numbers.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// What paude says when no bwrap is found on `PATH`.
pub const BWRAP_MISSING: &str = "bwrap (bubblewrap) is not installed or not in PATH";

/// How to install bwrap, for every message that needs it.
pub const BWRAP_INSTALL: &str = "install it with `sudo apt-get install bubblewrap` (Debian/Ubuntu) \
     or `sudo dnf install bubblewrap` (Fedora)";

/// `user.max_user_namespaces`: 0 refuses user namespaces to everyone, root included.
pub const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";
/// `kernel.unprivileged_userns_clone` (Debian's kernels): 0 refuses them to users but root.
pub const UNPRIVILEGED_USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
/// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10 and later): 1 refuses them
/// to users' programs unless an AppArmor profile grants the program `userns`.
pub const APPARMOR_RESTRICT_USERNS: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";

/// A setting that makes the kernel refuse user namespaces, and how to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernsRefusal {
    /// What is set, and to what.
    pub reason: String,
    /// The command that changes it.
    pub fix: String,
}

impl std::fmt::Display for UsernsRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.reason, self.fix)
    }
}

/// The value of a short sysctl file under `/proc/sys` (a number, a word), trimmed; `None` when
/// the kernel has no such setting, or it cannot be read.
pub fn read_sysctl(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim().to_string())
}

/// The refusal that the sysctls `read` returns imply for a process of `uid`, if any.
pub fn refusal_from_sysctls(
    uid: u32,
    read: &dyn Fn(&str) -> Option<String>,
) -> Option<UsernsRefusal> {
    let zero = |path: &str| read(path).is_some_and(|value| value == "0");
    // The AppArmor restriction is not a refusal: a profile may let bwrap through, which only
    // trying tells.
    if zero(MAX_USER_NAMESPACES) {
        Some(UsernsRefusal {
            reason: "user namespaces are disabled on this host (user.max_user_namespaces = 0)"
                .into(),
            fix: "enable them with `sudo sysctl -w user.max_user_namespaces=15000`".into(),
        })
    } else if uid != 0 && zero(UNPRIVILEGED_USERNS_CLONE) {
        Some(UsernsRefusal {
            reason: "unprivileged user namespaces are disabled on this host \
                 (kernel.unprivileged_userns_clone = 0)"
                .into(),
            fix: "enable them with `sudo sysctl -w kernel.unprivileged_userns_clone=1`".into(),
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |path: &str| {
            pairs
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_store_is_paude_home_else_under_home() {
        type Case = (
            Option<&'static str>,
            Option<&'static str>,
            Result<&'static str, &'static str>,
        );
        let cases: [Case; 6] = [
            (Some("/s"), Some("/h"), Ok("/s")),
            (
                Some("s"),
                Some("/h"),
                Err("PAUDE_HOME must be an absolute path, got s"),
            ),
            (Some(""), Some("/h"), Ok("/h/.paude")),
            (None, Some("h"), Err("HOME is h, not an absolute path")),
            (None, Some(""), Err("neither PAUDE_HOME nor HOME is set")),
            (None, None, Err("neither PAUDE_HOME nor HOME is set")),
        ];
        for (paude_home, home, expected) in cases {
            let got = store_home(paude_home.map(OsStr::new), home.map(OsStr::new));
            match (got, expected) {
                (Ok(dir), Ok(want)) => assert_eq!(dir, Path::new(want)),
                (Err(error), Err(want)) => assert!(error.to_string().starts_with(want), "{error}"),
                (got, _) => panic!("{paude_home:?} {home:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn refusals_from_sysctls() {
        let none = reader(&[]);
        assert_eq!(refusal_from_sysctls(1000, &none), None);
        let zero = reader(&[(MAX_USER_NAMESPACES, "0")]);
        assert!(refusal_from_sysctls(0, &zero).is_some());
        let debian = reader(&[(UNPRIVILEGED_USERNS_CLONE, "0")]);
        assert_eq!(refusal_from_sysctls(0, &debian), None);
        let refusal = refusal_from_sysctls(1000, &debian).unwrap();
        assert_eq!(
            refusal.to_string(),
            "unprivileged user namespaces are disabled on this host \
             (kernel.unprivileged_userns_clone = 0); enable them with \
             `sudo sysctl -w kernel.unprivileged_userns_clone=1`"
        );
        // AppArmor's restriction is not a refusal: a profile may let bwrap through.
        let ubuntu = reader(&[(APPARMOR_RESTRICT_USERNS, "1")]);
        assert_eq!(refusal_from_sysctls(1000, &ubuntu), None);
    }
}
