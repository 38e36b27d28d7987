//! Rendering a [`Plan`] into bwrap's argument list: a pure function.
//!
//! Order is semantics in bwrap, so [`render`] emits, in this order:
//!
//! 1. namespaces: `--unshare-user --unshare-pid --unshare-ipc --unshare-uts --unshare-cgroup`,
//!    `--unshare-net` unless the manifest asks for the host's network, and `--disable-userns` (no
//!    nested user namespace) where bwrap has it;
//! 2. process options: `--die-with-parent` (the sandbox ends with its launcher's parent
//!    process tree); `--cap-drop ALL` (no capabilities, also when paude runs as root, where
//!    bwrap would otherwise keep them all inside the user namespace); `--sync-fd FD`, the pipe
//!    that keeps the venv's lock held (bwrap's pid 1 keeps it open for the sandbox's lifetime
//!    and closes it in the command before exec); `--info-fd FD` and `--block-fd FD`, where a
//!    network helper must join the sandbox's namespace before the command runs (see
//!    `network`); `--seccomp FD`, the terminal-injection
//!    filter, when the terminal is kept; `--new-session` when stdin is not a terminal;
//! 3. the mount operations exactly in plan order (top-level rootfs entries, splits, logical
//!    mounts, then the read-only remounts); a bind whose source the launch holds by
//!    descriptor (see `pin`) is `--bind-fd FD` or `--ro-bind-fd FD`;
//! 4. the environment: `--clearenv`, then one `--setenv NAME VALUE` per variable;
//! 5. `--chdir DIR`;
//! 6. `--` and the command, so a command starting with `-` is never read as an option.
//!
//! Arguments are `OsString` throughout: paths on Linux are bytes, and a lossy conversion here
//! would mount the wrong path.

use super::plan::{MountOp, Plan};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// bwrap's arguments for `plan` (without the program name).
pub fn render(plan: &Plan) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&OsStr]| args.extend(items.iter().map(|item| item.to_os_string()));
    for flag in [
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup",
    ] {
        push(&[flag.as_ref()]);
    }
    if plan.unshare_net {
        push(&["--unshare-net".as_ref()]);
    }
    if plan.disable_userns {
        push(&["--disable-userns".as_ref()]);
    }
    push(&["--die-with-parent".as_ref()]);
    push(&["--cap-drop".as_ref(), "ALL".as_ref()]);
    for (option, fd) in [
        ("--sync-fd", plan.keep_open),
        ("--info-fd", plan.info_fd),
        ("--block-fd", plan.block_fd),
        ("--seccomp", plan.seccomp_fd),
    ] {
        if let Some(fd) = fd {
            push(&[option.as_ref(), fd.to_string().as_ref()]);
        }
    }
    if plan.new_session {
        push(&["--new-session".as_ref()]);
    }
    for op in &plan.mounts {
        match op {
            MountOp::Bind { source, target } | MountOp::RoBind { source, target } => {
                let writable = matches!(op, MountOp::Bind { .. });
                match plan.pinned.iter().find(|(path, _)| path == source) {
                    Some((_, fd)) => push(&[
                        if writable {
                            "--bind-fd"
                        } else {
                            "--ro-bind-fd"
                        }
                        .as_ref(),
                        fd.to_string().as_ref(),
                        target.as_ref(),
                    ]),
                    None => push(&[
                        if writable { "--bind" } else { "--ro-bind" }.as_ref(),
                        source.as_ref(),
                        target.as_ref(),
                    ]),
                }
            }
            MountOp::DevBind { source, target } => {
                push(&["--dev-bind".as_ref(), source.as_ref(), target.as_ref()])
            }
            MountOp::Tmpfs { target } => push(&["--tmpfs".as_ref(), target.as_ref()]),
            MountOp::Proc { target } => push(&["--proc".as_ref(), target.as_ref()]),
            MountOp::Dev { target } => push(&["--dev".as_ref(), target.as_ref()]),
            MountOp::Symlink { link, target } => {
                push(&["--symlink".as_ref(), link.as_ref(), target.as_ref()])
            }
            MountOp::RemountRo { target } => push(&["--remount-ro".as_ref(), target.as_ref()]),
        }
    }
    push(&["--clearenv".as_ref()]);
    for (name, value) in &plan.env {
        push(&["--setenv".as_ref(), name, value]);
    }
    push(&["--chdir".as_ref(), plan.chdir.as_ref()]);
    push(&["--".as_ref()]);
    for word in &plan.command {
        push(&[word]);
    }
    args
}

/// One shell word for `word`: as is when it is plain, else single-quoted (with `'` written as
/// `'\''`). Bytes that are not UTF-8 are kept: the line is meant for a POSIX shell, which takes
/// bytes.
pub fn shell_quote(word: &OsStr) -> Vec<u8> {
    let mut out = Vec::new();
    quote_into(&mut out, word.as_bytes());
    out
}

fn quote_into(out: &mut Vec<u8>, word: &[u8]) {
    let plain = !word.is_empty()
        && word
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(b));
    if plain {
        return out.extend_from_slice(word);
    }
    out.push(b'\'');
    for piece in word.split_inclusive(|b| *b == b'\'') {
        match piece.strip_suffix(b"'") {
            Some(before) => {
                out.extend_from_slice(before);
                out.extend_from_slice(b"'\\''");
            }
            None => out.extend_from_slice(piece),
        }
    }
    out.push(b'\'');
}

/// The whole command line, shell-quoted, as `--dry-run` prints it.
pub fn command_line(program: &OsStr, args: &[OsString]) -> Vec<u8> {
    let mut line = Vec::new();
    quote_into(&mut line, program.as_bytes());
    for arg in args {
        line.push(b' ');
        quote_into(&mut line, arg.as_bytes());
    }
    line
}

/// The line `--dry-run` prints: the command line, its filter read from descriptor 3 (which
/// the line redirects from the filter's file), and a newline.
pub fn dry_run_line(program: &OsStr, args: &[OsString], filter: Option<&OsStr>) -> Vec<u8> {
    let mut line = command_line(program, args);
    if let Some(filter) = filter {
        line.extend_from_slice(b" 3<");
        quote_into(&mut line, filter.as_bytes());
    }
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::plan::View;
    use std::path::PathBuf;

    #[test]
    fn quoting_is_minimal_and_safe() {
        assert_eq!(shell_quote(OsStr::new("/usr/bin")), b"/usr/bin");
        assert_eq!(shell_quote(OsStr::new("")), b"''");
        assert_eq!(shell_quote(OsStr::new("a b")), b"'a b'");
        assert_eq!(shell_quote(OsStr::new("it's")), b"'it'\\''s'");
        assert_eq!(shell_quote(OsStr::new("$HOME")), b"'$HOME'");
        assert_eq!(shell_quote(OsStr::from_bytes(b"\xff")), b"'\xff'");
    }

    #[test]
    fn whole_argv_in_documented_order() {
        let plan = Plan {
            rootfs: PathBuf::from("/store/rootfs"),
            unshare_net: true,
            helper: None,
            info_fd: Some(6),
            block_fd: Some(7),
            disable_userns: true,
            new_session: true,
            keep_open: Some(3),
            seccomp_fd: Some(4),
            pinned: vec![("/w".into(), 5)],
            mounts: vec![
                MountOp::RoBind {
                    source: "/store/rootfs/usr".into(),
                    target: "/usr".into(),
                },
                MountOp::Symlink {
                    link: "usr/bin".into(),
                    target: "/bin".into(),
                },
                MountOp::Dev {
                    target: "/dev".into(),
                },
                MountOp::Bind {
                    source: "/w".into(),
                    target: "/w".into(),
                },
                MountOp::Tmpfs {
                    target: "/w/.venv".into(),
                },
                MountOp::RemountRo { target: "/".into() },
            ],
            views: vec![(PathBuf::from("/w"), View::Host("/w".into()))],
            env: vec![("PATH".into(), "/usr/bin".into())],
            chdir: "/w/src".into(),
            command: vec!["-weird".into(), "arg".into()],
            warnings: Vec::new(),
        };
        #[rustfmt::skip]
        let expected: Vec<OsString> = [
            // 1. namespaces
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
            "--unshare-net", "--disable-userns",
            // 2. process
            "--die-with-parent", "--cap-drop", "ALL", "--sync-fd", "3", "--info-fd", "6", "--block-fd", "7",
            "--seccomp", "4", "--new-session",
            // 3. mounts, in plan order
            "--ro-bind", "/store/rootfs/usr", "/usr",
            "--symlink", "usr/bin", "/bin",
            "--dev", "/dev",
            "--bind-fd", "5", "/w",
            "--tmpfs", "/w/.venv",
            "--remount-ro", "/",
            // 4. environment
            "--clearenv", "--setenv", "PATH", "/usr/bin",
            // 5. working directory
            "--chdir", "/w/src",
            // 6. the command, after --
            "--", "-weird", "arg",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(render(&plan), expected);
    }
}
