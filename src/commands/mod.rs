//! Subcommands: orchestration and user-facing output. Each runs the pipeline's stages in
//! order and decides what goes to stderr; none of them holds logic a stage could own.

pub mod venv;

/// A failure that carries its own exit status (126, 127), as `env` and `podman run` use them.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    pub code: u8,
    pub message: String,
}

/// Prints a status line on stderr (stdout belongs to the sandboxed command).
pub fn status(message: &str) {
    eprintln!("paude: {message}");
}

/// Prints a warning on stderr.
pub fn warn(message: &str) {
    eprintln!("paude: warning: {message}");
}
