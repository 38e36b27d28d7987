// Every field of a v1 manifest, each with a comment. It is a valid manifest: the tests
// evaluate and validate every example. Copy what you need; every field but `packages` is
// optional, and leaving one out gives the default named in its comment.
//
//   paude venv -e examples/every-field.jsonnet
//
// Unknown fields are errors ("did you mean ...?"), so a typo never goes unnoticed.
local paude = import "paude.libsonnet";  // the embedded helper library (optional)

{
  // Required, non-empty. Host packages (`name` or `name:arch`); the rootfs is their run-time
  // closure, taken from the host's package database, and is cached by it.
  packages: ["bash", "coreutils", "git"],

  // Default []. Host variables passed through when set on the host; the environment is
  // otherwise cleared. Good for terminal settings and tokens you don't want in a file.
  envKeep: ["TERM", "LANG", "SSH_AUTH_SOCK"],

  // Default {}. Variables set inside, after envKeep (so these win). Values are strings.
  // When absent, PATH and LD_LIBRARY_PATH get sensible defaults.
  envSet: {
    EDITOR: "vi",
    PAGER: "cat",
  },

  // Default true. Adds the default mounts before yours: a fresh /dev, /proc, read-only /sys,
  // /etc/resolv.conf and /etc/hosts, and a private tmpfs /tmp. Set it to false to list
  // every mount yourself.
  mountDefaults: true,

  // Default []. Your mounts, applied in order after the defaults. Host paths that may be
  // missing on some machines are marked `optional: true` so the launch skips them instead of
  // failing. Any target works, whether or not the rootfs has it: paude never writes mount
  // points into the cached tree.
  mounts: [
    // A string is a read-write bind of that host path at the same path (it must exist).
    "/var/tmp",
    // `bind`: read-write; `target` (inside the sandbox) defaults to `source` (on the host).
    { type: "bind", source: "/srv/cache", target: "/cache", optional: true },
    // `ro-bind`: read-only.
    { type: "ro-bind", source: "/etc/gitconfig", optional: true },
    // `dev-bind`: a bind that allows device access, e.g. for FUSE.
    { type: "dev-bind", source: "/dev/fuse", optional: true },
    // `tmpfs`: an empty, writable, private file system; no source.
    { type: "tmpfs", target: "/scratch" },
    // `proc`: a procfs for the sandbox's processes; no source. The defaults already mount
    // one at /proc, so this matters only with mountDefaults: false.
    { type: "proc", target: "/proc" },
    // The library's helpers build the same objects: here, the CA bundles of the host.
  ] + paude.certs.mounts,

  // Default []. Entries created in the cached rootfs (so they are part of its cache key).
  // Paths are absolute; modes are octal strings.
  fsEntries: [
    // `dir`: mode defaults to "0755".
    { type: "dir", path: "/srv/data", mode: "0750" },
    // `file`: contents default to "", mode to "0644".
    { type: "file", path: "/etc/motd", contents: "Welcome to a paude sandbox.\n", mode: "0644" },
    // `symlink`: the target may be absolute or relative to the link's directory. Here
    // `#!/bin/sh` scripts get bash instead of dash (sh on Debian, an Essential package):
    // replacing a file of the closure takes `override: true` (else it is an error).
    { type: "symlink", path: "/usr/bin/sh", target: "bash", override: true },
  ],

  // Default "auto": every top-level directory of the workspace holding pyvenv.cfg is shadowed
  // by an empty tmpfs, so host and sandbox venvs never mix. "none" shares them as they are; a
  // list names the directories (relative to the workspace) to shadow.
  venv: [".venv"],

  // Default false: each run starts with an empty venv where the host's was. true keeps the
  // sandbox's own venvs (under $PAUDE_HOME/state) from one run to the next, so
  // `python3 -m venv .venv && .venv/bin/pip install ...` is done once.
  venvPersist: false,

  // Default true: a network of the sandbox's own that reaches the internet (slirp4netns),
  // with none of the host's loopback services. false: loopback only. "host": the host's
  // network namespace. {allow: ["pypi.org", "*.github.com:443"]}: only those, through
  // paude's proxy.
  network: true,

  // Default [".git/hooks", ".git/config"]: paths of the workspace kept read-only inside, so
  // a sandboxed program cannot plant a hook or a `core.hooksPath` that git later runs on the
  // host. Paths that do not exist are skipped (never created on the host); [] protects nothing.
  protect: [".git/hooks", ".git/config", "Makefile"],

  // Default "tmpfs": HOME is the host's home path, holding an empty private tmpfs (the host's
  // files are not visible; what the sandbox writes there is gone when it ends). "persist"
  // keeps a home of the workspace's own under $PAUDE_HOME/state between runs. An absolute
  // host directory instead is bound read-write there, e.g. a home kept for an agent.
  home: "tmpfs",
}
