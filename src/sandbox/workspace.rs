//! The workspace: the project directory the sandbox may write to, and its Python venvs.
//!
//! The workspace is the git root above the current directory (the nearest ancestor holding a
//! `.git` directory or file, so worktrees and submodules count), else the current directory.
//! Python venvs (seeds 000-002) are found only at its top level, as the seeds decided: a venv
//! is a directory holding `pyvenv.cfg` (PEP 405's marker), whatever its name.

use crate::manifest::VenvMode;
use std::path::{Path, PathBuf};

/// The workspace root for a process started in `cwd` (an absolute, canonical path).
pub fn find_root(cwd: &Path) -> PathBuf {
    cwd.ancestors()
        .find(|dir| dir.join(".git").symlink_metadata().is_ok())
        .unwrap_or(cwd)
        .to_path_buf()
}

/// The git directories a workspace needs that lie outside it: a linked worktree's or a
/// submodule's `.git` is a file (`gitdir: PATH`) naming a directory elsewhere, and a worktree's
/// own directory names the repository's common directory in `commondir`. Without them bound,
/// git inside reports "not a git repository". Returns the directories to bind read-write, each
/// absolute and outside the workspace, without one inside another.
pub fn outside_git_dirs(workspace: &Path) -> Vec<PathBuf> {
    let read_pointer = |file: &Path, prefix: &str| -> Option<PathBuf> {
        let text = std::fs::read_to_string(file).ok()?;
        let value = text.lines().next()?.strip_prefix(prefix)?.trim();
        (!value.is_empty()).then(|| PathBuf::from(value))
    };
    let dot_git = workspace.join(".git");
    // Usually a directory (or nothing): one stat says so, where reading it would take four calls.
    if !dot_git.is_file() {
        return Vec::new();
    }
    let Some(gitdir) = read_pointer(&dot_git, "gitdir:") else {
        return Vec::new();
    };
    let gitdir = workspace.join(gitdir);
    let Ok(gitdir) = gitdir.canonicalize() else {
        return Vec::new();
    };
    let mut dirs = vec![gitdir.clone()];
    if let Some(common) = read_pointer(&gitdir.join("commondir"), "")
        && let Ok(common) = gitdir.join(common).canonicalize()
    {
        dirs.push(common);
    }
    dirs.sort();
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        if !dir.starts_with(workspace) && !out.iter().any(|kept| dir.starts_with(kept)) {
            out.retain(|kept| !kept.starts_with(&dir));
            out.push(dir);
        }
    }
    out
}

/// Whether `dir` is a Python virtual environment.
pub fn is_venv(dir: &Path) -> bool {
    dir.join("pyvenv.cfg").is_file()
}

/// The directories (not links to them) at the top level of `dir`, sorted by name.
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.path())
        .collect();
    found.sort();
    found
}

/// The venv directories of `workspace` to shadow under `mode`, as absolute paths in a stable
/// order. A listed directory without `pyvenv.cfg` is still shadowed (the user named it), with a
/// warning; a listed entry that is missing or not a directory is skipped with a warning, because
/// shadowing it would make bwrap create a mount point in the host's workspace.
pub fn venvs_to_shadow(
    workspace: &Path,
    mode: &VenvMode,
    warn: &mut dyn FnMut(String),
) -> Vec<PathBuf> {
    match mode {
        VenvMode::None => Vec::new(),
        VenvMode::Auto => subdirectories(workspace)
            .into_iter()
            .filter(|path| is_venv(path))
            .collect(),
        VenvMode::List(dirs) => dirs
            .iter()
            .map(|dir| {
                let path = workspace.join(dir);
                let kind = path.symlink_metadata().map(|meta| meta.file_type());
                if kind.is_err() {
                    warn(format!(
                        "venv `{}` does not exist in the workspace; nothing to shadow",
                        dir.display()
                    ));
                } else if !kind.as_ref().is_ok_and(|kind| kind.is_dir()) {
                    warn(format!(
                        "venv `{}` is not a directory; it is left as it is",
                        dir.display()
                    ));
                } else if !is_venv(&path) {
                    warn(format!(
                        "venv `{}` has no pyvenv.cfg, so it is not a Python venv; shadowing it anyway",
                        dir.display()
                    ));
                }
                (path, kind)
            })
            .filter(|(_, kind)| kind.as_ref().is_ok_and(|kind| kind.is_dir()))
            .map(|(path, _)| path)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_root_above_the_current_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        assert_eq!(find_root(&root.join("src/deep")), root);
        // A worktree has a `.git` file.
        std::fs::create_dir_all(root.join("src/deep/wt")).unwrap();
        std::fs::write(root.join("src/deep/wt/.git"), "gitdir: x").unwrap();
        assert_eq!(
            find_root(&root.join("src/deep/wt")),
            root.join("src/deep/wt")
        );
    }

    #[test]
    fn no_git_means_the_current_directory() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("a");
        std::fs::create_dir_all(&inner).unwrap();
        // tempdirs live under /tmp, which is not in a git repository on a sane host.
        assert_eq!(find_root(&inner), inner);
    }

    #[test]
    fn auto_finds_top_level_venvs_of_any_name() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        for name in [".venv", "custom", "nested/inner"] {
            std::fs::create_dir_all(ws.join(name)).unwrap();
            std::fs::write(ws.join(name).join("pyvenv.cfg"), "home = /x\n").unwrap();
        }
        std::fs::create_dir_all(ws.join("src")).unwrap();
        let got = venvs_to_shadow(ws, &VenvMode::Auto, &mut |w| panic!("{w}"));
        assert_eq!(got, vec![ws.join(".venv"), ws.join("custom")]);
        assert!(venvs_to_shadow(ws, &VenvMode::None, &mut |w| panic!("{w}")).is_empty());
    }

    #[test]
    fn listed_venvs_warn_when_missing_or_not_venvs() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        std::fs::create_dir_all(ws.join("plain")).unwrap();
        std::fs::write(ws.join("file"), "").unwrap();
        let mut warnings = Vec::new();
        let got = venvs_to_shadow(
            ws,
            &VenvMode::List(vec!["missing".into(), "plain".into(), "file".into()]),
            &mut |w| warnings.push(w),
        );
        assert_eq!(got, vec![ws.join("plain")]);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].contains("`missing` does not exist"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_worktree_needs_its_repository_git_directory() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main");
        let worktree = dir.path().join("wt");
        std::fs::create_dir_all(main.join(".git/worktrees/wt")).unwrap();
        std::fs::create_dir_all(&worktree).unwrap();
        std::fs::write(main.join(".git/worktrees/wt/commondir"), "../..\n").unwrap();
        std::fs::write(
            worktree.join(".git"),
            format!("gitdir: {}\n", main.join(".git/worktrees/wt").display()),
        )
        .unwrap();
        let main_git = std::fs::canonicalize(main.join(".git")).unwrap();
        assert_eq!(outside_git_dirs(&worktree), vec![main_git]);
        // An ordinary repository needs nothing more.
        assert!(outside_git_dirs(&main).is_empty());
    }
}
