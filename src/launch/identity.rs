//! The host's git identity for a workspace, as host git resolves it: what a commit made
//! inside carries (`GIT_AUTHOR_*` and `GIT_COMMITTER_*`), since the sandbox's home is empty
//! and the host's `~/.gitconfig` is never passed whole (it can hold credentials and
//! programs git runs).
//!
//! Host git is asked (`git config --list --show-origin -z`, in the workspace, with the
//! caller's environment), which follows includes and conditional includes as the user's own
//! `git commit` would; the answer is cached with a stamp of every file git said it read, of
//! the places it reads from when they are absent (a `~/.gitconfig` made later), of the
//! repository's `HEAD` (an `includeIf "onbranch:"`), and of git itself, and under the
//! variables git reads its configuration's places from. The caller's own `GIT_AUTHOR_NAME`
//! and the like win, as they do for host git.

use super::Learned;
use super::cache::{self, Cache, Stamp};
use crate::host::HostFacts;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Who commits: each field as host git would take it, `None` where nothing sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GitIdentity {
    pub author_name: Option<String>,
    pub author_email: Option<String>,
    pub committer_name: Option<String>,
    pub committer_email: Option<String>,
}

impl GitIdentity {
    /// The variables to set inside, by name.
    pub fn variables(&self) -> Vec<(&'static str, &str)> {
        [
            ("GIT_AUTHOR_NAME", &self.author_name),
            ("GIT_AUTHOR_EMAIL", &self.author_email),
            ("GIT_COMMITTER_NAME", &self.committer_name),
            ("GIT_COMMITTER_EMAIL", &self.committer_email),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_deref()?)))
        .collect()
    }

    /// The identity in the output of `git config --list --show-origin -z`, and the files it
    /// names as read: each entry is its origin, a NUL, the key, a newline, the value, a NUL.
    fn from_config(output: &[u8], base: &Path) -> (GitIdentity, Vec<PathBuf>) {
        let mut fields = output.split(|&b| b == 0);
        let (mut user_name, mut user_email) = (None, None);
        let mut identity = GitIdentity::default();
        let mut files = Vec::new();
        while let (Some(origin), Some(entry)) = (fields.next(), fields.next()) {
            if let Some(file) = origin.strip_prefix(b"file:") {
                let file = base.join(std::ffi::OsStr::from_bytes(file));
                if !files.contains(&file) {
                    files.push(file);
                }
            }
            let (key, value) = match entry.iter().position(|&b| b == b'\n') {
                Some(at) => (&entry[..at], &entry[at + 1..]),
                None => (entry, &b""[..]),
            };
            let value = Some(String::from_utf8_lossy(value).into_owned());
            // Keys are lower-cased by git; the last one read wins, as in git.
            match key {
                b"user.name" => user_name = value,
                b"user.email" => user_email = value,
                b"author.name" => identity.author_name = value,
                b"author.email" => identity.author_email = value,
                b"committer.name" => identity.committer_name = value,
                b"committer.email" => identity.committer_email = value,
                _ => {}
            }
        }
        identity.author_name = identity.author_name.or(user_name.clone());
        identity.author_email = identity.author_email.or(user_email.clone());
        identity.committer_name = identity.committer_name.or(user_name);
        identity.committer_email = identity.committer_email.or(user_email);
        (identity, files)
    }
}

/// The first `git` in the absolute entries of the caller's `PATH` (a relative one would be
/// looked up in paude's current directory, which may be the workspace).
fn host_git(host: &HostFacts) -> Option<PathBuf> {
    let path = host.var("PATH")?;
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("git"))
        .find(|git| {
            use std::os::unix::fs::PermissionsExt;
            git.metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// The host's git identity in `workspace` (whose git directory is `git_dir`, if it has one):
/// from the cache while nothing git read changed, else asked of host git.
pub fn git_identity(
    cache: &Cache,
    host: &HostFacts,
    workspace: &Path,
    git_dir: Option<&Path>,
    began: SystemTime,
    learned: &mut Learned,
) -> GitIdentity {
    let from_env = |name: &str| host.var(name).map(|v| v.to_string_lossy().into_owned());
    let mut identity = match host_git(host) {
        Some(git) => configured(cache, host, &git, workspace, git_dir, began, learned),
        None => GitIdentity::default(),
    };
    // The caller's variables win, as for host git.
    for (name, field) in [
        ("GIT_AUTHOR_NAME", &mut identity.author_name),
        ("GIT_AUTHOR_EMAIL", &mut identity.author_email),
        ("GIT_COMMITTER_NAME", &mut identity.committer_name),
        ("GIT_COMMITTER_EMAIL", &mut identity.committer_email),
    ] {
        if let Some(value) = from_env(name) {
            *field = Some(value);
        }
    }
    identity
}

fn configured(
    cache: &Cache,
    host: &HostFacts,
    git: &Path,
    workspace: &Path,
    git_dir: Option<&Path>,
    began: SystemTime,
    learned: &mut Learned,
) -> GitIdentity {
    // What decides where git reads its configuration from, and what it finds there.
    let mut variables: Vec<(String, String)> = host
        .env
        .iter()
        .filter(|(name, _)| {
            let name = name.as_bytes();
            name.starts_with(b"GIT_") || name == b"HOME" || name == b"XDG_CONFIG_HOME"
        })
        .map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        })
        .collect();
    variables.sort();
    let key = || {
        cache::Key::new("git-identity")
            .field(git.as_os_str().as_bytes())
            .field(workspace.as_os_str().as_bytes())
            .pairs(&variables)
    };
    if let Some(identity) = cache.get(key()) {
        return identity;
    }
    // The places git reads, whether or not they are there; stamped before git is asked, so
    // that one changed meanwhile is asked about again.
    let home = host.var("HOME").map(PathBuf::from);
    let xdg = host
        .var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|home| home.join(".config")));
    let mut places: Vec<PathBuf> = vec![git.to_path_buf(), PathBuf::from("/etc/gitconfig")];
    places.extend(home.map(|home| home.join(".gitconfig")));
    places.extend(xdg.map(|xdg| xdg.join("git/config")));
    for name in ["GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM"] {
        places.extend(host.var(name).map(PathBuf::from));
    }
    if let Some(dir) = git_dir {
        places.extend(["config", "config.worktree", "HEAD"].map(|name| dir.join(name)));
    }
    let stamp_all = |paths: &[PathBuf]| -> Option<Vec<Stamp>> {
        paths.iter().map(|path| Stamp::of(path).ok()).collect()
    };
    let Some(mut stamps) = stamp_all(&places) else {
        return GitIdentity::default();
    };
    let Some(stdout) = run_bounded(
        std::process::Command::new(git)
            .arg("-C")
            .arg(workspace)
            .args(["config", "--list", "--show-origin", "-z"])
            .current_dir("/")
            .env_clear()
            .envs(host.env.iter().map(|(name, value)| (name, value))),
    ) else {
        return GitIdentity::default();
    };
    let (identity, files) = GitIdentity::from_config(&stdout, workspace);
    let read: Vec<PathBuf> = files
        .into_iter()
        .filter(|file| !places.contains(file))
        .collect();
    match stamp_all(&read) {
        Some(more) => stamps.extend(more),
        None => return identity,
    }
    learned
        .0
        .extend(cache.prepare(key(), stamps, began, &identity));
    identity
}

/// How long git may take to list its configuration: a file it includes could be a FIFO
/// nobody writes (one the sandbox made, should the user's config include a workspace file).
const GIT_TIME: std::time::Duration = std::time::Duration::from_secs(3);

/// The stdout of `command` if it succeeds within [`GIT_TIME`] (it is killed after that);
/// read here, without a thread (the holder's fork needs the launch to run only one).
fn run_bounded(command: &mut std::process::Command) -> Option<Vec<u8>> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let deadline = std::time::Instant::now() + GIT_TIME;
    let mut out = Vec::new();
    let mut buffer = [0u8; 8192];
    let finished = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break false;
        }
        let timeout = Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        let mut fds = [PollFd::new(&stdout, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => break false,
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => break false,
        }
        match rustix::io::read(&stdout, &mut buffer) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buffer[..n]),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => break false,
        }
    };
    if !finished {
        child.kill().ok();
        child.wait().ok();
        return None;
    }
    child.wait().ok()?.success().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_read_as_git_lists_it() {
        let output = b"file:/home/u/.gitconfig\0user.name\nU Ser\0file:/home/u/.gitconfig\0user.email\nu@x\0\
                       file:/home/u/work.inc\0user.email\nu@work\0command line:\0author.name\nA\0\
                       file:.git/config\0core.bare\nfalse\0";
        let (identity, files) = GitIdentity::from_config(output, Path::new("/w"));
        assert_eq!(
            identity,
            GitIdentity {
                author_name: Some("A".into()),
                author_email: Some("u@work".into()),
                committer_name: Some("U Ser".into()),
                committer_email: Some("u@work".into()),
            }
        );
        assert_eq!(
            files,
            [
                PathBuf::from("/home/u/.gitconfig"),
                PathBuf::from("/home/u/work.inc"),
                PathBuf::from("/w/.git/config")
            ]
        );
        assert_eq!(
            identity.variables(),
            [
                ("GIT_AUTHOR_NAME", "A"),
                ("GIT_AUTHOR_EMAIL", "u@work"),
                ("GIT_COMMITTER_NAME", "U Ser"),
                ("GIT_COMMITTER_EMAIL", "u@work")
            ]
        );
        assert_eq!(
            GitIdentity::from_config(b"", Path::new("/")).0,
            GitIdentity::default()
        );
    }
}
