//! Validation: the JSON a manifest evaluated to, checked and turned into a typed [`Manifest`].
//!
//! This is the only door into [`Manifest`]: everything downstream (the package resolver, the
//! store key, the sandbox plan) trusts what comes out of here. The function is pure — JSON in,
//! `Manifest` or the first error out — so every rule is tested with `serde_json::json!` values.
//!
//! Invariants of the result:
//! - every field the v1 schema does not know is rejected, with the nearest known spelling as a
//!   hint (`pakages` → `packages`), at any depth (top level, mount objects, fsEntry objects);
//! - every error is [`ManifestError::Field`] whose `field` is the full path of the offending
//!   value (`mounts[2].target`, `envSet.FOO`, `fsEntries[0].mode`) and whose message says what is
//!   wrong and how to fix it; the one exception is a manifest that is not an object at all
//!   ([`ManifestError::NotAnObject`]), which has no field to name;
//! - mount sources and targets and fsEntry paths are absolute, free of `..`, and normalized
//!   (`//` and `/./` folded, no trailing slash); `/` is never a mount target or an fsEntry path;
//! - venv directories are relative, free of `..`, and normalized the same way;
//! - modes are parsed octal numbers no larger than `0o7777`;
//! - `packages` is non-empty and, like `envKeep` and the venv list, holds no duplicates (the first
//!   occurrence wins, so manifest order is kept).
//!
//! Errors are reported in a fixed order (unknown fields first, then the fields in schema order)
//! so the same bad manifest always gives the same message.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use super::{
    DEFAULT_PROTECT, Destination, FsEntry, HomeMode, Manifest, ManifestError, Mount, MountKind,
    Network, VenvMode,
};

type Result<T> = std::result::Result<T, ManifestError>;

/// The top-level fields of a v1 manifest, in the order they are documented and checked.
const MANIFEST_FIELDS: &[&str] = &[
    "packages",
    "essential",
    "envKeep",
    "envSet",
    "mountDefaults",
    "mounts",
    "fsEntries",
    "venv",
    "venvPersist",
    "network",
    "protect",
    "home",
    "gitIdentity",
];
/// The fields of a mount object.
const MOUNT_FIELDS: &[&str] = &["type", "source", "target", "optional"];
/// The fields of an fsEntry object (which of them apply depends on `type`).
const FS_ENTRY_FIELDS: &[&str] = &["type", "path", "mode", "contents", "target", "override"];
/// Mount types, spelled as bwrap spells the options.
const MOUNT_TYPES: &[&str] = &["bind", "ro-bind", "dev-bind", "tmpfs", "proc"];
/// fsEntry types.
const FS_ENTRY_TYPES: &[&str] = &["dir", "file", "symlink"];
/// The largest mode an fsEntry may have: permission bits plus setuid, setgid and sticky.
const MAX_MODE: u32 = 0o7777;
/// Default modes, as `mkdir` and `touch` give them under the usual umask.
const DEFAULT_DIR_MODE: u32 = 0o755;
const DEFAULT_FILE_MODE: u32 = 0o644;

/// Turns the JSON a manifest evaluated to into a [`Manifest`].
///
/// Returns the first problem found; see the module documentation for the order and the
/// guarantees of the result.
pub fn validate(value: &Value) -> Result<Manifest> {
    let Value::Object(root) = value else {
        return Err(ManifestError::NotAnObject(json_type(value)));
    };
    check_known_fields(root, "", MANIFEST_FIELDS)?;

    let packages = match root.get("packages") {
        Some(value) => packages(value)?,
        None => {
            return Err(field_error(
                "packages",
                "required field is missing; list the host packages the environment needs, \
                 e.g. `packages: [\"bash\", \"coreutils\"]`",
            ));
        }
    };
    let env_keep = match root.get("envKeep") {
        Some(value) => env_keep(value)?,
        None => Vec::new(),
    };
    let env_set = match root.get("envSet") {
        Some(value) => env_set(value)?,
        None => BTreeMap::new(),
    };
    let mount_defaults = match root.get("mountDefaults") {
        Some(value) => expect_bool(value, "mountDefaults")?,
        None => true,
    };
    let mounts = match root.get("mounts") {
        Some(value) => mounts(value)?,
        None => Vec::new(),
    };
    let fs_entries = match root.get("fsEntries") {
        Some(value) => fs_entries(value)?,
        None => Vec::new(),
    };
    let venv = match root.get("venv") {
        Some(value) => venv(value)?,
        None => VenvMode::Auto,
    };
    let essential = match root.get("essential") {
        Some(value) => expect_bool(value, "essential")?,
        None => true,
    };
    let venv_persist = match root.get("venvPersist") {
        Some(value) => expect_bool(value, "venvPersist")?,
        None => true,
    };
    let network = match root.get("network") {
        Some(value) => network(value)?,
        None => Network::Private,
    };
    let protect = match root.get("protect") {
        Some(value) => protect(value)?,
        None => DEFAULT_PROTECT.iter().map(PathBuf::from).collect(),
    };
    let home = match root.get("home") {
        Some(value) => home(value)?,
        None => HomeMode::Tmpfs,
    };
    let git_identity = match root.get("gitIdentity") {
        Some(value) => expect_bool(value, "gitIdentity")?,
        None => true,
    };
    Ok(Manifest {
        packages,
        essential,
        env_keep,
        env_set,
        mount_defaults,
        mounts,
        fs_entries,
        venv,
        venv_persist,
        network,
        protect,
        home,
        git_identity,
    })
}

// ---------------------------------------------------------------------------------------------
// Fields

fn packages(value: &Value) -> Result<Vec<String>> {
    let items = expect_array(value, "packages")?;
    if items.is_empty() {
        return Err(field_error(
            "packages",
            "the list is empty; name at least one package, e.g. `[\"bash\"]`",
        ));
    }
    let mut seen = HashSet::new();
    let mut packages = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let field = format!("packages[{index}]");
        let name = expect_str(item, &field)?;
        check_package_name(name).map_err(|message| field_error(&field, message))?;
        if seen.insert(name) {
            packages.push(name.to_owned());
        }
    }
    Ok(packages)
}

/// Accepts `name` or `name:arch`. The rule is deliberately loose enough for the names of every
/// package manager paude may read (dpkg, rpm, pacman, apk) and strict enough to catch
/// whitespace, shell syntax and stray punctuation early, with the package as the field.
fn check_package_name(spec: &str) -> std::result::Result<(), String> {
    if spec.is_empty() {
        return Err("a package name must not be empty".into());
    }
    if spec.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{spec}` is not a package name: it contains whitespace; give each package as its \
             own string"
        ));
    }
    let (name, arch) = match spec.split_once(':') {
        Some((name, arch)) => (name, Some(arch)),
        None => (spec, None),
    };
    let name_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_'));
    if !name_ok {
        return Err(format!(
            "`{spec}` is not a package name: names start with a letter or digit and hold only \
             letters, digits and `+-._`, optionally followed by `:arch` (e.g. `libc6:amd64`)"
        ));
    }
    if let Some(arch) = arch {
        let arch_ok = !arch.is_empty()
            && arch
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !arch_ok {
            return Err(format!(
                "`{spec}` has an invalid architecture after `:`; write `name:arch` with an \
                 architecture such as `amd64` or `i386`"
            ));
        }
    }
    Ok(())
}

fn env_keep(value: &Value) -> Result<Vec<String>> {
    let items = expect_array(value, "envKeep")?;
    let mut seen = HashSet::new();
    let mut names = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let field = format!("envKeep[{index}]");
        let name = expect_str(item, &field)?;
        check_env_name(name).map_err(|message| field_error(&field, message))?;
        if seen.insert(name) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn env_set(value: &Value) -> Result<BTreeMap<String, String>> {
    let map = expect_object(value, "envSet")?;
    let mut vars = BTreeMap::new();
    for (name, value) in map {
        let field = join_field("envSet", name);
        check_env_name(name).map_err(|message| field_error(&field, message))?;
        let value = expect_str(value, &field)?;
        if value.contains('\0') {
            return Err(field_error(
                &field,
                "the value contains a NUL character, which an environment variable cannot hold",
            ));
        }
        vars.insert(name.clone(), value.to_owned());
    }
    Ok(vars)
}

/// Environment names can hold anything but `=` and NUL as far as the kernel is concerned, and
/// programs do use unusual names, so only what cannot work is rejected.
fn check_env_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("an environment variable name must not be empty".into());
    }
    if name.contains('=') {
        return Err(format!(
            "`{name}` is not a variable name: it contains `=`; use `envSet: {{ NAME: \"value\" }}` \
             to set a value"
        ));
    }
    if name.contains('\0') {
        return Err("the variable name contains a NUL character".into());
    }
    Ok(())
}

fn mounts(value: &Value) -> Result<Vec<Mount>> {
    let items = expect_array(value, "mounts")?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| mount(item, &format!("mounts[{index}]")))
        .collect()
}

fn mount(value: &Value, field: &str) -> Result<Mount> {
    let object = match value {
        // The seed's short form: `"/home"` is `--bind /home /home`.
        Value::String(path) => {
            let path = absolute_path(path, field)?;
            check_not_root(&path, field, "a mount target")?;
            return Ok(Mount {
                kind: MountKind::Bind,
                source: Some(path.clone()),
                target: path,
                optional: false,
            });
        }
        Value::Object(object) => object,
        other => {
            return Err(field_error(
                field,
                format!(
                    "expected a path string or a mount object, got {}",
                    json_type(other)
                ),
            ));
        }
    };
    check_known_fields(object, field, MOUNT_FIELDS)?;
    let type_field = join_field(field, "type");
    let kind = match object.get("type") {
        Some(value) => match one_of(expect_str(value, &type_field)?, MOUNT_TYPES, &type_field)? {
            "bind" => MountKind::Bind,
            "ro-bind" => MountKind::RoBind,
            "dev-bind" => MountKind::DevBind,
            "tmpfs" => MountKind::Tmpfs,
            _ => MountKind::Proc,
        },
        None => {
            return Err(field_error(
                &type_field,
                "required field is missing; one of `bind`, `ro-bind`, `dev-bind`, `tmpfs`, `proc`",
            ));
        }
    };
    let optional_field = join_field(field, "optional");
    let optional = match object.get("optional") {
        Some(value) => expect_bool(value, &optional_field)?,
        None => false,
    };
    let source_field = join_field(field, "source");
    let target_field = join_field(field, "target");
    let target = match object.get("target") {
        Some(value) => Some(absolute_path(
            expect_str(value, &target_field)?,
            &target_field,
        )?),
        None => None,
    };
    let source = match kind {
        MountKind::Bind | MountKind::RoBind | MountKind::DevBind => match object.get("source") {
            Some(value) => absolute_path(expect_str(value, &source_field)?, &source_field)?,
            None => {
                return Err(field_error(
                    &source_field,
                    "required field is missing; a bind mount needs the host path to bind",
                ));
            }
        },
        MountKind::Tmpfs | MountKind::Proc => {
            let name = mount_type_name(kind);
            if object.contains_key("source") {
                return Err(field_error(
                    &source_field,
                    format!("a `{name}` mount has no source; remove `source` and give `target`"),
                ));
            }
            if optional {
                return Err(field_error(
                    &optional_field,
                    format!(
                        "`optional` applies only to bind mounts (a `{name}` mount has no host \
                         path to miss); remove it"
                    ),
                ));
            }
            let Some(target) = target else {
                return Err(field_error(
                    &target_field,
                    format!(
                        "required field is missing; a `{name}` mount needs the path to mount at"
                    ),
                ));
            };
            check_not_root(&target, &target_field, "a mount target")?;
            return Ok(Mount {
                kind,
                source: None,
                target,
                optional: false,
            });
        }
    };
    let target = match target {
        Some(target) => {
            check_not_root(&target, &target_field, "a mount target")?;
            target
        }
        None => {
            // The target defaults to the source, so a bind of `/` is rejected at `source`.
            check_not_root(
                &source,
                &source_field,
                "a mount target (the default of `target`)",
            )?;
            source.clone()
        }
    };
    Ok(Mount {
        kind,
        source: Some(source),
        target,
        optional,
    })
}

fn mount_type_name(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Bind => "bind",
        MountKind::RoBind => "ro-bind",
        MountKind::DevBind => "dev-bind",
        MountKind::Tmpfs => "tmpfs",
        MountKind::Proc => "proc",
    }
}

fn fs_entries(value: &Value) -> Result<Vec<FsEntry>> {
    let items = expect_array(value, "fsEntries")?;
    // Two entries at one path would make the rootfs depend on creation order; say so instead.
    let mut seen: BTreeMap<PathBuf, usize> = BTreeMap::new();
    let mut entries = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let field = format!("fsEntries[{index}]");
        let entry = fs_entry(item, &field)?;
        if let Some(first) = seen.insert(entry.path().to_path_buf(), index) {
            return Err(field_error(
                &join_field(&field, "path"),
                format!(
                    "`{}` is already created by fsEntries[{first}]; keep one entry per path",
                    entry.path().display()
                ),
            ));
        }
        entries.push(entry);
    }
    // An entry below a file or a symlink entry could only be created by writing through it (or
    // fail half-way through the build): refuse it here, before anything is built.
    for (index, entry) in entries.iter().enumerate() {
        for ancestor in entry.path().ancestors().skip(1) {
            let Some(&above) = seen.get(ancestor) else {
                continue;
            };
            if !matches!(entries[above], FsEntry::Dir { .. }) {
                return Err(field_error(
                    &format!("fsEntries[{index}].path"),
                    format!(
                        "`{}` lies below fsEntries[{above}] (`{}`), which is not a directory; \
                         make that entry a `dir`, or move this one",
                        entry.path().display(),
                        ancestor.display()
                    ),
                ));
            }
        }
    }
    Ok(entries)
}

fn fs_entry(value: &Value, field: &str) -> Result<FsEntry> {
    let object = expect_object(value, field)?;
    check_known_fields(object, field, FS_ENTRY_FIELDS)?;
    let type_field = join_field(field, "type");
    let kind = match object.get("type") {
        Some(value) => one_of(expect_str(value, &type_field)?, FS_ENTRY_TYPES, &type_field)?,
        None => {
            return Err(field_error(
                &type_field,
                "required field is missing; one of `dir`, `file`, `symlink`",
            ));
        }
    };
    let path_field = join_field(field, "path");
    let path = match object.get("path") {
        Some(value) => absolute_path(expect_str(value, &path_field)?, &path_field)?,
        None => {
            return Err(field_error(
                &path_field,
                "required field is missing; the absolute path to create in the rootfs",
            ));
        }
    };
    check_not_root(&path, &path_field, "an fsEntry path")?;

    // Fields that do not apply to this type are errors: silently ignoring `mode` on a symlink
    // would hide a mistake the author wants to hear about.
    let misplaced = |name: &str, applies_to: &str| -> Result<()> {
        if object.contains_key(name) {
            return Err(field_error(
                &join_field(field, name),
                format!("`{name}` applies only to {applies_to}, not to `{kind}`; remove it"),
            ));
        }
        Ok(())
    };
    let mode = |default: u32| -> Result<u32> {
        match object.get("mode") {
            Some(value) => parse_mode(value, &join_field(field, "mode")),
            None => Ok(default),
        }
    };
    let overrides = match object.get("override") {
        Some(value) => expect_bool(value, &join_field(field, "override"))?,
        None => false,
    };
    match kind {
        "dir" => {
            misplaced("contents", "`file` entries")?;
            misplaced("target", "`symlink` entries")?;
            misplaced(
                "override",
                "`file` and `symlink` entries (a dir entry never replaces a file)",
            )?;
            Ok(FsEntry::Dir {
                path,
                mode: mode(DEFAULT_DIR_MODE)?,
            })
        }
        "file" => {
            misplaced("target", "`symlink` entries")?;
            let contents = match object.get("contents") {
                Some(value) => expect_str(value, &join_field(field, "contents"))?.to_owned(),
                None => String::new(),
            };
            Ok(FsEntry::File {
                path,
                mode: mode(DEFAULT_FILE_MODE)?,
                contents,
                overrides,
            })
        }
        _ => {
            misplaced(
                "mode",
                "`dir` and `file` entries (a symlink has no mode of its own)",
            )?;
            misplaced("contents", "`file` entries")?;
            let target_field = join_field(field, "target");
            let target = match object.get("target") {
                Some(value) => expect_str(value, &target_field)?,
                None => {
                    return Err(field_error(
                        &target_field,
                        "required field is missing; the path the symlink points to",
                    ));
                }
            };
            // The target is stored as written: it is resolved inside the sandbox, may be
            // relative, and may legitimately climb with `..` (`../lib/x`).
            if target.is_empty() {
                return Err(field_error(
                    &target_field,
                    "the symlink target must not be empty",
                ));
            }
            if target.contains('\0') {
                return Err(field_error(
                    &target_field,
                    "the symlink target contains a NUL character",
                ));
            }
            Ok(FsEntry::Symlink {
                path,
                target: PathBuf::from(target),
                overrides,
            })
        }
    }
}

fn venv(value: &Value) -> Result<VenvMode> {
    const VENV_WORDS: &[&str] = &["auto", "none"];
    match value {
        Value::String(word) => match one_of(word, VENV_WORDS, "venv")? {
            "auto" => Ok(VenvMode::Auto),
            _ => Ok(VenvMode::None),
        },
        Value::Array(items) => {
            let mut seen = HashSet::new();
            let mut dirs = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let field = format!("venv[{index}]");
                let dir = relative_path(expect_str(item, &field)?, &field)?;
                if seen.insert(dir.clone()) {
                    dirs.push(dir);
                }
            }
            // One inside another would have the sandbox's own venv (bound writable) hold the
            // place of the other's in paude's state.
            for (index, dir) in dirs.iter().enumerate() {
                if let Some(outer) = dirs
                    .iter()
                    .find(|other| *other != dir && dir.starts_with(other))
                {
                    return Err(field_error(
                        &format!("venv[{index}]"),
                        format!(
                            "`{}` lies inside `{}`, another venv; list venvs side by side",
                            dir.display(),
                            outer.display()
                        ),
                    ));
                }
            }
            Ok(VenvMode::List(dirs))
        }
        other => Err(field_error(
            "venv",
            format!(
                "expected \"auto\", \"none\" or an array of directories relative to the \
                 workspace, got {}",
                json_type(other)
            ),
        )),
    }
}

fn protect(value: &Value) -> Result<Vec<PathBuf>> {
    let Value::Array(items) = value else {
        return Err(field_error(
            "protect",
            format!(
                "expected an array of paths relative to the workspace (`[]` protects nothing), \
                 got {}",
                json_type(value)
            ),
        ));
    };
    let mut seen = HashSet::new();
    let mut paths = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let field = format!("protect[{index}]");
        let path = relative_path(expect_str(item, &field)?, &field)?;
        if seen.insert(path.clone()) {
            paths.push(path);
        }
    }
    Ok(paths)
}

fn network(value: &Value) -> Result<Network> {
    const EXPECTED: &str = "true (a private network that reaches the internet), false (loopback \
                            only), \"host\" (the host's network) or {allow: [\"host[:port]\", ...]}";
    match value {
        Value::Bool(true) => Ok(Network::Private),
        Value::Bool(false) => Ok(Network::Loopback),
        Value::String(word) if word == "host" => Ok(Network::Host),
        Value::String(word) => {
            let hint = match word.as_str() {
                "none" | "off" | "loopback" => " (false is loopback only)",
                "private" | "on" | "slirp4netns" => " (true is a private network)",
                _ if suggest(word, &["host"]).is_some() => " (did you mean \"host\"?)",
                _ => "",
            };
            Err(field_error(
                "network",
                format!("unknown value `{word}`{hint}; expected {EXPECTED}"),
            ))
        }
        Value::Object(object) => {
            check_known_fields(object, "network", &["allow"])?;
            let Some(list) = object.get("allow") else {
                return Err(field_error(
                    "network.allow",
                    "missing; list the destinations to let through, as \"host[:port]\"",
                ));
            };
            let list = expect_array(list, "network.allow")?;
            let mut destinations: Vec<Destination> = Vec::new();
            for (index, entry) in list.iter().enumerate() {
                let field = format!("network.allow[{index}]");
                let destination = destination(expect_str(entry, &field)?, &field)?;
                if !destinations.contains(&destination) {
                    destinations.push(destination);
                }
            }
            Ok(Network::Allow(destinations))
        }
        other => Err(field_error(
            "network",
            format!("expected {EXPECTED}, got {}", json_type(other)),
        )),
    }
}

/// The host of an authority: an address, or a name (lower-cased, without a final dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Address(std::net::IpAddr),
    Name(String),
}

/// Why an authority does not parse, for the caller to word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// `[` without `]`.
    Unclosed,
    /// Something other than `:port` after `]`.
    AfterBracket,
    /// Brackets around what is not an IPv6 address (it).
    NotV6(String),
    /// More than one `:` outside brackets.
    Unbracketed,
    /// Not a port from 1 to 65535 (what was written).
    Port(String),
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, as a `network.allow` entry and a proxy
/// request's target both write it: one reading for the entries and what is checked against
/// them.
pub fn authority(text: &str) -> std::result::Result<(Host, Option<u16>), Authority> {
    let (host, port) = if let Some(inner) = text.strip_prefix('[') {
        let (address, after) = inner.split_once(']').ok_or(Authority::Unclosed)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(Authority::AfterBracket)?),
        };
        let address = address
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| Authority::NotV6(address.to_owned()))?;
        (Host::Address(address.into()), port)
    } else if text.matches(':').count() > 1 {
        return Err(Authority::Unbracketed);
    } else {
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match host.parse::<std::net::IpAddr>() {
            Ok(address) => (Host::Address(address), port),
            Err(_) => (Host::Name(host), port),
        }
    };
    let port = match port {
        None => None,
        Some(digits) => match digits.parse::<u16>() {
            Ok(port) if port > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Some(port),
            _ => return Err(Authority::Port(digits.to_owned())),
        },
    };
    Ok((host, port))
}

/// One `network.allow` entry: `host`, `host:port`, `*.domain[:port]`, an IPv4 address, or an
/// IPv6 address in brackets.
fn destination(text: &str, field: &str) -> Result<Destination> {
    let fail = |message: String| Err(field_error(field, message));
    if let Some((scheme, rest)) = text.split_once("://") {
        let host = rest.split('/').next().unwrap_or(rest);
        return fail(format!(
            "`{text}` is a URL; write only the host and, if it is not 80 or 443, the port: \
             \"{host}\" (a `{scheme}` proxy sees no more than that)"
        ));
    }
    if text.contains('/') {
        return fail(format!(
            "`{text}` has a path; the proxy lets through hosts, not paths: write \"{}\"",
            text.split('/').next().unwrap_or(text)
        ));
    }
    if text == "*" || text.starts_with("*:") {
        return fail(
            "`*` would let everything through; that is `network: true`, which needs no proxy"
                .to_owned(),
        );
    }
    let (wildcard, rest) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (host, port) = match authority(rest) {
        Ok(parsed) => parsed,
        Err(Authority::Unclosed) => return fail(format!("`{text}` opens a `[` it does not close")),
        Err(Authority::AfterBracket) => {
            return fail(format!("`{text}`: only `:port` may follow `]`"));
        }
        Err(Authority::NotV6(address)) => {
            return fail(format!("`{address}` in `{text}` is not an IPv6 address"));
        }
        Err(Authority::Unbracketed) => {
            return fail(format!(
                "`{text}`: write an IPv6 address in brackets, as `[{rest}]` or `[{rest}]:443`"
            ));
        }
        Err(Authority::Port(digits)) => {
            return fail(format!("`{digits}` in `{text}` is not a port (1 to 65535)"));
        }
    };
    let host = match host {
        Host::Address(address) if wildcard => {
            return fail(format!(
                "`*.` goes before a domain name, not before the address {address}"
            ));
        }
        Host::Address(address) => address.to_string(),
        Host::Name(host) => {
            let label_ok = |label: &str| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            // No top-level domain begins with a digit; an address does (also written `0x2`,
            // which the resolver reads as a number).
            let numeric_end = host
                .rsplit('.')
                .next()
                .and_then(|label| label.bytes().next())
                .is_some_and(|b| b.is_ascii_digit());
            if wildcard && numeric_end {
                return fail(format!(
                    "`*.` goes before a domain name, and `{host}` ends in a number, as an \
                     address does; list addresses one by one"
                ));
            }
            if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
                let hint = if host.contains('*') {
                    "; `*.` may only begin the entry, as in \"*.github.com\""
                } else {
                    ""
                };
                return fail(format!(
                    "`{text}` is not a host name, an IP address or `*.` and a domain{hint}"
                ));
            }
            host
        }
    };
    Ok(Destination {
        host,
        subdomains: wildcard,
        port,
    })
}

fn home(value: &Value) -> Result<HomeMode> {
    match value {
        Value::String(word) if word == "tmpfs" => Ok(HomeMode::Tmpfs),
        Value::String(word) if word == "persist" => Ok(HomeMode::Persist),
        Value::String(text) if text.starts_with('/') => {
            Ok(HomeMode::Bind(absolute_path(text, "home")?))
        }
        Value::String(text) => Err(field_error(
            "home",
            format!(
                "`{text}` is not \"tmpfs\", \"persist\" or an absolute host directory to bind as the home"
            ),
        )),
        other => Err(field_error(
            "home",
            format!(
                "expected \"tmpfs\", \"persist\" or an absolute host directory, got {}",
                json_type(other)
            ),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Modes and paths

/// Parses a mode written as an octal string: `"0644"`, `"0o644"` or `"644"`.
///
/// A JSON number is refused on purpose: `644` and `0644` look alike to a reader but Jsonnet has
/// no octal literals, so a number would silently mean decimal 644 (= 0o1204).
fn parse_mode(value: &Value, field: &str) -> Result<u32> {
    let text = match value {
        Value::String(text) => text,
        Value::Number(_) => {
            return Err(field_error(
                field,
                format!(
                    "expected an octal string, got number; write the mode as a string like \
                     \"0644\" (Jsonnet has no octal numbers, so {value} would be read as decimal)"
                ),
            ));
        }
        other => {
            return Err(field_error(
                field,
                format!(
                    "expected an octal string like \"0644\", got {}",
                    json_type(other)
                ),
            ));
        }
    };
    let digits = text
        .strip_prefix("0o")
        .or_else(|| text.strip_prefix("0O"))
        .unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(field_error(
            field,
            format!("`{text}` is not an octal mode; write it like \"0644\" or \"0o755\""),
        ));
    }
    // Leading zeros are allowed in any number, so measure the value, not the length.
    let mode = u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= MAX_MODE);
    let mode = mode.ok_or_else(|| {
        field_error(
            field,
            format!("mode `{text}` is larger than 07777, the largest file mode"),
        )
    })?;
    if mode & 0o6000 != 0 {
        return Err(field_error(
            field,
            format!(
                "mode `{text}` sets the set-user-ID or set-group-ID bit, which cannot work in the \
                 sandbox (it runs with no new privileges) and is refused in the cache; drop it, \
                 e.g. \"{:04o}\"",
                mode & 0o1777
            ),
        ));
    }
    Ok(mode)
}

/// Checks and normalizes a path that must be absolute: `//` and `/./` are folded and a trailing
/// slash dropped; `..` is refused rather than folded, because folding it lexically is wrong
/// when a component is a symlink and the author rarely means it.
fn absolute_path(text: &str, field: &str) -> Result<PathBuf> {
    check_path_text(text, field)?;
    if !text.starts_with('/') {
        return Err(field_error(
            field,
            format!("`{text}` is not an absolute path; write it from the root, e.g. `/{text}`"),
        ));
    }
    let mut path = PathBuf::from("/");
    for component in Path::new(text).components() {
        match component {
            Component::Normal(name) => path.push(name),
            Component::ParentDir => return Err(dotdot_error(text, field)),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(path)
}

/// Checks and normalizes a path that must be relative (to the workspace).
fn relative_path(text: &str, field: &str) -> Result<PathBuf> {
    check_path_text(text, field)?;
    if text.starts_with('/') {
        return Err(field_error(
            field,
            format!("`{text}` is an absolute path; give the path relative to the workspace root"),
        ));
    }
    let mut path = PathBuf::new();
    for component in Path::new(text).components() {
        match component {
            Component::Normal(name) => path.push(name),
            Component::ParentDir => return Err(dotdot_error(text, field)),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if path.as_os_str().is_empty() {
        return Err(field_error(
            field,
            format!("`{text}` names the workspace itself; name a directory inside it"),
        ));
    }
    Ok(path)
}

fn check_path_text(text: &str, field: &str) -> Result<()> {
    if text.is_empty() {
        return Err(field_error(field, "the path must not be empty"));
    }
    if text.contains('\0') {
        return Err(field_error(field, "the path contains a NUL character"));
    }
    // The kernel's limits (PATH_MAX, NAME_MAX): caught here rather than half-way through a build.
    if text.len() >= 4096 {
        return Err(field_error(
            field,
            format!("the path is {} bytes long; the limit is 4095", text.len()),
        ));
    }
    if let Some(long) = text.split('/').find(|component| component.len() > 255) {
        return Err(field_error(
            field,
            format!(
                "the path component `{}…` is {} bytes long; the limit is 255",
                &long[..long.char_indices().nth(16).map_or(long.len(), |(at, _)| at)],
                long.len()
            ),
        ));
    }
    Ok(())
}

fn dotdot_error(text: &str, field: &str) -> ManifestError {
    field_error(
        field,
        format!("`{text}` contains a `..` component; write the path without `..`"),
    )
}

fn check_not_root(path: &Path, field: &str, what: &str) -> Result<()> {
    if path == Path::new("/") {
        return Err(field_error(
            field,
            format!("`/` cannot be {what}; name a directory or file below it"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shapes, names and suggestions

fn field_error(field: &str, message: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// The JSON name of a value's type, as used in "expected a string, got number".
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(field: &str, expected: &str, value: &Value) -> ManifestError {
    field_error(
        field,
        format!("expected {expected}, got {}", json_type(value)),
    )
}

fn expect_str<'a>(value: &'a Value, field: &str) -> Result<&'a str> {
    value
        .as_str()
        .ok_or_else(|| type_error(field, "a string", value))
}

fn expect_bool(value: &Value, field: &str) -> Result<bool> {
    value
        .as_bool()
        .ok_or_else(|| type_error(field, "a boolean (true or false)", value))
}

fn expect_array<'a>(value: &'a Value, field: &str) -> Result<&'a Vec<Value>> {
    value
        .as_array()
        .ok_or_else(|| type_error(field, "an array", value))
}

fn expect_object<'a>(value: &'a Value, field: &str) -> Result<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| type_error(field, "an object", value))
}

/// The path of `key` inside `parent`: `mounts[2]` + `target` → `mounts[2].target`. Keys that
/// are not plain names are quoted (`envSet["A B"]`) so the path stays unambiguous.
fn join_field(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", Value::from(key)),
    }
}

/// Rejects fields of `object` that are not in `known`, suggesting the nearest known one.
fn check_known_fields(object: &Map<String, Value>, parent: &str, known: &[&str]) -> Result<()> {
    for key in object.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        let message = match suggest(key, known) {
            Some(near) => format!("unknown field; did you mean `{near}`?"),
            None => format!("unknown field; the known fields here are {}", list(known)),
        };
        return Err(field_error(&join_field(parent, key), message));
    }
    Ok(())
}

/// Checks that `value` is one of `allowed`, with a did-you-mean hint when it is not.
fn one_of<'a>(value: &str, allowed: &[&'a str], field: &str) -> Result<&'a str> {
    if let Some(found) = allowed.iter().find(|candidate| **candidate == value) {
        return Ok(found);
    }
    let message = match suggest(value, allowed) {
        Some(near) => format!("unknown value `{value}`; did you mean `{near}`?"),
        None => format!("unknown value `{value}`; expected one of {}", list(allowed)),
    };
    Err(field_error(field, message))
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate nearest to `input`, if one is near enough to be a likely misspelling.
///
/// Case, `_` and `-` are ignored first (`env_keep`, `EnvKeep`, `ro_bind` are common slips);
/// otherwise the Damerau-Levenshtein distance must be small relative to the candidate's length.
pub(crate) fn suggest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let fold = |text: &str| -> String {
        text.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let folded = fold(input);
    if let Some(exact) = candidates.iter().find(|c| fold(c) == folded) {
        return Some(exact);
    }
    candidates
        .iter()
        .map(|candidate| {
            let distance =
                strsim::damerau_levenshtein(&input.to_lowercase(), &candidate.to_lowercase());
            (distance, *candidate)
        })
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Validates `value` and returns the error's `(field, message)`.
    fn field_err(value: Value) -> (String, String) {
        match validate(&value) {
            Err(ManifestError::Field { field, message }) => (field, message),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    /// The rendered error, as a user would see it.
    fn rendered(value: Value) -> String {
        match validate(&value) {
            Err(error) => error.to_string(),
            Ok(manifest) => panic!("expected an error, got {manifest:?}"),
        }
    }

    fn with(extra: Value) -> Value {
        let mut base = json!({ "packages": ["bash"] });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                base.insert(key.clone(), value.clone());
            }
        }
        base
    }

    fn ok(value: Value) -> Manifest {
        match validate(&value) {
            Ok(manifest) => manifest,
            Err(error) => panic!("expected a valid manifest, got: {error}"),
        }
    }

    #[test]
    fn minimal_manifest_gets_the_defaults() {
        let manifest = ok(json!({ "packages": ["bash"] }));
        assert_eq!(
            manifest,
            Manifest {
                git_identity: true,
                essential: true,
                packages: vec!["bash".into()],
                env_keep: vec![],
                env_set: BTreeMap::new(),
                mount_defaults: true,
                mounts: vec![],
                fs_entries: vec![],
                venv: VenvMode::Auto,
                venv_persist: true,
                network: Network::Private,
                protect: vec![],
                home: HomeMode::Tmpfs,
            }
        );
    }

    #[test]
    fn protect_and_home() {
        let manifest = ok(with(json!({ "protect": [], "home": "/srv/agent-home" })));
        assert!(manifest.protect.is_empty());
        assert_eq!(manifest.home, HomeMode::Bind("/srv/agent-home".into()));
        let manifest = ok(with(
            json!({ "protect": ["./.git/hooks/", "Makefile", "Makefile"] }),
        ));
        assert_eq!(
            manifest.protect,
            vec![PathBuf::from(".git/hooks"), PathBuf::from("Makefile")]
        );
        assert_eq!(ok(with(json!({ "home": "tmpfs" }))).home, HomeMode::Tmpfs);
        assert_eq!(
            ok(with(json!({ "home": "persist" }))).home,
            HomeMode::Persist
        );
        assert!(ok(with(json!({ "venvPersist": true }))).venv_persist);
        for (value, field, needle) in [
            (json!({ "protect": ".git" }), "protect", "expected an array"),
            (
                json!({ "protect": ["/etc"] }),
                "protect[0]",
                "absolute path",
            ),
            (json!({ "protect": ["../x"] }), "protect[0]", ".."),
            (json!({ "home": "temp" }), "home", "is not \"tmpfs\""),
            (json!({ "home": "/a/../b" }), "home", ".."),
            (json!({ "home": true }), "home", "got bool"),
        ] {
            let error = field_err(with(value.clone()));
            assert_eq!(error.0, field, "{value}");
            assert!(error.1.contains(needle), "{value}: {}", error.1);
        }
    }

    #[test]
    fn top_level_must_be_an_object() {
        for (value, got) in [
            (json!([]), "array"),
            (json!("x"), "string"),
            (json!(null), "null"),
            (json!(1), "number"),
            (json!(true), "boolean"),
        ] {
            let error = validate(&value).err().map(|e| e.to_string());
            assert_eq!(
                error.as_deref(),
                Some(format!("the manifest must evaluate to an object, got {got}").as_str())
            );
        }
    }

    #[test]
    fn unknown_top_level_field_suggests_the_nearest() {
        assert_eq!(
            rendered(json!({ "pakages": ["bash"] })),
            "manifest field `pakages`: unknown field; did you mean `packages`?"
        );
        for (typo, near) in [
            ("env_keep", "envKeep"),
            ("envset", "envSet"),
            ("mount", "mounts"),
            ("fs_entries", "fsEntries"),
            ("mountDefault", "mountDefaults"),
            ("netwrok", "network"),
            ("venvs", "venv"),
        ] {
            let (field, message) = field_err(with(json!({ typo: 1 })));
            assert_eq!(field, typo);
            assert_eq!(message, format!("unknown field; did you mean `{near}`?"));
        }
    }

    #[test]
    fn unknown_field_without_a_near_spelling_lists_the_known_ones() {
        let (field, message) = field_err(with(json!({ "completelyDifferent": 1 })));
        assert_eq!(field, "completelyDifferent");
        assert!(message.starts_with("unknown field; the known fields here are `packages`"));
    }

    #[test]
    fn unknown_fields_are_reported_before_other_problems() {
        let (field, _) = field_err(json!({ "packages": 3, "pakages": [] }));
        assert_eq!(field, "pakages");
    }

    #[test]
    fn packages_rules() {
        assert_eq!(
            field_err(json!({})),
            (
                "packages".into(),
                "required field is missing; list the host packages the environment needs, \
                 e.g. `packages: [\"bash\", \"coreutils\"]`"
                    .into()
            )
        );
        assert_eq!(
            field_err(json!({ "packages": "bash" })),
            ("packages".into(), "expected an array, got string".into())
        );
        assert_eq!(field_err(json!({ "packages": [] })).0, "packages");
        assert_eq!(
            field_err(json!({ "packages": ["bash", 3] })),
            ("packages[1]".into(), "expected a string, got number".into())
        );
        for bad in [
            "",
            "two words",
            "bash\t",
            "-bash",
            "foo;rm",
            "a/b",
            "libc6:",
            "x:a b",
            "x:a:b",
        ] {
            let (field, _) = field_err(json!({ "packages": ["git", bad] }));
            assert_eq!(field, "packages[1]", "{bad:?} should be rejected");
        }
        let manifest = ok(json!({
            "packages": ["bash", "libc6:amd64", "g++", "libstdc++6", "python3.11", "bash", "x_y"]
        }));
        assert_eq!(
            manifest.packages,
            [
                "bash",
                "libc6:amd64",
                "g++",
                "libstdc++6",
                "python3.11",
                "x_y"
            ]
        );
    }

    #[test]
    fn package_with_whitespace_says_so() {
        let (_, message) = field_err(json!({ "packages": ["bash coreutils"] }));
        assert!(message.contains("contains whitespace"), "{message}");
    }

    #[test]
    fn env_keep_rules() {
        let manifest = ok(with(
            json!({ "envKeep": ["TERM", "LANG", "TERM", "lower_case"] }),
        ));
        assert_eq!(manifest.env_keep, ["TERM", "LANG", "lower_case"]);
        assert_eq!(
            field_err(with(json!({ "envKeep": "TERM" }))),
            ("envKeep".into(), "expected an array, got string".into())
        );
        assert_eq!(field_err(with(json!({ "envKeep": [""] }))).0, "envKeep[0]");
        assert_eq!(
            field_err(with(json!({ "envKeep": ["A", "B=1"] }))).0,
            "envKeep[1]"
        );
        assert_eq!(
            field_err(with(json!({ "envKeep": ["A\u{0}"] }))).0,
            "envKeep[0]"
        );
        assert_eq!(
            field_err(with(json!({ "envKeep": [true] }))),
            ("envKeep[0]".into(), "expected a string, got boolean".into())
        );
    }

    #[test]
    fn env_set_rules() {
        let manifest = ok(with(json!({ "envSet": { "FOO": "1", "EMPTY": "" } })));
        assert_eq!(manifest.env_set.get("FOO").map(String::as_str), Some("1"));
        assert_eq!(manifest.env_set.get("EMPTY").map(String::as_str), Some(""));
        assert_eq!(
            field_err(with(json!({ "envSet": { "FOO": 1 } }))),
            ("envSet.FOO".into(), "expected a string, got number".into())
        );
        assert_eq!(
            field_err(with(json!({ "envSet": ["FOO"] }))),
            ("envSet".into(), "expected an object, got array".into())
        );
        assert_eq!(
            field_err(with(json!({ "envSet": { "A=B": "x" } }))).0,
            "envSet[\"A=B\"]"
        );
        assert_eq!(
            field_err(with(json!({ "envSet": { "": "x" } }))).0,
            "envSet[\"\"]"
        );
        assert_eq!(
            field_err(with(json!({ "envSet": { "X": "a\u{0}b" } }))).0,
            "envSet.X"
        );
    }

    #[test]
    fn the_four_network_forms() {
        assert_eq!(ok(with(json!({}))).network, Network::Private);
        assert_eq!(
            ok(with(json!({ "network": true }))).network,
            Network::Private
        );
        assert_eq!(
            ok(with(json!({ "network": "host" }))).network,
            Network::Host
        );
        let allow = ok(with(json!({ "network": { "allow": [
            "PyPI.org.", "files.pythonhosted.org:443", "*.github.com", "127.0.0.1:8080",
            "[::1]:8080", "pypi.org"
        ] } })))
        .network;
        let Network::Allow(list) = allow else {
            panic!("{allow:?}")
        };
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "pypi.org",
                "files.pythonhosted.org:443",
                "*.github.com",
                "127.0.0.1:8080",
                "[::1]:8080"
            ]
        );
        assert!(list[0].allows("pypi.org", 443) && list[0].allows("pypi.org", 80));
        assert!(!list[0].allows("pypi.org", 8080) && !list[0].allows("xpypi.org", 443));
        assert!(list[1].allows("files.pythonhosted.org", 443));
        assert!(!list[1].allows("files.pythonhosted.org", 80));
        assert!(list[2].allows("api.github.com", 443) && list[2].allows("a.b.github.com", 80));
        assert!(!list[2].allows("github.com", 443) && !list[2].allows("evilgithub.com", 443));
        let numeric = Destination {
            host: "1".into(),
            subdomains: true,
            port: None,
        };
        assert!(!numeric.allows("10.0.0.1", 443));
        assert!(list[3].allows("127.0.0.1", 8080) && list[3].is_address());
        assert!(list[4].allows("::1", 8080) && !list[0].is_address());
    }

    #[test]
    fn bad_network_values_name_the_entry_and_the_fix() {
        let cases: [(Value, &str, &str); 14] = [
            (json!("no"), "network", "unknown value `no`"),
            (json!("none"), "network", "false is loopback only"),
            (json!("hots"), "network", "did you mean \"host\""),
            (json!(1), "network", "got number"),
            (
                json!({ "alow": [] }),
                "network.alow",
                "did you mean `allow`",
            ),
            (json!({}), "network.allow", "missing"),
            (
                json!({ "allow": ["https://pypi.org/simple"] }),
                "network.allow[0]",
                "\"pypi.org\"",
            ),
            (
                json!({ "allow": ["a.org", "pypi.org/simple"] }),
                "network.allow[1]",
                "has a path",
            ),
            (
                json!({ "allow": ["*"] }),
                "network.allow[0]",
                "network: true",
            ),
            (
                json!({ "allow": ["pypi.org:0"] }),
                "network.allow[0]",
                "not a port",
            ),
            (
                json!({ "allow": ["a.*.org"] }),
                "network.allow[0]",
                "may only begin",
            ),
            (json!({ "allow": ["::1"] }), "network.allow[0]", "[::1]"),
            (
                json!({ "allow": ["*.100.7:80"] }),
                "network.allow[0]",
                "ends in a number",
            ),
            (
                json!({ "allow": ["*.0x2:5432"] }),
                "network.allow[0]",
                "ends in a number",
            ),
        ];
        for (value, field, words) in cases {
            let (got_field, message) = field_err(with(json!({ "network": value })));
            assert_eq!(got_field, field, "{message}");
            assert!(message.contains(words), "{field}: {message}");
        }
        assert_eq!(
            field_err(with(json!({ "network": { "allow": [3] } }))),
            (
                "network.allow[0]".into(),
                "expected a string, got number".into()
            )
        );
    }

    #[test]
    fn booleans_and_their_defaults() {
        let manifest = ok(with(json!({ "mountDefaults": false, "network": false })));
        assert!(!manifest.mount_defaults);
        assert_eq!(manifest.network, Network::Loopback);
        assert_eq!(
            field_err(with(json!({ "mountDefaults": 0 }))).0,
            "mountDefaults"
        );
    }

    #[test]
    fn mount_string_is_a_read_write_bind_at_the_same_path() {
        let manifest = ok(with(json!({ "mounts": ["/home//user/./src/"] })));
        assert_eq!(
            manifest.mounts,
            [Mount {
                kind: MountKind::Bind,
                source: Some("/home/user/src".into()),
                target: "/home/user/src".into(),
                optional: false,
            }]
        );
    }

    #[test]
    fn mount_objects_of_every_type() {
        let manifest = ok(with(json!({ "mounts": [
            { "type": "bind", "source": "/srv" },
            { "type": "ro-bind", "source": "/etc/ssl", "target": "/etc/ssl2", "optional": true },
            { "type": "dev-bind", "source": "/dev" },
            { "type": "tmpfs", "target": "/var/tmp" },
            { "type": "proc", "target": "/proc" },
        ] })));
        assert_eq!(
            manifest.mounts,
            [
                Mount {
                    kind: MountKind::Bind,
                    source: Some("/srv".into()),
                    target: "/srv".into(),
                    optional: false
                },
                Mount {
                    kind: MountKind::RoBind,
                    source: Some("/etc/ssl".into()),
                    target: "/etc/ssl2".into(),
                    optional: true
                },
                Mount {
                    kind: MountKind::DevBind,
                    source: Some("/dev".into()),
                    target: "/dev".into(),
                    optional: false
                },
                Mount {
                    kind: MountKind::Tmpfs,
                    source: None,
                    target: "/var/tmp".into(),
                    optional: false
                },
                Mount {
                    kind: MountKind::Proc,
                    source: None,
                    target: "/proc".into(),
                    optional: false
                },
            ]
        );
        // `optional: false` is accepted on any type: it is the default.
        ok(with(
            json!({ "mounts": [{ "type": "tmpfs", "target": "/t", "optional": false }] }),
        ));
    }

    #[test]
    fn mount_errors_name_the_field() {
        let cases = [
            (
                json!([1]),
                "mounts[0]",
                "expected a path string or a mount object, got number",
            ),
            (
                json!(["/a", "/b", { "type": "bind", "source": "/c", "target": 3 }]),
                "mounts[2].target",
                "expected a string, got number",
            ),
            (
                json!([{ "type": "robind", "source": "/a" }]),
                "mounts[0].type",
                "unknown value `robind`; did you mean `ro-bind`?",
            ),
            (
                json!([{ "type": "overlay", "source": "/a" }]),
                "mounts[0].type",
                "unknown value `overlay`; expected one of `bind`, `ro-bind`, `dev-bind`, `tmpfs`, `proc`",
            ),
            (
                json!([{ "type": "bind", "sorce": "/a" }]),
                "mounts[0].sorce",
                "unknown field; did you mean `source`?",
            ),
            (
                json!([{ "source": "/a" }]),
                "mounts[0].type",
                "required field is missing; one of `bind`, `ro-bind`, `dev-bind`, `tmpfs`, `proc`",
            ),
            (
                json!([{ "type": "ro-bind", "target": "/a" }]),
                "mounts[0].source",
                "required field is missing; a bind mount needs the host path to bind",
            ),
            (
                json!([{ "type": "tmpfs", "source": "/a", "target": "/a" }]),
                "mounts[0].source",
                "a `tmpfs` mount has no source; remove `source` and give `target`",
            ),
            (
                json!([{ "type": "proc" }]),
                "mounts[0].target",
                "required field is missing; a `proc` mount needs the path to mount at",
            ),
            (
                json!([{ "type": "tmpfs", "target": "/t", "optional": true }]),
                "mounts[0].optional",
                "`optional` applies only to bind mounts (a `tmpfs` mount has no host path to miss); remove it",
            ),
            (
                json!([{ "type": "bind", "source": "/a", "optional": "yes" }]),
                "mounts[0].optional",
                "expected a boolean (true or false), got string",
            ),
            (
                json!(["relative/dir"]),
                "mounts[0]",
                "`relative/dir` is not an absolute path; write it from the root, e.g. `/relative/dir`",
            ),
            (
                json!([{ "type": "bind", "source": "/a/../b" }]),
                "mounts[0].source",
                "`/a/../b` contains a `..` component; write the path without `..`",
            ),
            (
                json!([{ "type": "bind", "source": "/a", "target": "/x/.." }]),
                "mounts[0].target",
                "`/x/..` contains a `..` component; write the path without `..`",
            ),
            (
                json!(["/"]),
                "mounts[0]",
                "`/` cannot be a mount target; name a directory or file below it",
            ),
            (
                json!([{ "type": "tmpfs", "target": "//" }]),
                "mounts[0].target",
                "`/` cannot be a mount target; name a directory or file below it",
            ),
            (
                json!([{ "type": "ro-bind", "source": "/" }]),
                "mounts[0].source",
                "`/` cannot be a mount target (the default of `target`); name a directory or file below it",
            ),
            (json!([""]), "mounts[0]", "the path must not be empty"),
            (json!({}), "mounts", "expected an array, got object"),
        ];
        for (mounts, field, message) in cases {
            assert_eq!(
                field_err(with(json!({ "mounts": mounts }))),
                (field.to_owned(), message.to_owned()),
                "mounts: {mounts}"
            );
        }
        // The host root may be bound somewhere else.
        let manifest = ok(with(json!({ "mounts": [
            { "type": "ro-bind", "source": "/", "target": "/host" }
        ] })));
        assert_eq!(manifest.mounts[0].source.as_deref(), Some(Path::new("/")));
    }

    #[test]
    fn fs_entries_of_every_type_with_defaults() {
        let manifest = ok(with(json!({ "fsEntries": [
            { "type": "dir", "path": "/etc/ssl/" },
            { "type": "dir", "path": "/srv", "mode": "0o700" },
            { "type": "file", "path": "/etc/motd" },
            { "type": "file", "path": "/etc/x.conf", "mode": "600", "contents": "a=1\n" },
            { "type": "symlink", "path": "/usr/bin/py", "target": "python3" },
            { "type": "symlink", "path": "/lib/x", "target": "../usr/lib/x" },
        ] })));
        assert_eq!(
            manifest.fs_entries,
            [
                FsEntry::Dir {
                    path: "/etc/ssl".into(),
                    mode: 0o755
                },
                FsEntry::Dir {
                    path: "/srv".into(),
                    mode: 0o700
                },
                FsEntry::File {
                    path: "/etc/motd".into(),
                    mode: 0o644,
                    contents: String::new(),
                    overrides: false,
                },
                FsEntry::File {
                    path: "/etc/x.conf".into(),
                    mode: 0o600,
                    contents: "a=1\n".into(),
                    overrides: false,
                },
                FsEntry::Symlink {
                    path: "/usr/bin/py".into(),
                    target: "python3".into(),
                    overrides: false,
                },
                FsEntry::Symlink {
                    path: "/lib/x".into(),
                    target: "../usr/lib/x".into(),
                    overrides: false,
                },
            ]
        );
    }

    #[test]
    fn fs_entry_errors_name_the_field() {
        let cases = [
            (
                json!(["/etc"]),
                "fsEntries[0]",
                "expected an object, got string",
            ),
            (
                json!([{ "type": "directory", "path": "/a" }]),
                "fsEntries[0].type",
                "unknown value `directory`; expected one of `dir`, `file`, `symlink`",
            ),
            (
                json!([{ "type": "fiel", "path": "/a" }]),
                "fsEntries[0].type",
                "unknown value `fiel`; did you mean `file`?",
            ),
            (
                json!([{ "path": "/a" }]),
                "fsEntries[0].type",
                "required field is missing; one of `dir`, `file`, `symlink`",
            ),
            (
                json!([{ "type": "dir" }]),
                "fsEntries[0].path",
                "required field is missing; the absolute path to create in the rootfs",
            ),
            (
                json!([{ "type": "dir", "path": "/a", "mdoe": "0755" }]),
                "fsEntries[0].mdoe",
                "unknown field; did you mean `mode`?",
            ),
            (
                json!([{ "type": "dir", "path": "/a", "mode": 644 }]),
                "fsEntries[0].mode",
                "expected an octal string, got number; write the mode as a string like \"0644\" \
                 (Jsonnet has no octal numbers, so 644 would be read as decimal)",
            ),
            (
                json!([{ "type": "dir", "path": "/a", "contents": "x" }]),
                "fsEntries[0].contents",
                "`contents` applies only to `file` entries, not to `dir`; remove it",
            ),
            (
                json!([{ "type": "file", "path": "/a", "target": "/b" }]),
                "fsEntries[0].target",
                "`target` applies only to `symlink` entries, not to `file`; remove it",
            ),
            (
                json!([{ "type": "file", "path": "/a", "contents": 1 }]),
                "fsEntries[0].contents",
                "expected a string, got number",
            ),
            (
                json!([{ "type": "symlink", "path": "/a", "target": "/b", "mode": "0777" }]),
                "fsEntries[0].mode",
                "`mode` applies only to `dir` and `file` entries (a symlink has no mode of its own), \
                 not to `symlink`; remove it",
            ),
            (
                json!([{ "type": "symlink", "path": "/a" }]),
                "fsEntries[0].target",
                "required field is missing; the path the symlink points to",
            ),
            (
                json!([{ "type": "symlink", "path": "/a", "target": "" }]),
                "fsEntries[0].target",
                "the symlink target must not be empty",
            ),
            (
                json!([{ "type": "dir", "path": "etc" }]),
                "fsEntries[0].path",
                "`etc` is not an absolute path; write it from the root, e.g. `/etc`",
            ),
            (
                json!([{ "type": "dir", "path": "/./" }]),
                "fsEntries[0].path",
                "`/` cannot be an fsEntry path; name a directory or file below it",
            ),
            (
                json!([{ "type": "dir", "path": "/etc/../root" }]),
                "fsEntries[0].path",
                "`/etc/../root` contains a `..` component; write the path without `..`",
            ),
            (
                json!([{ "type": "dir", "path": "/a" }, { "type": "file", "path": "/a/" }]),
                "fsEntries[1].path",
                "`/a` is already created by fsEntries[0]; keep one entry per path",
            ),
        ];
        for (entries, field, message) in cases {
            assert_eq!(
                field_err(with(json!({ "fsEntries": entries }))),
                (field.to_owned(), message.to_owned()),
                "fsEntries: {entries}"
            );
        }
    }

    fn mode_of(mode: Value) -> std::result::Result<u32, (String, String)> {
        let value = with(json!({ "fsEntries": [{ "type": "file", "path": "/f", "mode": mode }] }));
        match validate(&value) {
            Ok(manifest) => match manifest.fs_entries.first() {
                Some(FsEntry::File { mode, .. }) => Ok(*mode),
                other => panic!("unexpected {other:?}"),
            },
            Err(ManifestError::Field { field, message }) => Err((field, message)),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn mode_parsing() {
        for (text, mode) in [
            ("0644", 0o644),
            ("0o644", 0o644),
            ("0O644", 0o644),
            ("644", 0o644),
            ("0", 0),
            ("1777", 0o1777),
            ("00000644", 0o644),
        ] {
            assert_eq!(mode_of(json!(text)), Ok(mode), "{text}");
        }
        for (text, message) in [
            (
                "04755",
                "mode `04755` sets the set-user-ID or set-group-ID bit, which cannot work in the \
                 sandbox (it runs with no new privileges) and is refused in the cache; drop it, \
                 e.g. \"0755\"",
            ),
            (
                "7777",
                "mode `7777` sets the set-user-ID or set-group-ID bit, which cannot work in the \
                 sandbox (it runs with no new privileges) and is refused in the cache; drop it, \
                 e.g. \"1777\"",
            ),
            (
                "",
                "`` is not an octal mode; write it like \"0644\" or \"0o755\"",
            ),
            (
                "0o",
                "`0o` is not an octal mode; write it like \"0644\" or \"0o755\"",
            ),
            (
                "0999",
                "`0999` is not an octal mode; write it like \"0644\" or \"0o755\"",
            ),
            (
                "rw-r--r--",
                "`rw-r--r--` is not an octal mode; write it like \"0644\" or \"0o755\"",
            ),
            (
                "-644",
                "`-644` is not an octal mode; write it like \"0644\" or \"0o755\"",
            ),
            (
                "0x1ff",
                "`0x1ff` is not an octal mode; write it like \"0644\" or \"0o755\"",
            ),
            (
                "17777",
                "mode `17777` is larger than 07777, the largest file mode",
            ),
            (
                "77777777777777777777",
                "mode `77777777777777777777` is larger than 07777, the largest file mode",
            ),
        ] {
            assert_eq!(
                mode_of(json!(text)),
                Err(("fsEntries[0].mode".to_owned(), message.to_owned())),
                "{text}"
            );
        }
        let (_, message) = mode_of(json!(420)).err().unwrap_or_default();
        assert!(message.contains("like \"0644\""), "{message}");
        assert_eq!(
            mode_of(json!(true)),
            Err((
                "fsEntries[0].mode".to_owned(),
                "expected an octal string like \"0644\", got boolean".to_owned()
            ))
        );
    }

    #[test]
    fn venv_modes() {
        assert_eq!(ok(with(json!({ "venv": "auto" }))).venv, VenvMode::Auto);
        assert_eq!(ok(with(json!({ "venv": "none" }))).venv, VenvMode::None);
        assert_eq!(
            ok(with(
                json!({ "venv": [".venv", "./tools//venv/", ".venv"] })
            ))
            .venv,
            VenvMode::List(vec![".venv".into(), "tools/venv".into()])
        );
        assert_eq!(ok(with(json!({ "venv": [] }))).venv, VenvMode::List(vec![]));
        assert_eq!(
            field_err(with(json!({ "venv": "Auto" }))),
            (
                "venv".into(),
                "unknown value `Auto`; did you mean `auto`?".into()
            )
        );
        assert_eq!(
            field_err(with(json!({ "venv": "off" }))),
            (
                "venv".into(),
                "unknown value `off`; expected one of `auto`, `none`".into()
            )
        );
        assert_eq!(field_err(with(json!({ "venv": false }))).0, "venv");
        assert_eq!(
            field_err(with(json!({ "venv": ["/abs/venv"] }))),
            (
                "venv[0]".into(),
                "`/abs/venv` is an absolute path; give the path relative to the workspace root"
                    .into()
            )
        );
        assert_eq!(
            field_err(with(json!({ "venv": ["a/../../b"] }))),
            (
                "venv[0]".into(),
                "`a/../../b` contains a `..` component; write the path without `..`".into()
            )
        );
        assert_eq!(field_err(with(json!({ "venv": [""] }))).0, "venv[0]");
        assert_eq!(
            field_err(with(json!({ "venv": ["./"] }))),
            (
                "venv[0]".into(),
                "`./` names the workspace itself; name a directory inside it".into()
            )
        );
        assert_eq!(
            field_err(with(json!({ "venv": [".venv", 1] }))),
            ("venv[1]".into(), "expected a string, got number".into())
        );
    }

    #[test]
    fn path_normalization() {
        for (input, normal) in [
            ("/a", "/a"),
            ("/a/", "/a"),
            ("//a//b///", "/a/b"),
            ("/./a/./b/.", "/a/b"),
            ("/a/.hidden", "/a/.hidden"),
            ("/a/...", "/a/..."),
            ("/a/..b", "/a/..b"),
            ("/", "/"),
        ] {
            assert_eq!(
                absolute_path(input, "f").ok(),
                Some(PathBuf::from(normal)),
                "{input}"
            );
        }
        for bad in [
            "..",
            "/..",
            "/a/..",
            "/a/../b",
            "/a/b/../..",
            "a",
            "./a",
            "",
            "/a\u{0}",
        ] {
            assert!(
                absolute_path(bad, "f").is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("pakages", MANIFEST_FIELDS), Some("packages"));
        assert_eq!(suggest("ENVKEEP", MANIFEST_FIELDS), Some("envKeep"));
        assert_eq!(
            suggest("mount_defaults", MANIFEST_FIELDS),
            Some("mountDefaults")
        );
        assert_eq!(suggest("trget", MOUNT_FIELDS), Some("target"));
        assert_eq!(suggest("ro_bind", MOUNT_TYPES), Some("ro-bind"));
        assert_eq!(suggest("devbind", MOUNT_TYPES), Some("dev-bind"));
        assert_eq!(suggest("symlnk", FS_ENTRY_TYPES), Some("symlink"));
        assert_eq!(suggest("xyz", MANIFEST_FIELDS), None);
        assert_eq!(suggest("hostname", MANIFEST_FIELDS), None);
    }

    #[test]
    fn field_paths_quote_unusual_keys() {
        assert_eq!(join_field("", "packages"), "packages");
        assert_eq!(join_field("mounts[2]", "target"), "mounts[2].target");
        assert_eq!(join_field("envSet", "FOO_1"), "envSet.FOO_1");
        assert_eq!(join_field("envSet", "A.B"), "envSet[\"A.B\"]");
        assert_eq!(join_field("", "with space"), "[\"with space\"]");
    }

    #[test]
    fn entries_below_a_file_or_link_entry_are_refused() {
        for entries in [
            json!([{ "type": "file", "path": "/x" }, { "type": "dir", "path": "/x/y" }]),
            json!([{ "type": "dir", "path": "/x/y/z" }, { "type": "symlink", "path": "/x", "target": "/etc" }]),
        ] {
            match validate(&with(json!({ "fsEntries": entries }))) {
                Err(ManifestError::Field { message, .. }) => {
                    assert!(message.contains("which is not a directory"), "{message}")
                }
                other => panic!("expected an error, got {other:?}"),
            }
        }
        let fine = json!([{ "type": "dir", "path": "/x" }, { "type": "file", "path": "/x/y" }]);
        assert!(validate(&with(json!({ "fsEntries": fine }))).is_ok());
    }

    #[test]
    fn overlong_paths_are_refused() {
        let long_component = format!("/{}", "a".repeat(256));
        let long_path = "/aaaaaaaa".repeat(500);
        for path in [long_component, long_path] {
            match validate(&with(
                json!({ "fsEntries": [{ "type": "dir", "path": path }] }),
            )) {
                Err(ManifestError::Field { field, message }) => {
                    assert_eq!(field, "fsEntries[0].path");
                    assert!(message.contains("the limit is"), "{message}");
                }
                other => panic!("expected an error, got {other:?}"),
            }
        }
    }
}
