//! Tests of the loader and of `resolve`/`export_plan` on the fixture database under
//! `tests/fixtures/dpkg/root`, plus checks against the real host database.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::*;
use crate::packages::MissingDependency;

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dpkg/root")
}

fn fixture() -> Dpkg {
    Dpkg::from_env(Some(fixture_root().as_os_str()), None).unwrap()
}

fn request(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// `name:arch` of each closure package, for compact assertions (also used by resolve's tests).
pub(super) fn names(closure: &Closure) -> Vec<String> {
    closure
        .packages
        .iter()
        .map(|id| format!("{}:{}", id.name, id.arch))
        .collect()
}

#[test]
fn from_env_defaults_admindir_under_root() {
    let dpkg = fixture();
    assert_eq!(dpkg.source_root(), fixture_root());
    assert_eq!(dpkg.admindir(), fixture_root().join("var/lib/dpkg"));
    assert_eq!(dpkg.native_arch(), "amd64");
    // An explicit DPKG_ADMINDIR is used as is, not under the root.
    let admindir = fixture_root().join("var/lib/dpkg");
    let dpkg = Dpkg::from_env(Some(OsStr::new("/nonexistent")), Some(admindir.as_os_str()));
    assert_eq!(dpkg.unwrap().admindir(), admindir);
    // Empty values count as unset.
    let dpkg = Dpkg::from_env(Some(OsStr::new("")), Some(OsStr::new(""))).map(|d| d.admindir);
    if let Ok(admindir) = dpkg {
        assert_eq!(admindir, Path::new("/var/lib/dpkg"));
    }
}

#[test]
fn closure_follows_depends_and_pre_depends_only() {
    let closure = fixture().resolve(&request(&["hello"])).unwrap();
    assert_eq!(
        names(&closure),
        [
            // Pre-Depends of perl-base.
            "dpkg:amd64",
            // mail-transport-agent: providers of the depender's architecture first, then the
            // lowest name (postfix and aaa-mta:i386 also provide it).
            "exim4:amd64",
            "gawk:amd64",
            "gcc-12-base:amd64",
            "gcc-12-base:i386",
            "hello:amd64",
            // `missing-lib1 | libalt1`: the first alternative is not installed.
            "libalt1:amd64",
            "libc6:amd64",
            // `libc6:i386 [amd64] <!nocheck>`: qualifier honoured, restrictions dropped.
            "libc6:i386",
            // `libfoo1 (>= 2.0) | libfoo-compat`: libfoo1 1.5-1 is too old.
            "libfoo-compat:all",
            "libgcc-s1:amd64",
            "libgcc-s1:i386",
            // `perl:any` on a Multi-Arch: allowed package.
            "perl:amd64",
            "perl-base:amd64",
            // A Multi-Arch: foreign package of another architecture.
            "qemu-tool:i386",
            "tar:amd64",
        ]
    );
    // Only through Recommends / Suggests, or only as a non-first alternative: not included.
    for absent in [
        "recommended-pkg",
        "suggested-pkg",
        "libfoo1",
        "busybox-awk",
        "postfix",
    ] {
        assert!(
            !closure.packages.iter().any(|id| id.name == absent),
            "{absent}"
        );
    }
    assert_eq!(
        closure.missing,
        vec![MissingDependency {
            required_by: "hello".into(),
            relation: "totally-absent (>= 3) | also-absent".into(),
        }]
    );
    let hello = closure
        .packages
        .iter()
        .find(|id| id.name == "hello")
        .unwrap();
    assert_eq!(hello.version, "2.10-3");
}

#[test]
fn closure_is_deterministic_and_independent_of_request_order() {
    let dpkg = fixture();
    let a = dpkg
        .resolve(&request(&["hello", "nano", "wine32:i386"]))
        .unwrap();
    let b = dpkg
        .resolve(&request(&["wine32:i386", "nano", "hello", "nano"]))
        .unwrap();
    assert_eq!(a, b);
    let mut sorted = a.packages.clone();
    sorted.sort_by(|x, y| (&x.name, &x.arch).cmp(&(&y.name, &y.arch)));
    sorted.dedup();
    assert_eq!(a.packages, sorted);
}

#[test]
fn versioned_dependency_skips_unversioned_provides() {
    // `awk-virtual (>= 1)`: busybox-awk provides it without a version, gawk with one.
    let closure = fixture().resolve(&request(&["hello"])).unwrap();
    assert!(closure.packages.iter().any(|id| id.name == "gawk"));
}

#[test]
fn multi_arch_pair_follows_the_depender_architecture() {
    let closure = fixture().resolve(&request(&["wine32"])).unwrap();
    assert_eq!(
        names(&closure),
        [
            "gcc-12-base:i386",
            "libc6:i386",
            "libgcc-s1:i386",
            "wine32:i386"
        ]
    );
    // A plain name means the native architecture when both are installed.
    let closure = fixture().resolve(&request(&["libc6"])).unwrap();
    assert_eq!(
        names(&closure),
        ["gcc-12-base:amd64", "libc6:amd64", "libgcc-s1:amd64"]
    );
    let closure = fixture().resolve(&request(&["libc6:native"])).unwrap();
    assert_eq!(
        names(&closure),
        ["gcc-12-base:amd64", "libc6:amd64", "libgcc-s1:amd64"]
    );
    let closure = fixture().resolve(&request(&["wine32:any"])).unwrap();
    assert!(names(&closure).contains(&"wine32:i386".to_string()));
    let closure = fixture().resolve(&request(&["libc6:i386"])).unwrap();
    assert_eq!(
        names(&closure),
        ["gcc-12-base:i386", "libc6:i386", "libgcc-s1:i386"]
    );
}

#[test]
fn requested_virtual_package_resolves_through_its_provider() {
    let closure = fixture()
        .resolve(&request(&["mail-transport-agent"]))
        .unwrap();
    assert_eq!(names(&closure), ["exim4:amd64"]);
}

#[test]
fn triggers_pending_counts_as_installed() {
    let closure = fixture().resolve(&request(&["triggered"])).unwrap();
    assert!(names(&closure).contains(&"triggered:amd64".to_string()));
}

#[test]
fn updates_journal_overrides_status() {
    let closure = fixture().resolve(&request(&["nano"])).unwrap();
    let nano = closure
        .packages
        .iter()
        .find(|id| id.name == "nano")
        .unwrap();
    assert_eq!(nano.version, "7.2-1");
}

#[test]
fn not_installed_packages_explain_themselves() {
    let dpkg = fixture();
    let message = |name: &str| dpkg.resolve(&request(&[name])).unwrap_err().to_string();
    assert_eq!(
        message("old-tool"),
        "package `old-tool` is not installed on this host (removed, config files only)"
    );
    assert_eq!(
        message("half-thing"),
        "package `half-thing` is not installed on this host (dpkg state: half-installed)"
    );
    assert_eq!(
        message("helo"),
        "package `helo` is not installed on this host; did you mean `hello`?"
    );
    assert_eq!(
        message("wine32:amd64"),
        "package `wine32:amd64` is not installed on this host; installed for: i386"
    );
    assert_eq!(
        message("no-such-thing-at-all"),
        "package `no-such-thing-at-all` is not installed on this host"
    );
    assert!(matches!(
        dpkg.resolve(&request(&["old-tool"])),
        Err(PackageError::NotInstalled { .. })
    ));
}

#[test]
fn export_plan_lists_paths_in_closure_then_list_order() {
    let dpkg = fixture();
    let closure = dpkg
        .resolve(&request(&["libc6:i386", "hello-wrapper"]))
        .unwrap();
    let plan = dpkg.export_plan(&closure).unwrap();
    let package_of = |path: &str| -> Vec<&str> {
        plan.entries
            .iter()
            .filter(|entry| entry.path == Path::new(path))
            .map(|entry| closure.packages[entry.package].name.as_str())
            .collect()
    };
    // The root directory (`/.`) is never an entry.
    assert!(
        plan.entries
            .iter()
            .all(|entry| entry.path != Path::new("/."))
    );
    // hello's /usr/bin/hello is diverted by hello-wrapper, which keeps its own at the path.
    assert_eq!(package_of("/usr/bin/hello.real"), ["hello"]);
    assert_eq!(package_of("/usr/bin/hello"), ["hello-wrapper"]);
    // A local diversion (holder `:`) applies to every package.
    assert_eq!(package_of("/etc/hello.conf.local"), ["hello"]);
    assert!(package_of("/etc/hello.conf").is_empty());
    // Both architectures list the same directory: both entries are kept.
    assert_eq!(
        package_of("/usr/share/doc/gcc-12-base"),
        ["gcc-12-base", "gcc-12-base"]
    );
    // Non-UTF-8 file names survive byte for byte.
    let doc = Path::new(OsStr::from_bytes(b"/usr/share/doc/hello/caf\xe9.txt"));
    assert!(plan.entries.iter().any(|entry| entry.path == doc));
    // Entries come in closure order, and in list order within a package.
    let order: Vec<usize> = plan.entries.iter().map(|entry| entry.package).collect();
    assert!(order.windows(2).all(|pair| pair[0] <= pair[1]));
    let hello = closure
        .packages
        .iter()
        .position(|id| id.name == "hello")
        .unwrap();
    let hello_paths: Vec<&Path> = plan
        .entries
        .iter()
        .filter(|entry| entry.package == hello)
        .map(|entry| entry.path.as_path())
        .collect();
    assert_eq!(
        hello_paths,
        [
            Path::new("/usr"),
            Path::new("/usr/bin"),
            Path::new("/usr/bin/hello.real"),
            Path::new("/etc"),
            Path::new("/etc/hello.conf.local"),
            Path::new("/usr/share"),
            Path::new("/usr/share/doc"),
            Path::new("/usr/share/doc/hello"),
            doc,
        ]
    );
}

#[test]
fn export_plan_alternatives_match_after_merged_usr_normalization() {
    let dpkg = fixture();
    // The editor choice is `/bin/nano`; nano lists `/usr/bin/nano`, and `/bin -> usr/bin`.
    let closure = dpkg.resolve(&request(&["nano"])).unwrap();
    let plan = dpkg.export_plan(&closure).unwrap();
    let groups: Vec<&str> = plan.alternatives.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(groups, ["editor"]);
    let editor = &plan.alternatives[0];
    assert_eq!(editor.link, Path::new("/usr/bin/editor"));
    assert_eq!(editor.choices.len(), 2);
    assert_eq!(editor.choices[1].slaves, vec![None]);
    // The malformed file is reported, not fatal, and names the file and line.
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(
        plan.warnings[0].contains("alternatives/broken:1"),
        "{:?}",
        plan.warnings
    );
    // A closure without any choice has no alternatives.
    let closure = dpkg.resolve(&request(&["libalt1"])).unwrap();
    assert!(dpkg.export_plan(&closure).unwrap().alternatives.is_empty());
}

#[test]
fn export_plan_of_unknown_package_names_the_list_file() {
    let dpkg = fixture();
    let closure = Closure {
        packages: vec![PackageId {
            name: "ghost".into(),
            version: "1".into(),
            arch: "amd64".into(),
        }],
        missing: Vec::new(),
    };
    let error = dpkg.export_plan(&closure).unwrap_err().to_string();
    assert!(error.contains("info/ghost.list"), "{error}");
}

#[test]
fn database_files_are_the_status_diversions_and_alternatives() {
    let dpkg = fixture();
    let admindir = fixture_root().join("var/lib/dpkg");
    assert_eq!(
        dpkg.database_files(),
        ["status", "updates", "diversions", "alternatives"].map(|name| admindir.join(name))
    );
    assert_eq!(dpkg.name(), "dpkg");
}

#[test]
fn essential_packages_are_listed() {
    let essential: Vec<String> = fixture()
        .essential_packages()
        .into_iter()
        .map(|id| id.name)
        .collect();
    assert_eq!(essential, ["dpkg", "perl-base", "tar"]);
}

#[test]
fn load_errors_carry_the_path_and_line() {
    let temp = tempfile::tempdir().unwrap();
    let admindir = temp.path().join("admin");
    std::fs::create_dir(&admindir).unwrap();
    let error = Dpkg::open(temp.path(), &admindir).unwrap_err();
    assert!(
        matches!(&error, PackageError::Io { path, .. } if path == &admindir.join("status")),
        "{error}"
    );
    std::fs::write(
        admindir.join("status"),
        "Package: a\nStatus: install ok installed\nVersion: 1\nDepends: b (>= \n",
    )
    .unwrap();
    match Dpkg::open(temp.path(), &admindir).unwrap_err() {
        PackageError::Parse { path, line, .. } => {
            assert_eq!((path, line), (admindir.join("status"), 4));
        }
        other => panic!("unexpected {other}"),
    }
    std::fs::write(
        admindir.join("status"),
        "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n",
    )
    .unwrap();
    std::fs::write(admindir.join("diversions"), "/a\n/b\n").unwrap();
    match Dpkg::open(temp.path(), &admindir).unwrap_err() {
        PackageError::Parse { path, line, .. } => {
            assert_eq!((path, line), (admindir.join("diversions"), 1));
        }
        other => panic!("unexpected {other}"),
    }
    // Without diversions, alternatives or updates the database is still valid.
    std::fs::remove_file(admindir.join("diversions")).unwrap();
    let dpkg = Dpkg::open(temp.path(), &admindir).unwrap();
    let closure = dpkg.resolve(&request(&["a"])).unwrap();
    std::fs::create_dir(admindir.join("info")).unwrap();
    std::fs::write(admindir.join("info/a.list"), "/.\nrelative\n").unwrap();
    match dpkg.export_plan(&closure).unwrap_err() {
        PackageError::Parse { path, line, .. } => {
            assert_eq!((path, line), (admindir.join("info/a.list"), 2));
        }
        other => panic!("unexpected {other}"),
    }
}

/// The real database of the machine running the tests, if it has one with git installed.
fn host() -> Option<Dpkg> {
    if !Path::new("/var/lib/dpkg/status").exists() {
        eprintln!("skipping: no dpkg database on this host");
        return None;
    }
    let dpkg = Dpkg::from_env(None, None).unwrap();
    if dpkg.resolve(&request(&["git"])).is_err() {
        eprintln!("skipping: git is not installed on this host");
        return None;
    }
    Some(dpkg)
}

#[test]
fn host_git_closure() {
    let Some(dpkg) = host() else { return };
    let started = Instant::now();
    let first = Dpkg::from_env(None, None)
        .unwrap()
        .resolve(&request(&["git"]))
        .unwrap();
    eprintln!(
        "open + resolve(git): {:?}, {} packages, {} missing",
        started.elapsed(),
        first.packages.len(),
        first.missing.len()
    );
    let second = dpkg.resolve(&request(&["git"])).unwrap();
    assert_eq!(first, second);
    let names: Vec<&str> = first.packages.iter().map(|id| id.name.as_str()).collect();
    for needed in ["git", "libc6", "perl", "perl-base", "git-man", "zlib1g"] {
        assert!(names.contains(&needed), "{needed} missing from {names:?}");
    }
    // git Recommends these; nothing in its Depends closure pulls them in.
    for recommended in ["less", "patch", "openssh-client"] {
        assert!(!names.contains(&recommended), "{recommended} in {names:?}");
    }
    let plan = dpkg.export_plan(&first).unwrap();
    assert!(
        plan.entries
            .iter()
            .any(|entry| entry.path == Path::new("/usr/bin/git")),
        "git's binary is not in the plan"
    );
}

#[test]
fn host_typo_suggests_git() {
    let Some(dpkg) = host() else { return };
    let error = dpkg.resolve(&request(&["gti"])).unwrap_err().to_string();
    assert!(
        error.contains("did you mean") && error.contains("`git`"),
        "{error}"
    );
}

#[test]
fn installed_count_counts_installed_records_once() {
    // 26 `installed` and one `triggers-pending` in `status`; nano's entry in `updates/`
    // replaces the one in `status` rather than adding one; `config-files` and
    // `half-installed` are not installed.
    assert_eq!(fixture().installed_count(), 27);
}
