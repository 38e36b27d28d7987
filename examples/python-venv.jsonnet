// An environment for working on a Python project.
//
//   paude venv -e examples/python-venv.jsonnet -- python3 -m venv .venv
//   paude venv -e examples/python-venv.jsonnet -- .venv/bin/pip install -e .
//
// The workspace's `.venv` is shadowed by an empty tmpfs inside the sandbox (`venv: "auto"`),
// so the sandbox creates its own venv there without touching the host's, whose interpreter
// paths would not work inside anyway.
local paude = import "paude.libsonnet";

{
  // python3 with venv and pip; git and a shell; CA certificates so pip can reach PyPI.
  packages: paude.core + paude.python + paude.certs.packages,

  // The generated CA bundles are not in any package: bind them from the host where present.
  mounts: paude.certs.mounts,

  envKeep: ["TERM", "LANG"],
  envSet: {
    // Don't write .pyc files into the workspace, and show output as it happens.
    PYTHONDONTWRITEBYTECODE: "1",
    PYTHONUNBUFFERED: "1",
    // Don't have pip look up PyPI for a newer pip on every run.
    PIP_DISABLE_PIP_VERSION_CHECK: "1",
  },

  // Shadow every top-level venv of the workspace (directories holding pyvenv.cfg).
  venv: "auto",
}
