// paude.libsonnet: helpers for paude manifests, embedded in the paude binary.
//
// Import it by name from any manifest; a file of the same name next to your manifest or in a
// `-J` directory takes precedence over the embedded copy:
//
//   local paude = import "paude.libsonnet";
//   {
//     packages: paude.core + paude.certs.packages + ["make"],
//     mounts: [paude.roBind("/etc/gitconfig")] + paude.certs.mounts,
//     fsEntries: [paude.dir("/work"), paude.file("/etc/motd", "hello\n")],
//   }
//
// Every helper returns plain manifest data (the v1 schema), so its result can be inspected,
// extended with `+`, or written out by hand instead. All fields are hidden (`::`), so the
// library object itself never ends up in a manifest's output by accident.
{
  // ---------------------------------------------------------------------------------------
  // Mounts. Paths are absolute; `dst` (inside the sandbox) defaults to `src` (on the host).

  // A read-write bind of a host path. `bind("/srv")` is the same as the string "/srv".
  bind(src, dst=src):: { type: "bind", source: src, target: dst },

  // A read-only bind: the sandbox sees the host path but cannot change it.
  roBind(src, dst=src):: { type: "ro-bind", source: src, target: dst },

  // A bind that also allows device access (e.g. `/dev/fuse`, `/dev/kvm`).
  devBind(src, dst=src):: { type: "dev-bind", source: src, target: dst },

  // An empty, private, writable tmpfs at `path`; it disappears with the sandbox.
  tmpfs(path):: { type: "tmpfs", target: path },

  // Marks a bind as optional: on a host where its source does not exist it is skipped
  // instead of failing the launch. `optional(roBind("/etc/pki"))`.
  optional(mount):: mount + { optional: true },

  // ---------------------------------------------------------------------------------------
  // fsEntries: created in the cached rootfs, and part of its cache key. Modes are octal
  // strings ("0644"): Jsonnet has no octal numbers.

  // A regular file with the given contents. `override=true` lets it replace a file of the
  // closure (else that is an error).
  file(path, contents="", mode="0644", override=false):: {
    type: "file",
    path: path,
    contents: contents,
    mode: mode,
    override: override,
  },

  // A directory (its parents are created as needed).
  dir(path, mode="0755"):: { type: "dir", path: path, mode: mode },

  // A symbolic link at `path` pointing to `target` (which may be relative).
  symlink(path, target, override=false):: {
    type: "symlink",
    path: path,
    target: target,
    override: override,
  },

  // ---------------------------------------------------------------------------------------
  // Package sets (Debian/Ubuntu package names). Combine them with `+`.

  // A shell, the basic utilities and git: enough for most scripts and agents.
  core:: ["bash", "coreutils", "git"],

  // The Python 3 interpreter with `venv` and `pip`, for working on a Python project.
  python:: ["python3", "python3-pip", "python3-venv"],

  // TLS trust for clients such as git, curl and pip. The package brings the certificates;
  // the generated bundles live outside any package (`update-ca-certificates` writes
  // /etc/ssl/certs on Debian; Fedora and Arch keep theirs under /etc/pki and
  // /etc/ca-certificates), so they are bound read-only from the host where they exist.
  certs:: {
    packages: ["ca-certificates"],
    mounts: [
      $.optional($.roBind("/etc/ssl/certs")),
      $.optional($.roBind("/etc/pki")),
      $.optional($.roBind("/etc/ca-certificates")),
    ],
  },

  // The host's own installs outside any package, read-only where the host has them:
  // /usr/local (programs and libraries built or installed by hand: a newer git, an npm
  // upgraded in place) and /usr/etc (where some distributions keep configuration, a CA
  // bundle among it). Their files are the host's, not the packages': the environment's
  // cache key does not cover them. `mounts: paude.hostLocal.mounts`.
  hostLocal:: {
    mounts: [
      $.optional($.roBind("/usr/local")),
      $.optional($.roBind("/usr/etc")),
    ],
  },

  // ---------------------------------------------------------------------------------------
  // Network allow-lists: `network: {allow: paude.allow.pypi + paude.allow.github}`. Entries
  // are "host[:port]": no port means 80 and 443, and "*.x" means every name below x (not x
  // itself). Only what is listed goes through paude's proxy; nothing else has a route.
  allow:: {
    // The Python package index: pip, uv, poetry.
    pypi:: ["pypi.org", "files.pythonhosted.org"],
    // The npm registry.
    npm:: ["registry.npmjs.org"],
    // crates.io, as cargo fetches from it (the index, and the crates' downloads).
    crates:: ["crates.io", "index.crates.io", "static.crates.io"],
    // GitHub over HTTPS: clones, the API, release downloads and raw files.
    github:: [
      "github.com",
      "api.github.com",
      "codeload.github.com",
      "objects.githubusercontent.com",
      "raw.githubusercontent.com",
      "release-assets.githubusercontent.com",
    ],
    // Debian's and Ubuntu's package mirrors, for apt inside an image built from one.
    debian:: ["deb.debian.org", "security.debian.org"],
  },
}
