//! The in-memory package database and the closure computation. Pure: built from parsed
//! records, never touches the file system.
//!
//! Resolution follows dpkg's reading of relations, with these choices made explicit:
//!
//! - A group `a | b | c` is satisfied by its *first* alternative that some installed package
//!   satisfies, even if a later alternative is already in the closure; this keeps the result
//!   independent of traversal order.
//! - For one alternative, a real package of that name wins over packages that provide the name.
//!   Among real packages the depender's architecture is preferred, then the native one, then
//!   `all`, then the lowest architecture name; among providers the depender's architecture,
//!   then the lowest (name, architecture).
//! - Architectures: an unqualified relation is satisfied by a package of the depender's
//!   architecture (`all` standing for native), by an `all` package, or by a `Multi-Arch:
//!   foreign` package of any architecture. `:any` is satisfied by any architecture of a
//!   `Multi-Arch: allowed` package, and otherwise, leniently, as if unqualified (dpkg would call
//!   it unsatisfied; for a closure, keeping the package is the safer mistake). `:native` and
//!   `:<arch>` name the architecture, `all` again standing for native.
//! - A versioned relation is satisfied by a provider only through a versioned `Provides`.
//! - Only Pre-Depends and Depends are followed; a group nothing satisfies is recorded in
//!   [`Closure::missing`], not an error.

use std::collections::{BTreeSet, HashMap};

use super::control::{ArchQualifier, MultiArch, PackageRecord, Relation, RelationGroup};
use super::version::Version;
use crate::packages::{Closure, MissingDependency, PackageError, PackageId};

/// All package records of a status database, with indexes for resolution.
#[derive(Debug, Clone)]
pub struct Database {
    records: Vec<PackageRecord>,
    /// Name → indexes of every record of that name (any state, any architecture).
    by_name: HashMap<String, Vec<usize>>,
    /// Provided name → (index of an installed provider, provided version).
    providers: HashMap<String, Vec<(usize, Option<Version>)>>,
    native_arch: String,
}

impl Database {
    /// Indexes `records`. A later record for the same (name, architecture) replaces an earlier
    /// one, which is how dpkg's `updates/` journal overrides `status`.
    pub fn new(records: Vec<PackageRecord>) -> Database {
        let native_arch = native_arch(&records);
        let mut position: HashMap<(String, Option<String>), usize> = HashMap::new();
        let mut unique: Vec<PackageRecord> = Vec::with_capacity(records.len());
        for mut record in records {
            // An installed package without an Architecture predates multiarch: dpkg treats
            // it as native.
            if record.installed.is_some() && record.arch.is_none() {
                record.arch = Some(native_arch.clone());
            }
            let key = (record.name.clone(), record.arch.clone());
            match position.get(&key) {
                Some(&index) => unique[index] = record,
                None => {
                    position.insert(key, unique.len());
                    unique.push(record);
                }
            }
        }
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut providers: HashMap<String, Vec<(usize, Option<Version>)>> = HashMap::new();
        for (index, record) in unique.iter().enumerate() {
            by_name.entry(record.name.clone()).or_default().push(index);
            if let Some(installed) = &record.installed {
                for provide in &installed.provides {
                    providers
                        .entry(provide.name.clone())
                        .or_default()
                        .push((index, provide.version.clone()));
                }
            }
        }
        Database {
            records: unique,
            by_name,
            providers,
            native_arch,
        }
    }

    /// The architecture of the host: that of the installed `dpkg` package, else the most common
    /// architecture among installed packages (ties: the lowest name).
    pub fn native_arch(&self) -> &str {
        &self.native_arch
    }

    /// How many records are of installed packages.
    pub fn installed_count(&self) -> usize {
        self.records
            .iter()
            .filter(|record| record.installed.is_some())
            .count()
    }

    /// Installed packages marked `Essential: yes`, sorted by (name, architecture).
    pub fn essential(&self) -> Vec<PackageId> {
        let mut essential: Vec<PackageId> = self
            .records
            .iter()
            .filter(|record| record.installed.as_ref().is_some_and(|i| i.essential))
            .filter_map(package_id)
            .collect();
        sort_ids(&mut essential);
        essential
    }

    /// The closure of `requested`: see the module documentation for the rules.
    pub fn resolve(&self, requested: &[String]) -> Result<Closure, PackageError> {
        let mut chosen = vec![false; self.records.len()];
        let mut worklist = Vec::new();
        for request in requested {
            let index = self.lookup_request(request)?;
            if !chosen[index] {
                chosen[index] = true;
                worklist.push(index);
            }
        }
        let mut missing = BTreeSet::new();
        while let Some(index) = worklist.pop() {
            let record = &self.records[index];
            let Some(installed) = &record.installed else {
                continue;
            };
            for group in installed.pre_depends.iter().chain(&installed.depends) {
                match self.satisfy_group(group, self.arch_of(record)) {
                    Some(target) => {
                        if !chosen[target] {
                            chosen[target] = true;
                            worklist.push(target);
                        }
                    }
                    None => {
                        missing.insert((self.display_name(record), group.text.clone()));
                    }
                }
            }
        }
        let mut packages: Vec<PackageId> = chosen
            .iter()
            .enumerate()
            .filter(|(_, chosen)| **chosen)
            .filter_map(|(index, _)| package_id(&self.records[index]))
            .collect();
        sort_ids(&mut packages);
        Ok(Closure {
            packages,
            missing: missing
                .into_iter()
                .map(|(required_by, relation)| MissingDependency {
                    required_by,
                    relation,
                })
                .collect(),
        })
    }

    fn arch_of<'a>(&'a self, record: &'a PackageRecord) -> &'a str {
        record.arch.as_deref().unwrap_or(&self.native_arch)
    }

    /// `name`, or `name:arch` when the architecture is neither native nor `all`, as dpkg shows.
    fn display_name(&self, record: &PackageRecord) -> String {
        match record.arch.as_deref() {
            Some(arch) if arch != "all" && arch != self.native_arch => {
                format!("{}:{arch}", record.name)
            }
            _ => record.name.clone(),
        }
    }

    /// Indexes of installed records called `name`.
    fn installed_named<'a>(&'a self, name: &str) -> impl Iterator<Item = usize> + 'a {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&index| self.records[index].installed.is_some())
    }

    /// Finds the record for a requested `name` or `name:arch`.
    fn lookup_request(&self, request: &str) -> Result<usize, PackageError> {
        // `name:any` asks for no particular architecture and `name:native` for the default one,
        // as in dpkg-query; both then mean the same as a plain name.
        let (name, arch) = match request.split_once(':') {
            Some((name, "any" | "native")) => (name, None),
            Some((name, arch)) => (name, Some(arch)),
            None => (request, None),
        };
        // A plain name means the native package when several architectures are installed.
        let wanted = arch.unwrap_or(&self.native_arch);
        let real = self
            .installed_named(name)
            .filter(|&index| {
                let record_arch = self.arch_of(&self.records[index]);
                arch.is_none() || record_arch == wanted || record_arch == "all"
            })
            .min_by_key(|&index| self.arch_preference(&self.records[index], wanted));
        if let Some(index) = real {
            return Ok(index);
        }
        // Not a real package: a virtual one is resolved through its provider, silently, since
        // that is what installing it would have meant.
        let relation = Relation {
            name: name.to_string(),
            arch: match arch {
                Some(arch) => ArchQualifier::Named(arch.to_string()),
                None => ArchQualifier::Implicit,
            },
            version: None,
        };
        if let Some(index) = self.provider_for(&relation, wanted) {
            return Ok(index);
        }
        Err(PackageError::NotInstalled {
            name: request.to_string(),
            hint: self.not_installed_hint(name),
        })
    }

    /// Explains why `name` is not installed, or suggests installed names close to it.
    fn not_installed_hint(&self, name: &str) -> String {
        let records: Vec<&PackageRecord> = self
            .by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&index| &self.records[index])
            .collect();
        let installed_arches: Vec<&str> = records
            .iter()
            .filter(|record| record.installed.is_some())
            .map(|record| self.arch_of(record))
            .collect();
        if !installed_arches.is_empty() {
            return format!("; installed for: {}", installed_arches.join(", "));
        }
        if records.iter().any(|record| record.state == "config-files") {
            return " (removed, config files only)".to_string();
        }
        if let Some(record) = records.first() {
            return format!(" (dpkg state: {})", record.state);
        }
        suggestion(name, self.installed_names())
    }

    /// Every installed package name and every provided name, for suggestions.
    fn installed_names(&self) -> BTreeSet<&str> {
        self.records
            .iter()
            .filter(|record| record.installed.is_some())
            .map(|record| record.name.as_str())
            .chain(self.providers.keys().map(String::as_str))
            .collect()
    }

    /// Lower is better: the wanted architecture, then native, then `all`, then by name.
    fn arch_preference<'a>(&'a self, record: &'a PackageRecord, wanted: &str) -> (u8, &'a str) {
        let arch = self.arch_of(record);
        let rank = if arch == wanted {
            0
        } else if arch == self.native_arch {
            1
        } else if arch == "all" {
            2
        } else {
            3
        };
        (rank, arch)
    }

    /// The package satisfying the first satisfiable alternative of `group`.
    fn satisfy_group(&self, group: &RelationGroup, depender_arch: &str) -> Option<usize> {
        group
            .alternatives
            .iter()
            .find_map(|relation| self.satisfy(relation, depender_arch))
    }

    fn satisfy(&self, relation: &Relation, depender_arch: &str) -> Option<usize> {
        self.installed_named(&relation.name)
            .filter(|&index| {
                let record = &self.records[index];
                self.arch_matches(&relation.arch, depender_arch, record)
                    && match (&relation.version, &record.installed) {
                        (None, _) => true,
                        (Some((op, wanted)), Some(installed)) => {
                            installed.version.satisfies(*op, wanted)
                        }
                        (Some(_), None) => false,
                    }
            })
            .min_by_key(|&index| self.arch_preference(&self.records[index], depender_arch))
            .or_else(|| self.provider_for(relation, depender_arch))
    }

    fn provider_for(&self, relation: &Relation, depender_arch: &str) -> Option<usize> {
        self.providers
            .get(&relation.name)
            .into_iter()
            .flatten()
            .filter(|(index, provided)| {
                self.arch_matches(&relation.arch, depender_arch, &self.records[*index])
                    && match (&relation.version, provided) {
                        (None, _) => true,
                        // An unversioned Provides satisfies no versioned relation.
                        (Some(_), None) => false,
                        (Some((op, wanted)), Some(provided)) => provided.satisfies(*op, wanted),
                    }
            })
            .map(|(index, _)| *index)
            .min_by_key(|&index| {
                let record = &self.records[index];
                let arch = self.arch_of(record);
                (arch != depender_arch, record.name.as_str(), arch)
            })
    }

    /// Whether `target`'s architecture satisfies a relation written by a package of
    /// `depender_arch` with qualifier `qualifier`.
    fn arch_matches(
        &self,
        qualifier: &ArchQualifier,
        depender_arch: &str,
        target: &PackageRecord,
    ) -> bool {
        let native = |arch: &str| -> String {
            if arch == "all" {
                self.native_arch.clone()
            } else {
                arch.to_string()
            }
        };
        let target_arch = self.arch_of(target);
        let multi_arch = target
            .installed
            .as_ref()
            .map_or(MultiArch::No, |installed| installed.multi_arch);
        let implicit = || {
            multi_arch == MultiArch::Foreign
                || target_arch == "all"
                || native(depender_arch) == native(target_arch)
        };
        match qualifier {
            ArchQualifier::Implicit => implicit(),
            ArchQualifier::Any => multi_arch == MultiArch::Allowed || implicit(),
            ArchQualifier::Native => native(target_arch) == self.native_arch,
            ArchQualifier::Named(arch) => native(arch) == native(target_arch),
        }
    }
}

fn package_id(record: &PackageRecord) -> Option<PackageId> {
    let installed = record.installed.as_ref()?;
    Some(PackageId {
        name: record.name.clone(),
        version: installed.version_text.clone(),
        arch: record.arch.clone()?,
    })
}

/// Sorts by (name, architecture) and removes duplicates: the order a [`Closure`] promises.
fn sort_ids(ids: &mut Vec<PackageId>) {
    ids.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    ids.dedup_by(|a, b| a.name == b.name && a.arch == b.arch);
}

fn native_arch(records: &[PackageRecord]) -> String {
    let installed = || {
        records
            .iter()
            .filter(|record| record.installed.is_some())
            .filter_map(|record| record.arch.as_deref())
    };
    if let Some(arch) = records
        .iter()
        .find(|record| record.name == "dpkg" && record.installed.is_some())
        .and_then(|record| record.arch.as_deref())
    {
        return arch.to_string();
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for arch in installed().filter(|arch| *arch != "all") {
        *counts.entry(arch).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|(a, count_a), (b, count_b)| count_a.cmp(count_b).then_with(|| b.cmp(a)))
        .map_or_else(|| "all".to_string(), |(arch, _)| arch.to_string())
}

/// `; did you mean `x`?` naming the closest candidates by edit distance, or nothing when none
/// is close. Transpositions count as one edit, so `gti` finds `git`.
fn suggestion<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let limit = match name.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    let mut best: Vec<(usize, &str)> = candidates
        .into_iter()
        .map(|candidate| (strsim::osa_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .collect();
    best.sort();
    let Some(&(closest, _)) = best.first() else {
        return String::new();
    };
    let names: Vec<String> = best
        .iter()
        .take_while(|(distance, _)| *distance == closest)
        .take(3)
        .map(|(_, candidate)| format!("`{candidate}`"))
        .collect();
    match names.as_slice() {
        [] => String::new(),
        [only] => format!("; did you mean {only}?"),
        [init @ .., last] => format!("; did you mean {} or {last}?", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::control::parse_status;
    use super::super::tests::names;
    use super::*;

    fn database(text: &str) -> Database {
        Database::new(parse_status(text).unwrap())
    }

    fn request(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    fn stanza(name: &str, arch: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nStatus: install ok installed\nVersion: 1.0\nArchitecture: {arch}\n{extra}\n"
        )
    }

    #[test]
    fn native_arch_comes_from_dpkg_or_the_majority() {
        let text = [stanza("a", "i386", ""), stanza("dpkg", "arm64", "")].join("\n");
        assert_eq!(database(&text).native_arch(), "arm64");
        let text = [
            stanza("a", "i386", ""),
            stanza("b", "amd64", ""),
            stanza("c", "amd64", ""),
            stanza("d", "all", ""),
            stanza("e", "all", ""),
        ]
        .join("\n");
        assert_eq!(database(&text).native_arch(), "amd64");
    }

    #[test]
    fn later_records_replace_earlier_ones() {
        let text = [
            stanza("a", "amd64", "Depends: b"),
            stanza("b", "amd64", ""),
            stanza("a", "amd64", ""),
        ]
        .join("\n");
        let closure = database(&text).resolve(&request(&["a"])).unwrap();
        assert_eq!(names(&closure), ["a:amd64"]);
    }

    #[test]
    fn foreign_any_and_named_qualifiers() {
        let text = [
            stanza("dpkg", "amd64", ""),
            stanza("app", "i386", "Depends: tool, interp:any, lib, lib:amd64"),
            stanza("tool", "amd64", "Multi-Arch: foreign"),
            stanza("interp", "amd64", "Multi-Arch: allowed"),
            stanza("lib", "amd64", "Multi-Arch: same"),
            stanza("lib", "i386", "Multi-Arch: same"),
        ]
        .join("\n");
        let closure = database(&text).resolve(&request(&["app:i386"])).unwrap();
        assert_eq!(
            names(&closure),
            [
                "app:i386",
                "interp:amd64",
                "lib:amd64",
                "lib:i386",
                "tool:amd64"
            ]
        );
        assert!(closure.missing.is_empty());
    }

    #[test]
    fn foreign_arch_without_multi_arch_does_not_satisfy() {
        let text = [
            stanza("dpkg", "amd64", ""),
            stanza("app", "amd64", "Depends: helper, other:native"),
            stanza("helper", "i386", ""),
            stanza("other", "i386", ""),
        ]
        .join("\n");
        let closure = database(&text).resolve(&request(&["app"])).unwrap();
        assert_eq!(names(&closure), ["app:amd64"]);
        let missing: Vec<_> = closure
            .missing
            .iter()
            .map(|m| (m.required_by.as_str(), m.relation.as_str()))
            .collect();
        assert_eq!(missing, [("app", "helper"), ("app", "other:native")]);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggestion("gti", ["git", "bash"]), "; did you mean `git`?");
        assert_eq!(suggestion("zzz", ["git", "bash"]), "");
        assert_eq!(
            suggestion("python", ["python3", "python2", "pythn", "ruby"]),
            "; did you mean `pythn`, `python2` or `python3`?"
        );
    }
}
