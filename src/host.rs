//! The one place that probes the host: identity, directories, environment, terminal, bwrap.
//!
//! Facts are gathered once, up front, and passed down as plain data, so every later decision
//! is a function of its inputs (STYLE.md, "gather host facts once").

use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::io::IsTerminal;
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
    pub stdin_is_terminal: bool,
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
        let paude_home = match (get("PAUDE_HOME").filter(|v| !v.is_empty()), get("HOME")) {
            (Some(home), _) if Path::new(&home).is_absolute() => PathBuf::from(home),
            (Some(home), _) => bail!(
                "PAUDE_HOME must be an absolute path, got {}",
                Path::new(&home).display()
            ),
            (None, Some(home)) if Path::new(&home).is_absolute() => {
                PathBuf::from(home).join(".paude")
            }
            (None, Some(home)) if !home.is_empty() => bail!(
                "HOME is {}, not an absolute path, so paude cannot place its cache in it; \
                 set HOME or PAUDE_HOME to an absolute path",
                Path::new(&home).display()
            ),
            (None, _) => bail!(
                "neither PAUDE_HOME nor HOME is set; set PAUDE_HOME to a directory for paude's cache"
            ),
        };
        Ok(HostFacts {
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            cwd,
            stdin_is_terminal: std::io::stdin().is_terminal(),
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

    /// The bwrap to run: `$PAUDE_BWRAP` if set, else `bwrap` found through `PATH`.
    pub fn bwrap(&self) -> Result<PathBuf> {
        if let Some(path) = self.var("PAUDE_BWRAP").filter(|v| !v.is_empty()) {
            let path = PathBuf::from(path);
            if is_executable(&path) {
                return Ok(path);
            }
            bail!(
                "PAUDE_BWRAP is {}, which is not an executable file",
                path.display()
            );
        }
        let search = self
            .var("PATH")
            .cloned()
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        for dir in search
            .as_bytes()
            .split(|b| *b == b':')
            .filter(|d| !d.is_empty())
        {
            let candidate = Path::new(std::ffi::OsStr::from_bytes(dir)).join("bwrap");
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
        bail!(
            "bwrap (bubblewrap) is not installed or not in PATH; install it with \
             `sudo apt-get install bubblewrap` (Debian/Ubuntu) or `sudo dnf install bubblewrap` (Fedora)"
        )
    }

    /// A reason the kernel will refuse an unprivileged user namespace, if one is visible
    /// without trying (two small /proc reads).
    pub fn userns_refusal(&self) -> Option<String> {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_string())
        };
        if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
            return Some(
                "user namespaces are disabled on this host (user.max_user_namespaces = 0); \
                 enable them with `sudo sysctl -w user.max_user_namespaces=15000`"
                    .into(),
            );
        }
        if self.uid != 0
            && read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0")
        {
            return Some(
                "unprivileged user namespaces are disabled on this host \
                 (kernel.unprivileged_userns_clone = 0); enable them with \
                 `sudo sysctl -w kernel.unprivileged_userns_clone=1`"
                    .into(),
            );
        }
        None
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
