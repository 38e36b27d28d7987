//! The allow-list proxy of `network: {allow: [...]}`: HTTP CONNECT, plain HTTP and SOCKS5 on
//! one port, told apart by the first byte (SOCKS5 begins with 5, an HTTP method with a
//! letter).
//!
//! It listens inside the sandbox's network namespace and connects from the host's (see
//! `network`), so what the sandbox reaches is exactly what passes here: the sandbox itself
//! has no route out, and a client that ignores the proxy variables fails at once. The proxy
//! resolves names itself, so the sandbox needs no DNS. A destination is let through when an
//! entry of `network.allow` matches the host and port the client asked for, as the client
//! named them; a name that resolves to an address of the host itself (loopback, unspecified)
//! or to a link-local one (a cloud's metadata service) is refused unless the entry lists that
//! address, so that a listed domain whose DNS its owner controls cannot point the proxy at
//! the host's own services.
//!
//! A refusal answers inside with what was refused and the manifest change that would allow
//! it (an HTTP 403 with a body, SOCKS5's "not allowed by ruleset"), and says one line on
//! stderr for each destination the first time it is refused.
//!
//! One thread per connection, and one more while it relays: a sandbox opens tens of
//! connections, not thousands, and blocking code is the simplest to check.

use crate::manifest::Destination;
use crate::manifest::validate::{self, Host};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a client has to send its request, and the proxy to connect onwards.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);
const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// The longest request head read.
const HEAD_MAX: usize = 64 * 1024;
/// The most connections served at once: each takes a thread or two, which count against the
/// user's process limit on the host; past this a connection is closed at once.
const CONNECTIONS_MAX: usize = 256;
/// The most refusal lines said on stderr; the rest are counted in one last line.
const LINES_MAX: usize = 100;

/// What the proxy lets through, and what it has said.
struct Policy {
    allow: Vec<Destination>,
    said: Mutex<HashSet<String>>,
    /// Connections being served now.
    serving: std::sync::atomic::AtomicUsize,
}

/// Serves `listener` until `lifetime` reads end of file (the holder closed it: the sandbox is
/// over), then returns.
pub fn serve(listener: OwnedFd, lifetime: OwnedFd, allow: Vec<Destination>) {
    use rustix::event::{PollFd, PollFlags, poll};
    let listener = std::net::TcpListener::from(listener);
    let policy = Arc::new(Policy {
        allow,
        said: Mutex::new(HashSet::new()),
        serving: std::sync::atomic::AtomicUsize::new(0),
    });
    loop {
        let mut fds = [
            PollFd::new(&listener, PollFlags::IN),
            PollFd::new(&lifetime, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
        if !fds[1].revents().is_empty() {
            return;
        }
        if fds[0].revents().is_empty() {
            continue;
        }
        if let Ok((client, _)) = listener.accept() {
            use std::sync::atomic::Ordering;
            if policy.serving.fetch_add(1, Ordering::SeqCst) >= CONNECTIONS_MAX {
                policy.serving.fetch_sub(1, Ordering::SeqCst);
                drop(client);
                continue;
            }
            // The count goes down when the connection's work is dropped, however it ends
            // (served, refused, a panic, or no thread to run it).
            let slot = Slot(Arc::clone(&policy));
            std::thread::Builder::new()
                .spawn(move || handle(client, &slot.0))
                .ok();
        }
    }
}

/// One connection's place among [`CONNECTIONS_MAX`]: given back when dropped.
struct Slot(Arc<Policy>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0
            .serving
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Where a client asked to go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// Lower-case, without a final dot; an address as Rust writes it.
    host: String,
    port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a connection did not go through.
#[derive(Debug)]
enum Refusal {
    /// No entry matches.
    NotListed,
    /// A name that resolves to the host itself or a link-local address.
    HostAddress(IpAddr),
    /// The name does not resolve.
    Unresolved(String),
    /// The destination did not take the connection.
    Unreachable(std::io::Error),
}

impl Policy {
    /// The connection to `target`, if the list lets it through and it can be made.
    fn connect(&self, target: &Target) -> Result<TcpStream, Refusal> {
        let Some(entry) = self
            .allow
            .iter()
            .find(|entry| entry.allows(&target.host, target.port))
        else {
            return Err(Refusal::NotListed);
        };
        let addresses: Vec<SocketAddr> = match (target.host.as_str(), target.port).to_socket_addrs()
        {
            Ok(addresses) => addresses.collect(),
            Err(error) => return Err(Refusal::Unresolved(error.to_string())),
        };
        let listed_address = entry.is_address() || entry.host == "localhost";
        if !listed_address
            && let Some(address) = addresses.iter().find(|address| of_the_host(address.ip()))
        {
            return Err(Refusal::HostAddress(address.ip()));
        }
        let mut last = None;
        for address in &addresses {
            match TcpStream::connect_timeout(address, CONNECT_LIMIT) {
                Ok(stream) => return Ok(stream),
                Err(error) => last = Some(error),
            }
        }
        Err(match last {
            Some(error) => Refusal::Unreachable(error),
            None => Refusal::Unresolved("no address".into()),
        })
    }

    /// The line for stderr and the text for the client, saying the line the first time.
    fn refused(&self, target: &Target, refusal: &Refusal) -> String {
        let (line, fix) = match refusal {
            Refusal::NotListed => (
                format!("refused {target} (not in network.allow)"),
                format!(
                    "To allow it, add \"{target}\"{} to network.allow in the manifest.",
                    if Destination::DEFAULT_PORTS.contains(&target.port) {
                        format!(" (or \"{}\" for ports 80 and 443)", bare(&target.host))
                    } else {
                        String::new()
                    }
                ),
            ),
            Refusal::HostAddress(address) => (
                format!(
                    "refused {target} (it resolves to {address}, an address of the host itself \
                     or link-local)"
                ),
                format!(
                    "To allow that address, list it in network.allow: \"{}\".",
                    Target {
                        host: address.to_string(),
                        port: target.port
                    }
                ),
            ),
            Refusal::Unresolved(error) => (
                format!("could not resolve {}: {error}", target.host),
                String::new(),
            ),
            Refusal::Unreachable(error) => {
                (format!("could not reach {target}: {error}"), String::new())
            }
        };
        let say = self
            .said
            .lock()
            .map(|mut said| {
                if said.len() > LINES_MAX || said.contains(&line) {
                    return None;
                }
                said.insert(line.clone());
                Some(match said.len() > LINES_MAX {
                    true => {
                        format!("refused or failed {LINES_MAX} destinations; more are not said")
                    }
                    false => line.clone(),
                })
            })
            .ok()
            .flatten();
        if let Some(say) = say {
            writeln!(
                std::io::stderr(),
                "paude: network: {}",
                crate::text::printable(&say)
            )
            .ok();
        }
        format!("paude: network: {line}\n{fix}\n")
    }
}

/// An IPv6 address's host part in brackets, as an entry writes it.
fn bare(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Whether connecting to `address` from the host reaches the host itself (loopback, the
/// unspecified address, any address of its own interfaces: its LAN address, a bridge's) or a
/// link-local neighbour (a cloud's metadata service).
fn of_the_host(address: IpAddr) -> bool {
    let address = address.to_canonical();
    let special = match address {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    special || is_local(address)
}

/// Whether `address` is one of this host's own: the kernel lets a socket bind only to those
/// (with `ip_nonlocal_bind` set it lets any, and then every address counts as the host's,
/// which refuses too much rather than too little).
fn is_local(address: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(address, 0)).is_ok()
}

/// One client connection.
fn handle(client: TcpStream, policy: &Policy) {
    client.set_read_timeout(Some(REQUEST_LIMIT)).ok();
    let mut first = [0u8; 1];
    match client.peek(&mut first) {
        Ok(1) if first[0] == 5 => socks(client, policy),
        Ok(1) => http(client, policy),
        _ => {}
    }
}

/// The host and port of `text` (`host:port`, `[v6]:port`, `host`), read as the manifest's
/// entries are; `default` where it has no port.
fn authority(text: &str, default: u16) -> Option<Target> {
    let (host, port) = validate::authority(text).ok()?;
    let host = match host {
        Host::Address(address) => address.to_string(),
        Host::Name(name)
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            name
        }
        Host::Name(_) => return None,
    };
    Some(Target {
        host,
        port: port.unwrap_or(default),
    })
}

/// An HTTP answer that ends the connection.
fn answer(client: &mut TcpStream, status: &str, body: &str) {
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \
         {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(text.as_bytes()).ok();
}

/// The request head (through the blank line) and what the client sent after it.
fn read_head(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Some((String::from_utf8(buffer).ok()?, rest));
        }
        if buffer.len() > HEAD_MAX {
            return None;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

/// HTTP: `CONNECT host:port` opens a tunnel; `GET http://host/path` (any method) is sent on
/// with the path alone, and the connection closes after its answer, so that each request
/// is checked.
fn http(mut client: TcpStream, policy: &Policy) {
    let Some((head, rest)) = read_head(&mut client) else {
        answer(
            &mut client,
            "400 Bad Request",
            "paude: network: the request head is not HTTP, or longer than 64 KiB\n",
        );
        return;
    };
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or("");
    let mut words = request.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        answer(
            &mut client,
            "400 Bad Request",
            "paude: network: a bad request line\n",
        );
        return;
    };
    if method.eq_ignore_ascii_case("CONNECT") {
        let Some(target) = authority(uri, 443) else {
            answer(
                &mut client,
                "400 Bad Request",
                &format!("paude: network: `{uri}` is not host:port\n"),
            );
            return;
        };
        let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
        forward_http(client, policy, &target, established, &rest);
        return;
    }
    let Some(after) = uri
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .map(|_| &uri[7..])
    else {
        answer(
            &mut client,
            "400 Bad Request",
            "paude: network: this is paude's proxy: it takes `CONNECT host:port` and \
             `GET http://host/path`\n",
        );
        return;
    };
    let split = after.find(['/', '?']).unwrap_or(after.len());
    let (host_port, path) = after.split_at(split);
    let path = match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };
    let Some(target) = authority(host_port, 80) else {
        answer(
            &mut client,
            "400 Bad Request",
            &format!("paude: network: `{host_port}` is not a host\n"),
        );
        return;
    };
    let mut sent = format!("{method} {path} {version}\r\n");
    let mut has_host = false;
    for line in lines.filter(|line| !line.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("host") {
            has_host = true;
        }
        let hop = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
        ]
        .iter()
        .any(|hop| name.eq_ignore_ascii_case(hop));
        if !hop {
            sent.push_str(line);
            sent.push_str("\r\n");
        }
    }
    if !has_host {
        sent.push_str(&format!("Host: {host_port}\r\n"));
    }
    sent.push_str("Connection: close\r\n\r\n");
    // What the client sent past the head (a body's start) goes on as it came, bytes.
    let mut sent = sent.into_bytes();
    sent.extend_from_slice(&rest);
    forward_http(client, policy, &target, b"", &sent);
}

/// Connects to `target` for an HTTP client and, once `to_client` and `to_server` are
/// written to each side, relays between them; a refusal is an HTTP answer.
fn forward_http(
    mut client: TcpStream,
    policy: &Policy,
    target: &Target,
    to_client: &[u8],
    to_server: &[u8],
) {
    match policy.connect(target) {
        Ok(mut server) => {
            if client.write_all(to_client).is_ok() && server.write_all(to_server).is_ok() {
                relay(client, server);
            }
        }
        Err(refusal) => refuse_http(&mut client, policy, target, &refusal),
    }
}

fn refuse_http(client: &mut TcpStream, policy: &Policy, target: &Target, refusal: &Refusal) {
    let body = policy.refused(target, refusal);
    let status = match refusal {
        Refusal::NotListed | Refusal::HostAddress(_) => "403 Forbidden",
        Refusal::Unresolved(_) | Refusal::Unreachable(_) => "502 Bad Gateway",
    };
    answer(client, status, &body);
}

/// SOCKS5 (RFC 1928), CONNECT only, no authentication.
fn socks(mut client: TcpStream, policy: &Policy) {
    let reply = |client: &mut TcpStream, code: u8| {
        client.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).is_ok()
    };
    let mut greeting = [0u8; 2];
    if client.read_exact(&mut greeting).is_err() {
        return;
    }
    let mut methods = vec![0u8; usize::from(greeting[1])];
    if client.read_exact(&mut methods).is_err() {
        return;
    }
    if !methods.contains(&0) {
        client.write_all(&[5, 0xff]).ok();
        return;
    }
    if client.write_all(&[5, 0]).is_err() {
        return;
    }
    let mut request = [0u8; 4];
    if client.read_exact(&mut request).is_err() || request[0] != 5 {
        return;
    }
    let host = match request[3] {
        1 => {
            let mut octets = [0u8; 4];
            client
                .read_exact(&mut octets)
                .ok()
                .map(|_| IpAddr::from(octets).to_string())
        }
        3 => {
            let mut length = [0u8; 1];
            client.read_exact(&mut length).ok().and_then(|_| {
                let mut name = vec![0u8; usize::from(length[0])];
                client.read_exact(&mut name).ok()?;
                String::from_utf8(name).ok()
            })
        }
        4 => {
            let mut octets = [0u8; 16];
            client
                .read_exact(&mut octets)
                .ok()
                .map(|_| IpAddr::from(octets).to_string())
        }
        _ => {
            reply(&mut client, 8);
            return;
        }
    };
    let mut port = [0u8; 2];
    let (Some(host), Ok(())) = (host, client.read_exact(&mut port)) else {
        return;
    };
    if request[1] != 1 {
        // Only CONNECT: BIND and UDP ASSOCIATE would need more than a list of destinations.
        reply(&mut client, 7);
        return;
    }
    let port = u16::from_be_bytes(port);
    let authority_text = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let Some(target) = authority(&authority_text, port) else {
        reply(&mut client, 1);
        return;
    };
    match policy.connect(&target) {
        Ok(server) => {
            if reply(&mut client, 0) {
                relay(client, server);
            }
        }
        Err(refusal) => {
            policy.refused(&target, &refusal);
            let code = match &refusal {
                // "connection not allowed by ruleset"
                Refusal::NotListed | Refusal::HostAddress(_) => 2,
                Refusal::Unresolved(_) => 4,
                Refusal::Unreachable(error) => match error.kind() {
                    std::io::ErrorKind::ConnectionRefused => 5,
                    std::io::ErrorKind::TimedOut => 4,
                    _ => 1,
                },
            };
            reply(&mut client, code);
        }
    }
}

/// Copies both ways until each side has said all it has to say.
fn relay(client: TcpStream, server: TcpStream) {
    client.set_read_timeout(None).ok();
    let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    // Without a second thread (the user's process limit, which the sandbox's processes
    // share, reached) the connection just closes: no panic, which would skip the count.
    let Ok(upstream) = std::thread::Builder::new().spawn(move || {
        std::io::copy(&mut client_in, &mut server_out).ok();
        server_out.shutdown(Shutdown::Write).ok();
    }) else {
        return;
    };
    let (mut server_in, mut client_out) = (server, client);
    std::io::copy(&mut server_in, &mut client_out).ok();
    client_out.shutdown(Shutdown::Write).ok();
    upstream.join().ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_as_clients_write_them() {
        let t = |host: &str, port| {
            Some(Target {
                host: host.into(),
                port,
            })
        };
        assert_eq!(authority("PyPI.org.:443", 80), t("pypi.org", 443));
        assert_eq!(authority("example.com", 80), t("example.com", 80));
        assert_eq!(authority("[::1]:8080", 80), t("::1", 8080));
        assert_eq!(authority("[::1]", 443), t("::1", 443));
        assert_eq!(authority("127.0.0.1:0", 80), None);
        assert_eq!(authority("pypi.org:+443", 80), None);
        assert_eq!(authority("::1:80", 80), None);
        assert_eq!(authority("a b:80", 80), None);
        assert_eq!(authority("", 80), None);
    }

    #[test]
    fn addresses_of_the_host_are_known() {
        for address in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "fe80::1",
        ] {
            assert!(of_the_host(address.parse().unwrap()), "{address}");
        }
        for address in ["192.0.2.1", "151.101.0.223", "2a04:4e42::223"] {
            assert!(!of_the_host(address.parse().unwrap()), "{address}");
        }
        // Each address of the host's own interfaces, as the kernel lists them.
        let routes = std::fs::read_to_string("/proc/net/fib_trie").unwrap();
        let own: Vec<String> = super::super::network::host_local_blocks(&routes)
            .into_iter()
            .filter(|(_, prefix)| *prefix == 32)
            .map(|(address, _)| address.to_string())
            .collect();
        assert!(!own.is_empty(), "{routes}");
        for address in own {
            assert!(of_the_host(address.parse().unwrap()), "{address}");
        }
    }
}
