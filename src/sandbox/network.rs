//! The network helpers: what gives a sandbox in a network namespace of its own a way out.
//!
//! Every `network` form but `"host"` runs bwrap with `--unshare-net`, so the host's loopback
//! services and abstract Unix sockets (X11, D-Bus, agents: they belong to the network
//! namespace, not to the file system) are out of reach. Two forms then need a helper outside
//! the sandbox, started by the holder (see `holder`) and ended with the sandbox; neither is a
//! daemon:
//!
//! - `true`: slirp4netns, the user-mode network rootless podman uses, joined to the sandbox's
//!   namespace. It gives the sandbox a `tap0` with 10.0.2.100, a route out through 10.0.2.2
//!   and a DNS forwarder at 10.0.2.3 (the sandbox's `/etc/resolv.conf`), with
//!   `--disable-host-loopback`, so that 10.0.2.2 does not lead to the host's 127.0.0.1.
//! - `{allow: [...]}`: no route out at all, and the allow-list proxy (see `proxy`) listening
//!   on 127.0.0.1:[`PROXY_PORT`] *inside* the sandbox's namespace while it connects from the
//!   host's. Its listening socket is made by a short-lived child that joins the namespace
//!   and hands the socket back over a Unix socket pair; the proxy runs in a process of its own.
//!
//! The order, which keeps the command from starting before its network is up: bwrap writes
//! its sandbox's pid to `--info-fd` once the namespaces exist, and waits at `--block-fd`
//! before it runs the command; the holder reads the pid, waits for bwrap to have set up the
//! namespace's loopback (which slirp4netns touches too, and where the proxy binds), starts
//! the helper, waits for its ready signal (slirp4netns's `--ready-fd`, the proxy's socket in hand), and only then
//! writes the byte bwrap waits for. A helper that fails ends bwrap before the command ran.

use crate::manifest::Destination;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

/// Where the allow-list proxy listens inside the sandbox: 127.0.0.1 and squid's port, the
/// one proxy users know. Nothing inside can take it first: it is bound before the command
/// starts.
pub const PROXY_PORT: u16 = 3128;

/// The sandbox's DNS server with slirp4netns: its forwarder to the host's resolver.
pub const SLIRP_DNS: &str = "10.0.2.3";

/// What a launch with `network: true` says where slirp4netns is not installed.
pub const SLIRP_MISSING: &str = "network: true gives the sandbox a network of its own through \
    slirp4netns, which is not installed; install it (apt install slirp4netns), or set network \
    to false (loopback only), {allow: [...]} (paude's proxy) or \"host\" (the host's network, \
    with its loopback services)";

/// How long the holder waits for bwrap to make the namespaces, and for a helper to be up.
const START_LIMIT: Duration = Duration::from_secs(10);

/// The helper a launch needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Helper {
    /// slirp4netns, at this path.
    Slirp(PathBuf),
    /// The allow-list proxy.
    Proxy(Vec<Destination>),
}

/// The holder's ends of bwrap's `--info-fd` and `--block-fd` pipes.
pub struct HolderEnds {
    info: OwnedFd,
    block: OwnedFd,
}

impl HolderEnds {
    /// The descriptors, for the holder to keep when it closes the rest.
    pub fn raw(&self) -> [std::os::fd::RawFd; 2] {
        [self.info.as_raw_fd(), self.block.as_raw_fd()]
    }
}

/// bwrap's ends, which it inherits.
pub struct BwrapEnds {
    pub info: OwnedFd,
    pub block: OwnedFd,
}

/// The two pipes, close-on-exec (the exec site clears the flag on bwrap's ends).
pub fn pipes() -> std::io::Result<(HolderEnds, BwrapEnds)> {
    use rustix::pipe::{PipeFlags, pipe_with};
    let (info_read, info_write) = pipe_with(PipeFlags::CLOEXEC)?;
    let (block_read, block_write) = pipe_with(PipeFlags::CLOEXEC)?;
    Ok((
        HolderEnds {
            info: info_read,
            block: block_write,
        },
        BwrapEnds {
            info: info_write,
            block: block_read,
        },
    ))
}

/// A helper running for the sandbox; [`Running::end`] ends it.
pub struct Running {
    pid: rustix::process::Pid,
    /// Closed to tell the helper the sandbox is over (slirp4netns's `--exit-fd`, the proxy's
    /// lifetime pipe); it also closes when the holder dies, however it dies.
    _lifetime: OwnedFd,
}

impl Running {
    /// Ends the helper. Not waited for: slirp4netns takes about 10 ms to die (the kernel
    /// unregisters its tap device as it goes), which the user's shell need not wait; the
    /// holder exits soon after, and its orphaned child is reaped by init.
    pub fn end(self) {
        let Running { pid, _lifetime } = self;
        drop(_lifetime);
        // The proxy's open connections end with it; slirp4netns has nothing left to carry.
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).ok();
    }
}

/// How the start went.
pub enum Started {
    /// The helper is up and bwrap was let go on.
    Up(Running),
    /// bwrap ended (or closed its info pipe) before it made the sandbox: its own error says why.
    BwrapGone,
}

/// In the holder: waits for bwrap's namespaces, starts `helper` for them, and lets bwrap go
/// on; the error (said by the caller) when the helper could not start, in which case the
/// sandbox has been killed while it still waited, so that the command never runs without its
/// network (the block pipe's end of file would let bwrap go on too).
pub fn bring_up(
    ends: HolderEnds,
    helper: &Helper,
    bwrap: rustix::process::Pid,
) -> Result<Started, String> {
    use rustix::process::{Pid, Signal, kill_process};
    let HolderEnds { info, block } = ends;
    let sandbox = match sandbox_pid(&info) {
        Ok(Some(pid)) => pid,
        Ok(None) => return Ok(Started::BwrapGone),
        Err(message) => {
            kill_process(bwrap, Signal::KILL).ok();
            return Err(message);
        }
    };
    drop(info);
    // Both helpers need the namespace's loopback as bwrap sets it up: slirp4netns sets it up
    // too, and must not first; the proxy binds 127.0.0.1, which is not there before (see
    // `loopback_configured`).
    let alive = loopback_configured(sandbox);
    let started = alive.and_then(|alive| match alive {
        true => start_helper(sandbox, helper).map(Some),
        false => Ok(None),
    });
    let running = match started {
        Ok(Some(running)) => running,
        Ok(None) => return Ok(Started::BwrapGone),
        Err(message) => {
            // The sandbox's first process, killed before the block pipe closes: with SIGKILL
            // pending it runs no more of its own code, so it never reads that end of file.
            if let Some(pid) = Pid::from_raw(sandbox) {
                kill_process(pid, Signal::KILL).ok();
            }
            kill_process(bwrap, Signal::KILL).ok();
            return Err(message);
        }
    };
    let mut block = std::fs::File::from(block);
    if block.write_all(b"1").is_err() {
        running.end();
        return Ok(Started::BwrapGone);
    }
    Ok(Started::Up(running))
}

/// The helper, started for the network namespace of the sandbox's first process `pid`.
fn start_helper(pid: i32, helper: &Helper) -> Result<Running, String> {
    let namespace = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|error| format!("opening the sandbox's network namespace: {error}"))?;
    let owner = crate::sys::namespace_owner(namespace.as_fd()).map_err(|error| {
        format!("finding the owner of the sandbox's network namespace: {error}")
    })?;
    match helper {
        Helper::Slirp(program) => {
            let running = start_slirp(program, pid, &owner)?;
            let host_routes = match std::fs::read_to_string("/proc/net/fib_trie") {
                Ok(text) => text,
                Err(error) => {
                    running.end();
                    return Err(format!(
                        "reading the host's addresses (/proc/net/fib_trie), to keep them out of \
                         the sandbox's reach: {error}"
                    ));
                }
            };
            let routes = unreachable_routes(&host_routes);
            match inside(&namespace, &owner, || {
                add_unreachable_routes(&routes).map(|()| None)
            }) {
                Ok(_) => Ok(running),
                Err(error) => {
                    running.end();
                    Err(format!(
                        "closing the host's own and link-local addresses to the sandbox: {error}"
                    ))
                }
            }
        }
        Helper::Proxy(allow) => start_proxy(&namespace, &owner, allow),
    }
}

/// The sandbox's pid, from bwrap's info JSON (`{"child-pid": N, ...}`, written once the
/// namespaces exist); none when bwrap closed the pipe without one.
fn sandbox_pid(info: &OwnedFd) -> Result<Option<i32>, String> {
    let mut text = Vec::new();
    let mut buffer = [0u8; 512];
    loop {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&text) {
            return match value.get("child-pid").and_then(serde_json::Value::as_i64) {
                Some(pid) if pid > 0 && pid <= i64::from(i32::MAX) => Ok(Some(pid as i32)),
                _ => Err(format!(
                    "bwrap's --info-fd gave no child-pid: {}",
                    String::from_utf8_lossy(&text)
                )),
            };
        }
        if !readable_within(info, START_LIMIT) {
            return Err(format!(
                "bwrap made no namespaces within {} s",
                START_LIMIT.as_secs()
            ));
        }
        match rustix::io::read(info, &mut buffer) {
            Ok(0) => return Ok(None),
            Ok(read) if text.len() < 64 * 1024 => text.extend_from_slice(&buffer[..read]),
            Ok(_) => return Err("bwrap's --info-fd wrote more than its JSON".into()),
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(format!("reading bwrap's --info-fd: {error}")),
        }
    }
}

/// Waits until bwrap has configured the namespace's loopback (its address added, then the
/// interface up), which it does right after the namespaces are made, before it waits at
/// `--block-fd`. slirp4netns sets `lo` up too, and one that does it first makes the kernel
/// add 127.0.0.1 itself, so that bwrap's own request then fails and the launch with it; the
/// proxy's socket cannot bind 127.0.0.1 before it is there (1 launch in 200 failed so). Seen
/// from outside in the namespace's routes: the local table gets the loopback's broadcast
/// route once `lo` is up with its address. False: the sandbox ended first.
fn loopback_configured(pid: i32) -> Result<bool, String> {
    let routes = format!("/proc/{pid}/net/fib_trie");
    let deadline = std::time::Instant::now() + START_LIMIT;
    loop {
        match std::fs::read_to_string(&routes) {
            Ok(text) if text.contains("127.255.255.255") => return Ok(true),
            Ok(_) => {}
            // The sandbox is gone (or going: its network is, first): bwrap's own error says
            // why.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(format!("reading {routes}: {error}")),
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "bwrap did not set up the sandbox's loopback within {} s",
                START_LIMIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Whether `fd` has something to read (or its end of file) within `limit`.
fn readable_within(fd: &OwnedFd, limit: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timeout = Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Marks `fd` to survive the next exec (the holder runs one thread: nothing else can exec
/// meanwhile).
fn inheritable(fd: &OwnedFd) -> Result<(), String> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())
        .map_err(|error| format!("passing a descriptor to a network helper: {error}"))
}

/// slirp4netns for the namespace of `pid`, joined through its owner `owner`: up once it
/// wrote its ready byte.
fn start_slirp(program: &std::path::Path, pid: i32, owner: &OwnedFd) -> Result<Running, String> {
    use rustix::pipe::{PipeFlags, pipe_with};
    let pipe = || pipe_with(PipeFlags::CLOEXEC).map_err(|error| format!("a pipe: {error}"));
    let (ready_read, ready_write) = pipe()?;
    let (exit_read, exit_write) = pipe()?;
    let (errors_read, errors_write) = pipe()?;
    // What slirp4netns says goes to a pipe read only if it fails; once it runs, a full pipe
    // loses its lines rather than stalling it.
    rustix::fs::fcntl_setfl(&errors_write, rustix::fs::OFlags::NONBLOCK)
        .map_err(|error| format!("a pipe: {error}"))?;
    for fd in [owner, &ready_write, &exit_read] {
        inheritable(fd)?;
    }
    let child = std::process::Command::new(program)
        .env_clear()
        .args([
            "--configure".to_owned(),
            "--mtu=65520".to_owned(),
            // 10.0.2.2 would otherwise be the host's 127.0.0.1.
            "--disable-host-loopback".to_owned(),
            "--enable-seccomp".to_owned(),
            format!("--ready-fd={}", ready_write.as_raw_fd()),
            format!("--exit-fd={}", exit_read.as_raw_fd()),
            format!("--userns-path=/proc/self/fd/{}", owner.as_raw_fd()),
            pid.to_string(),
            "tap0".to_owned(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(errors_write))
        .spawn()
        .map_err(|error| format!("starting {}: {error}", program.display()))?;
    drop((ready_write, exit_read));
    let running = Running {
        pid: rustix::process::Pid::from_child(&child),
        _lifetime: exit_write,
    };
    let mut byte = [0u8; 1];
    let answered = readable_within(&ready_read, START_LIMIT);
    if answered && matches!(rustix::io::read(&ready_read, &mut byte), Ok(1)) {
        return Ok(running);
    }
    running.end();
    let mut said = String::new();
    std::fs::File::from(errors_read)
        .take(16 * 1024)
        .read_to_string(&mut said)
        .ok();
    let last: Vec<&str> = said
        .lines()
        .filter(|line| !line.contains("seccomp is experimental"))
        .collect();
    let tun_hint = if said.contains("/dev/net/tun") {
        "; /dev/net/tun must be readable and writable by every user (mode 0666, as udev \
         makes it), or use `network: false` or `network: \"host\"`"
    } else {
        ""
    };
    Err(format!(
        "slirp4netns {}: {}{tun_hint}",
        match answered {
            true => "failed".to_owned(),
            false => format!("did not come up within {} s", START_LIMIT.as_secs()),
        },
        match last.last() {
            Some(line) => line.trim().to_owned(),
            None => "it said nothing".to_owned(),
        }
    ))
}

/// The allow-list proxy: its socket made inside the sandbox's namespace, then the process
/// that serves it.
fn start_proxy(
    namespace: &std::fs::File,
    owner: &OwnedFd,
    allow: &[Destination],
) -> Result<Running, String> {
    let listener = listen_inside(namespace, owner)?;
    let (lifetime_read, lifetime_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|error| format!("a pipe: {error}"))?;
    match crate::sys::fork() {
        Ok(None) => {
            // The proxy: nothing of the holder's but its socket and its lifetime.
            drop(lifetime_write);
            let keep = [listener.as_raw_fd(), lifetime_read.as_raw_fd()];
            if crate::sys::close_above_stderr_except(&keep).is_ok() {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .ok();
                super::proxy::serve(listener, lifetime_read, allow.to_vec());
            }
            std::process::exit(0)
        }
        Ok(Some(child)) => {
            drop(listener);
            let pid = rustix::process::Pid::from_raw(child)
                .ok_or_else(|| "the proxy has no pid".to_owned())?;
            Ok(Running {
                pid,
                _lifetime: lifetime_write,
            })
        }
        Err(error) => Err(format!("starting the proxy: {error}")),
    }
}

/// A socket listening on 127.0.0.1:[`PROXY_PORT`] in the sandbox's network namespace. A
/// socket stays in the namespace it was made in wherever its descriptor goes.
fn listen_inside(namespace: &std::fs::File, owner: &OwnedFd) -> Result<OwnedFd, String> {
    let made = inside(namespace, owner, || {
        std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, PROXY_PORT))
            .map(|listener| Some(OwnedFd::from(listener)))
    });
    match made {
        Ok(Some(listener)) => Ok(listener),
        Ok(None) => Err("no socket came back".into()),
        Err(error) => Err(format!(
            "making the proxy's socket in the sandbox's network namespace: {error}"
        )),
    }
}

/// Runs `work` in a child that joins the sandbox's network namespace `namespace` (through
/// its owning user namespace `owner`: a process outside has the capabilities joining needs
/// only there), and returns what it made: the descriptor it sends back with SCM_RIGHTS, or
/// its error. The holder itself never joins: it must stay in the host's namespaces.
fn inside(
    namespace: &std::fs::File,
    owner: &OwnedFd,
    work: impl FnOnce() -> std::io::Result<Option<OwnedFd>>,
) -> Result<Option<OwnedFd>, String> {
    use rustix::net::{
        AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
        SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
    };
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|error| format!("a socket pair: {error}"))?;
    match crate::sys::fork() {
        Ok(None) => {
            drop(ours);
            let made = (|| {
                use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
                move_into_link_name_space(owner.as_fd(), Some(LinkNameSpaceType::User))?;
                move_into_link_name_space(namespace.as_fd(), Some(LinkNameSpaceType::Network))?;
                work()
            })();
            let sent = match &made {
                Ok(made) => {
                    let fds: Vec<_> = made.iter().map(AsFd::as_fd).collect();
                    let mut space =
                        [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                    let mut control = SendAncillaryBuffer::new(&mut space);
                    if !fds.is_empty() {
                        control.push(SendAncillaryMessage::ScmRights(&fds));
                    }
                    rustix::net::sendmsg(
                        &theirs,
                        &[std::io::IoSlice::new(b"")],
                        &mut control,
                        SendFlags::empty(),
                    )
                }
                Err(error) => {
                    rustix::net::send(&theirs, error.to_string().as_bytes(), SendFlags::empty())
                }
            };
            std::process::exit(i32::from(made.is_err() || sent.is_err()))
        }
        Ok(Some(child)) => {
            drop(theirs);
            let mut message = [0u8; 512];
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let received = if readable_within(&ours, START_LIMIT) {
                rustix::net::recvmsg(
                    &ours,
                    &mut [std::io::IoSliceMut::new(&mut message)],
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )
                .ok()
            } else {
                None
            };
            let status = rustix::process::Pid::from_raw(child).and_then(|pid| {
                rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
                    .ok()
                    .flatten()
            });
            let mut made = None;
            for item in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = item {
                    made = made.or(fds.into_iter().next());
                }
            }
            let succeeded = status.is_some_and(|(_, status)| status.exit_status() == Some(0));
            match received {
                Some(_) if succeeded => Ok(made),
                Some(received) => Err(String::from_utf8_lossy(
                    &message[..received.bytes.min(message.len())],
                )
                .into_owned()),
                None => Err("the child in the namespace gave no answer".into()),
            }
        }
        Err(error) => Err(format!("a child for the sandbox's namespace: {error}")),
    }
}

/// The destinations the sandbox of `network: true` cannot reach, though slirp4netns would
/// carry them: the link-local block (a cloud's metadata service, which hands out credentials
/// at 169.254.169.254) and each address of the host's own (its LAN address, a bridge's),
/// where the host's services listening on every address answer. An unreachable route for
/// each in the sandbox's namespace (which nothing inside can change: it has no capabilities
/// there) makes a connection fail at once.
fn unreachable_routes(host_routes: &str) -> Vec<(std::net::Ipv4Addr, u8)> {
    let mut routes = vec![
        (std::net::Ipv4Addr::new(169, 254, 0, 0), 16),
        // The metadata service of clouds that do not use the link-local block.
        (std::net::Ipv4Addr::new(100, 100, 100, 200), 32),
    ];
    for block in host_local_blocks(host_routes) {
        if !routes.contains(&block) {
            routes.push(block);
        }
    }
    routes
}

/// The host's own addresses but its loopback, from `/proc/net/fib_trie`: the entries marked
/// `host LOCAL`, each an address (`/32`) or a block the host answers on whole (`ip route add
/// local 203.0.113.0/24 dev lo`).
pub(super) fn host_local_blocks(fib_trie: &str) -> Vec<(std::net::Ipv4Addr, u8)> {
    let mut blocks = Vec::new();
    let mut lines = fib_trie.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(address) = line.trim().strip_prefix("|-- ") else {
            continue;
        };
        let Ok(address) = address.parse::<std::net::Ipv4Addr>() else {
            continue;
        };
        while let Some(next) = lines.peek().map(|next| next.trim())
            && next.starts_with('/')
        {
            let mut words = next.split_whitespace();
            let prefix = words.next().and_then(|p| p[1..].parse::<u8>().ok());
            if let Some(prefix) = prefix
                && prefix <= 32
                && words.next() == Some("host")
                && words.next() == Some("LOCAL")
                && !address.is_loopback()
                && !blocks.contains(&(address, prefix))
            {
                blocks.push((address, prefix));
            }
            lines.next();
        }
    }
    blocks
}

/// Adds an unreachable route for each of `routes` in the namespace the calling process is
/// in, through rtnetlink: RTM_NEWROUTE of type RTN_UNREACHABLE in the main table.
fn add_unreachable_routes(routes: &[(std::net::Ipv4Addr, u8)]) -> std::io::Result<()> {
    use rustix::net::{AddressFamily, SendFlags, SocketFlags, SocketType};
    // Protocol 0 is NETLINK_ROUTE.
    let socket = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )?;
    for (sequence, (address, prefix)) in routes.iter().enumerate() {
        let mut message = Vec::with_capacity(36);
        // nlmsghdr: length, RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL |
        // NLM_F_CREATE, sequence, port 0 (the kernel).
        message.extend_from_slice(&36u32.to_ne_bytes());
        message.extend_from_slice(&24u16.to_ne_bytes());
        message.extend_from_slice(&(0x1u16 | 0x4 | 0x200 | 0x400).to_ne_bytes());
        message.extend_from_slice(&(sequence as u32 + 1).to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        // rtmsg: AF_INET, the prefix, no source, no TOS, RT_TABLE_MAIN, RTPROT_STATIC,
        // RT_SCOPE_UNIVERSE, RTN_UNREACHABLE, no flags.
        message.extend_from_slice(&[2, *prefix, 0, 0, 254, 4, 0, 7]);
        message.extend_from_slice(&0u32.to_ne_bytes());
        // rtattr RTA_DST: length 8, type 1, the address.
        message.extend_from_slice(&8u16.to_ne_bytes());
        message.extend_from_slice(&1u16.to_ne_bytes());
        message.extend_from_slice(&address.octets());
        rustix::net::send(&socket, &message, SendFlags::empty())?;
        let mut answer = [0u8; 256];
        let read = rustix::net::recv(&socket, &mut answer, rustix::net::RecvFlags::empty())?.0;
        // NLMSG_ERROR (2), whose error field (after the 16-byte header) is 0 or -errno.
        if read < 20 || u16::from_ne_bytes([answer[4], answer[5]]) != 2 {
            return Err(std::io::Error::other("an unexpected rtnetlink answer"));
        }
        let error = i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]]);
        if error != 0 {
            return Err(std::io::Error::from_raw_os_error(-error));
        }
    }
    Ok(())
}

/// The sandbox's `/etc/resolv.conf` with slirp4netns: its DNS forwarder, and the host's
/// `search`, `domain` and `options` lines.
pub fn slirp_resolv_conf(host: &str) -> String {
    let mut text = format!(
        "# written by paude: slirp4netns forwards to the host's resolver\nnameserver {SLIRP_DNS}\n"
    );
    for line in host.lines() {
        let word = line.split_whitespace().next().unwrap_or("");
        if matches!(word, "search" | "domain" | "options") {
            text.push_str(line.trim());
            text.push('\n');
        }
    }
    text
}

/// The variables that point clients at the allow-list proxy, in both cases, as curl, git,
/// pip, npm and cargo read them. `NO_PROXY` keeps the sandbox's own loopback direct (a test
/// suite's own server), but for the loopback names `allow` lists: those mean the host's, which
/// only the proxy reaches.
pub fn proxy_variables(allow: &[Destination]) -> Vec<(String, String)> {
    let http = format!("http://127.0.0.1:{PROXY_PORT}");
    // socks5h: the proxy resolves the names, as it must (the sandbox has no DNS).
    let socks = format!("socks5h://127.0.0.1:{PROXY_PORT}");
    let local = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .filter(|name| !allow.iter().any(|entry| entry.host == *name))
        .collect::<Vec<_>>()
        .join(",");
    [
        ("HTTP_PROXY", &http),
        ("HTTPS_PROXY", &http),
        ("ALL_PROXY", &socks),
        ("NO_PROXY", &local),
    ]
    .into_iter()
    .flat_map(|(name, value)| {
        [
            (name.to_owned(), value.clone()),
            (name.to_ascii_lowercase(), value.clone()),
        ]
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolver_is_slirps_with_the_hosts_search_lines() {
        let host =
            "# generated\nnameserver 127.0.0.53\nsearch corp.example\noptions edns0 trust-ad\n";
        assert_eq!(
            slirp_resolv_conf(host),
            "# written by paude: slirp4netns forwards to the host's resolver\nnameserver \
             10.0.2.3\nsearch corp.example\noptions edns0 trust-ad\n"
        );
    }

    #[test]
    fn the_hosts_own_addresses_and_link_local_are_unreachable() {
        let host = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 192.0.2.0\n        /24 link UNICAST\n\
                    Local:\n  +-- 127.0.0.0/8 2 0 2\n        |-- 127.0.0.1\n           /32 host LOCAL\n\
                    |-- 192.0.2.2\n           /32 host LOCAL\n     |-- 192.0.2.255\n\
                    /32 link BROADCAST\n  |-- 172.17.0.1\n     /32 host LOCAL\n";
        assert_eq!(
            unreachable_routes(host),
            [
                ("169.254.0.0".parse().unwrap(), 16),
                ("100.100.100.200".parse().unwrap(), 32),
                ("192.0.2.2".parse().unwrap(), 32),
                ("172.17.0.1".parse().unwrap(), 32)
            ]
        );
        // A block the host answers on whole, beside a route of another kind.
        let block = "Local:\n  +-- 203.0.113.0/24 2 0 2\n     |-- 203.0.113.0\n        /24 host LOCAL\n\
                     /32 link BROADCAST\n";
        assert!(unreachable_routes(block).contains(&("203.0.113.0".parse().unwrap(), 24)));
    }

    #[test]
    fn proxy_variables_come_in_both_cases() {
        let variables = proxy_variables(&[]);
        assert_eq!(variables.len(), 8);
        assert!(variables.contains(&("no_proxy".into(), "localhost,127.0.0.1,::1".into())));
        let host_loopback = Destination {
            host: "127.0.0.1".into(),
            subdomains: false,
            port: Some(8080),
        };
        assert!(
            proxy_variables(&[host_loopback])
                .contains(&("NO_PROXY".into(), "localhost,::1".into()))
        );
        assert!(variables.contains(&("https_proxy".into(), "http://127.0.0.1:3128".into())));
        assert!(variables.contains(&("ALL_PROXY".into(), "socks5h://127.0.0.1:3128".into())));
    }
}
