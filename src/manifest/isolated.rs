//! Evaluation in a process of its own, so that no manifest can crash paude.
//!
//! jrsonnet's parser, and parts of its evaluator, recurse once per level of nesting: a
//! manifest of ten thousand nested brackets, `local` bindings or `1+1+…` terms overflows any
//! fixed stack, and a stack overflow ends a Rust program with a signal, not an error. So a
//! launch that must evaluate (a cache miss) runs paude again as its evaluator: `paude
//! __evaluate` reads the request (the source and the options) as JSON on its stdin, evaluates
//! on a thread with a [`STACK`]-byte stack, and writes the outcome as JSON on its stdout. An
//! evaluator that dies, however it dies, is a manifest that nests too deeply, exit 125. Ctrl-C
//! reaches both processes, which end.
//!
//! The child costs a launch about an exec, and only on a miss: a hit reads the validated
//! manifest from the launch cache. Where it cannot run (no program to run, a path that JSON
//! cannot carry), the evaluation runs in this process, on a thread with the same stack.

use super::ManifestError;
use super::eval::{Evaluated, LoadOptions, ManifestSource, evaluate};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The hidden subcommand the evaluator runs as.
pub const SUBCOMMAND: &str = "__evaluate";

/// The evaluation thread's stack: room for some tens of thousands of nested levels. Only what
/// is touched is ever backed by memory.
const STACK: usize = 256 << 20;

#[derive(Serialize, Deserialize)]
struct Request {
    source: ManifestSource,
    options: LoadOptions,
}

/// What the evaluator says: the evaluation, or the error `evaluate` gave, in parts that make
/// the same error again.
#[derive(Serialize, Deserialize)]
enum Reply {
    Evaluated(Evaluated),
    Jsonnet(String),
    Io {
        path: PathBuf,
        errno: Option<i32>,
        message: String,
    },
    Usage(String),
    Other(String),
}

impl Reply {
    fn of(result: Result<Evaluated, ManifestError>) -> Reply {
        match result {
            Ok(evaluated) => Reply::Evaluated(evaluated),
            Err(ManifestError::Jsonnet(message)) => Reply::Jsonnet(message),
            Err(ManifestError::Usage(message)) => Reply::Usage(message),
            Err(ManifestError::Io { path, source }) => Reply::Io {
                path,
                errno: source.raw_os_error(),
                message: source.to_string(),
            },
            Err(other) => Reply::Other(other.to_string()),
        }
    }

    fn into_result(self) -> Result<Evaluated, ManifestError> {
        match self {
            Reply::Evaluated(evaluated) => Ok(evaluated),
            Reply::Jsonnet(message) => Err(ManifestError::Jsonnet(message)),
            Reply::Usage(message) => Err(ManifestError::Usage(message)),
            Reply::Io {
                path,
                errno,
                message,
            } => Err(ManifestError::Io {
                path,
                source: match errno {
                    Some(errno) => std::io::Error::from_raw_os_error(errno),
                    None => std::io::Error::other(message),
                },
            }),
            Reply::Other(message) => Err(ManifestError::Jsonnet(message)),
        }
    }
}

/// Evaluates `source` in the evaluator `options.evaluator` names, else in this process; see
/// the module documentation.
pub fn evaluate_isolated(
    source: &ManifestSource,
    options: &LoadOptions,
) -> Result<Evaluated, ManifestError> {
    let request = Request {
        source: source.clone(),
        options: options.clone(),
    };
    match (&options.evaluator, serde_json::to_vec(&request)) {
        (Some(program), Ok(request)) => in_child(program, &request),
        _ => on_large_stack(request),
    }
}

fn in_child(program: &Path, request: &[u8]) -> Result<Evaluated, ManifestError> {
    let spawned = Command::new(program)
        .arg(SUBCOMMAND)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(_) => return on_large_stack(serde_json::from_slice(request).map_err(other)?),
    };
    // The request is small; the evaluator reads it whole before it writes anything.
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(request))
        .transpose();
    let mut reply = Vec::new();
    let read = child
        .stdout
        .take()
        .map(|mut stdout| stdout.read_to_end(&mut reply))
        .transpose();
    let status = child.wait().map_err(other)?;
    match serde_json::from_slice::<Reply>(&reply) {
        Ok(reply) if status.success() && written.is_ok() && read.is_ok() => reply.into_result(),
        _ => Err(ManifestError::Jsonnet(format!(
            "the evaluator stopped before it finished ({status}); a manifest that nests \
             brackets, `local` bindings or operators thousands deep cannot be evaluated: \
             flatten it"
        ))),
    }
}

fn other(error: impl std::fmt::Display) -> ManifestError {
    ManifestError::Jsonnet(format!("running the evaluator: {error}"))
}

fn on_large_stack(request: Request) -> Result<Evaluated, ManifestError> {
    std::thread::Builder::new()
        .name("evaluate".into())
        .stack_size(STACK)
        .spawn(move || evaluate(&request.source, &request.options))
        .map_err(other)?
        .join()
        .unwrap_or_else(|_| Err(other("the evaluation panicked")))
}

/// `paude __evaluate`: reads a request on stdin, writes the reply on stdout. It ends with
/// the launch that started it, however that ends (Ctrl-C, a kill of that process alone).
pub fn serve() -> ExitCode {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let mut input = Vec::new();
    if std::io::stdin().read_to_end(&mut input).is_err() {
        return ExitCode::FAILURE;
    }
    let reply = match serde_json::from_slice::<Request>(&input) {
        Ok(request) => Reply::of(on_large_stack(request)),
        Err(error) => Reply::Other(format!("reading the evaluation request: {error}")),
    };
    let mut stdout = std::io::stdout();
    match serde_json::to_writer(&mut stdout, &reply).map(|()| stdout.flush()) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
