//! The network forms, tried as the program inside would try them: every reach for the host
//! is first shown working on the host (so that a refusal inside proves something), then
//! refused inside; what each form must let through is shown working inside. Servers are the
//! test's own, on 127.0.0.1 only, stopped when the test ends; the outbound checks use the
//! package index this machine reaches.

mod common;

use common::*;
use std::io::{Read, Write};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The longest a test server lives, whatever the test does.
const SERVER_LIMIT: Duration = Duration::from_secs(300);

/// A server of the test's own, answering each connection with `answer`, until dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

impl Server {
    /// An HTTP server on 127.0.0.1 whose every answer's body is `body`; and its port.
    fn http(body: &'static str) -> (Server, u16) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let server = Server::serve(move || {
            let (mut stream, _) = listener.accept().ok()?;
            stream.set_nonblocking(false).ok();
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).ok()? == 1 {
                head.push(byte[0]);
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).ok();
            Some(())
        });
        (server, port)
    }

    /// A Unix socket server in the abstract namespace (which belongs to the network
    /// namespace), answering `hello-abstract`.
    fn abstract_socket(name: &str) -> Server {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
        let listener = std::os::unix::net::UnixListener::bind_addr(&address).expect("bind");
        listener.set_nonblocking(true).unwrap();
        Server::serve(move || {
            let (mut stream, _) = listener.accept().ok()?;
            stream.set_nonblocking(false).ok();
            stream.write_all(b"hello-abstract\n").ok();
            Some(())
        })
    }

    /// Runs `accept_one` (which returns `None` when nothing was waiting) until stopped.
    fn serve(mut accept_one: impl FnMut() -> Option<()> + Send + 'static) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let began = Instant::now();
            while !stopped.load(Ordering::SeqCst) && began.elapsed() < SERVER_LIMIT {
                if accept_one().is_none() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

/// A workspace and a home of `who`'s, with the store the tests of this user share.
struct Setup {
    who: As,
    home: TestDir,
    workspace: TestDir,
}

impl Setup {
    fn new(who: As) -> Setup {
        let setup = Setup {
            who,
            home: TestDir::new(who),
            workspace: TestDir::new(who),
        };
        hand_over(who, setup.home.path());
        setup
    }

    fn paude(&self) -> Paude {
        Paude::new(self.who, self.home.path(), self.workspace.path()).shared_store()
    }

    /// `bash -c SCRIPT` on the host, as the same user.
    fn host(&self, script: &str) -> Output {
        bash_as(self.who, self.home.path(), self.workspace.path(), script)
            .output()
            .expect("bash")
    }

    /// `bash -c SCRIPT` inside `paude venv` with `manifest`.
    fn inside(&self, manifest: &str, script: &str) -> Output {
        self.paude()
            .run(["venv", "-e", manifest, "--", "bash", "-c", script])
    }
}

/// The clients the tests use, with TLS trust.
fn manifest(network: &str) -> String {
    format!(
        r#"local paude = import "paude.libsonnet";
        {{
          packages: ["bash", "coreutils", "curl", "iproute2", "python3-minimal"]
            + paude.certs.packages,
          mounts: paude.certs.mounts,
          network: {network},
        }}"#
    )
}

/// Reads the answer of the host's 127.0.0.1:`port` with bash's /dev/tcp, printing
/// `tcp:<answer>`.
fn tcp_probe(port: u16) -> String {
    tcp_probe_at("127.0.0.1", port)
}

/// [`tcp_probe`] at another address.
fn tcp_probe_at(address: &str, port: u16) -> String {
    format!(
        "exec 3<>/dev/tcp/{address}/{port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && \
         echo tcp:$(tail -n1 <&3)"
    )
}

/// Connects to the abstract socket `name` with python3, printing `abstract:<answer>`.
fn abstract_probe(name: &str) -> String {
    format!(
        "python3 -c 'import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect(\"\\0{name}\")\n\
         print(\"abstract:\" + s.recv(64).decode().strip())'"
    )
}

fn stdout(output: &Output) -> String {
    text(&output.stdout)
}

/// Asserts `probe` reaches the host outside (proving it) and not inside.
#[track_caller]
fn reaches_only_outside(setup: &Setup, manifest: &str, probe: &str, mark: &str) {
    let outside = setup.host(probe);
    assert!(
        stdout(&outside).contains(mark),
        "the probe does not work on the host, so it proves nothing: {}{}",
        stdout(&outside),
        text(&outside.stderr)
    );
    let inside = setup.inside(manifest, probe);
    assert!(
        !stdout(&inside).contains(mark),
        "reached the host from inside: {}{}",
        stdout(&inside),
        text(&inside.stderr)
    );
}

#[test]
fn the_default_network_reaches_the_internet_and_nothing_of_the_host() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let (_server, port) = Server::http("hello-host");
        let name = format!("paude-test-{}-{who:?}", std::process::id());
        let _socket = Server::abstract_socket(&name);
        let default = manifest("true");

        // The host's loopback, directly and through slirp4netns's gateway, and its abstract
        // socket.
        reaches_only_outside(&setup, &default, &tcp_probe(port), "tcp:hello-host");
        let inside = setup.inside(&default, &tcp_probe_at("10.0.2.2", port));
        assert!(
            !stdout(&inside).contains("tcp:hello-host"),
            "{}",
            stdout(&inside)
        );
        reaches_only_outside(
            &setup,
            &default,
            &abstract_probe(&name),
            "abstract:hello-abstract",
        );

        // What it must reach: names resolve, and TLS to the package index works.
        let inside = setup.inside(
            &default,
            "getent hosts pypi.org >/dev/null && echo resolved; \
             curl -sS -o /dev/null -w 'tls:%{http_code}\\n' https://pypi.org/simple/six/; \
             grep -c nameserver /etc/resolv.conf",
        );
        let said = stdout(&inside);
        assert!(
            said.contains("resolved") && said.contains("tls:200"),
            "{said}{}",
            text(&inside.stderr)
        );

        // `"host"` is the host's namespace, and says so.
        let host = manifest("\"host\"");
        let inside = setup.inside(&host, &tcp_probe(port));
        assert!(
            stdout(&inside).contains("tcp:hello-host"),
            "{}",
            text(&inside.stderr)
        );
        assert!(
            text(&inside.stderr).contains("shares the host's network namespace"),
            "{}",
            text(&inside.stderr)
        );
        // `false` is loopback only.
        let offline = manifest("false");
        let inside = setup.inside(&offline, "cat /proc/net/dev");
        let names: Vec<String> = ok(&inside)
            .lines()
            .skip(2)
            .filter_map(|line| Some(line.split(':').next()?.trim().to_owned()))
            .collect();
        assert_eq!(names, ["lo"]);
    }
}

#[test]
fn the_allow_list_lets_through_exactly_what_it_lists() {
    require_bwrap!();
    for who in users() {
        let setup = Setup::new(who);
        let (_listed, listed) = Server::http("server-listed");
        let (_other, other) = Server::http("server-other");
        let allow = manifest(&format!(
            r#"{{allow: ["127.0.0.1:{listed}", "localhost:{listed}", "pypi.org"]}}"#
        ));

        // Both servers answer on the host.
        for port in [listed, other] {
            let outside = setup.host(&format!("curl -sS http://127.0.0.1:{port}/"));
            assert!(
                stdout(&outside).starts_with("server-"),
                "{}",
                text(&outside.stderr)
            );
        }

        let script = format!(
            "curl -sS http://127.0.0.1:{listed}/; echo; \
             curl -sS http://localhost:{listed}/; echo; \
             curl -sS -x socks5h://127.0.0.1:3128 http://127.0.0.1:{listed}/; echo; \
             curl -sS -w ' status:%{{http_code}}' http://127.0.0.1:{other}/; echo; \
             curl -sS -p http://127.0.0.1:{other}/ || echo connect-refused:$?; \
             curl -sS -x socks5h://127.0.0.1:3128 http://127.0.0.1:{other}/ || echo socks-refused:$?; \
             curl -sS -w ' status:%{{http_code}}' http://localhost:{other}/; echo; \
             curl -sS -o /dev/null -w 'tls:%{{http_code}}\\n' https://pypi.org/simple/six/; \
             curl -sS -p -o /dev/null https://pypi.org:8443/ || echo port-refused:$?"
        );
        let inside = setup.inside(&allow, &script);
        let (said, stderr) = (stdout(&inside), text(&inside.stderr));
        let lines: Vec<&str> = said.lines().collect();
        assert_eq!(lines[..3], ["server-listed"; 3], "{said}\n{stderr}");
        // The refusal names the destination and the fix, inside and on paude's stderr.
        assert!(
            lines[3].contains(&format!("refused 127.0.0.1:{other} (not in network.allow)"))
                || said.contains(&format!("refused 127.0.0.1:{other} (not in network.allow)")),
            "{said}"
        );
        assert!(
            said.contains(&format!("add \"127.0.0.1:{other}\" to network.allow")),
            "{said}"
        );
        assert!(said.contains("status:403"), "{said}");
        assert!(said.contains("connect-refused:56"), "{said}");
        // curl's "SOCKS5 connection failed" for reply 2, "not allowed by ruleset".
        assert!(said.contains("socks-refused:97"), "{said}\n{stderr}");
        assert!(
            said.contains(&format!("refused localhost:{other}")),
            "{said}"
        );
        assert!(said.contains("tls:200"), "{said}\n{stderr}");
        assert!(said.contains("port-refused:56"), "{said}");
        assert!(!said.contains("server-other"), "{said}");
        let line = format!("paude: network: refused 127.0.0.1:{other} (not in network.allow)");
        assert_eq!(stderr.matches(&line).count(), 1, "said once:\n{stderr}");
        assert!(
            stderr.contains("paude: network: refused pypi.org:8443"),
            "{stderr}"
        );

        // Around the proxy there is no route: direct connections fail at once, and so does
        // a name lookup (the proxy resolves names; the sandbox has no DNS).
        let address = std::net::ToSocketAddrs::to_socket_addrs(&("pypi.org", 443))
            .expect("pypi.org resolves on the host")
            .find(std::net::SocketAddr::is_ipv4)
            .expect("an IPv4 address");
        let raw = format!(
            "python3 -c 'import socket\ntry:\n    socket.create_connection((\"{}\", 443), \
             timeout=20); print(\"raw:connected\")\nexcept OSError as e: print(\"raw:\", e)'",
            address.ip()
        );
        let outside = setup.host(&raw);
        assert!(
            stdout(&outside).contains("raw:connected"),
            "{}",
            stdout(&outside)
        );
        let direct = format!(
            "curl -sS --noproxy '*' http://127.0.0.1:{listed}/ || echo direct-failed; \
             curl -sS --noproxy '*' -o /dev/null https://pypi.org/ || echo name-failed"
        );
        let outside = setup.host(&direct);
        assert!(
            stdout(&outside).contains("server-listed"),
            "{}",
            stdout(&outside)
        );
        let began = Instant::now();
        let inside = setup.inside(&allow, &format!("{raw}; {direct}"));
        let elapsed = began.elapsed();
        let said = stdout(&inside);
        assert!(said.contains("Network is unreachable"), "{said}");
        assert!(
            said.contains("direct-failed") && said.contains("name-failed"),
            "{said}"
        );
        assert!(!said.contains("server-listed"), "{said}");
        // At once, not after a time-out (the raw connect would wait 20 s).
        assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    }
}

#[test]
fn a_network_helper_that_fails_stops_the_launch_before_the_command() {
    require_bwrap!();
    let who = *users().last().unwrap();
    let setup = Setup::new(who);
    // slirp4netns missing: said before anything is built.
    let empty = TestDir::new(who);
    let output = setup
        .paude()
        .env("PATH", empty.path().to_str().unwrap())
        .env("PAUDE_BWRAP", "/usr/bin/bwrap")
        .run(["venv", "-e", r#"{packages: ["bash"]}"#, "--", "true"]);
    fails_with(&output, 125, "slirp4netns, which is not installed");
    assert!(text(&output.stderr).contains("apt install slirp4netns"));
    // A slirp4netns that fails: the command never runs.
    let fake = empty.path().join("slirp4netns");
    write(
        &fake,
        "#!/bin/sh\necho 'open(\"/dev/net/tun\"): Permission denied' >&2\nexit 1\n",
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    hand_over(who, empty.path());
    let marker = setup.workspace.path().join("ran");
    let output = setup
        .paude()
        .env("PATH", &format!("{}:/usr/bin:/bin", empty.path().display()))
        .run([
            "venv",
            "-e",
            r#"{packages: ["bash", "coreutils"]}"#,
            "--",
            "touch",
            "ran",
        ]);
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("paude: network: slirp4netns failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/dev/net/tun must be readable and writable"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the command ran without its network");
}

#[test]
fn the_network_forms_are_checked() {
    let setup = Setup::new(As::Me);
    for (network, field, words) in [
        (r#""hots""#, "network", r#"did you mean "host""#),
        (
            r#"{allow: ["https://pypi.org/simple"]}"#,
            "network.allow[0]",
            r#""pypi.org""#,
        ),
        (
            r#"{allow: ["pypi.org:99999"]}"#,
            "network.allow[0]",
            "not a port",
        ),
        (
            r#"{allow: "pypi.org"}"#,
            "network.allow",
            "expected an array",
        ),
    ] {
        // A store of its own: nothing may be written to it.
        let output = Paude::new(As::Me, setup.home.path(), setup.workspace.path()).run([
            "venv",
            "-e",
            &format!(r#"{{packages: ["bash"], network: {network}}}"#),
            "--",
            "true",
        ]);
        fails_with(&output, 125, field);
        let stderr = text(&output.stderr);
        assert!(stderr.contains(words), "{stderr}");
        assert!(venv_entries(setup.home.path()).is_empty());
    }
}

/// A real project's test suite, as a user runs one: six's source from the package index,
/// pytest installed into a venv made inside, through the allow-list proxy (pip reads the
/// proxy variables), and the suite run; then the next run uses that venv.
#[test]
fn a_real_projects_test_suite_runs_with_only_the_package_index_allowed() {
    require_bwrap!();
    let who = *users().last().unwrap();
    let setup = Setup::new(who);
    let manifest = r#"local paude = import "paude.libsonnet";
        {
          packages: paude.core + paude.python + paude.certs.packages,
          mounts: paude.certs.mounts,
          network: { allow: paude.allow.pypi },
        }"#;
    let first = setup.inside(
        manifest,
        "set -e; python3 -m pip download -q --no-deps --no-binary :all: six==1.16.0 -d dl; \
         tar --no-same-owner -xzf dl/six-1.16.0.tar.gz; python3 -m venv .venv; \
         .venv/bin/pip install -q pytest; cd six-1.16.0; ../.venv/bin/python -m pytest -q",
    );
    let said = stdout(&first);
    assert!(
        said.contains(" passed") && !said.contains(" failed"),
        "{said}\n{}",
        text(&first.stderr)
    );
    let passed: u32 = said
        .split_whitespace()
        .zip(said.split_whitespace().skip(1))
        .find(|(_, word)| word.starts_with("passed"))
        .and_then(|(count, _)| count.parse().ok())
        .unwrap_or(0);
    assert!(passed > 100, "{said}");
    eprintln!(
        "six's suite inside paude: {}",
        said.lines().last().unwrap_or("")
    );
    // The venv the sandbox made is kept, and the next run uses it.
    let next = setup.inside(manifest, ".venv/bin/python -m pytest --version");
    assert!(
        text(&next.stdout).contains("pytest") || text(&next.stderr).contains("pytest "),
        "{}",
        text(&next.stderr)
    );
}
