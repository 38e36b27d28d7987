//! Trust of a workspace's own manifest, as `direnv allow` works: a workspace's
//! `paude.jsonnet` decides what its sandbox can reach (mounts, the network, the home), and a
//! sandbox can write the workspace; so the manifest is used only as the user trusted it, byte
//! for byte, with every file its evaluation reads, wherever it lies (an import by absolute
//! path, through a link, from a `-J` directory, from a directory above the workspace that
//! another sandbox can write). The embedded library is no file, and needs no trust.
//!
//! `paude trust` records each such file by its real path (and the path it was read by, where
//! that differs), with the SHA-256 of the bytes evaluated (and their text, to show what
//! changed), in a record outside the workspace (`$PAUDE_HOME/trust/`). A launch refuses an
//! untrusted manifest before evaluating it, then judges what the evaluation reports it read
//! ([`FileRead`]): the digest of the bytes it evaluated, not the file read again, which a
//! sandbox could have swapped back meanwhile. Anything new or changed is refused with what
//! changed and the command that trusts it. `-e` and `-f` are the user's own manifests and
//! need no trust.

use super::eval::FileRead;
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

/// One trusted file: its real path, the path it was read by, its digest, and its text (when
/// short and UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trusted {
    /// The file's real path (no link, no `..`).
    pub path: PathBuf,
    /// The path the evaluation read it by, where that is not `path` (it led through a link,
    /// or `..`): trusted with it, so that a link changed to lead to another trusted file
    /// does not put that file's text where this one's was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_as: Option<PathBuf>,
    /// The SHA-256 of its bytes, in hex.
    pub sha256: String,
    /// Its text, to show what changed.
    pub text: Option<String>,
}

impl Trusted {
    /// The file an evaluation read as `file`, with its text from `now`, the file read again:
    /// `None` when `now` is not the bytes that were evaluated (the file changed meanwhile).
    pub fn of(file: &FileRead, now: &[u8]) -> Option<Trusted> {
        (digest(now) == file.sha256).then(|| Trusted {
            path: file.real.clone(),
            read_as: (file.path != file.real).then(|| file.path.clone()),
            sha256: file.sha256.clone(),
            text: std::str::from_utf8(now)
                .ok()
                .filter(|text| text.len() <= TEXT_MAX)
                .map(str::to_string),
        })
    }

    /// The path the evaluation read this file by.
    fn read_as(&self) -> &Path {
        self.read_as.as_deref().unwrap_or(&self.path)
    }
}

/// The SHA-256 of `bytes`, in hex, as records keep it.
pub fn digest(bytes: &[u8]) -> String {
    crate::store::key::hex(&Sha256::digest(bytes))
}

/// Why a file the evaluation read is not trusted as it was read, and what changed, for the
/// message. The decision is on `file.sha256`, the digest of the bytes evaluated; `now` reads
/// the file again only to show how it changed, and only when it reads those same bytes.
pub fn untrusted(
    record: Option<&Record>,
    file: &FileRead,
    now: impl FnOnce() -> Option<Vec<u8>>,
) -> Option<String> {
    let FileRead {
        path: read_as,
        real,
        sha256,
        ..
    } = file;
    let files = record.map_or(&[][..], |record| &record.files[..]);
    let read_by = match read_as == real {
        true => String::new(),
        false => format!(" (read as {})", read_as.display()),
    };
    let trusted = files
        .iter()
        .find(|file| file.path == *real && file.read_as() == read_as);
    let Some(trusted) = trusted else {
        let mut message = format!("{} is not trusted yet{read_by}", real.display());
        if let Some(other) = files.iter().find(|file| file.path == *real) {
            message.push_str(&format!(
                "; you trusted it read as {}, and a link or a -J directory now leads to it \
                 another way",
                other.read_as().display()
            ));
        }
        return Some(message);
    };
    if trusted.sha256 == *sha256 {
        return None;
    }
    let mut message = format!("{} changed since you trusted it{read_by}", real.display());
    if let Some(before) = &trusted.text {
        match now().filter(|bytes| digest(bytes) == *sha256) {
            Some(bytes) => {
                message.push_str(":\n");
                message.push_str(&line_diff(before, &String::from_utf8_lossy(&bytes)));
            }
            None => message
                .push_str(" (and changed again after paude read it: run paude again to see how)"),
        }
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
    use crate::launch::cache::Seen;
    use crate::manifest::{LoadOptions, ManifestSource, eval};

    /// What an evaluation reports of a file it read by `path`, leading to `real`, as `bytes`.
    fn read(path: &str, real: &str, bytes: &[u8]) -> FileRead {
        FileRead {
            path: path.into(),
            real: real.into(),
            sha256: digest(bytes),
            seen: Seen {
                dev: 0,
                ino: 0,
                mode: 0,
                size: 0,
                mtime: (0, 0),
                ctime: (0, 0),
            },
        }
    }

    /// A record that trusts `files` as the evaluation read them.
    fn record(files: &[(&FileRead, &[u8])]) -> Record {
        Record {
            workspace: "/w".into(),
            files: files
                .iter()
                .map(|(file, bytes)| Trusted::of(file, bytes).unwrap())
                .collect(),
        }
    }

    #[test]
    fn a_file_is_trusted_byte_for_byte() {
        let path = "/w/paude.jsonnet";
        let text = "{\n  packages: [\"bash\"],\n}\n";
        let trusted = read(path, path, text.as_bytes());
        let record = record(&[(&trusted, text.as_bytes())]);
        assert_eq!(record.files[0].read_as, None);
        assert_eq!(untrusted(Some(&record), &trusted, || None), None);
        let changed = "{\n  packages: [\"bash\"],\n  mounts: [\"/home/u\"],\n}\n";
        let evaluated = read(path, path, changed.as_bytes());
        let why = untrusted(Some(&record), &evaluated, || Some(changed.into())).unwrap();
        assert!(
            why.starts_with("/w/paude.jsonnet changed since you trusted it"),
            "{why}"
        );
        assert!(why.contains("    +   mounts: [\"/home/u\"],"), "{why}");
        assert!(!why.contains("    - "), "{why}");
        assert!(
            untrusted(None, &trusted, || None)
                .unwrap()
                .contains("not trusted yet")
        );
        let other = read("/w/lib.libsonnet", "/w/lib.libsonnet", b"{}");
        assert!(
            untrusted(Some(&record), &other, || None)
                .unwrap()
                .contains("/w/lib.libsonnet is not trusted yet")
        );
        // The text a file is trusted with is the bytes evaluated, or nothing is trusted.
        assert_eq!(Trusted::of(&trusted, changed.as_bytes()), None);
        // A record from before `read_as` still holds.
        let old: Record = serde_json::from_str(&format!(
            r#"{{"workspace": "/w", "files": [{{"path": "{path}", "sha256": "{}", "text": null}}]}}"#,
            digest(text.as_bytes())
        ))
        .unwrap();
        assert_eq!(untrusted(Some(&old), &trusted, || None), None);
    }

    /// Files anywhere are trusted by their real path, with the path they were read by: an
    /// import outside the workspace is judged as one inside is, and a link changed to lead
    /// an import to another trusted file does not pass for it.
    #[test]
    fn a_file_is_trusted_by_its_real_path_and_the_path_it_was_read_by() {
        let common = read(
            "/srv/lib/common.libsonnet",
            "/srv/lib/common.libsonnet",
            b"{}",
        );
        let via_link = read("/w/conf/a.libsonnet", "/etc/paude/a.libsonnet", b"[\"a\"]");
        let b = read("/w/b.libsonnet", "/w/b.libsonnet", b"[\"b\"]");
        let record = record(&[(&common, b"{}"), (&via_link, b"[\"a\"]"), (&b, b"[\"b\"]")]);
        assert_eq!(record.files[0].path, Path::new("/srv/lib/common.libsonnet"));
        assert_eq!(record.files[1].path, Path::new("/etc/paude/a.libsonnet"));
        assert_eq!(
            record.files[1].read_as.as_deref(),
            Some(Path::new("/w/conf/a.libsonnet"))
        );
        for file in [&common, &via_link, &b] {
            assert_eq!(untrusted(Some(&record), file, || None), None, "{file:?}");
        }
        let changed = read(
            "/srv/lib/common.libsonnet",
            "/srv/lib/common.libsonnet",
            b"{ mounts: [\"/home/u\"] }",
        );
        let why = untrusted(Some(&record), &changed, || {
            Some(b"{ mounts: [\"/home/u\"] }".to_vec())
        })
        .unwrap();
        assert!(
            why.starts_with("/srv/lib/common.libsonnet changed since you trusted it:\n"),
            "{why}"
        );
        assert!(why.contains("    + { mounts: [\"/home/u\"] }"), "{why}");
        // The link now leads `a.libsonnet` to b's file, which is trusted, but not as a.
        let swapped = read("/w/conf/a.libsonnet", "/w/b.libsonnet", b"[\"b\"]");
        let why = untrusted(Some(&record), &swapped, || None).unwrap();
        assert!(
            why.starts_with(
                "/w/b.libsonnet is not trusted yet (read as /w/conf/a.libsonnet); you trusted \
                 it read as /w/b.libsonnet"
            ),
            "{why}"
        );
        assert!(why.ends_with("leads to it another way"), "{why}");
    }

    /// The check is on the bytes that were evaluated, never on the file read again.
    ///
    /// The race it closes: a sandbox running in the workspace, or in a directory above it,
    /// swaps `paude.jsonnet` with another file (`renameat2(RENAME_EXCHANGE)`) in a loop. A
    /// check that hashes the file by name and an evaluator that then reads it by name again
    /// can see two different files: the trusted one hashed, the hostile one evaluated (1
    /// launch in 20 did, and mounted a secret directory). Here the evaluator hashes what it
    /// evaluates, and the swap is played out deterministically between evaluation and check:
    /// what is on disk when the check runs does not change its answer, and the diff it shows
    /// is never of bytes that were not evaluated.
    #[test]
    fn the_check_is_on_the_bytes_evaluated_not_on_a_reread() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let path = root.join("paude.jsonnet");
        let good = "{ packages: [\"bash\"] }\n";
        let evil = "{ packages: [\"bash\"], mounts: [\"/secret\"] }\n";
        let options = LoadOptions {
            cwd: root.clone(),
            ..LoadOptions::default()
        };
        let evaluate = || {
            let evaluated = eval::evaluate(&ManifestSource::File(path.clone()), &options).unwrap();
            let [file] = &evaluated.files_read[..] else {
                panic!("{:?}", evaluated.files_read)
            };
            (evaluated.value.clone(), file.clone())
        };
        let now = || eval::read_file(&path).ok().map(|(bytes, _)| bytes);
        std::fs::write(&path, good).unwrap();
        let (_, trusted) = evaluate();
        let record = record(&[(&trusted, good.as_bytes())]);

        // The evaluator read the hostile file; the good one is back by the time of the check.
        std::fs::write(&path, evil).unwrap();
        let (value, evaluated) = evaluate();
        assert!(
            value.get("mounts").is_some(),
            "the evil manifest was evaluated"
        );
        std::fs::write(&path, good).unwrap();
        let (bytes, reread) = eval::read_file(&path).unwrap();
        assert_eq!(
            untrusted(Some(&record), &reread, || Some(bytes)),
            None,
            "a re-read sees the trusted file"
        );
        assert_eq!(evaluated.sha256, digest(evil.as_bytes()));
        let why = untrusted(Some(&record), &evaluated, now).unwrap();
        assert!(why.contains("changed since you trusted it"), "{why}");
        assert!(why.contains("changed again after paude read it"), "{why}");
        assert!(
            !why.contains("    + "),
            "no diff of bytes not evaluated: {why}"
        );

        // The other way round: the trusted bytes were evaluated, and the file changed after.
        let (_, evaluated) = evaluate();
        std::fs::write(&path, evil).unwrap();
        assert_eq!(untrusted(Some(&record), &evaluated, now), None);
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
