// A minimal environment: a shell, the basic utilities and git.
//
//   paude venv -e examples/core-venv.jsonnet
//   paude venv -e '(import "examples/core-venv.jsonnet")' -- git status
//
// Only `packages` is required; every other field keeps its default (see
// examples/every-field.jsonnet). The rootfs holds these packages and their run-time
// dependencies, taken from the host's package database, and is cached: the second launch
// with the same packages starts at once.
{
  packages: [
    "bash",  // the interactive shell and `bash -c`
    "coreutils",  // ls, cp, cat, env, ...
    "git",  // works in the workspace whatever uid its files appear to have
    // /bin/sh. Debian's packages never declare a dependency on it (it is Essential), yet
    // git runs hooks, aliases and its editor through it, and so does system().
    "dash",
  ],

  // Keep the terminal usable: the environment is otherwise cleared.
  envKeep: ["TERM", "COLORTERM", "LANG"],
}
