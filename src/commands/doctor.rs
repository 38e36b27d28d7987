//! `paude doctor`: checks that this machine can run paude's sandboxes, and says how to fix
//! what it cannot.
//!
//! Two halves, as everywhere in paude: [`gather`] is the only code here that touches the host
//! (it runs bwrap three times, reads sysctls, the dpkg database and `PAUDE_HOME`), and each
//! `check_*` function turns those facts into one [`Check`]: data in, data out, so that every
//! decision is tested with made-up facts.
//!
//! A check whose prerequisite failed is left out rather than reported twice: the trial
//! sandbox runs only once bwrap has created a user namespace, and the cache is looked at
//! only when `PAUDE_HOME` exists.
//!
//! Exit status: 0 when no check found a problem (warnings are advice), 125 when one did,
//! after the whole report. 125 is what every paude command exits with when paude itself
//! cannot do its job, and a problem here means precisely that `paude venv` would fail, so
//! `paude doctor >/dev/null || …` reads like any other paude failure; 1 would instead look
//! like the exit status of a sandboxed command.
//!
//! The report (or the JSON document) goes to stdout: it is this command's output.

use crate::cli::DoctorArgs;
use crate::host::{self, HostFacts};
use crate::packages::dpkg::{self, Dpkg};
use crate::packages::verify;
use crate::store::prune;
use crate::store::{Store, human_bytes, tree};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Version of the JSON document.
const JSON_VERSION: u32 = 1;

pub use crate::host::{BwrapVersion as Version, parse_bwrap_version as parse_version};

/// The oldest bubblewrap that has every option paude passes: the newest in [`OPTIONS`].
pub const MINIMUM_BWRAP: Version = (0, 5, 0);

/// By 0.2.0 (October 2017) bubblewrap had every option paude passes but the later ones.
const EARLY: Version = (0, 2, 0);

/// Each option paude passes (or is about to: the seccomp filter's), with a release known to
/// have it: the one that brought it when that is after 0.2.0, else 0.2.0.
///
/// From bubblewrap's history: `--clearenv` is pull request #401, new in 0.5.0 (Debian's
/// changelog lists it in the 0.4.1+git20210624 snapshot that became 0.5.0). The rest are
/// older: `--unshare-cgroup` is pull request #62 (May 2016), `--remount-ro` #90 (August
/// 2016), `--sync-fd` and `--seccomp` are in the usage text #92 changed (August 2016),
/// `--ro-bind-data` is #98 (September 2016), `--new-session` and `--die-with-parent` are in
/// the usage text #196 changed (June 2017), `--cap-drop` is #101 (June 2017; issue #249 uses
/// `--cap-add` with 0.2.0); `--info-fd` and `--block-fd` (the network helpers' start) are
/// older than `--userns-block-fd`, which 0.2.0's release notes (#232) list as new; the other
/// namespace and mount options, `--setenv` and `--chdir` date from bubblewrap's first
/// releases (2016).
const OPTIONS: &[(&str, Version)] = &[
    ("--clearenv", (0, 5, 0)),
    ("--unshare-user", EARLY),
    ("--unshare-pid", EARLY),
    ("--unshare-ipc", EARLY),
    ("--unshare-uts", EARLY),
    ("--unshare-cgroup", EARLY),
    ("--unshare-net", EARLY),
    ("--die-with-parent", EARLY),
    ("--sync-fd", EARLY),
    ("--info-fd", EARLY),
    ("--block-fd", EARLY),
    ("--new-session", EARLY),
    ("--bind", EARLY),
    ("--ro-bind", EARLY),
    ("--dev-bind", EARLY),
    ("--tmpfs", EARLY),
    ("--proc", EARLY),
    ("--dev", EARLY),
    ("--symlink", EARLY),
    ("--remount-ro", EARLY),
    ("--setenv", EARLY),
    ("--chdir", EARLY),
    ("--seccomp", EARLY),
    ("--cap-drop", EARLY),
    ("--ro-bind-data", EARLY),
];

/// Free space under which `PAUDE_HOME` gets a warning: a few environments of a few hundred
/// MiB each should fit.
pub const LOW_SPACE_BYTES: u64 = 1 << 30;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but not as paude expects, or not for long.
    Warning,
    /// `paude venv` would fail.
    Problem,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Problem => "problem",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// A stable identifier: `bwrap`, `user-namespaces`, `sandbox`, `capabilities`,
    /// `packages`, `paude-home`, `cache`.
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it; `None` when the status is ok.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: String) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail,
            fix: None,
        }
    }

    fn with(name: &'static str, status: Status, detail: String, fix: String) -> Check {
        Check {
            name,
            status,
            detail,
            fix: Some(fix),
        }
    }
}

#[derive(serde::Serialize)]
struct DoctorDocument<'a> {
    version: u32,
    checks: &'a [Check],
    /// With a manifest: every recorded file of its packages that is not as dpkg installed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    package_files: Option<Vec<FileDocument>>,
}

#[derive(serde::Serialize)]
struct FileDocument {
    package: String,
    path: String,
    finding: verify::Finding,
}

/// Runs `paude doctor`.
pub fn run(args: DoctorArgs, host: &HostFacts) -> Result<ExitCode> {
    let manifest = &args.manifest;
    // A manifest's mistakes end the run before the report, as they would a launch.
    let verified =
        if manifest.exec.is_some() || manifest.file.is_some() || manifest.workspace.is_some() {
            let (database, closure) = super::venv::closure_of(manifest, host)?;
            let provider = database.provider()?;
            let verified = verify::verify(provider, &closure, verify::Depth::Every)?;
            Some((closure.packages.len(), verified))
        } else {
            None
        };
    let mut checks = checks(&gather(host));
    if let Some((packages, verified)) = &verified {
        checks.push(check_package_files(*packages, verified));
    }
    let text = if args.json {
        let document = DoctorDocument {
            version: JSON_VERSION,
            checks: &checks,
            package_files: verified.as_ref().map(|(_, verified)| {
                verified
                    .differences
                    .iter()
                    .map(|d| FileDocument {
                        package: d.package.clone(),
                        path: d.path.to_string_lossy().into_owned(),
                        finding: d.finding,
                    })
                    .collect()
            }),
        };
        serde_json::to_string_pretty(&document).context("encoding JSON")? + "\n"
    } else {
        human(&checks)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    let problems: Vec<&str> = checks
        .iter()
        .filter(|check| check.status == Status::Problem)
        .map(|check| check.name)
        .collect();
    if !problems.is_empty() {
        bail!(
            "{} found ({}); the report says how to fix {}",
            plural(problems.len(), "problem"),
            problems.join(", "),
            if problems.len() == 1 { "it" } else { "each" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    pub uid: u32,
    /// paude's own effective capabilities, by name, sorted.
    pub capabilities: Result<Vec<String>, String>,
    pub bwrap: BwrapFound,
    /// The user-namespace sysctls by path (see [`host::MAX_USER_NAMESPACES`] and its
    /// neighbours); a setting the kernel does not have is absent.
    pub sysctls: HashMap<&'static str, String>,
    pub packages: PackagesFacts,
    pub home: HomeFacts,
    /// `None` when there is no store to look at (`PAUDE_HOME` is missing or unusable).
    pub cache: Option<Result<CacheFacts, String>>,
    pub network: NetworkFacts,
}

/// What `network: true` needs (see `sandbox::network`): slirp4netns, and a `/dev/net/tun`
/// this user may open, in which slirp4netns makes the sandbox's interface.
#[derive(Debug, Clone)]
pub struct NetworkFacts {
    /// Its path and the first line of its `--version`.
    pub slirp4netns: Option<(PathBuf, String)>,
    pub tun: Result<(), String>,
}

/// Whether a bwrap was found, and what it did when tried.
#[derive(Debug, Clone)]
pub enum BwrapFound {
    Missing {
        /// Why none was found.
        detail: String,
        /// Whether `PAUDE_BWRAP` named it (else `PATH` was searched).
        from_env: bool,
    },
    Found(BwrapFacts),
}

#[derive(Debug, Clone)]
pub struct BwrapFacts {
    /// As found (`PAUDE_BWRAP`, or on `PATH`).
    pub path: PathBuf,
    /// With links resolved: the file whose mode counts.
    pub resolved: PathBuf,
    /// What `bwrap --version` printed, or why it failed.
    pub version: Result<String, String>,
    /// Which of the options paude uses where they exist it has, as `bwrap --help` lists them.
    pub options: host::BwrapOptions,
    /// Mode bits and owner of `resolved`.
    pub mode: u32,
    pub owner: u32,
    /// Whether bwrap created a user namespace, or its error output.
    pub userns_probe: Result<(), String>,
    /// Whether a sandbox set up as paude sets one up ran; `None` when it was not tried (the
    /// user-namespace trial failed).
    pub sandbox_probe: Option<Result<(), String>>,
}

#[derive(Debug, Clone)]
pub struct PackagesFacts {
    /// `DPKG_ROOT`, when set.
    pub root: Option<PathBuf>,
    pub admindir: PathBuf,
    /// Installed packages and the native architecture, or why the database did not load.
    pub loaded: Result<(usize, String), String>,
}

#[derive(Debug, Clone)]
pub struct HomeFacts {
    pub path: PathBuf,
    /// Whether `PAUDE_HOME` set it (else it is `$HOME/.paude`).
    pub from_env: bool,
    pub state: HomeState,
    /// Bytes available to this user on the filesystem that holds (or will hold) it.
    pub free: Option<Result<u64, String>>,
}

#[derive(Debug, Clone)]
pub enum HomeState {
    /// A directory; `tested` is where a file was created and removed (its `venv/` when that
    /// exists, else itself).
    Exists {
        tested: PathBuf,
        writable: Result<(), String>,
    },
    /// Absent: the nearest existing ancestor, and whether this user can create entries there.
    Missing {
        ancestor: PathBuf,
        writable: Result<(), String>,
    },
    /// It, or the nearest existing ancestor, is something other than a directory.
    NotADirectory(PathBuf),
    /// It could not be looked at (a parent this user cannot search, say).
    Unreachable(String),
}

/// The cached environments, as `paude list` counts them.
#[derive(Debug, Clone, Default)]
pub struct CacheFacts {
    pub venvs: usize,
    /// Bytes on disk of the environments, the leftovers and the package store, each file
    /// once (see `prune::store_bytes`).
    pub bytes: u64,
    /// Leftovers of builds and removals that were killed (`paude cleanup` removes them).
    pub dead_leftovers: usize,
    /// Builds and removals running now.
    pub running: usize,
}

/// Looks at the host: the one place this command reads or runs anything.
pub fn gather(host: &HostFacts) -> Facts {
    let sysctls = [
        host::MAX_USER_NAMESPACES,
        host::UNPRIVILEGED_USERNS_CLONE,
        host::APPARMOR_RESTRICT_USERNS,
    ]
    .into_iter()
    .filter_map(|path| host::read_sysctl(path).map(|value| (path, value)))
    .collect();
    let home = gather_home(host);
    let cache = match home.state {
        HomeState::Exists { .. } => Some(gather_cache(&host.paude_home)),
        _ => None,
    };
    let capabilities = caps::read(None, caps::CapSet::Effective)
        .map(|set| {
            let mut names: Vec<String> = set.iter().map(|cap| cap.to_string()).collect();
            names.sort();
            names
        })
        .map_err(|error| error.to_string());
    Facts {
        uid: host.uid,
        capabilities,
        bwrap: gather_bwrap(host),
        sysctls,
        packages: gather_packages(host),
        home,
        cache,
        network: gather_network(host),
    }
}

fn gather_network(host: &HostFacts) -> NetworkFacts {
    let slirp4netns = host.program("slirp4netns").map(|path| {
        let version = Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .and_then(|output| {
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .next()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "(no version)".into());
        (path, version)
    });
    let tun = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map(drop)
        .map_err(|error| error.to_string());
    NetworkFacts { slirp4netns, tun }
}

fn gather_bwrap(host: &HostFacts) -> BwrapFound {
    let path = match host.bwrap() {
        Ok(path) => path,
        Err(error) => {
            return BwrapFound::Missing {
                detail: error.to_string(),
                from_env: host.var("PAUDE_BWRAP").is_some_and(|v| !v.is_empty()),
            };
        }
    };
    // The trials run the resolved path, so a relative PAUDE_BWRAP still names the same file
    // inside a sandbox.
    let resolved = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    let (mode, owner) = std::fs::metadata(&resolved)
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.mode(), m.uid())
        })
        .unwrap_or((0, u32::MAX));
    let version = Command::new(&resolved)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("could not run `{} --version`: {error}", resolved.display()))
        .and_then(|output| {
            if output.status.success() {
                Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
            } else {
                Err(format!(
                    "`{} --version` failed ({}): {}",
                    resolved.display(),
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ))
            }
        });
    let options = Command::new(&resolved)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .map(|output| host::BwrapOptions::from_help(&String::from_utf8_lossy(&output.stdout)))
        .unwrap_or_default();
    let userns_probe = run_probe(&resolved, &userns_probe_args(&resolved));
    let sandbox_probe = userns_probe.is_ok().then(|| sandbox_probe(&resolved));
    BwrapFound::Found(BwrapFacts {
        path,
        resolved,
        version,
        options,
        mode,
        owner,
        userns_probe,
        sandbox_probe,
    })
}

/// The smallest bwrap command that needs a user namespace: the host's `/` read-only, and
/// bwrap itself as the command, the one program certain to be there.
fn userns_probe_args(bwrap: &Path) -> Vec<OsString> {
    ["--unshare-user", "--ro-bind", "/", "/"]
        .iter()
        .map(OsString::from)
        .chain([bwrap.as_os_str().to_os_string(), "--version".into()])
        .collect()
}

/// A sandbox set up with the namespaces, process options and most mount kinds of every paude
/// launch (`--unshare-net` aside, which only some manifests ask for), so that what bwrap or
/// the kernel refuses shows here rather than at the first `paude venv`.
fn sandbox_probe_args(bwrap: &Path, sync_fd: i32) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup",
        "--die-with-parent",
        "--sync-fd",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(sync_fd.to_string().into());
    args.extend(
        [
            "--new-session",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "--remount-ro",
            "/",
            "--clearenv",
            "--setenv",
            "PATH",
            crate::sandbox::plan::DEFAULT_PATH,
            "--chdir",
            "/",
            "--",
        ]
        .iter()
        .map(OsString::from),
    );
    args.extend([bwrap.as_os_str().to_os_string(), "--version".into()]);
    args
}

fn sandbox_probe(bwrap: &Path) -> Result<(), String> {
    // `--sync-fd` needs a descriptor that bwrap inherits: the write end of a pipe, as a
    // launch passes it. Only this thread starts processes, so no other one inherits it.
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|error| format!("could not create a pipe for --sync-fd: {error}"))?;
    rustix::io::fcntl_setfd(&write, rustix::io::FdFlags::empty())
        .map_err(|error| format!("could not pass a pipe to bwrap: {error}"))?;
    let result = run_probe(bwrap, &sandbox_probe_args(bwrap, write.as_fd().as_raw_fd()));
    drop((read, write));
    result
}

/// How long a trial may take. bwrap needs milliseconds; but a trial that hangs (a setuid
/// bwrap refusing the sandbox has been seen to leave its pid 1 waiting) must not hang the
/// doctor.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for the rest of bwrap's error output once bwrap itself has exited: a
/// process it left behind may hold the pipe open.
const STDERR_GRACE: Duration = Duration::from_millis(500);

/// Runs bwrap with `args`; `Err` holds what it said on stderr.
fn run_probe(bwrap: &Path, args: &[OsString]) -> Result<(), String> {
    let mut child = Command::new(bwrap)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("could not run {}: {error}", bwrap.display()))?;
    // Read stderr on a thread, chunk by chunk, so that a pipe nobody closes costs only the
    // grace period and what was said before still arrives.
    let (chunks, received) = std::sync::mpsc::channel::<Vec<u8>>();
    if let Some(mut stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(count @ 1..) = stderr.read(&mut buffer) {
                if chunks.send(buffer[..count].to_vec()).is_err() {
                    break;
                }
            }
        });
    }
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            // Timed out, or cannot be waited for: it is this process's own child, so end it.
            _ => {
                child.kill().ok();
                child.wait().ok();
                break None;
            }
        }
    };
    let mut stderr = Vec::new();
    let grace = Instant::now() + STDERR_GRACE;
    while let Ok(chunk) = received.recv_timeout(grace.saturating_duration_since(Instant::now())) {
        stderr.extend(chunk);
    }
    let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) if stderr.is_empty() => {
            Err(format!("bwrap failed ({status}) and said nothing"))
        }
        Some(_) => Err(stderr),
        None => Err(format!(
            "bwrap did not finish within {} seconds{}",
            PROBE_TIMEOUT.as_secs(),
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        )),
    }
}

fn gather_packages(host: &HostFacts) -> PackagesFacts {
    let root = host.var("DPKG_ROOT").map(OsString::as_os_str);
    let admin = host.var("DPKG_ADMINDIR").map(OsString::as_os_str);
    let (root_path, admindir) = dpkg::paths_from_env(root, admin);
    PackagesFacts {
        root: root.filter(|r| !r.is_empty()).map(|_| root_path),
        admindir,
        loaded: Dpkg::from_env(root, admin)
            .map(|dpkg| (dpkg.installed_count(), dpkg.native_arch().to_string()))
            .map_err(|error| format!("{:#}", anyhow::Error::from(error))),
    }
}

fn gather_home(host: &HostFacts) -> HomeFacts {
    let path = host.paude_home.clone();
    let state = match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => {
            let venv = path.join("venv");
            let tested = if venv.is_dir() { venv } else { path.clone() };
            let writable = try_create(&tested);
            HomeState::Exists { tested, writable }
        }
        Ok(_) => HomeState::NotADirectory(path.clone()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let ancestor = path
                .ancestors()
                .skip(1)
                .find(|a| std::fs::symlink_metadata(a).is_ok())
                .unwrap_or(Path::new("/"))
                .to_path_buf();
            if ancestor.is_dir() {
                // Only ask the kernel: a file created in someone's home directory, even for
                // a moment, would be a surprise there.
                let writable = rustix::fs::access(
                    &ancestor,
                    rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
                )
                .map_err(|error| std::io::Error::from(error).to_string());
                HomeState::Missing { ancestor, writable }
            } else {
                HomeState::NotADirectory(ancestor)
            }
        }
        Err(error) => HomeState::Unreachable(error.to_string()),
    };
    let measured = match &state {
        HomeState::Exists { .. } => Some(path.clone()),
        HomeState::Missing { ancestor, .. } => Some(ancestor.clone()),
        _ => None,
    };
    HomeFacts {
        from_env: host.var("PAUDE_HOME").is_some_and(|v| !v.is_empty()),
        free: measured.map(|dir| {
            rustix::fs::statvfs(&dir)
                .map(|fs| fs.f_bavail.saturating_mul(fs.f_frsize))
                .map_err(|error| std::io::Error::from(error).to_string())
        }),
        path,
        state,
    }
}

/// Creates a file in `dir` and removes it: the test of what paude will do there. The name
/// matches nothing the store looks for, in case a crash leaves it behind.
fn try_create(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
        .map_err(|error| error.to_string())?;
    std::fs::remove_file(&probe).map_err(|error| {
        format!(
            "created {} but could not remove it: {error}",
            probe.display()
        )
    })
}

fn gather_cache(home: &Path) -> Result<CacheFacts, String> {
    let store = Store::new(home.to_path_buf());
    let scan = prune::scan(&store).map_err(|error| error.to_string())?;
    let mut facts = CacheFacts {
        venvs: scan.venvs.len(),
        ..CacheFacts::default()
    };
    let venvs: Vec<prune::VenvInfo> = scan.venvs.iter().map(|v| prune::info(&store, v)).collect();
    let mut leftovers = Vec::new();
    for leftover in &scan.leftovers {
        leftovers.extend(tree::size(&leftover.path).ok().map(|size| size.total));
        // A build or removal that is still running is work in progress, not a leftover.
        if prune::leftover_running(&store, leftover) {
            facts.running += 1;
        } else {
            facts.dead_leftovers += 1;
        }
    }
    let packages = crate::store::packages::PackageStore::new(home);
    let package_bytes = tree::size(packages.root()).ok().map(|size| size.total);
    // The figure `paude list` gives.
    facts.bytes = prune::store_bytes(&venvs, leftovers, package_bytes);
    Ok(facts)
}

/// The report, in order.
pub fn checks(facts: &Facts) -> Vec<Check> {
    let sysctl = |path: &str| facts.sysctls.get(path).cloned();
    let found = match &facts.bwrap {
        BwrapFound::Found(bwrap) => Some(bwrap),
        BwrapFound::Missing { .. } => None,
    };
    let mut checks = vec![
        check_bwrap(&facts.bwrap),
        check_userns(
            facts.uid,
            &sysctl,
            found.map(|b| (b.resolved.as_path(), &b.userns_probe)),
        ),
    ];
    if let Some(bwrap) = found
        && let Some(probe) = &bwrap.sandbox_probe
    {
        let setuid = is_setuid_root(bwrap.mode, bwrap.owner);
        checks.push(check_sandbox(probe, setuid));
    }
    checks.push(check_capabilities(&facts.capabilities));
    checks.push(check_packages(&facts.packages));
    checks.push(check_home(&facts.home, facts.uid));
    if let Some(cache) = &facts.cache {
        checks.push(check_cache(cache));
    }
    checks.push(check_network(&facts.network));
    checks
}

/// `network: true`'s helper, and the device it needs. The other forms need neither: `false`
/// and `"host"` have no helper, and the allow-list proxy is paude's own.
pub fn check_network(network: &NetworkFacts) -> Check {
    const NAME: &str = "network";
    let others = "or give the manifest `network: false` (loopback only), `network: {allow: \
                  [...]}` (paude's own proxy) or `network: \"host\"`";
    match (&network.slirp4netns, &network.tun) {
        (None, _) => Check::with(
            NAME,
            Status::Problem,
            "slirp4netns is not installed: `network: true`, the default, needs it for the \
             sandbox's own network"
                .into(),
            format!("Install it (apt install slirp4netns), {others}"),
        ),
        (Some((path, version)), Err(error)) => Check::with(
            NAME,
            Status::Problem,
            format!(
                "{version} ({}), but /dev/net/tun cannot be opened: {error}",
                path.display()
            ),
            format!(
                "Give /dev/net/tun mode 0666, as udev does by default (as root: chmod 0666 \
                 /dev/net/tun), {others}"
            ),
        ),
        (Some((path, version)), Ok(())) => Check::ok(
            NAME,
            format!(
                "{version} ({}) and /dev/net/tun: `network: true` gives each sandbox a \
                 network of its own",
                path.display()
            ),
        ),
    }
}

/// The host's files of a manifest's packages against dpkg's sums: ok when every one is as
/// installed (an unreadable one is left out of environments, and said, but is no fault of
/// the host's), else a warning naming the first few.
pub fn check_package_files(packages: usize, verified: &verify::Verified) -> Check {
    use verify::Finding;
    let checked = format!(
        "{} of {} read and compared with dpkg's MD5 sums",
        crate::text::counted(verified.files, "file"),
        plural(packages, "package"),
    );
    let unreadable = verified
        .differences
        .iter()
        .filter(|d| d.finding == Finding::Unreadable)
        .count();
    let unreadable_note = if unreadable == 0 {
        String::new()
    } else {
        format!(
            "; {} this user cannot read, which environments leave out",
            plural(unreadable, "file")
        )
    };
    let differing = verified.differing();
    if differing.is_empty() {
        return Check::ok(
            "package-files",
            format!("{checked}: all as installed{unreadable_note}"),
        );
    }
    const SHOWN: usize = 10;
    let mut listed: Vec<String> = differing
        .iter()
        .take(SHOWN)
        .map(|d| format!("{} ({}, {})", d.path.display(), d.package, d.finding.word()))
        .collect();
    if differing.len() > SHOWN {
        listed.push(format!(
            "and {} more (--json lists all)",
            differing.len() - SHOWN
        ));
    }
    Check::with(
        "package-files",
        Status::Warning,
        format!(
            "{checked}: {} not as installed: {}{unreadable_note}",
            plural(differing.len(), "file"),
            listed.join(", ")
        ),
        format!(
            "environments get these files as the host has them now; reinstall the packages \
             (`apt-get install --reinstall {}`), or bind the host's own copies with a mount \
             (`paude.hostLocal.mounts` binds /usr/local and /usr/etc)",
            verified.packages().join(" ")
        ),
    )
}

fn version_text((major, minor, patch): Version) -> String {
    format!("{major}.{minor}.{patch}")
}

/// Whether a file with this mode and owner runs with root's privileges, whoever starts it.
pub fn is_setuid_root(mode: u32, owner: u32) -> bool {
    mode & 0o4000 != 0 && owner == 0
}

/// Whether this much free space deserves a warning.
pub fn space_is_low(available: u64) -> bool {
    available < LOW_SPACE_BYTES
}

/// bwrap: found, new enough, and in the unprivileged mode paude expects.
pub fn check_bwrap(found: &BwrapFound) -> Check {
    const NAME: &str = "bwrap";
    let bwrap = match found {
        BwrapFound::Missing { detail, from_env } => {
            let fix = if *from_env {
                format!(
                    "Set PAUDE_BWRAP to the path of an executable bwrap, or unset it to use \
                     the bwrap on PATH; if bubblewrap is not installed, {}",
                    host::BWRAP_INSTALL
                )
            } else {
                capitalized(host::BWRAP_INSTALL)
            };
            return Check::with(NAME, Status::Problem, detail.clone(), fix);
        }
        BwrapFound::Found(bwrap) => bwrap,
    };
    let mut status = Status::Ok;
    let mut fixes: Vec<String> = Vec::new();
    let mut detail = bwrap.path.display().to_string();
    if bwrap.resolved != bwrap.path {
        detail.push_str(&format!(" (links to {})", bwrap.resolved.display()));
    }
    let needed = version_text(MINIMUM_BWRAP);
    match &bwrap.version {
        Ok(output) => match parse_version(output) {
            Some(version) if version < MINIMUM_BWRAP => {
                let missing: Vec<&str> = OPTIONS
                    .iter()
                    .filter(|(_, since)| version < *since)
                    .map(|(option, _)| *option)
                    .collect();
                detail.push_str(&format!(
                    ", {output}: older than {needed}, which paude needs for {}",
                    missing.join(" and ")
                ));
                status = Status::Problem;
                fixes.push(format!(
                    "upgrade bubblewrap to {needed} or newer (from a newer release of your \
                     distribution, its backports, or built from source) and, if it is not \
                     the bwrap on PATH, point PAUDE_BWRAP at it"
                ));
            }
            Some(_) if bwrap.options.lacking().next().is_some() => {
                let lacking: Vec<String> = bwrap
                    .options
                    .lacking()
                    .map(|(option, since, without)| {
                        format!("{option} (new in {}): {without}", version_text(*since))
                    })
                    .collect();
                let newest = bwrap.options.lacking().map(|(_, since, _)| *since).max();
                detail.push_str(&format!(
                    ", {output} ({needed} or newer needed); it lacks {}",
                    lacking.join("; ")
                ));
                status = status.max(Status::Warning);
                fixes.push(format!(
                    "upgrade bubblewrap to {} or newer (or to your distribution's release \
                     with the option backported)",
                    version_text(newest.unwrap_or(host::BWRAP_BIND_FD))
                ));
            }
            Some(_) => detail.push_str(&format!(", {output} ({needed} or newer needed)")),
            None => {
                detail.push_str(&format!(
                    ", version unknown (`--version` printed {output:?}; paude needs {needed})"
                ));
                status = status.max(Status::Warning);
                fixes.push(format!(
                    "check that this is bubblewrap, {needed} or newer ({})",
                    host::BWRAP_INSTALL
                ));
            }
        },
        Err(error) => {
            detail.push_str(&format!(", {error}"));
            status = Status::Problem;
            fixes.push(format!(
                "check that this is a working bubblewrap, or reinstall it ({})",
                host::BWRAP_INSTALL
            ));
        }
    }
    if is_setuid_root(bwrap.mode, bwrap.owner) {
        detail.push_str(
            ", setuid root: bwrap runs in its privileged mode, setting up the sandbox as root",
        );
        status = status.max(Status::Warning);
        fixes.push(format!(
            "paude expects bwrap's unprivileged mode, in which the kernel's user namespaces \
             do that work: when the user-namespaces check is ok, remove the setuid bit \
             (`sudo chmod u-s {}`) or set PAUDE_BWRAP to a bwrap without it",
            bwrap.resolved.display()
        ));
    } else {
        detail.push_str(", not setuid (unprivileged mode)");
    }
    Check {
        name: NAME,
        status,
        detail,
        fix: (!fixes.is_empty()).then(|| capitalized(&fixes.join("; "))),
    }
}

/// User namespaces: refused by a sysctl that paude checks before every launch, restricted by
/// AppArmor unless a profile lets bwrap through, or refused for a reason only trying shows.
/// `probe` is bwrap's path and the outcome of its trial; `None` when there is no bwrap.
pub fn check_userns(
    uid: u32,
    sysctl: &dyn Fn(&str) -> Option<String>,
    probe: Option<(&Path, &Result<(), String>)>,
) -> Check {
    const NAME: &str = "user-namespaces";
    if let Some(refusal) = host::refusal_from_sysctls(uid, sysctl) {
        // `paude venv` refuses to start on this, whatever bwrap could do.
        return Check::with(NAME, Status::Problem, refusal.reason, refusal.fix);
    }
    let apparmor = uid != 0 && sysctl(host::APPARMOR_RESTRICT_USERNS).as_deref() == Some("1");
    let limit = sysctl(host::MAX_USER_NAMESPACES)
        .map(|limit| format!(" (user.max_user_namespaces = {limit})"))
        .unwrap_or_default();
    const RESTRICTED: &str = "AppArmor restricts unprivileged user namespaces \
                              (kernel.apparmor_restrict_unprivileged_userns = 1)";
    let apparmor_fix = |bwrap: &str| {
        format!(
            "Let bwrap through AppArmor: create /etc/apparmor.d/bwrap holding the lines \
             `abi <abi/4.0>,`, `include <tunables/global>` and \
             `profile bwrap {bwrap} flags=(unconfined) {{ userns, }}`, then run \
             `sudo apparmor_parser -r /etc/apparmor.d/bwrap`; or lift the restriction for \
             every program with `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
        )
    };
    match probe {
        None => Check::with(
            NAME,
            Status::Warning,
            if apparmor {
                format!("{RESTRICTED}; without bwrap, whether a profile allows it is unknown")
            } else {
                format!(
                    "the kernel's settings allow them{limit}, but without bwrap they were not tried"
                )
            },
            "Install bwrap (see the bwrap check) and run `paude doctor` again".into(),
        ),
        Some((_, Ok(()))) => Check::ok(
            NAME,
            if apparmor {
                format!(
                    "bwrap created one as uid {uid}{limit}; {RESTRICTED}, and a profile lets bwrap through"
                )
            } else {
                format!("bwrap created one as uid {uid}{limit}")
            },
        ),
        Some((bwrap, Err(error))) => {
            let detail = format!("bwrap could not create one as uid {uid}: {error}");
            if apparmor {
                Check::with(
                    NAME,
                    Status::Problem,
                    format!("{detail}; {RESTRICTED}"),
                    apparmor_fix(&bwrap.display().to_string()),
                )
            } else {
                Check::with(
                    NAME,
                    Status::Problem,
                    detail,
                    "Something the sysctls do not show refuses them: in a container, allow \
                     nested user namespaces (Docker and Podman's default seccomp profiles \
                     refuse them; `--security-opt seccomp=unconfined` lifts that); otherwise \
                     look at the security modules (SELinux, AppArmor) and at how many user \
                     namespaces already exist (user.max_user_namespaces)"
                        .into(),
                )
            }
        }
    }
}

/// The trial sandbox: what bwrap or the kernel refuses of paude's own set-up. `setuid`: the
/// bwrap is setuid root (see [`is_setuid_root`]).
pub fn check_sandbox(probe: &Result<(), String>, setuid: bool) -> Check {
    const NAME: &str = "sandbox";
    let error = match probe {
        Ok(()) => {
            return Check::ok(
                NAME,
                "a trial sandbox ran with paude's namespaces (user, pid, ipc, uts, cgroup), \
                 /dev, /proc, a tmpfs, a read-only remount, --sync-fd and --clearenv"
                    .into(),
            );
        }
        Err(error) => error,
    };
    let fix = if setuid {
        "This bwrap is setuid root, and what its privileged mode does differs from what paude \
         expects: use one without the setuid bit (see the bwrap check)"
    } else if error.contains("Unknown option") || error.contains("unrecognized option") {
        "This bwrap lacks an option paude passes: see the bwrap check for the version needed"
    } else if error.contains("proc") {
        "Mounting /proc was refused, which happens in a container whose /proc is partly \
         masked: run the container with an unmasked /proc (Podman: \
         `--security-opt unmask=/proc/*`, Docker: `--security-opt systempaths=unconfined`) \
         or privileged"
    } else if error.contains("cgroup") {
        "The kernel refused a cgroup namespace; they need Linux 4.6 or newer, built with \
         CONFIG_CGROUPS"
    } else {
        "Run `paude venv --dry-run` and then the bwrap command line it prints, to see the \
         failure in context"
    };
    Check::with(
        NAME,
        Status::Problem,
        format!("bwrap could not set up a sandbox as paude does: {error}"),
        fix.into(),
    )
}

/// The package database paude builds environments from.
pub fn check_packages(packages: &PackagesFacts) -> Check {
    const NAME: &str = "packages";
    let location = match &packages.root {
        Some(root) => format!(
            "dpkg database {} (DPKG_ROOT {})",
            packages.admindir.display(),
            root.display()
        ),
        None => format!("dpkg database {}", packages.admindir.display()),
    };
    let fix = "paude builds environments from dpkg's database (Debian, Ubuntu and their \
               derivatives): on such a host, set DPKG_ROOT or DPKG_ADMINDIR if the database \
               is not in its usual place";
    match &packages.loaded {
        Ok((0, _)) => Check::with(
            NAME,
            Status::Problem,
            format!("{location}: no package is installed"),
            capitalized(fix),
        ),
        Ok((count, arch)) => Check::ok(
            NAME,
            format!(
                "{location}: {} installed ({arch})",
                plural(*count, "package")
            ),
        ),
        Err(error) => Check::with(
            NAME,
            Status::Problem,
            format!("{location}: {error}"),
            capitalized(fix),
        ),
    }
}

/// `PAUDE_HOME`: where it is, whether this user can write there, and the space left.
pub fn check_home(home: &HomeFacts, uid: u32) -> Check {
    const NAME: &str = "paude-home";
    let path = home.path.display();
    let origin = if home.from_env {
        "PAUDE_HOME"
    } else {
        "default: $HOME/.paude"
    };
    let elsewhere = "set PAUDE_HOME to a directory this user can write (it is created when \
                     missing)";
    let problem = |detail: String, fix: String| Check::with(NAME, Status::Problem, detail, fix);
    let place = match &home.state {
        HomeState::Exists {
            writable: Ok(()), ..
        } => format!("{path} ({origin}): writable"),
        HomeState::Exists {
            tested,
            writable: Err(error),
        } => {
            return problem(
                format!(
                    "{path} ({origin}): uid {uid} cannot create files in {}: {error}",
                    tested.display()
                ),
                format!(
                    "Make {} writable by uid {uid}, or {elsewhere}",
                    tested.display()
                ),
            );
        }
        HomeState::Missing {
            ancestor,
            writable: Ok(()),
        } => format!(
            "{path} ({origin}): not created yet; uid {uid} can create it in {}",
            ancestor.display()
        ),
        HomeState::Missing {
            ancestor,
            writable: Err(error),
        } => {
            return problem(
                format!(
                    "{path} ({origin}) does not exist, and uid {uid} cannot create it: \
                     {} is not writable ({error})",
                    ancestor.display()
                ),
                capitalized(elsewhere),
            );
        }
        HomeState::NotADirectory(what) => {
            return problem(
                format!("{path} ({origin}): {} is not a directory", what.display()),
                capitalized(elsewhere),
            );
        }
        HomeState::Unreachable(error) => {
            return problem(
                format!("{path} ({origin}) cannot be looked at by uid {uid}: {error}"),
                capitalized(elsewhere),
            );
        }
    };
    match &home.free {
        Some(Ok(free)) if space_is_low(*free) => Check::with(
            NAME,
            Status::Warning,
            format!(
                "{place}; only {} free, under {}",
                human_bytes(*free),
                human_bytes(LOW_SPACE_BYTES)
            ),
            format!(
                "Free space on that filesystem (`paude cleanup` removes unused environments), \
                 or {elsewhere} on a bigger one"
            ),
        ),
        Some(Ok(free)) => Check::ok(NAME, format!("{place}; {} free", human_bytes(*free))),
        Some(Err(error)) => Check::with(
            NAME,
            Status::Warning,
            format!("{place}; free space unknown: {error}"),
            format!("Check the filesystem of {path} has room for environments"),
        ),
        None => Check::ok(NAME, place),
    }
}

/// The cached environments: how many, how big, and leftovers `paude cleanup` would remove.
/// What paude holds, and that the sandbox gets none of it: bwrap is always given
/// `--cap-drop ALL`, which matters when paude runs as root (bwrap would otherwise keep every
/// capability inside the user namespace).
pub fn check_capabilities(capabilities: &Result<Vec<String>, String>) -> Check {
    const NAME: &str = "capabilities";
    match capabilities {
        Ok(names) if names.is_empty() => Check::ok(
            NAME,
            "paude runs with no capabilities; sandboxes get none either".into(),
        ),
        Ok(names) => {
            let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
            Check::ok(
                NAME,
                format!(
                    "paude runs with {} effective {} ({}{}); sandboxes get none (bwrap is given \
                     --cap-drop ALL)",
                    names.len(),
                    if names.len() == 1 {
                        "capability"
                    } else {
                        "capabilities"
                    },
                    shown.join(", "),
                    if names.len() > shown.len() {
                        ", …"
                    } else {
                        ""
                    }
                ),
            )
        }
        Err(error) => Check::with(
            NAME,
            Status::Warning,
            format!("paude's own capabilities could not be read: {error}"),
            "Nothing to do for the sandbox, which gets none (--cap-drop ALL); /proc/self/status \
             shows them"
                .into(),
        ),
    }
}

pub fn check_cache(cache: &Result<CacheFacts, String>) -> Check {
    const NAME: &str = "cache";
    let cache = match cache {
        Ok(cache) => cache,
        Err(error) => {
            return Check::with(
                NAME,
                Status::Warning,
                format!("the cached environments could not be listed: {error}"),
                "See the paude-home check; `paude list` shows the same store".into(),
            );
        }
    };
    let mut detail = format!(
        "{}, {}",
        plural(cache.venvs, "environment"),
        human_bytes(cache.bytes)
    );
    if cache.running > 0 {
        detail.push_str(&format!(
            "; {} running",
            plural(cache.running, "build or removal")
        ));
    }
    if cache.dead_leftovers > 0 {
        detail.push_str(&format!(
            "; {} of interrupted builds or removals, which `paude cleanup` removes",
            plural(cache.dead_leftovers, "leftover")
        ));
    }
    Check::ok(NAME, detail)
}

/// The human report: one line per check (status, name, detail), the fix indented under it,
/// then a summary.
pub fn human(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for check in checks {
        out.push_str(&format!(
            "{:<8} {:<width$}  {}\n",
            check.status.word(),
            check.name,
            check.detail
        ));
        if let Some(fix) = &check.fix {
            out.push_str(&format!("{:<8} {:<width$}  fix: {fix}\n", "", ""));
        }
    }
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let (warnings, problems) = (count(Status::Warning), count(Status::Problem));
    out.push_str(&if warnings + problems == 0 {
        format!("\nall {} checks ok\n", checks.len())
    } else {
        format!(
            "\n{}, {} ({} checks)\n",
            plural(problems, "problem"),
            plural(warnings, "warning"),
            checks.len()
        )
    });
    out
}

fn plural(count: usize, word: &str) -> String {
    match word.strip_suffix("build or removal") {
        Some(stem) if count != 1 => format!("{count} {stem}builds or removals"),
        _ => crate::text::counted(count as u64, word),
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_check_names_what_is_missing() {
        let slirp = Some((
            "/usr/bin/slirp4netns".into(),
            "slirp4netns version 1.2.0".into(),
        ));
        let ok = check_network(&NetworkFacts {
            slirp4netns: slirp.clone(),
            tun: Ok(()),
        });
        assert_eq!(ok.status, Status::Ok);
        assert!(ok.detail.contains("1.2.0"), "{}", ok.detail);
        let missing = check_network(&NetworkFacts {
            slirp4netns: None,
            tun: Ok(()),
        });
        assert_eq!(missing.status, Status::Problem);
        assert!(missing.fix.unwrap().contains("apt install slirp4netns"));
        let no_tun = check_network(&NetworkFacts {
            slirp4netns: slirp,
            tun: Err("Permission denied (os error 13)".into()),
        });
        assert_eq!(no_tun.status, Status::Problem);
        assert!(
            no_tun.detail.contains("Permission denied"),
            "{}",
            no_tun.detail
        );
        assert!(no_tun.fix.unwrap().contains("chmod 0666 /dev/net/tun"));
    }

    fn sysctls(pairs: &[(&'static str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<&'static str, String> =
            pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        move |path: &str| map.get(path).cloned()
    }

    fn found(version: &str, mode: u32, owner: u32) -> BwrapFound {
        BwrapFound::Found(BwrapFacts {
            path: "/x/bin/bwrap".into(),
            resolved: "/x/bin/bwrap".into(),
            version: Ok(version.into()),
            options: host::BwrapOptions {
                disable_userns: true,
                bind_fd: true,
            },
            mode,
            owner,
            userns_probe: Ok(()),
            sandbox_probe: Some(Ok(())),
        })
    }

    #[test]
    fn versions_parse_from_bwrap_output() {
        assert_eq!(parse_version("bubblewrap 0.4.1"), Some((0, 4, 1)));
        assert_eq!(parse_version("bubblewrap 0.11.0\n"), Some((0, 11, 0)));
        assert_eq!(parse_version("bubblewrap 0.6"), Some((0, 6, 0)));
        assert_eq!(parse_version("bubblewrap 0.8.0-rc1"), Some((0, 8, 0)));
        assert_eq!(parse_version("bubblewrap"), None);
        assert_eq!(parse_version(""), None);
        assert!(parse_version("bubblewrap 0.4.1").unwrap() < MINIMUM_BWRAP);
        assert!(parse_version("bubblewrap 0.10.0").unwrap() > MINIMUM_BWRAP);
    }

    #[test]
    fn the_minimum_is_the_newest_option() {
        let newest = OPTIONS.iter().map(|(_, since)| *since).max();
        assert_eq!(newest, Some(MINIMUM_BWRAP));
    }

    /// Every option the renderer or the trial sandbox can pass is in the table, so a new one
    /// cannot raise the minimum unnoticed.
    #[test]
    fn every_option_paude_passes_has_a_version() {
        let renderer = include_str!("../sandbox/bwrap.rs");
        let renderer = &renderer[..renderer.find("#[cfg(test)]").unwrap_or(renderer.len())];
        let mut passed: Vec<String> = renderer
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|literal| literal.starts_with("--") && literal.len() > 2)
            .map(String::from)
            .collect();
        let probes = userns_probe_args(Path::new("/b"))
            .into_iter()
            .chain(sandbox_probe_args(Path::new("/b"), 3));
        passed.extend(
            probes
                .map(|arg| arg.to_string_lossy().into_owned())
                .filter(|arg| arg.starts_with("--") && arg.len() > 2 && arg != "--version"),
        );
        assert!(passed.contains(&"--clearenv".to_string()), "{passed:?}");
        for option in &passed {
            assert!(
                OPTIONS
                    .iter()
                    .map(|(known, _)| known)
                    .chain(host::BWRAP_OPTIONAL.iter().map(|(known, _, _)| known))
                    .any(|known| known == option),
                "{option} is passed to bwrap but not in OPTIONS or OPTIONAL"
            );
        }
    }

    #[test]
    fn old_bwrap_is_a_problem_naming_the_option() {
        let check = check_bwrap(&found("bubblewrap 0.4.1", 0o100755, 0));
        assert_eq!(check.status, Status::Problem);
        assert!(
            check.detail.contains("bubblewrap 0.4.1"),
            "{}",
            check.detail
        );
        assert!(check.detail.contains("0.5.0"), "{}", check.detail);
        assert!(check.detail.contains("--clearenv"), "{}", check.detail);
        assert!(check.fix.unwrap().contains("PAUDE_BWRAP"));
    }

    #[test]
    fn a_bwrap_without_the_optional_options_is_a_warning_naming_them() {
        let mut older = found("bubblewrap 0.8.0", 0o100755, 0);
        if let BwrapFound::Found(facts) = &mut older {
            facts.options = host::BwrapOptions::from_help(
                "usage: bwrap [OPTIONS...] [--] COMMAND [ARGS...]\n    --bind SRC DEST  Bind\n    \
                 --disable-userns  Disable further use of user namespaces inside sandbox\n",
            );
            assert!(facts.options.disable_userns && !facts.options.bind_fd);
        }
        let check = check_bwrap(&older);
        assert_eq!(check.status, Status::Warning);
        assert!(
            check.detail.contains("--bind-fd (new in 0.10.0)"),
            "{}",
            check.detail
        );
        assert!(check.detail.contains("--ro-bind-fd"), "{}", check.detail);
        assert!(
            !check.detail.contains("lacks --disable-userns"),
            "{}",
            check.detail
        );
        assert!(check.fix.unwrap().contains("0.10.0"));
    }

    #[test]
    fn current_bwrap_is_ok() {
        let check = check_bwrap(&found("bubblewrap 0.8.0", 0o100755, 0));
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(check.detail.contains("bubblewrap 0.8.0"));
        assert!(check.detail.contains("not setuid"));
        assert_eq!(check.fix, None);
    }

    #[test]
    fn setuid_root_is_detected_from_the_mode() {
        assert!(is_setuid_root(0o104755, 0));
        assert!(!is_setuid_root(0o100755, 0));
        // Setuid to someone else gives no root privileges.
        assert!(!is_setuid_root(0o104755, 1000));
        // Setgid alone is not setuid.
        assert!(!is_setuid_root(0o102755, 0));
        let check = check_bwrap(&found("bubblewrap 0.8.0", 0o104755, 0));
        assert_eq!(check.status, Status::Warning);
        assert!(check.detail.contains("setuid root"));
        assert!(check.fix.unwrap().contains("chmod u-s /x/bin/bwrap"));
        // Too old and setuid: the problem wins, both fixes are given.
        let check = check_bwrap(&found("bubblewrap 0.3.3", 0o104755, 0));
        assert_eq!(check.status, Status::Problem);
        let fix = check.fix.unwrap();
        assert!(fix.contains("upgrade") || fix.contains("Upgrade"), "{fix}");
        assert!(fix.contains("chmod u-s"), "{fix}");
    }

    #[test]
    fn missing_bwrap_says_how_to_install_it() {
        let check = check_bwrap(&BwrapFound::Missing {
            detail: host::BWRAP_MISSING.into(),
            from_env: false,
        });
        assert_eq!(check.status, Status::Problem);
        assert!(check.fix.unwrap().contains("apt-get install bubblewrap"));
        let check = check_bwrap(&BwrapFound::Missing {
            detail: "PAUDE_BWRAP is /nonexistent, which is not an executable file".into(),
            from_env: true,
        });
        let fix = check.fix.unwrap();
        assert!(fix.contains("PAUDE_BWRAP") && fix.contains("apt-get install bubblewrap"));
    }

    #[test]
    fn unreadable_version_is_a_warning_and_failing_bwrap_a_problem() {
        let check = check_bwrap(&found("something else", 0o100755, 0));
        assert_eq!(check.status, Status::Warning);
        let mut broken = found("", 0o100755, 0);
        if let BwrapFound::Found(facts) = &mut broken {
            facts.version = Err("`bwrap --version` failed".into());
        }
        assert_eq!(check_bwrap(&broken).status, Status::Problem);
    }

    #[test]
    fn userns_sysctls_that_refuse() {
        let ok: Result<(), String> = Ok(());
        let bwrap = Some((Path::new("/x/bwrap"), &ok));
        // Nobody may create one, not even root.
        let refuse_all = sysctls(&[(host::MAX_USER_NAMESPACES, "0")]);
        for uid in [0, 1000] {
            let check = check_userns(uid, &refuse_all, bwrap);
            assert_eq!(check.status, Status::Problem);
            assert!(
                check
                    .fix
                    .unwrap()
                    .contains("user.max_user_namespaces=15000")
            );
        }
        // Debian's switch refuses users but not root.
        let debian = sysctls(&[
            (host::MAX_USER_NAMESPACES, "63000"),
            (host::UNPRIVILEGED_USERNS_CLONE, "0"),
        ]);
        let check = check_userns(1000, &debian, bwrap);
        assert_eq!(check.status, Status::Problem);
        assert!(
            check
                .fix
                .unwrap()
                .contains("kernel.unprivileged_userns_clone=1")
        );
        assert_eq!(check_userns(0, &debian, bwrap).status, Status::Ok);
        // Switched on, and absent settings (other kernels), refuse nothing.
        let allowed = sysctls(&[
            (host::MAX_USER_NAMESPACES, "63000"),
            (host::UNPRIVILEGED_USERNS_CLONE, "1"),
        ]);
        let check = check_userns(1000, &allowed, bwrap);
        assert_eq!(check.status, Status::Ok);
        assert!(check.detail.contains("63000"), "{}", check.detail);
        assert_eq!(check_userns(1000, &sysctls(&[]), bwrap).status, Status::Ok);
    }

    #[test]
    fn userns_apparmor_restriction_depends_on_the_trial() {
        let ubuntu = sysctls(&[
            (host::MAX_USER_NAMESPACES, "63000"),
            (host::APPARMOR_RESTRICT_USERNS, "1"),
        ]);
        let ok: Result<(), String> = Ok(());
        let refused: Result<(), String> =
            Err("bwrap: setting up uid map: Permission denied".into());
        // A profile lets bwrap through: fine, and said.
        let check = check_userns(1000, &ubuntu, Some((Path::new("/x/bwrap"), &ok)));
        assert_eq!(check.status, Status::Ok);
        assert!(check.detail.contains("AppArmor"));
        // No profile: a problem whose fix is the profile for this bwrap.
        let check = check_userns(1000, &ubuntu, Some((Path::new("/x/bwrap"), &refused)));
        assert_eq!(check.status, Status::Problem);
        assert!(check.detail.contains("Permission denied"));
        let fix = check.fix.unwrap();
        assert!(fix.contains("profile bwrap /x/bwrap"), "{fix}");
        assert!(
            fix.contains("apparmor_restrict_unprivileged_userns=0"),
            "{fix}"
        );
        // Root is not restricted; a refusal then has another cause.
        let check = check_userns(0, &ubuntu, Some((Path::new("/x/bwrap"), &refused)));
        assert_eq!(check.status, Status::Problem);
        assert!(!check.fix.unwrap().contains("apparmor_parser"));
        // Without bwrap nothing was tried: a warning, not a second problem.
        let check = check_userns(1000, &ubuntu, None);
        assert_eq!(check.status, Status::Warning);
        let check = check_userns(1000, &sysctls(&[]), None);
        assert_eq!(check.status, Status::Warning);
    }

    #[test]
    fn free_space_threshold() {
        assert!(space_is_low(0));
        assert!(space_is_low(LOW_SPACE_BYTES - 1));
        assert!(!space_is_low(LOW_SPACE_BYTES));
        let home = |free: u64| HomeFacts {
            path: "/h/.paude".into(),
            from_env: false,
            state: HomeState::Exists {
                tested: "/h/.paude/venv".into(),
                writable: Ok(()),
            },
            free: Some(Ok(free)),
        };
        let check = check_home(&home(512 << 20), 1000);
        assert_eq!(check.status, Status::Warning);
        assert!(check.detail.contains("512.0 MiB"), "{}", check.detail);
        let check = check_home(&home(5 << 30), 1000);
        assert_eq!(check.status, Status::Ok);
        assert!(check.detail.contains("5.0 GiB free"), "{}", check.detail);
    }

    #[test]
    fn home_that_cannot_be_written_is_a_problem() {
        let exists = HomeFacts {
            path: "/h/.paude".into(),
            from_env: true,
            state: HomeState::Exists {
                tested: "/h/.paude".into(),
                writable: Err("Permission denied (os error 13)".into()),
            },
            free: Some(Ok(5 << 30)),
        };
        let check = check_home(&exists, 65534);
        assert_eq!(check.status, Status::Problem);
        assert!(check.detail.contains("PAUDE_HOME") && check.detail.contains("65534"));
        assert!(check.fix.unwrap().contains("set PAUDE_HOME"));
        let missing = HomeFacts {
            state: HomeState::Missing {
                ancestor: "/h".into(),
                writable: Err("Permission denied (os error 13)".into()),
            },
            ..exists.clone()
        };
        assert_eq!(check_home(&missing, 65534).status, Status::Problem);
        let creatable = HomeFacts {
            state: HomeState::Missing {
                ancestor: "/h".into(),
                writable: Ok(()),
            },
            ..exists.clone()
        };
        let check = check_home(&creatable, 65534);
        assert_eq!(check.status, Status::Ok);
        assert!(check.detail.contains("not created yet"), "{}", check.detail);
        for state in [
            HomeState::NotADirectory("/h/.paude".into()),
            HomeState::Unreachable("Permission denied (os error 13)".into()),
        ] {
            let home = HomeFacts {
                state,
                free: None,
                ..exists.clone()
            };
            assert_eq!(check_home(&home, 65534).status, Status::Problem);
        }
    }

    #[test]
    fn packages_check() {
        let facts = |loaded| PackagesFacts {
            root: None,
            admindir: "/var/lib/dpkg".into(),
            loaded,
        };
        let check = check_packages(&facts(Ok((523, "amd64".into()))));
        assert_eq!(check.status, Status::Ok);
        assert_eq!(
            check.detail,
            "dpkg database /var/lib/dpkg: 523 packages installed (amd64)"
        );
        assert_eq!(
            check_packages(&facts(Ok((0, "amd64".into())))).status,
            Status::Problem
        );
        let check = check_packages(&facts(
            Err("reading /var/lib/dpkg/status: not found".into()),
        ));
        assert_eq!(check.status, Status::Problem);
        assert!(check.fix.unwrap().contains("DPKG_ADMINDIR"));
    }

    #[test]
    fn sandbox_failures_get_a_fix_for_their_cause() {
        assert_eq!(check_sandbox(&Ok(()), false).status, Status::Ok);
        let fix = |error: &str| check_sandbox(&Err(error.into()), false).fix.unwrap();
        assert!(fix("bwrap: Unknown option --clearenv").contains("bwrap check"));
        assert!(
            fix("bwrap: Can't mount proc on /newroot/proc: Operation not permitted")
                .contains("unmask")
        );
        assert!(fix("bwrap: unshare cgroup failed").contains("4.6"));
        assert!(fix("bwrap: something else").contains("--dry-run"));
        // A setuid bwrap's refusals come from its privileged mode, whatever they say.
        let check = check_sandbox(
            &Err("bwrap: setting up uid map: Invalid argument".into()),
            true,
        );
        assert_eq!(check.status, Status::Problem);
        assert!(check.fix.unwrap().contains("setuid"));
    }

    #[test]
    fn cache_summary() {
        let check = check_cache(&Ok(CacheFacts {
            venvs: 2,
            bytes: 3 << 20,
            dead_leftovers: 1,
            running: 0,
        }));
        assert_eq!(check.status, Status::Ok);
        assert_eq!(
            check.detail,
            "2 environments, 3.0 MiB; 1 leftover of interrupted builds or removals, \
             which `paude cleanup` removes"
        );
        assert_eq!(check_cache(&Err("x".into())).status, Status::Warning);
    }

    #[test]
    fn capabilities_are_named_and_the_sandbox_gets_none() {
        let none = check_capabilities(&Ok(Vec::new()));
        assert_eq!(none.status, Status::Ok);
        assert!(none.detail.contains("no capabilities"));
        let names: Vec<String> = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
            .map(String::from)
            .to_vec();
        let root = check_capabilities(&Ok(names));
        assert_eq!(
            root.detail,
            "paude runs with 4 effective capabilities (CAP_CHOWN, CAP_KILL, CAP_NET_ADMIN, …); \
             sandboxes get none (bwrap is given --cap-drop ALL)"
        );
        assert_eq!(
            check_capabilities(&Err("no".into())).status,
            Status::Warning
        );
    }

    #[test]
    fn checks_skip_what_their_prerequisites_failed() {
        let facts = Facts {
            uid: 1000,
            capabilities: Ok(Vec::new()),
            bwrap: BwrapFound::Missing {
                detail: host::BWRAP_MISSING.into(),
                from_env: false,
            },
            sysctls: HashMap::new(),
            packages: PackagesFacts {
                root: None,
                admindir: "/var/lib/dpkg".into(),
                loaded: Ok((10, "amd64".into())),
            },
            home: HomeFacts {
                path: "/h/.paude".into(),
                from_env: false,
                state: HomeState::Missing {
                    ancestor: "/h".into(),
                    writable: Ok(()),
                },
                free: Some(Ok(5 << 30)),
            },
            cache: None,
            network: NetworkFacts {
                slirp4netns: None,
                tun: Ok(()),
            },
        };
        let names: Vec<&str> = checks(&facts).iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "bwrap",
                "user-namespaces",
                "capabilities",
                "packages",
                "paude-home",
                "network"
            ]
        );
        let mut facts = facts;
        facts.bwrap = found("bubblewrap 0.8.0", 0o100755, 0);
        facts.cache = Some(Ok(CacheFacts::default()));
        facts.network.slirp4netns = Some(("/usr/bin/slirp4netns".into(), "1.2.0".into()));
        let all = checks(&facts);
        let names: Vec<&str> = all.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "bwrap",
                "user-namespaces",
                "sandbox",
                "capabilities",
                "packages",
                "paude-home",
                "cache",
                "network"
            ]
        );
        assert!(all.iter().all(|c| c.status == Status::Ok), "{all:?}");
    }

    #[test]
    fn human_report_aligns_and_indents_fixes() {
        let report = human(&[
            Check::ok("bwrap", "fine".into()),
            Check::with("paude-home", Status::Problem, "bad".into(), "Do X".into()),
        ]);
        assert_eq!(
            report,
            "ok       bwrap       fine\n\
             problem  paude-home  bad\n         \
             \x20           fix: Do X\n\
             \n1 problem, 0 warnings (2 checks)\n"
        );
        assert!(human(&[Check::ok("bwrap", "fine".into())]).ends_with("\nall 1 checks ok\n"));
    }
}
