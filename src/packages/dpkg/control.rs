//! The `status` file: deb822 stanzas, relation fields, and the package records built from them.
//!
//! Everything here is pure: it takes `&str` and returns values or a [`ParseError`] that names
//! the 1-based line; the loader adds the file path. Field names compare case-insensitively, as
//! in dpkg. Only the fields the resolver needs are kept; records of packages that are not
//! installed keep only their name, architecture and state, so that a stale relation field of a
//! removed package can never make the database fail to load.

use std::borrow::Cow;

use super::version::{Op, Version};

/// A syntax error at a 1-based line of the text being parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl ParseError {
    fn new(line: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// One `Name: value` field. Continuation lines are joined to the value with `\n`, each without
/// its leading space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub value: Cow<'a, str>,
    /// The line the field starts on.
    pub line: usize,
}

/// A paragraph of fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza<'a> {
    /// The line of the first field.
    pub line: usize,
    pub fields: Vec<Field<'a>>,
}

impl Stanza<'_> {
    /// The field called `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&Field<'_>> {
        self.fields
            .iter()
            .find(|field| field.name.eq_ignore_ascii_case(name))
    }
}

/// Splits deb822 text into stanzas. Blank (or whitespace-only) lines separate stanzas; a line
/// starting with a space or tab continues the previous field.
pub fn parse_stanzas(text: &str) -> Result<Vec<Stanza<'_>>, ParseError> {
    let mut stanzas = Vec::new();
    let mut current: Option<Stanza<'_>> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            stanzas.extend(current.take());
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let field = current
                .as_mut()
                .and_then(|stanza| stanza.fields.last_mut())
                .ok_or_else(|| ParseError::new(number, "continuation line outside a field"))?;
            let value = field.value.to_mut();
            value.push('\n');
            value.push_str(&line[1..]);
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::new(
                number,
                format!("expected `Field: value`, found `{line}`"),
            ));
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ParseError::new(
                number,
                format!("invalid field name `{name}`"),
            ));
        }
        let stanza = current.get_or_insert_with(|| Stanza {
            line: number,
            fields: Vec::new(),
        });
        if stanza.get(name).is_some() {
            return Err(ParseError::new(number, format!("duplicate field `{name}`")));
        }
        stanza.fields.push(Field {
            name,
            value: Cow::Borrowed(value.trim()),
            line: number,
        });
    }
    stanzas.extend(current);
    Ok(stanzas)
}

/// An architecture qualifier on a relation (`foo:any`, `foo:native`, `foo:amd64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchQualifier {
    /// No qualifier: the depender's architecture (see the resolver for the exact rule).
    Implicit,
    /// `:any`, for targets that are `Multi-Arch: allowed`.
    Any,
    /// `:native`
    Native,
    /// `:<arch>`
    Named(String),
}

/// One alternative of a relation: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    pub arch: ArchQualifier,
    pub version: Option<(Op, Version)>,
}

/// `a (>= 1) | b | c`: satisfied by the first alternative that an installed package satisfies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationGroup {
    pub alternatives: Vec<Relation>,
    /// The group as written, whitespace collapsed, for messages.
    pub text: String,
}

/// Parses a relation field (`Depends`, `Pre-Depends`, `Provides`): comma-separated groups of
/// `|`-separated alternatives. Architecture restriction lists (`[amd64]`) and build profiles
/// (`<!nocheck>`) are accepted and dropped: in an installed package's fields they have already
/// been applied, and they carry no meaning at run time.
pub fn parse_relations(field: &str) -> Result<Vec<RelationGroup>, String> {
    let mut groups = Vec::new();
    for group in field.split(',') {
        let text = group.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            // dpkg tolerates a trailing comma; so do we.
            continue;
        }
        let alternatives = group
            .split('|')
            .map(parse_relation)
            .collect::<Result<Vec<_>, _>>()?;
        groups.push(RelationGroup { alternatives, text });
    }
    Ok(groups)
}

fn parse_relation(text: &str) -> Result<Relation, String> {
    let text = text.trim();
    let name_end = text
        .find(|c: char| c.is_whitespace() || matches!(c, '(' | '[' | '<'))
        .unwrap_or(text.len());
    let (qualified_name, mut rest) = text.split_at(name_end);
    if qualified_name.is_empty() {
        return Err(format!("missing package name in relation `{text}`"));
    }
    let (name, arch) = match qualified_name.split_once(':') {
        None => (qualified_name, ArchQualifier::Implicit),
        Some((name, "any")) => (name, ArchQualifier::Any),
        Some((name, "native")) => (name, ArchQualifier::Native),
        Some((name, arch)) if !arch.is_empty() => (name, ArchQualifier::Named(arch.to_string())),
        Some(_) => return Err(format!("empty architecture qualifier in `{text}`")),
    };
    if name.is_empty() {
        return Err(format!("missing package name in relation `{text}`"));
    }
    let mut version = None;
    loop {
        rest = rest.trim_start();
        let Some(first) = rest.chars().next() else {
            break;
        };
        let closing = match first {
            '(' => ')',
            '[' => ']',
            '<' => '>',
            _ => return Err(format!("unexpected `{rest}` in relation `{text}`")),
        };
        let end = rest
            .find(closing)
            .ok_or_else(|| format!("missing `{closing}` in relation `{text}`"))?;
        let inner = rest[1..end].trim();
        rest = &rest[end + 1..];
        if first != '(' {
            continue;
        }
        if version.is_some() {
            return Err(format!("two version constraints in relation `{text}`"));
        }
        let (op, wanted) = Op::split_prefix(inner)
            .ok_or_else(|| format!("missing version operator in relation `{text}`"))?;
        let wanted = Version::parse(wanted).map_err(|message| format!("{message} in `{text}`"))?;
        version = Some((op, wanted));
    }
    Ok(Relation {
        name: name.to_string(),
        arch,
        version,
    })
}

/// One name a package provides, with the version it provides it at, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provide {
    pub name: String,
    pub version: Option<Version>,
}

/// Parses a `Provides` field: plain names, optionally `(= version)`.
pub fn parse_provides(field: &str) -> Result<Vec<Provide>, String> {
    parse_relations(field)?
        .into_iter()
        .map(|group| {
            let [relation] = <[Relation; 1]>::try_from(group.alternatives).map_err(|_| {
                format!("alternatives are not allowed in Provides: `{}`", group.text)
            })?;
            let version = match relation.version {
                None => None,
                Some((Op::Equal, version)) => Some(version),
                Some((op, _)) => {
                    return Err(format!(
                        "only `=` is allowed in Provides, found `{op}` in `{}`",
                        group.text
                    ));
                }
            };
            Ok(Provide {
                name: relation.name,
                version,
            })
        })
        .collect()
}

/// The `Multi-Arch` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultiArch {
    #[default]
    No,
    Same,
    Foreign,
    Allowed,
}

/// What the resolver needs of an installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub version_text: String,
    pub version: Version,
    pub multi_arch: MultiArch,
    pub pre_depends: Vec<RelationGroup>,
    pub depends: Vec<RelationGroup>,
    pub provides: Vec<Provide>,
    pub essential: bool,
}

/// One stanza of the status file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRecord {
    pub name: String,
    /// `None` only for records of packages that are not installed and never recorded one.
    pub arch: Option<String>,
    /// The third word of `Status:` (`installed`, `config-files`, `unpacked`, …).
    pub state: String,
    /// Present exactly when the state counts as installed.
    pub installed: Option<Installed>,
    /// The line the stanza starts on.
    pub line: usize,
}

/// States in which a package's files are on disk and its dependencies are met: dpkg considers
/// a package waiting only for trigger processing as installed.
const INSTALLED_STATES: [&str; 3] = ["installed", "triggers-pending", "triggers-awaited"];

/// Builds a record from a status stanza.
pub fn package_record(stanza: &Stanza<'_>) -> Result<PackageRecord, ParseError> {
    let name = stanza
        .get("Package")
        .map(|field| field.value.trim().to_string())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ParseError::new(stanza.line, "stanza without a `Package` field"))?;
    let status = stanza.get("Status").ok_or_else(|| {
        ParseError::new(
            stanza.line,
            format!("package `{name}` has no `Status` field"),
        )
    })?;
    let words: Vec<&str> = status.value.split_whitespace().collect();
    let [_want, _flag, state] = words[..] else {
        return Err(ParseError::new(
            status.line,
            format!(
                "`Status` of `{name}` is not three words: `{}`",
                status.value
            ),
        ));
    };
    let arch = stanza
        .get("Architecture")
        .map(|field| field.value.trim().to_string())
        .filter(|arch| !arch.is_empty());
    let installed = if INSTALLED_STATES.contains(&state) {
        Some(installed_fields(stanza, &name)?)
    } else {
        None
    };
    Ok(PackageRecord {
        name,
        arch,
        state: state.to_string(),
        installed,
        line: stanza.line,
    })
}

fn installed_fields(stanza: &Stanza<'_>, name: &str) -> Result<Installed, ParseError> {
    let version_field = stanza.get("Version").ok_or_else(|| {
        ParseError::new(
            stanza.line,
            format!("installed package `{name}` has no `Version` field"),
        )
    })?;
    let version = Version::parse(&version_field.value)
        .map_err(|message| ParseError::new(version_field.line, message))?;
    let relations = |field_name: &str| -> Result<Vec<RelationGroup>, ParseError> {
        match stanza.get(field_name) {
            None => Ok(Vec::new()),
            Some(field) => parse_relations(&field.value).map_err(|message| {
                ParseError::new(field.line, format!("{field_name} of `{name}`: {message}"))
            }),
        }
    };
    let provides = match stanza.get("Provides") {
        None => Vec::new(),
        Some(field) => parse_provides(&field.value).map_err(|message| {
            ParseError::new(field.line, format!("Provides of `{name}`: {message}"))
        })?,
    };
    let multi_arch = match stanza.get("Multi-Arch").map(|field| field.value.trim()) {
        None | Some("no") => MultiArch::No,
        Some("same") => MultiArch::Same,
        Some("foreign") => MultiArch::Foreign,
        Some("allowed") => MultiArch::Allowed,
        Some(other) => {
            let line = stanza
                .get("Multi-Arch")
                .map_or(stanza.line, |field| field.line);
            return Err(ParseError::new(
                line,
                format!("unknown Multi-Arch value `{other}` for `{name}`"),
            ));
        }
    };
    let essential = stanza
        .get("Essential")
        .is_some_and(|field| field.value.trim() == "yes");
    Ok(Installed {
        version_text: version_field.value.trim().to_string(),
        version,
        multi_arch,
        pre_depends: relations("Pre-Depends")?,
        depends: relations("Depends")?,
        provides,
        essential,
    })
}

/// Parses a whole status file (or an `updates/` journal entry) into records.
pub fn parse_status(text: &str) -> Result<Vec<PackageRecord>, ParseError> {
    parse_stanzas(text)?.iter().map(package_record).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn stanzas_with_continuation_lines() {
        let text = "Package: a\nDescription: short\n long line one\n .\n\tline two\n\n\n\
                    package: b\nDepends: x,\n y\n";
        let stanzas = parse_stanzas(text).unwrap();
        assert_eq!(stanzas.len(), 2);
        assert_eq!(stanzas[0].line, 1);
        assert_eq!(
            stanzas[0].get("description").unwrap().value,
            "short\nlong line one\n.\nline two"
        );
        assert_eq!(stanzas[1].line, 8);
        assert_eq!(stanzas[1].get("Package").unwrap().value, "b");
        assert_eq!(stanzas[1].get("Depends").unwrap().value, "x,\ny");
        assert_eq!(stanzas[1].get("Depends").unwrap().line, 9);
    }

    #[test]
    fn whitespace_only_lines_separate_stanzas() {
        let stanzas = parse_stanzas("A: 1\n  \t\nB: 2\n").unwrap();
        assert_eq!(stanzas.len(), 2);
    }

    #[test]
    fn malformed_stanzas_name_the_line() {
        assert_eq!(
            parse_stanzas(" leading continuation\n").unwrap_err().line,
            1
        );
        let error = parse_stanzas("Package: a\nno colon here\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("no colon here"), "{error:?}");
        assert_eq!(parse_stanzas("A: 1\n\n a\n").unwrap_err().line, 3);
        assert_eq!(parse_stanzas("A: 1\nB: 2\na: 3\n").unwrap_err().line, 3);
        assert_eq!(parse_stanzas("A: 1\nbad name: 2\n").unwrap_err().line, 2);
    }

    #[test]
    fn relations_with_alternatives_versions_and_qualifiers() {
        let groups =
            parse_relations("libc6 (>= 2.34), a (<< 1:2-.) | b:any | c:amd64, perl:native,\n d")
                .unwrap();
        assert_eq!(groups.len(), 4);
        assert_eq!(groups[0].text, "libc6 (>= 2.34)");
        assert_eq!(
            groups[0].alternatives,
            vec![Relation {
                name: "libc6".into(),
                arch: ArchQualifier::Implicit,
                version: Some((Op::LaterOrEqual, v("2.34"))),
            }]
        );
        assert_eq!(groups[1].text, "a (<< 1:2-.) | b:any | c:amd64");
        let names: Vec<_> = groups[1]
            .alternatives
            .iter()
            .map(|r| (r.name.as_str(), r.arch.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("a", ArchQualifier::Implicit),
                ("b", ArchQualifier::Any),
                ("c", ArchQualifier::Named("amd64".into())),
            ]
        );
        assert_eq!(
            groups[1].alternatives[0].version,
            Some((Op::Earlier, v("1:2-.")))
        );
        assert_eq!(groups[2].alternatives[0].arch, ArchQualifier::Native);
        assert_eq!(groups[3].text, "d");
    }

    #[test]
    fn relations_drop_arch_restrictions_and_build_profiles() {
        let groups =
            parse_relations("foo [amd64 !i386] (>= 1) <!nocheck> <cross>, bar(<2)[linux-any]")
                .unwrap();
        assert_eq!(groups[0].alternatives[0].name, "foo");
        assert_eq!(
            groups[0].alternatives[0].version,
            Some((Op::LaterOrEqual, v("1")))
        );
        assert_eq!(groups[1].alternatives[0].name, "bar");
        // The obsolete `<` means `<=`.
        assert_eq!(
            groups[1].alternatives[0].version,
            Some((Op::EarlierOrEqual, v("2")))
        );
    }

    #[test]
    fn relations_tolerate_empty_and_trailing_groups() {
        assert!(parse_relations("").unwrap().is_empty());
        assert_eq!(parse_relations("a, ").unwrap().len(), 1);
    }

    #[test]
    fn malformed_relations_are_errors() {
        for bad in [
            "a (>= 1",
            "a (1.0)",
            "a (>= )",
            "a | | b",
            "a:",
            ":amd64",
            "a (>= 1) (<< 2)",
            "a b",
            "a [amd64",
        ] {
            assert!(parse_relations(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn provides_with_and_without_versions() {
        let provides = parse_provides("awk, libfoo-abi (= 2.1-1)").unwrap();
        assert_eq!(
            provides,
            vec![
                Provide {
                    name: "awk".into(),
                    version: None
                },
                Provide {
                    name: "libfoo-abi".into(),
                    version: Some(v("2.1-1"))
                },
            ]
        );
        assert!(parse_provides("a (>= 1)").is_err());
        assert!(parse_provides("a | b").is_err());
    }

    #[test]
    fn records_of_installed_and_removed_packages() {
        let text = "Package: git\nStatus: install ok installed\nArchitecture: amd64\n\
                    Multi-Arch: foreign\nVersion: 1:2.39.5-0+deb12u3\nProvides: git-core\n\
                    Pre-Depends: dpkg\nDepends: libc6 (>= 2.34),\n perl\nRecommends: less\n\n\
                    Package: old\nStatus: deinstall ok config-files\nArchitecture: amd64\n\
                    Depends: this is (not parsed\n\n\
                    Package: pending\nStatus: install ok triggers-pending\nVersion: 1\n\
                    Architecture: all\nEssential: yes\n";
        let records = parse_status(text).unwrap();
        assert_eq!(records.len(), 3);
        let git = records[0].installed.as_ref().unwrap();
        assert_eq!(records[0].state, "installed");
        assert_eq!(git.version_text, "1:2.39.5-0+deb12u3");
        assert_eq!(git.multi_arch, MultiArch::Foreign);
        assert_eq!(git.depends.len(), 2);
        assert_eq!(git.pre_depends[0].text, "dpkg");
        assert_eq!(git.provides[0].name, "git-core");
        assert!(!git.essential);
        assert_eq!(records[1].state, "config-files");
        assert!(records[1].installed.is_none());
        assert_eq!(records[1].line, 12);
        let pending = records[2].installed.as_ref().unwrap();
        assert!(pending.essential);
        assert_eq!(records[2].arch.as_deref(), Some("all"));
    }

    #[test]
    fn malformed_records_name_the_line() {
        let error = parse_status(
            "Package: a\nStatus: install ok installed\nVersion: 1\n\
                                  Depends: b (>= 1\n",
        )
        .unwrap_err();
        assert_eq!(error.line, 4);
        assert!(error.message.contains("Depends of `a`"), "{error:?}");
        let error = parse_status("Version: 1\n").unwrap_err();
        assert_eq!(error.line, 1);
        let error = parse_status("\nPackage: a\nStatus: installed\n").unwrap_err();
        assert_eq!(error.line, 3);
        let error = parse_status("Package: a\nStatus: install ok installed\n").unwrap_err();
        assert!(error.message.contains("no `Version`"), "{error:?}");
        let error =
            parse_status("Package: a\nStatus: install ok installed\nVersion: x:1\n").unwrap_err();
        assert_eq!(error.line, 3);
    }
}
