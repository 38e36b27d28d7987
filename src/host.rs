//! The one place that probes the host: identity, directories, environment, terminal, bwrap.
//!
//! Facts are gathered once, up front, and passed down as plain data, so every later decision
//! is a function of its inputs (STYLE.md, "gather host facts once").

use crate::probe::Probes;
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What paude knows about the host it runs on.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub uid: u32,
    pub gid: u32,
    /// The current directory, as the kernel reports it (no links).
    pub cwd: PathBuf,
    /// The whole environment paude was started with.
    pub env: Vec<(OsString, OsString)>,
    /// The supplementary group ids.
    pub groups: Vec<u32>,
    pub stdin_is_terminal: bool,
    /// Whether progress can be drawn in place.
    pub stderr_is_terminal: bool,
    /// `$PAUDE_HOME`, default `$HOME/.paude`.
    pub paude_home: PathBuf,
}

impl HostFacts {
    /// Reads the facts of this process.
    pub fn gather() -> Result<HostFacts> {
        let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let get = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let cwd = std::env::current_dir().context(
            "finding the current directory (was it deleted? cd to an existing directory)",
        )?;
        let (paude_home, home) = (get("PAUDE_HOME"), get("HOME"));
        let shown = |value: &[u8]| {
            Path::new(std::ffi::OsStr::from_bytes(value))
                .display()
                .to_string()
        };
        let paude_home = match store_home(
            paude_home.as_deref().map(OsStrExt::as_bytes),
            home.as_deref().map(OsStrExt::as_bytes),
        ) {
            StoreHome::Given(dir) => PathBuf::from(std::ffi::OsStr::from_bytes(dir)),
            StoreHome::UnderHome(home) => {
                PathBuf::from(std::ffi::OsStr::from_bytes(home)).join(STORE_IN_HOME)
            }
            StoreHome::RelativePaudeHome(dir) => {
                bail!("PAUDE_HOME must be an absolute path, got {}", shown(dir))
            }
            StoreHome::RelativeHome(home) => bail!(
                "HOME is {}, not an absolute path, so paude cannot place its cache in it; \
                 set HOME or PAUDE_HOME to an absolute path",
                shown(home)
            ),
            StoreHome::Unset => bail!(
                "neither PAUDE_HOME nor HOME is set; set PAUDE_HOME to a directory for paude's cache"
            ),
        };
        Ok(HostFacts {
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            groups: rustix::process::getgroups()
                .context("reading this process's groups")?
                .into_iter()
                .map(|gid| gid.as_raw())
                .collect(),
            cwd,
            // The descriptors themselves, not `std::io::stdin()`, which would set up a buffer.
            stdin_is_terminal: rustix::termios::isatty(rustix::stdio::stdin()),
            stderr_is_terminal: rustix::termios::isatty(rustix::stdio::stderr()),
            paude_home,
            env,
        })
    }

    /// The value of a host variable.
    pub fn var(&self, name: &str) -> Option<&OsString> {
        self.env
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The bwrap to run: `$PAUDE_BWRAP` if set, else `bwrap` found through `PATH`: the first
    /// file this user may execute.
    pub fn bwrap(&self, probes: &Probes) -> Result<PathBuf> {
        let is_executable =
            |path: &Path| probes.kind(path, true).is_file() && probes.executable(path);
        if let Some(path) = probes.var(self, "PAUDE_BWRAP").filter(|v| !v.is_empty()) {
            // A bare name is a file in the current directory, as checked here; `./` keeps the
            // exec from searching PATH for it instead.
            let path = match path.as_bytes().contains(&b'/') {
                true => PathBuf::from(path),
                false => Path::new(".").join(path),
            };
            if is_executable(&path) {
                return Ok(path);
            }
            bail!(
                "PAUDE_BWRAP is {}, which is not an executable file",
                path.display()
            );
        }
        let search = probes
            .var(self, "PATH")
            .cloned()
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        // A directory listed twice (shell profiles often add one again) is looked in once.
        let mut tried: Vec<&[u8]> = Vec::new();
        for dir in search
            .as_bytes()
            .split(|b| *b == b':')
            .filter(|d| !d.is_empty())
        {
            if tried.contains(&dir) {
                continue;
            }
            tried.push(dir);
            let candidate = Path::new(std::ffi::OsStr::from_bytes(dir)).join("bwrap");
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
        bail!("{BWRAP_MISSING}; {BWRAP_INSTALL}")
    }

    /// A reason the kernel will refuse an unprivileged user namespace, if one is visible
    /// without trying (two small /proc reads).
    pub fn userns_refusal(&self) -> Option<UsernsRefusal> {
        refusal_from_sysctls(self.uid, &read_sysctl)
    }
}

/// The store's directory under `$HOME` when `PAUDE_HOME` is not set.
pub const STORE_IN_HOME: &str = ".paude";

/// Where paude's store is, from `$PAUDE_HOME` and `$HOME` as given (either may be unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHome<'a> {
    /// `$PAUDE_HOME`, absolute.
    Given(&'a [u8]),
    /// [`STORE_IN_HOME`] under `$HOME`, absolute (`PAUDE_HOME` unset or empty).
    UnderHome(&'a [u8]),
    RelativePaudeHome(&'a [u8]),
    RelativeHome(&'a [u8]),
    /// Neither is set (or both are empty).
    Unset,
}

/// Works out [`StoreHome`]; allocates nothing, as the launch front asks it before the C
/// library has started.
pub fn store_home<'a>(paude_home: Option<&'a [u8]>, home: Option<&'a [u8]>) -> StoreHome<'a> {
    match (paude_home.filter(|dir| !dir.is_empty()), home) {
        (Some(dir), _) if dir.starts_with(b"/") => StoreHome::Given(dir),
        (Some(dir), _) => StoreHome::RelativePaudeHome(dir),
        (None, Some(home)) if home.starts_with(b"/") => StoreHome::UnderHome(home),
        (None, Some(home)) if !home.is_empty() => StoreHome::RelativeHome(home),
        (None, _) => StoreHome::Unset,
    }
}

/// What paude says when no bwrap is found on `PATH`.
pub const BWRAP_MISSING: &str = "bwrap (bubblewrap) is not installed or not in PATH";

/// How to install bwrap, for every message that needs it.
pub const BWRAP_INSTALL: &str = "install it with `sudo apt-get install bubblewrap` (Debian/Ubuntu) \
     or `sudo dnf install bubblewrap` (Fedora)";

/// `user.max_user_namespaces`: 0 refuses user namespaces to everyone, root included.
pub const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";
/// `kernel.unprivileged_userns_clone` (Debian's kernels): 0 refuses them to users but root.
pub const UNPRIVILEGED_USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
/// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10 and later): 1 refuses them
/// to users' programs unless an AppArmor profile grants the program `userns`.
pub const APPARMOR_RESTRICT_USERNS: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";

/// A setting that makes the kernel refuse user namespaces, and how to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernsRefusal {
    /// What is set, and to what.
    pub reason: String,
    /// The command that changes it.
    pub fix: String,
}

impl std::fmt::Display for UsernsRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.reason, self.fix)
    }
}

/// Whether close_range(2) (Linux 5.9) is there for paude: asked to close a range above any
/// descriptor a process can have, which closes nothing. A kernel without it, or a seccomp
/// filter that refuses it, says no.
pub fn has_close_range() -> bool {
    // SAFETY: no descriptor can be numbered this high, so nothing is closed.
    unsafe { crate::bare::close_range(u32::MAX, u32::MAX, 0) }.is_ok()
}

/// The linker's build ID of the running program (`NT_GNU_BUILD_ID` in its `PT_NOTE`
/// segments): a hash of the linked file, so any rebuild that changes the program changes it.
/// Read from the program's own mapped headers (found through the linker's `__ehdr_start`),
/// with no system call and nothing from the C library: the launch front reads it before the C
/// library has started. `None` where the program was linked without one.
pub fn own_build_id() -> Option<&'static [u8]> {
    /// `NT_GNU_BUILD_ID`, in a note named "GNU".
    const NT_GNU_BUILD_ID: u32 = 3;
    unsafe extern "C" {
        /// The program's ELF header, mapped with the first loaded segment.
        static __ehdr_start: libc::Elf64_Ehdr;
    }
    // SAFETY: the linker defines `__ehdr_start` at the program's ELF header, and the program
    // headers it points to are mapped with it (the first segment, which also holds the notes).
    unsafe {
        let header = &raw const __ehdr_start;
        let headers = std::slice::from_raw_parts(
            (header as *const u8).add((*header).e_phoff as usize) as *const libc::Elf64_Phdr,
            usize::from((*header).e_phnum),
        );
        // Where the program was loaded: the header's address less its address in the file's
        // layout (the first segment's, which starts at offset 0).
        let first = headers
            .iter()
            .find(|h| h.p_type == libc::PT_LOAD && h.p_offset == 0)?;
        let bias = (header as usize).wrapping_sub(first.p_vaddr as usize);
        headers
            .iter()
            .filter(|h| h.p_type == libc::PT_NOTE)
            .find_map(|h| {
                let start = bias.wrapping_add(h.p_vaddr as usize) as *const u8;
                let notes = std::slice::from_raw_parts(start, h.p_memsz as usize);
                // Notes are padded to the segment's alignment: 4, or 8 in some segments.
                build_id_note(notes, (h.p_align as usize).max(4), NT_GNU_BUILD_ID)
            })
    }
}

/// The description of the first note of `kind` named "GNU" in an ELF note segment whose
/// names and descriptions are padded to `align` bytes.
fn build_id_note(mut notes: &[u8], align: usize, kind: u32) -> Option<&[u8]> {
    let word = |bytes: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    // Offsets from the note's start, rounded up to the alignment.
    let aligned = |offset: usize| offset.div_ceil(align) * align;
    while notes.len() >= 12 {
        let (name_size, description_size, note_kind) =
            (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let name = notes.get(12..12 + name_size as usize)?;
        let description_at = aligned(12 + name_size as usize);
        let description_end = description_at + description_size as usize;
        let description = notes.get(description_at..description_end)?;
        if note_kind == kind && name == b"GNU\0" {
            return Some(description);
        }
        notes = notes.get(aligned(description_end)..)?;
    }
    None
}

/// The descriptors this process has open, from `/proc/self/fd`. The list includes the one
/// that read the directory, already closed when the list is returned: callers must take a
/// failure on it (EBADF) in stride.
pub fn open_descriptors() -> std::io::Result<Vec<std::os::fd::RawFd>> {
    Ok(std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect())
}

/// The value of a short sysctl file under `/proc/sys` (a number, a word), trimmed; `None` when
/// the kernel has no such setting, or it cannot be read, or it is longer than that. One read:
/// /proc gives a sysctl's text whole at the first read. Raw system calls into a buffer of its
/// own; `out` receives the text, so that the launch front can ask before the C library has
/// started.
pub fn sysctl_text<'o>(path: &str, out: &'o mut [u8; 64]) -> Option<&'o str> {
    use rustix::fs::{Mode, OFlags};
    let path = crate::bare::CPath::new(&[path.as_bytes()])?;
    let file = crate::bare::open(path.as_cstr(), OFlags::RDONLY, Mode::empty()).ok()?;
    let read = rustix::io::read(&file, &mut *out).ok()?;
    let text = out.get(..read).filter(|_| read < 64)?;
    std::str::from_utf8(text.trim_ascii()).ok()
}

/// [`sysctl_text`], owned.
pub fn read_sysctl(path: &str) -> Option<String> {
    sysctl_text(path, &mut [0; 64]).map(str::to_string)
}

/// A sysctl set to refuse user namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernsSysctl {
    MaxUserNamespaces,
    UnprivilegedUsernsClone,
}

/// The sysctl, if any, that refuses a process of `uid` user namespaces, given `read` saying
/// whether one reads `0`.
/// The AppArmor restriction is not one: a profile may let bwrap through, which only trying
/// tells.
pub fn refusing_sysctl(uid: u32, read: &dyn Fn(&str) -> Option<bool>) -> Option<UsernsSysctl> {
    if read(MAX_USER_NAMESPACES) == Some(true) {
        Some(UsernsSysctl::MaxUserNamespaces)
    } else if uid != 0 && read(UNPRIVILEGED_USERNS_CLONE) == Some(true) {
        Some(UsernsSysctl::UnprivilegedUsernsClone)
    } else {
        None
    }
}

/// The refusal that the sysctls `read` returns imply for a process of `uid`, if any.
pub fn refusal_from_sysctls(
    uid: u32,
    read: &dyn Fn(&str) -> Option<String>,
) -> Option<UsernsRefusal> {
    Some(
        match refusing_sysctl(uid, &|path| Some(read(path)? == "0"))? {
            UsernsSysctl::MaxUserNamespaces => UsernsRefusal {
                reason: "user namespaces are disabled on this host (user.max_user_namespaces = 0)"
                    .into(),
                fix: "enable them with `sudo sysctl -w user.max_user_namespaces=15000`".into(),
            },
            UsernsSysctl::UnprivilegedUsernsClone => UsernsRefusal {
                reason: "unprivileged user namespaces are disabled on this host \
                     (kernel.unprivileged_userns_clone = 0)"
                    .into(),
                fix: "enable them with `sudo sysctl -w kernel.unprivileged_userns_clone=1`".into(),
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF note: sizes and kind, then the name and the description, each padded to `align`.
    fn note(align: usize, name: &[u8], kind: u32, description: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [name.len() as u32, description.len() as u32, kind] {
            bytes.extend(word.to_ne_bytes());
        }
        for part in [name, description] {
            bytes.extend(part);
            bytes.resize(bytes.len().div_ceil(align) * align, 0);
        }
        bytes
    }

    #[test]
    fn build_id_is_the_gnu_note_of_its_kind() {
        let id = [0xab; 20];
        for align in [4, 8] {
            let mut notes = note(align, b"GNU\0", 1, &[0, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0]);
            notes.extend(note(align, b"Xen\0", 3, &[1, 2, 3]));
            notes.extend(note(align, b"GNU\0", 3, &id));
            assert_eq!(build_id_note(&notes, align, 3), Some(&id[..]));
            assert_eq!(build_id_note(&notes, align, 4), None);
            // A segment that ends inside the description ends the search instead of reading
            // past it (the last 4 bytes may be padding; 9 reach into the description).
            let truncated = &notes[..notes.len() - 9];
            assert_eq!(build_id_note(truncated, align, 3), None);
        }
        assert_eq!(build_id_note(&[], 4, 3), None);
    }

    /// The project's build passes `--build-id`; the test binary has one, as paude does.
    #[test]
    fn own_build_id_is_read_from_memory() {
        let id = own_build_id().expect("a build ID");
        assert!(id.len() >= 8, "{id:?}");
        assert_eq!(own_build_id(), Some(id));
    }

    fn reader(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |path: &str| {
            pairs
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_store_is_paude_home_else_under_home() {
        type Case = (
            Option<&'static [u8]>,
            Option<&'static [u8]>,
            StoreHome<'static>,
        );
        let cases: [Case; 6] = [
            (Some(b"/s"), Some(b"/h"), StoreHome::Given(b"/s")),
            (Some(b"s"), Some(b"/h"), StoreHome::RelativePaudeHome(b"s")),
            (Some(b""), Some(b"/h"), StoreHome::UnderHome(b"/h")),
            (None, Some(b"h"), StoreHome::RelativeHome(b"h")),
            (None, Some(b""), StoreHome::Unset),
            (None, None, StoreHome::Unset),
        ];
        for (paude_home, home, expected) in cases {
            assert_eq!(
                store_home(paude_home, home),
                expected,
                "{paude_home:?} {home:?}"
            );
        }
    }

    #[test]
    fn refusals_from_sysctls() {
        let none = reader(&[]);
        assert_eq!(refusal_from_sysctls(1000, &none), None);
        let zero = reader(&[(MAX_USER_NAMESPACES, "0")]);
        assert!(refusal_from_sysctls(0, &zero).is_some());
        let debian = reader(&[(UNPRIVILEGED_USERNS_CLONE, "0")]);
        assert_eq!(refusal_from_sysctls(0, &debian), None);
        let refusal = refusal_from_sysctls(1000, &debian).unwrap();
        assert_eq!(
            refusal.to_string(),
            "unprivileged user namespaces are disabled on this host \
             (kernel.unprivileged_userns_clone = 0); enable them with \
             `sudo sysctl -w kernel.unprivileged_userns_clone=1`"
        );
        // AppArmor's restriction is not a refusal: a profile may let bwrap through.
        let ubuntu = reader(&[(APPARMOR_RESTRICT_USERNS, "1")]);
        assert_eq!(refusal_from_sysctls(1000, &ubuntu), None);
    }
}
