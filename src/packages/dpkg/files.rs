//! The byte-oriented files of the dpkg database: `info/*.list`, `info/*.md5sums`,
//! `diversions`, and `alternatives/*`, plus the merged-/usr path normalization used to match alternatives.
//!
//! These parsers take `&[u8]`, not `&str`: they carry file system paths, and dpkg stores paths
//! as raw bytes, which need not be UTF-8. Paths are built with `OsStr::from_bytes` and never go
//! through a lossy conversion. Lines are separated by `\n` only; a final newline is optional.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::control::ParseError;
use crate::packages::{Alternative, AlternativeChoice, RecordedFile};

/// The lines of `bytes`, without the empty piece after a final newline.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|&b| b == b'\n').collect()
}

fn path_from(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// Parses an `info/<package>.list` file: one absolute path per line. The `/.` line that every
/// package lists (the root directory) and empty lines are skipped.
pub fn parse_list(bytes: &[u8]) -> Result<Vec<PathBuf>, ParseError> {
    let mut paths = Vec::new();
    for (index, line) in lines(bytes).into_iter().enumerate() {
        if line.is_empty() || line == b"/." {
            continue;
        }
        if !line.starts_with(b"/") {
            return Err(ParseError {
                line: index + 1,
                message: format!(
                    "expected an absolute path, found `{}`",
                    String::from_utf8_lossy(line)
                ),
            });
        }
        paths.push(path_from(line));
    }
    Ok(paths)
}

/// Parses an `info/<package>.md5sums` file: per line, 32 hexadecimal digits, two spaces (or
/// a space and `*`, as md5sum writes for binary mode), and the path without its leading `/`.
/// Conffiles are not in it (dpkg keeps their sums in `status`).
pub fn parse_md5sums(bytes: &[u8]) -> Result<Vec<RecordedFile>, ParseError> {
    let mut digests = Vec::new();
    for (index, line) in lines(bytes).into_iter().enumerate() {
        if line.is_empty() {
            continue;
        }
        let error = |message: &str| ParseError {
            line: index + 1,
            message: format!("{message}, found `{}`", String::from_utf8_lossy(line)),
        };
        let (hex, rest) = line
            .split_at_checked(32)
            .ok_or_else(|| error("expected an MD5 sum and a path"))?;
        let mut md5 = [0u8; 16];
        for (byte, pair) in md5.iter_mut().zip(hex.chunks(2)) {
            let digit = |b: u8| (b as char).to_digit(16);
            let (Some(high), Some(low)) = (digit(pair[0]), digit(pair[1])) else {
                return Err(error("expected 32 hexadecimal digits"));
            };
            *byte = (high * 16 + low) as u8;
        }
        let path = rest
            .strip_prefix(b"  ")
            .or_else(|| rest.strip_prefix(b" *"))
            .filter(|path| !path.is_empty())
            .ok_or_else(|| error("expected two spaces and a path after the sum"))?;
        let path = path.strip_prefix(b"/").unwrap_or(path);
        let mut absolute = b"/".to_vec();
        absolute.extend_from_slice(path);
        digests.push(RecordedFile {
            path: path_from(&absolute),
            md5,
        });
    }
    Ok(digests)
}

/// One `dpkg-divert` record: files packaged as `from` are kept at `to`, except the holder's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diversion {
    pub from: PathBuf,
    pub to: PathBuf,
    /// The package that owns the diversion; `None` for a local (admin) diversion, written `:`.
    pub holder: Option<String>,
}

/// The diversions in effect, indexed by the diverted path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diversions {
    by_path: HashMap<PathBuf, Diversion>,
}

impl Diversions {
    pub fn new(diversions: Vec<Diversion>) -> Diversions {
        Diversions {
            by_path: diversions
                .into_iter()
                .map(|diversion| (diversion.from.clone(), diversion))
                .collect(),
        }
    }

    /// Where `package`'s file packaged as `path` lives on disk: the diverted-to path if `path`
    /// is diverted by anyone but `package` itself, else `path`.
    pub fn locate<'a>(&'a self, path: &'a Path, package: &str) -> &'a Path {
        match self.by_path.get(path) {
            Some(diversion) if diversion.holder.as_deref() != Some(package) => &diversion.to,
            _ => path,
        }
    }
}

/// Parses the `diversions` file: groups of three lines (diverted path, diverted-to path, holder
/// package or `:`).
pub fn parse_diversions(bytes: &[u8]) -> Result<Vec<Diversion>, ParseError> {
    let lines = lines(bytes);
    let mut diversions = Vec::new();
    for (group, chunk) in lines.chunks(3).enumerate() {
        let first_line = group * 3 + 1;
        let [from, to, holder] = chunk else {
            return Err(ParseError {
                line: first_line,
                message: "incomplete diversion: expected three lines (path, diverted-to path, \
                          holding package)"
                    .to_string(),
            });
        };
        for (offset, path) in [from, to].into_iter().enumerate() {
            if !path.starts_with(b"/") {
                return Err(ParseError {
                    line: first_line + offset,
                    message: format!(
                        "expected an absolute path, found `{}`",
                        String::from_utf8_lossy(path)
                    ),
                });
            }
        }
        let holder = match *holder {
            b":" => None,
            name => match std::str::from_utf8(name) {
                Ok(name) if !name.is_empty() => Some(name.to_string()),
                _ => {
                    return Err(ParseError {
                        line: first_line + 2,
                        message: format!(
                            "invalid holding package `{}`",
                            String::from_utf8_lossy(name)
                        ),
                    });
                }
            },
        };
        diversions.push(Diversion {
            from: path_from(from),
            to: path_from(to),
            holder,
        });
    }
    Ok(diversions)
}

/// Parses one `alternatives/<name>` file of update-alternatives:
///
/// 1. the mode, `auto` or `manual`;
/// 2. the master link;
/// 3. pairs of lines (slave name, slave link), ended by an empty line;
/// 4. choices: path, priority, then one line per slave (empty: this choice has none), until
///    an empty line where a choice path would be, or the end of the file.
pub fn parse_alternative(name: &str, bytes: &[u8]) -> Result<Alternative, ParseError> {
    let lines = lines(bytes);
    let mut cursor = Cursor { lines, next: 0 };
    let mode = cursor.next("the mode (`auto` or `manual`)")?;
    if mode != b"auto" && mode != b"manual" {
        return Err(cursor.error(format!(
            "expected `auto` or `manual`, found `{}`",
            String::from_utf8_lossy(mode)
        )));
    }
    let link = cursor.next_path("the master link")?;
    let mut slaves = Vec::new();
    loop {
        let slave_name = cursor.next("a slave name or an empty line")?;
        if slave_name.is_empty() {
            break;
        }
        let slave_name = std::str::from_utf8(slave_name)
            .map_err(|_| cursor.error("slave name is not UTF-8"))?
            .to_string();
        let slave_link = cursor.next_path("a slave link")?;
        slaves.push((slave_name, slave_link));
    }
    let mut choices = Vec::new();
    while let Some(path) = cursor.try_next() {
        if path.is_empty() {
            break;
        }
        if !path.starts_with(b"/") {
            return Err(cursor.error(format!(
                "expected an absolute choice path, found `{}`",
                String::from_utf8_lossy(path)
            )));
        }
        let priority = cursor.next("a priority")?;
        let priority = std::str::from_utf8(priority)
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or_else(|| {
                cursor.error(format!(
                    "priority `{}` is not a number",
                    String::from_utf8_lossy(priority)
                ))
            })?;
        let mut choice_slaves = Vec::with_capacity(slaves.len());
        for _ in 0..slaves.len() {
            let slave = cursor.next("a slave path or an empty line")?;
            choice_slaves.push((!slave.is_empty()).then(|| path_from(slave)));
        }
        choices.push(AlternativeChoice {
            path: path_from(path),
            priority,
            slaves: choice_slaves,
        });
    }
    Ok(Alternative {
        name: name.to_string(),
        link,
        slaves,
        choices,
    })
}

/// Reads lines one at a time and remembers the current line number for errors.
struct Cursor<'a> {
    lines: Vec<&'a [u8]>,
    /// Index of the next line to read; after a read, also the 1-based number of the line read.
    next: usize,
}

impl<'a> Cursor<'a> {
    fn try_next(&mut self) -> Option<&'a [u8]> {
        let line = self.lines.get(self.next).copied();
        if line.is_some() {
            self.next += 1;
        }
        line
    }

    fn next(&mut self, expected: &str) -> Result<&'a [u8], ParseError> {
        self.try_next().ok_or_else(|| ParseError {
            line: self.next + 1,
            message: format!("unexpected end of file, expected {expected}"),
        })
    }

    fn next_path(&mut self, expected: &str) -> Result<PathBuf, ParseError> {
        let line = self.next(expected)?;
        if !line.starts_with(b"/") {
            return Err(self.error(format!(
                "expected {expected} (an absolute path), found `{}`",
                String::from_utf8_lossy(line)
            )));
        }
        Ok(path_from(line))
    }

    /// An error about the line read last.
    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.next.max(1),
            message: message.into(),
        }
    }
}

/// Top-level symlinks of a root that alias directories (`/bin -> usr/bin` on a merged-/usr
/// system), used to compare paths the way the file system resolves them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopLevelLinks {
    /// (`/bin`, `/usr/bin`) pairs.
    links: Vec<(PathBuf, PathBuf)>,
}

impl TopLevelLinks {
    /// From (entry name, link target) pairs of the root directory. Relative targets are relative
    /// to the root; absolute ones are taken within the root, as a chroot would. Targets that
    /// climb with `..` are ignored: they cannot alias anything inside the root we reason about.
    pub fn new(entries: impl IntoIterator<Item = (PathBuf, PathBuf)>) -> TopLevelLinks {
        let mut links = Vec::new();
        for (name, target) in entries {
            let mut resolved = PathBuf::from("/");
            let mut valid = true;
            for component in target.components() {
                match component {
                    std::path::Component::Normal(part) => resolved.push(part),
                    std::path::Component::RootDir | std::path::Component::CurDir => {}
                    _ => valid = false,
                }
            }
            let alias = Path::new("/").join(&name);
            if valid && resolved != Path::new("/") && resolved != alias {
                links.push((alias, resolved));
            }
        }
        links.sort();
        TopLevelLinks { links }
    }

    /// `path` with a leading aliased directory replaced by its target (`/bin/sh` → `/usr/bin/sh`).
    pub fn normalize(&self, path: &Path) -> PathBuf {
        for (alias, target) in &self.links {
            if let Ok(rest) = path.strip_prefix(alias) {
                return if rest.as_os_str().is_empty() {
                    target.clone()
                } else {
                    target.join(rest)
                };
            }
        }
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> PathBuf {
        PathBuf::from(text)
    }

    #[test]
    fn list_skips_root_and_keeps_non_utf8_bytes() {
        let paths = parse_list(b"/.\n/usr\n/usr/bin/caf\xe9\n\n/usr/bin/x").unwrap();
        assert_eq!(paths.len(), 3);
        assert_eq!(paths[1].as_os_str().as_bytes(), b"/usr/bin/caf\xe9");
        assert!(parse_list(b"").unwrap().is_empty());
        let error = parse_list(b"/.\n/usr\nrelative\n").unwrap_err();
        assert_eq!(error.line, 3);
    }

    #[test]
    fn md5sums_give_absolute_paths_and_sums() {
        let bytes = b"7210080490f9fd139c1b44fa0f730988  bin/bash\n\
                      12C7981C8FED81743552E47DD4B1483E *usr/bin/a b\xff\n";
        let digests = parse_md5sums(bytes).unwrap();
        assert_eq!(digests.len(), 2);
        assert_eq!(digests[0].path, p("/bin/bash"));
        assert_eq!(digests[0].md5[0], 0x72);
        assert_eq!(digests[0].md5[15], 0x88);
        assert_eq!(digests[1].path, path_from(b"/usr/bin/a b\xff"));
        assert_eq!(digests[1].md5[0], 0x12);
        assert!(parse_md5sums(b"").unwrap().is_empty());
    }

    #[test]
    fn malformed_md5sums_name_the_line() {
        for (bytes, message) in [
            (&b"abc  bin/x"[..], "expected an MD5 sum and a path"),
            (
                b"7210080490f9fd139c1b44fa0f73098g  bin/x",
                "expected 32 hexadecimal",
            ),
            (
                b"7210080490f9fd139c1b44fa0f730988 bin/x",
                "expected two spaces",
            ),
            (b"7210080490f9fd139c1b44fa0f730988  ", "expected two spaces"),
        ] {
            let error =
                parse_md5sums(&[b"7210080490f9fd139c1b44fa0f730988  bin/ok\n", bytes].concat())
                    .unwrap_err();
            assert_eq!(error.line, 2, "{}", error.message);
            assert!(error.message.contains(message), "{}", error.message);
        }
    }

    #[test]
    fn diversions_in_groups_of_three() {
        let text = b"/usr/bin/a\n/usr/bin/a.real\nwrapper\n/etc/x\n/etc/x.local\n:\n";
        let diversions = parse_diversions(text).unwrap();
        assert_eq!(
            diversions,
            vec![
                Diversion {
                    from: p("/usr/bin/a"),
                    to: p("/usr/bin/a.real"),
                    holder: Some("wrapper".into()),
                },
                Diversion {
                    from: p("/etc/x"),
                    to: p("/etc/x.local"),
                    holder: None,
                },
            ]
        );
        let diversions = Diversions::new(diversions);
        assert_eq!(
            diversions.locate(Path::new("/usr/bin/a"), "a"),
            p("/usr/bin/a.real")
        );
        assert_eq!(
            diversions.locate(Path::new("/usr/bin/a"), "wrapper"),
            p("/usr/bin/a")
        );
        assert_eq!(
            diversions.locate(Path::new("/etc/x"), "x"),
            p("/etc/x.local")
        );
        assert_eq!(diversions.locate(Path::new("/etc/y"), "x"), p("/etc/y"));
        assert!(parse_diversions(b"").unwrap().is_empty());
    }

    #[test]
    fn malformed_diversions_name_the_line() {
        let error = parse_diversions(b"/a\n/b\nholder\n/c\n/d\n").unwrap_err();
        assert_eq!(error.line, 4);
        assert!(error.message.contains("incomplete"), "{error:?}");
        assert_eq!(parse_diversions(b"/a\nb\nholder\n").unwrap_err().line, 2);
        assert_eq!(parse_diversions(b"/a\n/b\n\n").unwrap_err().line, 3);
    }

    const EDITOR: &[u8] = b"auto\n/usr/bin/editor\neditor.1.gz\n/usr/share/man/man1/editor.1.gz\n\
        editor.fr.1.gz\n/usr/share/man/fr/man1/editor.1.gz\n\n\
        /bin/ed\n-100\n/usr/share/man/man1/ed.1.gz\n\n\
        /usr/bin/vim.basic\n30\n/usr/share/man/man1/vim.1.gz\n/usr/share/man/fr/man1/vim.1.gz\n\n";

    #[test]
    fn alternative_with_slaves_and_choices() {
        let alternative = parse_alternative("editor", EDITOR).unwrap();
        assert_eq!(alternative.name, "editor");
        assert_eq!(alternative.link, p("/usr/bin/editor"));
        assert_eq!(
            alternative.slaves,
            vec![
                (
                    "editor.1.gz".to_string(),
                    p("/usr/share/man/man1/editor.1.gz")
                ),
                (
                    "editor.fr.1.gz".to_string(),
                    p("/usr/share/man/fr/man1/editor.1.gz")
                ),
            ]
        );
        assert_eq!(
            alternative.choices,
            vec![
                AlternativeChoice {
                    path: p("/bin/ed"),
                    priority: -100,
                    slaves: vec![Some(p("/usr/share/man/man1/ed.1.gz")), None],
                },
                AlternativeChoice {
                    path: p("/usr/bin/vim.basic"),
                    priority: 30,
                    slaves: vec![
                        Some(p("/usr/share/man/man1/vim.1.gz")),
                        Some(p("/usr/share/man/fr/man1/vim.1.gz")),
                    ],
                },
            ]
        );
    }

    #[test]
    fn alternative_without_slaves_ending_at_eof() {
        let alternative =
            parse_alternative("c++", b"manual\n/usr/bin/c++\n\n/usr/bin/g++\n20").unwrap();
        assert!(alternative.slaves.is_empty());
        assert_eq!(alternative.choices.len(), 1);
        assert_eq!(alternative.choices[0].priority, 20);
        // No choices at all is valid too (a group whose last choice was just removed).
        let alternative = parse_alternative("x", b"auto\n/usr/bin/x\n\n\n").unwrap();
        assert!(alternative.choices.is_empty());
    }

    #[test]
    fn malformed_alternatives_name_the_line() {
        let error = parse_alternative("x", b"sometimes\n/usr/bin/x\n\n").unwrap_err();
        assert_eq!(error.line, 1);
        let error = parse_alternative("x", b"auto\n/usr/bin/x\n\n/usr/bin/y\nhigh\n").unwrap_err();
        assert_eq!(error.line, 5);
        assert!(error.message.contains("high"), "{error:?}");
        // A slave line is missing for the choice: the file ends where it should be.
        let error = parse_alternative("x", b"auto\n/usr/bin/x\ns\n/usr/bin/s\n\n/usr/bin/y\n1")
            .unwrap_err();
        assert_eq!(error.line, 8);
        let error = parse_alternative("x", b"auto\n").unwrap_err();
        assert_eq!(error.line, 2);
        let error = parse_alternative("x", b"auto\nx\n").unwrap_err();
        assert_eq!(error.line, 2);
    }

    #[test]
    fn merged_usr_normalization() {
        let links = TopLevelLinks::new([
            (p("bin"), p("usr/bin")),
            (p("lib64"), p("/usr/lib64")),
            (p("escape"), p("../elsewhere")),
            (p("self"), p("self")),
        ]);
        assert_eq!(links.normalize(Path::new("/bin/sh")), p("/usr/bin/sh"));
        assert_eq!(links.normalize(Path::new("/bin")), p("/usr/bin"));
        assert_eq!(
            links.normalize(Path::new("/lib64/ld-linux-x86-64.so.2")),
            p("/usr/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(links.normalize(Path::new("/binary/x")), p("/binary/x"));
        assert_eq!(links.normalize(Path::new("/usr/bin/sh")), p("/usr/bin/sh"));
        assert_eq!(links.normalize(Path::new("/escape/x")), p("/escape/x"));
    }
}
