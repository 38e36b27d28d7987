// The built-in default manifest: what `paude venv` uses when no manifest is given with
// `-e`/`-f` and the workspace has no `paude.jsonnet`.
//
// It asks for a shell, the basic utilities, git and /bin/sh, and relies on the defaults for
// everything else: the default mounts (a fresh /dev, /proc, read-only /sys, /etc/resolv.conf and
// /etc/hosts, a private /tmp), the workspace bound read-write, the host network shared, and
// Python venvs in the workspace shadowed. Copy it to `paude.jsonnet` in your project to start
// your own; see examples/every-field.jsonnet for every field you can set.
{
  // dash is /bin/sh: Debian's packages never declare a dependency on it (it is Essential),
  // yet git runs hooks, aliases and its editor through it, and so does system().
  packages: ["bash", "coreutils", "git", "dash"],
  // The terminal's type and colour support, so an interactive shell and git's pager behave.
  envKeep: ["TERM", "COLORTERM"],
}
