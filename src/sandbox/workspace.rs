//! The workspace: the project directory the sandbox may write to, and its Python venvs.
//!
//! The workspace is the git root above the current directory (the nearest ancestor holding a
//! `.git` directory or file, so worktrees and submodules count), else the current directory.
//! Python venvs (seeds 000-002) are found only at its top level, as the seeds decided: a venv
//! is a directory holding `pyvenv.cfg` (PEP 405's marker), whatever its name.

use crate::manifest::VenvMode;
use crate::rootpath;
use std::path::{Path, PathBuf};

/// The workspace root for a process started in `cwd` (an absolute, canonical path).
pub fn find_root(cwd: &Path) -> PathBuf {
    cwd.ancestors()
        .find(|dir| dir.join(".git").symlink_metadata().is_ok())
        .unwrap_or(cwd)
        .to_path_buf()
}

/// Why `workspace` may not be handed to a sandbox, if it may not: a sandbox can read and write
/// everything in its workspace, so `/`, a home directory (its `~/.ssh`, its `~/.bashrc`) or a
/// directory above one, and a directory holding paude's store (which decides what the next
/// launch runs) are refused. All paths are real (links resolved); `homes` are the user's
/// home directories (`$HOME`, the account's), `store` is `PAUDE_HOME`.
pub fn refusal(workspace: &Path, homes: &[PathBuf], store: &Path) -> Option<String> {
    let fix = "cd into a project directory (a git repository's root is its workspace), or name \
               one with --workspace DIR";
    let shown = workspace.display();
    if workspace == Path::new("/") {
        return Some(format!(
            "the workspace would be / (the current directory is / or / is a git repository); {fix}"
        ));
    }
    if let Some(home) = homes
        .iter()
        .find(|home| rootpath::is_within(home, workspace))
    {
        let what = if home.as_path() == workspace {
            "your home directory".to_string()
        } else {
            format!("above your home directory {}", home.display())
        };
        return Some(format!(
            "the workspace would be {shown}, {what}: a sandbox could read your keys and \
             write the files your shell runs; {fix}"
        ));
    }
    if rootpath::is_within(store, workspace) {
        return Some(format!(
            "the workspace {shown} holds paude's store {} (PAUDE_HOME), which a sandbox must \
             not be able to write; {fix}, or set PAUDE_HOME to a directory outside it",
            store.display()
        ));
    }
    None
}

/// `path` with every link resolved as far as it exists, and the rest as written: where a
/// directory that does not exist yet will be.
pub fn real_path_so_far(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |real, name| real.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Whether `dir` is a Python virtual environment.
pub fn is_venv(dir: &Path) -> bool {
    dir.join("pyvenv.cfg").is_file()
}

/// The directories (not links to them) at the top level of `dir`, sorted by name.
pub fn subdirectories(dir: &Path) -> Vec<PathBuf> {
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
/// order: the host's venvs, and the directories where paude keeps a venv the sandbox made
/// (`kept`, by the path relative to the workspace). A listed directory without `pyvenv.cfg` is still shadowed (the user named it), with a
/// warning; a listed entry that is missing or not a directory is skipped with a warning, because
/// shadowing it would make bwrap create a mount point in the host's workspace.
pub fn venvs_to_shadow(
    workspace: &Path,
    mode: &VenvMode,
    kept: &dyn Fn(&Path) -> bool,
    warn: &mut dyn FnMut(String),
) -> Vec<PathBuf> {
    match mode {
        VenvMode::None => Vec::new(),
        VenvMode::Auto => subdirectories(workspace)
            .into_iter()
            .filter(|path| {
                is_venv(path)
                    || path
                        .strip_prefix(workspace)
                        .is_ok_and(kept)
            })
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
                } else if !is_venv(&path) && !kept(dir) {
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
        let got = venvs_to_shadow(ws, &VenvMode::Auto, &|_| false, &mut |w| panic!("{w}"));
        assert_eq!(got, vec![ws.join(".venv"), ws.join("custom")]);
        assert!(
            venvs_to_shadow(ws, &VenvMode::None, &|_| false, &mut |w| panic!("{w}")).is_empty()
        );
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
            &|_| false,
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
    fn a_workspace_that_holds_a_home_or_the_store_is_refused() {
        let homes = [PathBuf::from("/home/u"), PathBuf::from("/srv/u")];
        let store = Path::new("/var/paude");
        let refused = |ws: &str| refusal(Path::new(ws), &homes, store);
        assert!(refused("/").unwrap().contains("would be /"));
        assert!(refused("/home/u").unwrap().contains("your home directory"));
        assert!(
            refused("/home")
                .unwrap()
                .contains("above your home directory /home/u")
        );
        assert!(refused("/srv").unwrap().contains("/srv/u"));
        assert!(refused("/var").unwrap().contains("PAUDE_HOME"));
        assert!(refused("/var/paude").unwrap().contains("PAUDE_HOME"));
        assert_eq!(refused("/home/u/project"), None);
        assert_eq!(refused("/home/user"), None);
        assert_eq!(refused("/var/paude-work"), None);
    }

    #[test]
    fn real_path_so_far_resolves_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(&real, real.join("link")).unwrap();
        assert_eq!(
            real_path_so_far(&real.join("link/not/yet")),
            real.join("not/yet")
        );
        assert_eq!(real_path_so_far(&real.join("link")), real);
    }
}
