//! Trust of a workspace's own manifest, as `direnv allow` works: a workspace's
//! `paude.jsonnet` decides what its sandbox can reach (mounts, the network, the home), and a
//! sandbox can write the workspace; so the manifest is used only as the user trusted it, byte
//! for byte, with the files it imports from the workspace.
//!
//! `paude trust` records each such file's SHA-256 (and its text, to show what changed) in a
//! record outside the workspace (`$PAUDE_HOME/trust/`). A launch compares: the manifest
//! before evaluating it, its imports from the workspace after. Anything new or changed is
//! refused with what changed and the command that trusts it. `-e` and `-f` are the user's own
//! manifests and need no trust.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The most of a file's text a record keeps, to show what changed.
const TEXT_MAX: usize = 64 << 10;

/// What the user trusted of one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub workspace: PathBuf,
    pub files: Vec<Trusted>,
}

/// One trusted file: its path, its digest, and its text (when short and UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trusted {
    pub path: PathBuf,
    pub sha256: String,
    pub text: Option<String>,
}

impl Trusted {
    /// `path` as it is now.
    pub fn of(path: &Path, bytes: &[u8]) -> Trusted {
        Trusted {
            path: path.to_path_buf(),
            sha256: digest(bytes),
            text: std::str::from_utf8(bytes)
                .ok()
                .filter(|text| text.len() <= TEXT_MAX)
                .map(str::to_string),
        }
    }
}

fn digest(bytes: &[u8]) -> String {
    crate::store::key::hex(&Sha256::digest(bytes))
}

/// Why a file is not trusted as it is, and what changed, for the message.
pub fn untrusted(record: Option<&Record>, path: &Path, bytes: &[u8]) -> Option<String> {
    let trusted = record.and_then(|record| record.files.iter().find(|file| file.path == path));
    let Some(trusted) = trusted else {
        return Some(format!("{} is not trusted yet", path.display()));
    };
    if trusted.sha256 == digest(bytes) {
        return None;
    }
    let now = String::from_utf8_lossy(bytes);
    let mut message = format!("{} changed since you trusted it", path.display());
    if let Some(before) = &trusted.text {
        message.push_str(":\n");
        message.push_str(&line_diff(before, &now));
    }
    Some(message)
}

/// The lines that went and came between `before` and `after` (`-` and `+`), at most 40 of
/// them, by their longest common subsequence.
pub fn line_diff(before: &str, after: &str) -> String {
    const SHOWN: usize = 40;
    let (old, new): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    if old.len() * new.len() > 4_000_000 {
        return format!("    ({} lines before, {} now)\n", old.len(), new.len());
    }
    // lengths[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut lengths = vec![vec![0u32; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            lengths[i][j] = if old[i] == new[j] {
                lengths[i + 1][j + 1] + 1
            } else {
                lengths[i + 1][j].max(lengths[i][j + 1])
            };
        }
    }
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            i += 1;
            j += 1;
        } else if i < old.len() && (j == new.len() || lengths[i + 1][j] >= lengths[i][j + 1]) {
            out.push(format!("    - {}", old[i]));
            i += 1;
        } else {
            out.push(format!("    + {}", new[j]));
            j += 1;
        }
    }
    let hidden = out.len().saturating_sub(SHOWN);
    out.truncate(SHOWN);
    if hidden > 0 {
        out.push(format!("    ... and {hidden} more changed lines"));
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_trusted_byte_for_byte() {
        let path = Path::new("/w/paude.jsonnet");
        let text = "{\n  packages: [\"bash\"],\n}\n";
        let record = Record {
            workspace: "/w".into(),
            files: vec![Trusted::of(path, text.as_bytes())],
        };
        assert_eq!(untrusted(Some(&record), path, text.as_bytes()), None);
        let changed = "{\n  packages: [\"bash\"],\n  mounts: [\"/home/u\"],\n}\n";
        let why = untrusted(Some(&record), path, changed.as_bytes()).unwrap();
        assert!(why.contains("changed since you trusted it"), "{why}");
        assert!(why.contains("    +   mounts: [\"/home/u\"],"), "{why}");
        assert!(!why.contains("    - "), "{why}");
        assert!(
            untrusted(None, path, text.as_bytes())
                .unwrap()
                .contains("not trusted yet")
        );
        let other = Path::new("/w/lib.libsonnet");
        assert!(
            untrusted(Some(&record), other, b"{}")
                .unwrap()
                .contains("not trusted")
        );
    }

    #[test]
    fn the_diff_shows_what_went_and_what_came() {
        let diff = line_diff("a\nb\nc\n", "a\nx\nc\nd\n");
        assert_eq!(diff, "    - b\n    + x\n    + d\n");
        let many: String = (0..100).map(|n| format!("{n}\n")).collect();
        let diff = line_diff("", &many);
        assert!(diff.contains("... and 60 more changed lines"), "{diff}");
    }
}
