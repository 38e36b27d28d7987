//! Evaluation: a manifest's Jsonnet, run with jrsonnet, turned into JSON and then validated.
//!
//! This is the one place in paude that runs Jsonnet. It wires a jrsonnet `State` the way the
//! `jsonnet` command line does — standard library, `std.extVar` from `--ext-str`/`--ext-code`,
//! top-level arguments from `--tla-str`/`--tla-code` — with paude's own import resolver:
//!
//! 1. the library embedded in the binary, for its file names given plainly
//!    (`import "paude.libsonnet"`): every file of `manifests/`, which no file elsewhere can
//!    shadow (a workspace could otherwise change what a manifest the user gave imports).
//!    Files of the embedded library import only each other;
//! 2. the importing file's directory (for `-e` code and `--ext-code`/`--tla-code`, the `cwd` of
//!    [`LoadOptions`]);
//! 3. each `-J` directory, in order.
//!
//! Invariants:
//! - only this module reads manifest files, and every file it reads from disk (the manifest and
//!   each `import`, `importstr`, `importbin`) is listed, absolute, in [`Loaded::files_read`] in the
//!   order first read, with its real path, the SHA-256 of the bytes evaluated and its stamp as
//!   read ([`FileRead`]): each file is read once, from one descriptor, so the trust check
//!   (`manifest::trust`) and the launch cache judge exactly the bytes that were evaluated, never
//!   the file read again by name, which a sandbox could have swapped meanwhile;
//! - a Jsonnet failure of any kind (syntax, static analysis, runtime, import) becomes
//!   [`ManifestError::Jsonnet`] with `file:line:column` where jrsonnet knows it and one line per
//!   stack frame; `-e` code is called `<cmdline>` and the embedded library `<paude>/NAME`;
//! - evaluation is bounded: at most [`MAX_STACK`] nested Jsonnet calls (the `jsonnet` default),
//!   while jrsonnet grows the native stack itself, so deep but legal recursion does not crash;
//! - the result is plain data: a function left anywhere in the manifest is an error.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use jrsonnet_evaluator::error::{Error as JsonnetError, ErrorKind};
use jrsonnet_evaluator::tla::TlaArg;
use jrsonnet_evaluator::trace::PathResolver;
use jrsonnet_evaluator::{
    AsPathLike, IStr, ImportResolver, Span, State, Thunk, Val, apply_tla, in_description_frame,
};
use jrsonnet_gcmodule::Acyclic;
use jrsonnet_ir::{SourceFifo, SourceFile, SourcePath, SourcePathT};

use super::{Manifest, ManifestError, validate};
use crate::launch::cache::Seen;

/// The deepest Jsonnet call nesting allowed, as the `jsonnet` command line's `--max-stack`
/// default. jrsonnet's own default (200) is lower than what some real libraries need.
pub const MAX_STACK: usize = 500;

/// The name `-e` code is shown under in errors and `std.thisFile`.
const CMDLINE_NAME: &str = "<cmdline>";

/// The library embedded in the binary: every file of `manifests/`, importable by its file name.
/// A test checks this list against the directory, so a new file cannot be forgotten.
const LIBRARY: &[(&str, &str)] = &[
    (
        "default.jsonnet",
        include_str!("../../manifests/default.jsonnet"),
    ),
    (
        "paude.libsonnet",
        include_str!("../../manifests/paude.libsonnet"),
    ),
];

/// The embedded default manifest, evaluated when no manifest is given or found.
const DEFAULT_MANIFEST: &str = "default.jsonnet";

/// Where the manifest's Jsonnet comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ManifestSource {
    /// Jsonnet code given on the command line (`-e CODE`); imports resolve from `LoadOptions::cwd`.
    Code(String),
    /// A file (`-f FILE`, `-e PATH` of an existing file, or the workspace's `paude.jsonnet`).
    /// A relative path is taken relative to `LoadOptions::cwd`.
    File(PathBuf),
    /// The default manifest embedded in the binary.
    Default,
}

/// Evaluation options, as the `jsonnet` command line gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadOptions {
    /// The directory `-e` code is evaluated from. Should be absolute; a relative one is taken
    /// relative to the process's current directory.
    pub cwd: PathBuf,
    /// `-J DIR` library paths, searched after the importing file's directory.
    pub jpath: Vec<PathBuf>,
    /// `--ext-str NAME=VALUE`: `std.extVar(NAME)` is the string VALUE.
    pub ext_str: Vec<(String, String)>,
    /// `--ext-code NAME=CODE`: `std.extVar(NAME)` is the value of the Jsonnet CODE.
    pub ext_code: Vec<(String, String)>,
    /// `--tla-str NAME=VALUE`: when the manifest is a function, its argument NAME is VALUE.
    pub tla_str: Vec<(String, String)>,
    /// `--tla-code NAME=CODE`: when the manifest is a function, its argument NAME is CODE's value.
    pub tla_code: Vec<(String, String)>,
    /// The program that evaluates in a process of its own (paude itself, see `isolated`);
    /// `None` evaluates in this process, on a thread with a large stack.
    #[serde(skip)]
    pub evaluator: Option<PathBuf>,
}

/// A file an evaluation read, as it was read: where, which bytes, and what the file looked
/// like. Whatever is decided about the bytes evaluated (their trust, whether a cached result
/// still holds) is decided on this, not on the file read again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRead {
    /// The path it was read by, absolute, with `.` folded: the manifest's, or an import's as
    /// it resolved from the importing file's path (links and `..` kept).
    pub path: PathBuf,
    /// Its real path (no link, no `..`) when it was read, checked to be the same file.
    pub real: PathBuf,
    /// The SHA-256 of the bytes evaluated, in hex.
    pub sha256: String,
    /// What the file looked like once read, from the descriptor its bytes came from: a result
    /// computed from them holds only while `path` still leads to a file that looks so.
    pub seen: Seen,
}

/// A loaded manifest and the files its evaluation read (for the trust check and cache
/// validation).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated manifest.
    pub manifest: Manifest,
    /// Every file read from disk, in the order first read: the manifest file (if any) and
    /// each import. The embedded library is not listed: it is no file, and changes only with
    /// paude.
    pub files_read: Vec<FileRead>,
    /// Paths an import looked for and did not find, before the place it was found: creating
    /// one of them changes what the manifest evaluates to.
    pub not_found: Vec<PathBuf>,
}

/// A manifest evaluated to JSON but not yet validated.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Evaluated {
    /// The value the Jsonnet program produced (after applying top-level arguments).
    pub value: serde_json::Value,
    /// As [`Loaded::files_read`].
    pub files_read: Vec<FileRead>,
    /// As [`Loaded::not_found`].
    pub not_found: Vec<PathBuf>,
}

/// Evaluates and validates a manifest.
pub fn load(source: &ManifestSource, options: &LoadOptions) -> Result<Loaded, ManifestError> {
    let Evaluated {
        value,
        files_read,
        not_found,
    } = super::isolated::evaluate_isolated(source, options)?;
    let manifest = validate(&value)?;
    Ok(Loaded {
        manifest,
        files_read,
        not_found,
    })
}

/// Evaluates a manifest's Jsonnet to JSON, without validating it (for `load`, and for showing
/// what a manifest evaluates to).
pub fn evaluate(
    source: &ManifestSource,
    options: &LoadOptions,
) -> Result<Evaluated, ManifestError> {
    let cwd = absolute(&options.cwd);
    let files_read = Rc::new(RefCell::new(Vec::new()));
    let not_found = Rc::new(RefCell::new(Vec::new()));
    let resolver = Resolver {
        cwd: cwd.clone(),
        jpath: options.jpath.iter().map(|dir| cwd.join(dir)).collect(),
        preloaded: RefCell::new(HashMap::new()),
        files_read: files_read.clone(),
        not_found: not_found.clone(),
    };

    let main = match source {
        ManifestSource::Code(code) => SourcePath::new(SourceSnippet {
            name: CMDLINE_NAME.to_owned(),
            dir: cwd.clone(),
            code: code.clone(),
        }),
        ManifestSource::File(path) => {
            let path = clean(&cwd.join(path));
            // Read here rather than in the resolver so that a missing or unreadable manifest
            // is an I/O error naming the file, not a Jsonnet import error.
            let read = read_file(&path).map_err(|source| ManifestError::Io {
                path: path.clone(),
                source,
            })?;
            resolver.preloaded.borrow_mut().insert(path.clone(), read);
            SourcePath::new(SourceFile::new(path))
        }
        ManifestSource::Default => SourcePath::new(SourceEmbedded(DEFAULT_MANIFEST)),
    };

    for (what, pairs) in [
        ("--ext-str", &options.ext_str),
        ("--ext-code", &options.ext_code),
        ("--tla-str", &options.tla_str),
        ("--tla-code", &options.tla_code),
    ] {
        if let Some((name, _)) = pairs.iter().find(|(name, _)| name.is_empty()) {
            return Err(ManifestError::Usage(format!(
                "{what} needs a variable name before `=`, got `{name}=...`"
            )));
        }
    }

    let value = run(resolver, main, options, &cwd);
    // Jsonnet values form reference cycles (the state holds the ext vars, whose thunks hold
    // the state); collect them now rather than leak them for the life of the process.
    jrsonnet_gcmodule::collect_thread_cycles();
    let value = value?;
    let files_read = files_read.borrow().clone();
    let not_found = not_found.borrow().clone();
    Ok(Evaluated {
        value,
        files_read,
        not_found,
    })
}

/// Runs the program at `main` with a fresh jrsonnet state and converts the result to JSON.
fn run(
    resolver: Resolver,
    main: SourcePath,
    options: &LoadOptions,
    cwd: &Path,
) -> Result<serde_json::Value, ManifestError> {
    let stdlib = jrsonnet_stdlib::ContextInitializer::new(PathResolver::Absolute);
    let mut builder = State::builder();
    builder
        .import_resolver(resolver)
        .context_initializer(stdlib.clone());
    let state = builder.build();

    // jrsonnet finds the state of the running evaluation through a thread-local; only one
    // evaluation can run per thread, which `load` never violates unless called re-entrantly.
    let Some(_entered) = state.try_enter() else {
        return Err(ManifestError::Jsonnet(
            "internal error: a Jsonnet evaluation is already running on this thread".into(),
        ));
    };
    let _depth = jrsonnet_evaluator::stack::limit_stack_depth(MAX_STACK);

    for (name, value) in &options.ext_str {
        stdlib.add_ext_str(name.as_str().into(), value.as_str().into());
    }
    for (name, code) in &options.ext_code {
        let arg = code_arg(&state, format!("<ext-code {name}>"), code, cwd);
        stdlib
            .settings_mut()
            .ext_vars
            .insert(name.as_str().into(), arg);
    }
    // `apply_tla` takes this map type; IStr's interior mutability is its interning refcount,
    // which never changes its hash.
    #[allow(clippy::mutable_key_type)]
    let mut tla: HashMap<IStr, TlaArg> = HashMap::new();
    for (name, value) in &options.tla_str {
        tla.insert(name.as_str().into(), TlaArg::String(value.as_str().into()));
    }
    for (name, code) in &options.tla_code {
        let arg = code_arg(&state, format!("<tla-code {name}>"), code, cwd);
        tla.insert(name.as_str().into(), arg);
    }

    state
        .import_resolved(main)
        .and_then(|value| apply_tla(&tla, value))
        .and_then(|value| to_json(&value))
        .map_err(|error| ManifestError::Jsonnet(format_error(&error)))
}

/// A lazily evaluated `--ext-code`/`--tla-code` value, named for error messages and importing
/// relative to `cwd`, as the `jsonnet` command line does.
fn code_arg(state: &State, name: String, code: &str, cwd: &Path) -> TlaArg {
    let path = SourcePath::new(SourceSnippet {
        name,
        dir: cwd.to_path_buf(),
        code: code.to_owned(),
    });
    let state = state.clone();
    TlaArg::Lazy(Thunk!(move || state.import_resolved(path)))
}

// ---------------------------------------------------------------------------------------------
// Values

/// Converts an evaluated value to JSON, forcing every field and element. Hidden fields are left
/// out, as in `jsonnet` output. Each level is a stack frame so a failure deep inside says where
/// (`object field "mounts"`, `array index [2]`).
fn to_json(value: &Val) -> Result<serde_json::Value, JsonnetError> {
    Ok(match value {
        Val::Null => serde_json::Value::Null,
        Val::Bool(b) => serde_json::Value::Bool(*b),
        Val::Str(s) => serde_json::Value::String(s.to_string()),
        Val::Num(n) => number(n.get()),
        Val::Arr(array) => {
            let mut items = Vec::with_capacity(array.len() as usize);
            for (index, item) in array.iter().enumerate() {
                let item =
                    in_description_frame(|| format!("array index [{index}]"), || to_json(&item?))?;
                items.push(item);
            }
            serde_json::Value::Array(items)
        }
        Val::Obj(object) => {
            let mut map = serde_json::Map::new();
            for (field, item) in object.iter() {
                let item = in_description_frame(
                    || format!("object field {:?}", field.as_str()),
                    || to_json(&item?),
                )?;
                map.insert(field.to_string(), item);
            }
            serde_json::Value::Object(map)
        }
        Val::Func(_) => {
            return Err(ErrorKind::RuntimeError(
                "a manifest is plain data, but this value is a function; call it or remove it"
                    .into(),
            )
            .into());
        }
    })
}

/// Jsonnet numbers are doubles; integral ones become JSON integers so `1` stays `1`.
fn number(n: f64) -> serde_json::Value {
    // Doubles hold every integer up to 2^53 exactly; beyond that keep the float.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT {
        #[allow(clippy::cast_possible_truncation, reason = "integral and within ±2^53")]
        return serde_json::Value::from(n as i64);
    }
    serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

// ---------------------------------------------------------------------------------------------
// Sources and the import resolver

/// A file of the embedded library.
#[derive(Acyclic, Debug, Hash, PartialEq, Eq)]
struct SourceEmbedded(&'static str);

impl fmt::Display for SourceEmbedded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<paude>/{}", self.0)
    }
}

/// Code that is not a file (`-e`, `--ext-code`, `--tla-code`): a name for messages, the code,
/// and the directory its imports resolve from.
#[derive(Acyclic, Debug, Hash, PartialEq, Eq)]
struct SourceSnippet {
    name: String,
    dir: PathBuf,
    code: String,
}

impl fmt::Display for SourceSnippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// jrsonnet compares and hashes sources through these object-safe methods.
macro_rules! source_path_impl {
    ($type:ty) => {
        impl SourcePathT for $type {
            fn is_default(&self) -> bool {
                false
            }
            fn path(&self) -> Option<&Path> {
                None
            }
            fn as_any(&self) -> &dyn Any {
                self
            }
            fn dyn_hash(&self, mut hasher: &mut dyn Hasher) {
                self.hash(&mut hasher);
            }
            fn dyn_eq(&self, other: &dyn SourcePathT) -> bool {
                other
                    .as_any()
                    .downcast_ref::<Self>()
                    .is_some_and(|other| other == self)
            }
            fn dyn_debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}
source_path_impl!(SourceEmbedded);
source_path_impl!(SourceSnippet);

/// Resolves imports in paude's order (see the module documentation) and records files read.
#[derive(Acyclic)]
struct Resolver {
    cwd: PathBuf,
    /// `-J` directories, absolute.
    jpath: Vec<PathBuf>,
    /// Files already read by `evaluate` (the manifest), handed over on first load.
    preloaded: RefCell<HashMap<PathBuf, (Vec<u8>, FileRead)>>,
    /// Shared with `evaluate`, which returns it.
    files_read: Rc<RefCell<Vec<FileRead>>>,
    /// Shared with `evaluate`, which returns it.
    not_found: Rc<RefCell<Vec<PathBuf>>>,
}

impl Resolver {
    /// Lists a file read. jrsonnet loads each path once; were one read twice, both reads are
    /// listed unless they read the same bytes, so that each is checked.
    fn record(&self, read: FileRead) {
        let mut files = self.files_read.borrow_mut();
        if !files
            .iter()
            .any(|known| known.path == read.path && known.sha256 == read.sha256)
        {
            files.push(read);
        }
    }
}

fn add_once(list: &RefCell<Vec<PathBuf>>, path: &Path) {
    let mut paths = list.borrow_mut();
    if !paths.iter().any(|known| known == path) {
        paths.push(path.to_path_buf());
    }
}

impl ImportResolver for Resolver {
    fn resolve_from(
        &self,
        from: &SourcePath,
        path: &dyn AsPathLike,
    ) -> jrsonnet_evaluator::Result<SourcePath> {
        let path = path.as_path();
        let path: &Path = path.as_ref();

        let from_embedded = from.downcast_ref::<SourceEmbedded>().is_some();
        // The embedded library's names, given plainly, are its own, wherever the importing
        // file is: a file of that name beside a workspace's manifest (which the sandbox may
        // have written) does not take its place. `./paude.libsonnet` names the file.
        if let Some(name) = path.to_str()
            && let Some((name, _)) = LIBRARY.iter().find(|(known, _)| *known == name)
        {
            return Ok(SourcePath::new(SourceEmbedded(name)));
        }
        let mut dirs = Vec::with_capacity(self.jpath.len() + 1);
        if let Some(file) = from.downcast_ref::<SourceFile>() {
            dirs.extend(file.path().parent().map(Path::to_path_buf));
        } else if let Some(snippet) = from.downcast_ref::<SourceSnippet>() {
            dirs.push(snippet.dir.clone());
        } else if !from_embedded {
            // jrsonnet's own default and virtual sources: resolve as the command line does.
            dirs.push(self.cwd.clone());
        }
        if !from_embedded {
            dirs.extend(self.jpath.iter().cloned());
        }

        for dir in &dirs {
            let candidate = clean(&dir.join(path));
            match std::fs::metadata(&candidate) {
                Ok(meta) if meta.is_file() => {
                    return Ok(SourcePath::new(SourceFile::new(candidate)));
                }
                Ok(_) => {
                    return Err(ErrorKind::ImportCallbackError(format!(
                        "cannot import {}: not a regular file",
                        candidate.display()
                    ))
                    .into());
                }
                Err(error)
                    if error.kind() == std::io::ErrorKind::NotFound
                        || error.kind() == std::io::ErrorKind::NotADirectory =>
                {
                    add_once(&self.not_found, &candidate);
                }
                Err(error) => {
                    return Err(ErrorKind::ImportCallbackError(format!(
                        "cannot import {}: {error}",
                        candidate.display()
                    ))
                    .into());
                }
            }
        }

        let mut places: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        places.push("the paude library".into());
        Err(ErrorKind::ImportCallbackError(format!(
            "cannot find import {:?} from {}: looked in {}",
            path.display().to_string(),
            source_name(from),
            places.join(", "),
        ))
        .into())
    }

    fn load_file_contents(&self, resolved: &SourcePath) -> jrsonnet_evaluator::Result<Vec<u8>> {
        if let Some(file) = resolved.downcast_ref::<SourceFile>() {
            let path = file.path();
            let preloaded = self.preloaded.borrow_mut().remove(path);
            let (bytes, read) = match preloaded {
                Some(read) => read,
                None => read_file(path).map_err(|error| {
                    ErrorKind::ImportCallbackError(format!("reading {}: {error}", path.display()))
                })?,
            };
            self.record(read);
            return Ok(bytes);
        }
        if let Some(SourceEmbedded(name)) = resolved.downcast_ref::<SourceEmbedded>() {
            let text = LIBRARY
                .iter()
                .find(|(known, _)| known == name)
                .map_or("", |(_, text)| *text);
            return Ok(text.as_bytes().to_vec());
        }
        if let Some(snippet) = resolved.downcast_ref::<SourceSnippet>() {
            return Ok(snippet.code.as_bytes().to_vec());
        }
        if let Some(SourceFifo(_, bytes)) = resolved.downcast_ref::<SourceFifo>() {
            return Ok(bytes.to_vec());
        }
        Err(ErrorKind::ImportCallbackError(format!("cannot load {resolved}")).into())
    }
}

/// Reads the file at `path` as the evaluation reads it, with what [`FileRead`] says of it
/// (for the evaluation, and for whatever else reads a manifest's file). It is opened
/// once, without waiting (a FIFO or a device put in its place is refused, not read), and read
/// whole from that descriptor: the digest is of exactly the bytes returned, and the stamp is
/// of the file they came from, taken once they were read (a write meanwhile shows in its
/// ctime). Its real path is checked to lead to that same file; where it does not, the file
/// was swapped while it was read, and nothing is said about either.
pub fn read_file(path: &Path) -> std::io::Result<(Vec<u8>, FileRead)> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !Seen::of_open(&file)?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file; a manifest and its imports must be files",
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let seen = Seen::of_open(&file)?;
    let real = std::fs::canonicalize(path)?;
    match Seen::of(&real) {
        Ok(Some(there)) if there.same_file(&seen) => {}
        _ => {
            return Err(std::io::Error::other(
                "it was replaced by another file while paude read it; run paude again",
            ));
        }
    }
    let read = FileRead {
        path: path.to_path_buf(),
        real,
        sha256: super::trust::digest(&bytes),
        seen,
    };
    Ok((bytes, read))
}

/// Makes `path` absolute against the process's current directory if it is not already.
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return clean(path);
    }
    std::path::absolute(path).map_or_else(|_| path.to_path_buf(), |p| clean(&p))
}

/// Folds `.` and repeated separators. `..` is kept: folding it lexically would be wrong when
/// the component before it is a symlink, and the kernel resolves it correctly anyway.
fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|component| !matches!(component, Component::CurDir))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Error messages

/// The name of a source in messages: the path of a file, `<cmdline>` for `-e` code.
fn source_name(path: &SourcePath) -> String {
    if let Some(file) = path.path() {
        return file.display().to_string();
    }
    if let Some(SourceFifo(name, _)) = path.downcast_ref::<SourceFifo>() {
        return name.clone();
    }
    path.to_string()
}

/// `file:line:column` of the start of a span (line and column from 1).
fn span_location(span: &Span) -> String {
    let [start] = span.0.map_source_locations(&[span.1]);
    format!(
        "{}:{}:{}",
        source_name(span.0.source_path()),
        start.line,
        start.column
    )
}

/// The most stack frames shown; a runaway recursion would otherwise print hundreds.
const MAX_FRAMES: usize = 20;

/// Renders a jrsonnet error as plain text: the error, prefixed with where it happened when
/// that is known, then one line per stack frame, innermost first, with runs of the same frame
/// folded into one line.
///
/// jrsonnet's own formatters either draw source snippets with ANSI colours or align frames in
/// columns; a one-line-per-frame form reads better after `paude: error:` and in logs.
fn format_error(error: &JsonnetError) -> String {
    let mut out = String::new();
    let headline_location = || {
        error
            .trace()
            .0
            .iter()
            .find_map(|frame| frame.location.as_ref())
            .map(span_location)
    };
    match error.error() {
        ErrorKind::ImportSyntaxError { path, error } => {
            let span = Span(path.clone(), error.location.1, error.location.2);
            let _ = write!(
                out,
                "{}: syntax error: {}",
                span_location(&span),
                error.message
            );
        }
        ErrorKind::StaticAnalysisError(diagnostics) => {
            let lines: Vec<String> = diagnostics
                .iter()
                .map(|diagnostic| match &diagnostic.span {
                    Some(span) => format!("{}: {}", span_location(span), diagnostic.message),
                    None => diagnostic.message.clone(),
                })
                .collect();
            out.push_str(&lines.join("\n"));
        }
        kind => {
            // jrsonnet's text for this one suggests a `--max-stack` flag paude does not have.
            let message = match kind {
                ErrorKind::StackOverflow => format!(
                    "stack overflow: more than {MAX_STACK} nested calls; \
                     look for a recursion that never ends"
                ),
                // jrsonnet prints the path with Debug formatting here.
                ErrorKind::ImportBadFileUtf8(path) => format!(
                    "{} is not valid UTF-8 text; Jsonnet files must be UTF-8",
                    source_name(path)
                ),
                kind => kind.to_string(),
            };
            // The innermost located frame is where the error happened.
            match headline_location() {
                Some(location) => {
                    let _ = write!(out, "{location}: {message}");
                }
                None => out.push_str(&message),
            }
        }
    }

    let frames: Vec<String> = error
        .trace()
        .0
        .iter()
        // The parser's frame repeats the location the syntax error already gives.
        .filter(|frame| frame.desc != "parse imported")
        .map(|frame| match &frame.location {
            Some(span) => format!("at {}: {}", span_location(span), frame.desc),
            None if frame.desc.starts_with("during ") => frame.desc.clone(),
            None => format!("in {}", frame.desc),
        })
        .collect();
    let mut shown = 0;
    let mut index = 0;
    while index < frames.len() {
        if shown == MAX_FRAMES {
            let _ = write!(out, "\n    ... and {} more frames", frames.len() - index);
            break;
        }
        let frame = &frames[index];
        let repeats = frames[index..]
            .iter()
            .take_while(|other| *other == frame)
            .count();
        let _ = write!(out, "\n    {frame}");
        if repeats > 1 {
            let _ = write!(out, "\n    ... the frame above, {} more times", repeats - 1);
        }
        shown += 1;
        index += repeats;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{FsEntry, MountKind};
    use std::fs;

    fn code(text: &str) -> ManifestSource {
        ManifestSource::Code(text.to_owned())
    }

    fn options_in(cwd: &Path) -> LoadOptions {
        LoadOptions {
            cwd: cwd.to_path_buf(),
            ..LoadOptions::default()
        }
    }

    fn crate_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn fixtures() -> PathBuf {
        crate_dir().join("tests/fixtures/manifests")
    }

    /// Evaluates to JSON or panics with the message.
    fn json(source: &ManifestSource, options: &LoadOptions) -> serde_json::Value {
        match evaluate(source, options) {
            Ok(evaluated) => evaluated.value,
            Err(error) => panic!("evaluation failed: {error}"),
        }
    }

    fn jsonnet_error(source: &ManifestSource, options: &LoadOptions) -> String {
        match load(source, options) {
            Err(ManifestError::Jsonnet(message)) => message,
            Err(other) => panic!("expected a Jsonnet error, got {other}"),
            Ok(loaded) => panic!("expected an error, got {:?}", loaded.manifest),
        }
    }

    fn load_ok(source: &ManifestSource, options: &LoadOptions) -> Loaded {
        match load(source, options) {
            Ok(loaded) => loaded,
            Err(error) => panic!("load failed: {error}"),
        }
    }

    /// The paths of the files an evaluation read, in the order it read them.
    fn paths(files: &[FileRead]) -> Vec<PathBuf> {
        files.iter().map(|file| file.path.clone()).collect()
    }

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, text).unwrap();
    }

    #[test]
    fn code_evaluates_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_ok(
            &code(r#"{ packages: ["bash"] + ["git"], envSet: { N: std.toString(1 + 1) } }"#),
            &options_in(dir.path()),
        );
        assert_eq!(loaded.manifest.packages, ["bash", "git"]);
        assert_eq!(
            loaded.manifest.env_set.get("N").map(String::as_str),
            Some("2")
        );
        assert!(loaded.files_read.is_empty());
    }

    #[test]
    fn default_manifest_is_core_packages() {
        let loaded = load_ok(&ManifestSource::Default, &LoadOptions::default());
        assert_eq!(
            loaded.manifest.packages,
            ["bash", "coreutils", "git", "dash"]
        );
        assert!(loaded.manifest.mount_defaults);
        assert!(loaded.files_read.is_empty());
    }

    #[test]
    fn embedded_library_lists_every_file_of_manifests_dir() {
        let mut on_disk: Vec<String> = fs::read_dir(crate_dir().join("manifests"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> =
            LIBRARY.iter().map(|(name, _)| (*name).to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "add new files of manifests/ to LIBRARY");
    }

    #[test]
    fn json_conversion_keeps_types_and_drops_hidden_fields() {
        let dir = tempfile::tempdir().unwrap();
        let value = json(
            &code(r#"{ a: 1, b: 1.5, c: "s", d: [true, null], e: { f: -3 }, hidden:: 1 }"#),
            &options_in(dir.path()),
        );
        assert_eq!(
            value,
            serde_json::json!({ "a": 1, "b": 1.5, "c": "s", "d": [true, null], "e": { "f": -3 } })
        );
        assert_eq!(number(1e300), serde_json::json!(1e300));
    }

    #[test]
    fn file_imports_resolve_from_the_importing_file() {
        let options = options_in(&crate_dir());
        let loaded = load_ok(
            &ManifestSource::File("tests/fixtures/manifests/nested/main.jsonnet".into()),
            &options,
        );
        // main.jsonnet imports lib/pkgs.libsonnet, which imports its sibling extra.libsonnet
        // and importstr's a text file next to it.
        assert_eq!(loaded.manifest.packages, ["bash", "coreutils", "git"]);
        assert_eq!(
            loaded.manifest.env_set.get("GREETING").map(String::as_str),
            Some("hello from a text file\n")
        );
        // Lazy evaluation decides the order of reads; the set is what matters.
        let nested = fixtures().join("nested");
        let mut files_read = paths(&loaded.files_read);
        files_read.sort();
        assert_eq!(
            files_read,
            [
                nested.join("lib/extra.libsonnet"),
                nested.join("lib/greeting.txt"),
                nested.join("lib/pkgs.libsonnet"),
                nested.join("main.jsonnet"),
            ]
        );
        assert_eq!(
            paths(&loaded.files_read).first(),
            Some(&nested.join("main.jsonnet"))
        );
    }

    #[test]
    fn code_imports_resolve_from_cwd_and_are_recorded() {
        let loaded = load_ok(
            &code(r#"import "tests/fixtures/manifests/nested/main.jsonnet""#),
            &options_in(&crate_dir()),
        );
        assert_eq!(loaded.manifest.packages, ["bash", "coreutils", "git"]);
        assert_eq!(
            paths(&loaded.files_read).first(),
            Some(&fixtures().join("nested/main.jsonnet"))
        );
        assert_eq!(loaded.files_read.len(), 4);
    }

    #[test]
    fn importbin_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("data.bin"), "AB");
        let value = json(
            &code(r#"{ bytes: importbin "data.bin" }"#),
            &options_in(dir.path()),
        );
        assert_eq!(value, serde_json::json!({ "bytes": [65, 66] }));
        let evaluated =
            evaluate(&code(r#"importbin "data.bin""#), &options_in(dir.path())).unwrap();
        assert_eq!(paths(&evaluated.files_read), [dir.path().join("data.bin")]);
    }

    /// Each file read is reported as it was read: the digest of the bytes evaluated (the
    /// manifest, `import`, `importstr` and `importbin` alike), its real path where the import
    /// led through a link, and the stamp of the file those bytes came from.
    #[test]
    fn each_file_read_is_reported_with_the_digest_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        write(
            &root.join("lib/real.libsonnet"),
            r#"{ packages: ["bash"] }"#,
        );
        std::os::unix::fs::symlink("lib", root.join("link")).unwrap();
        write(&root.join("text.txt"), "some text\n");
        write(&root.join("data.bin"), "AB");
        let main = root.join("main.jsonnet");
        let text = r#"(import "link/real.libsonnet") + {
            envSet: { T: importstr "text.txt", B: std.toString(importbin "data.bin") },
        }"#;
        write(&main, text);
        let loaded = load_ok(&ManifestSource::File(main.clone()), &options_in(&root));
        let digest = |bytes: &[u8]| crate::manifest::trust::digest(bytes);
        let expected = [
            (main.clone(), main.clone(), digest(text.as_bytes())),
            (
                root.join("link/real.libsonnet"),
                root.join("lib/real.libsonnet"),
                digest(br#"{ packages: ["bash"] }"#),
            ),
            (
                root.join("text.txt"),
                root.join("text.txt"),
                digest(b"some text\n"),
            ),
            (root.join("data.bin"), root.join("data.bin"), digest(b"AB")),
        ];
        let mut reported: Vec<(PathBuf, PathBuf, String)> = loaded
            .files_read
            .iter()
            .map(|file| (file.path.clone(), file.real.clone(), file.sha256.clone()))
            .collect();
        reported.sort();
        let mut expected = expected.to_vec();
        expected.sort();
        assert_eq!(reported, expected);
        for file in &loaded.files_read {
            assert_eq!(Seen::of(&file.path).unwrap(), Some(file.seen), "{file:?}");
        }
    }

    /// A FIFO (or a device) put where an import was is refused at once, not waited on: the
    /// file is opened without blocking and must be a regular file.
    #[test]
    fn a_fifo_in_place_of_a_file_is_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.libsonnet");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let error = read_file(&fifo).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    #[test]
    fn jpath_is_searched_in_order_after_the_importing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("j1/only1.libsonnet"), r#""j1""#);
        write(&root.join("j1/both.libsonnet"), r#""j1""#);
        write(&root.join("j2/both.libsonnet"), r#""j2""#);
        write(&root.join("j2/only2.libsonnet"), r#""j2""#);
        write(&root.join("work/both.libsonnet"), r#""local""#);
        let mut options = options_in(&root.join("work"));
        // A relative -J is taken relative to cwd.
        options.jpath = vec![root.join("j1"), PathBuf::from("../j2")];
        let value = json(
            &code(
                r#"{
                    local_first: import "both.libsonnet",
                    only1: import "only1.libsonnet",
                    only2: import "only2.libsonnet",
                }"#,
            ),
            &options,
        );
        assert_eq!(
            value,
            serde_json::json!({ "local_first": "local", "only1": "j1", "only2": "j2" })
        );
        fs::remove_file(root.join("work/both.libsonnet")).unwrap();
        let value = json(&code(r#"import "both.libsonnet""#), &options);
        assert_eq!(value, serde_json::json!("j1"));
    }

    #[test]
    fn embedded_library_is_importable_and_not_shadowed() {
        let dir = tempfile::tempdir().unwrap();
        let source = code(r#"{ packages: (import "paude.libsonnet").core }"#);
        let loaded = load_ok(&source, &options_in(dir.path()));
        assert_eq!(loaded.manifest.packages, ["bash", "coreutils", "git"]);
        assert!(
            loaded.files_read.is_empty(),
            "the embedded library is not a file read"
        );

        // The embedded default manifest is importable too.
        let value = json(
            &code(r#"(import "default.jsonnet").packages"#),
            &options_in(dir.path()),
        );
        assert_eq!(
            value,
            serde_json::json!(["bash", "coreutils", "git", "dash"])
        );

        // A file of the same name in a searched directory does not take its place; named as
        // a path, it is the file.
        write(&dir.path().join("paude.libsonnet"), r#"{ core: ["mine"] }"#);
        let loaded = load_ok(&source, &options_in(dir.path()));
        assert_eq!(loaded.manifest.packages, ["bash", "coreutils", "git"]);
        assert!(loaded.files_read.is_empty());
        let own = code(r#"{ packages: (import "./paude.libsonnet").core }"#);
        let loaded = load_ok(&own, &options_in(dir.path()));
        assert_eq!(loaded.manifest.packages, ["mine"]);
    }

    #[test]
    fn ext_vars_string_and_code() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("more.libsonnet"), r#"["coreutils"]"#);
        let mut options = options_in(dir.path());
        options.ext_str = vec![("pkg".into(), "bash".into())];
        // ext code imports resolve from cwd, like the jsonnet command line.
        options.ext_code = vec![("more".into(), r#"import "more.libsonnet""#.into())];
        let loaded = load_ok(
            &code(r#"{ packages: [std.extVar("pkg")] + std.extVar("more") }"#),
            &options,
        );
        assert_eq!(loaded.manifest.packages, ["bash", "coreutils"]);
        assert_eq!(
            paths(&loaded.files_read),
            [dir.path().join("more.libsonnet")]
        );
    }

    #[test]
    fn tla_string_and_code() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = options_in(dir.path());
        options.tla_str = vec![("name".into(), "bash".into())];
        options.tla_code = vec![("extra".into(), r#"["git"]"#.into())];
        let source = code(
            r#"function(name, extra=[], net=true) { packages: [name] + extra, network: net }"#,
        );
        let loaded = load_ok(&source, &options);
        assert_eq!(loaded.manifest.packages, ["bash", "git"]);
        assert_eq!(loaded.manifest.network, crate::manifest::Network::Private);

        // TLAs are ignored when the manifest is not a function, as in jsonnet.
        let loaded = load_ok(&code(r#"{ packages: ["bash"] }"#), &options);
        assert_eq!(loaded.manifest.packages, ["bash"]);

        // A missing argument is an error naming it.
        let message = jsonnet_error(&source, &super::tests::options_in(dir.path()));
        assert!(message.contains("name"), "{message}");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let message = jsonnet_error(
            &code("{\n  packages: [\"bash\",\n}"),
            &options_in(dir.path()),
        );
        assert!(
            message.starts_with("<cmdline>:3:1: syntax error: "),
            "{message}"
        );
    }

    #[test]
    fn syntax_error_in_a_file_names_the_file() {
        let message = jsonnet_error(
            &ManifestSource::File(fixtures().join("syntax-error.jsonnet")),
            &LoadOptions::default(),
        );
        let expected = format!("{}:", fixtures().join("syntax-error.jsonnet").display());
        assert!(message.starts_with(&expected), "{message}");
        assert!(message.contains(": syntax error: "), "{message}");
    }

    #[test]
    fn runtime_error_has_location_and_trace() {
        let dir = tempfile::tempdir().unwrap();
        let message = jsonnet_error(
            &code("local f(x) = error \"boom\";\n{ packages: [f(1)] }"),
            &options_in(dir.path()),
        );
        assert!(
            message.starts_with("<cmdline>:1:14: runtime error: boom"),
            "{message}"
        );
        assert!(message.contains("\n    at <cmdline>:"), "{message}");
        assert!(
            message.contains("\n    in object field \"packages\""),
            "{message}"
        );
        assert!(
            !message.contains('\u{1b}'),
            "no terminal escapes: {message:?}"
        );
    }

    #[test]
    fn runtime_error_in_an_imported_file_names_it() {
        let message = jsonnet_error(
            &code(r#"import "tests/fixtures/manifests/runtime-error.jsonnet""#),
            &options_in(&crate_dir()),
        );
        let file = fixtures().join("runtime-error.jsonnet");
        assert!(
            message.starts_with(&format!("{}:", file.display())),
            "{message}"
        );
        assert!(message.contains("runtime error: boom"), "{message}");
    }

    #[test]
    fn missing_import_names_what_and_where() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = options_in(dir.path());
        options.jpath = vec![PathBuf::from("/nonexistent-jpath")];
        let message = jsonnet_error(&code(r#"import "nope.libsonnet""#), &options);
        assert_eq!(
            message,
            format!(
                "cannot find import \"nope.libsonnet\" from <cmdline>: looked in {}, \
                 /nonexistent-jpath, the paude library",
                dir.path().display()
            )
        );
    }

    #[test]
    fn undefined_ext_var_and_variable() {
        let dir = tempfile::tempdir().unwrap();
        let message = jsonnet_error(&code(r#"std.extVar("nope")"#), &options_in(dir.path()));
        assert!(
            message.contains("external variable is not defined: nope"),
            "{message}"
        );
        let message = jsonnet_error(&code("{ packages: [nope] }"), &options_in(dir.path()));
        assert!(message.starts_with("<cmdline>:1:"), "{message}");
        assert!(message.contains("nope"), "{message}");
    }

    #[test]
    fn ext_code_errors_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = options_in(dir.path());
        options.ext_code = vec![("bad".into(), "error 'inner'".into())];
        let message = jsonnet_error(&code(r#"std.extVar("bad")"#), &options);
        assert!(
            message.starts_with("<ext-code bad>:1:1: runtime error: inner"),
            "{message}"
        );
    }

    #[test]
    fn empty_variable_name_is_a_usage_error() {
        let options = LoadOptions {
            ext_str: vec![(String::new(), "x".into())],
            ..LoadOptions::default()
        };
        assert!(matches!(
            load(&ManifestSource::Default, &options),
            Err(ManifestError::Usage(_))
        ));
    }

    #[test]
    fn functions_in_the_result_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let message = jsonnet_error(
            &code(r#"{ packages: ["bash"], envSet: { X: function() 1 } }"#),
            &options_in(dir.path()),
        );
        assert!(message.contains("is a function"), "{message}");
        assert!(message.contains("object field \"X\""), "{message}");
    }

    #[test]
    fn missing_manifest_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        match load(
            &ManifestSource::File("absent.jsonnet".into()),
            &options_in(dir.path()),
        ) {
            Err(ManifestError::Io { path, .. }) => {
                assert_eq!(path, dir.path().join("absent.jsonnet"))
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }

    #[test]
    fn validation_errors_come_through() {
        let dir = tempfile::tempdir().unwrap();
        match load(&code(r#"{ pakages: ["bash"] }"#), &options_in(dir.path())) {
            Err(ManifestError::Field { field, message }) => {
                assert_eq!(field, "pakages");
                assert_eq!(message, "unknown field; did you mean `packages`?");
            }
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn deep_recursion_is_bounded_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        // Well within the limit: must work.
        let value = json(
            &code("local f(n) = if n == 0 then 0 else 1 + f(n - 1); f(300)"),
            &options_in(dir.path()),
        );
        assert_eq!(value, serde_json::json!(300));
        // Unbounded: a clean error.
        let message = jsonnet_error(
            &code("local f(n) = 1 + f(n + 1); f(0)"),
            &options_in(dir.path()),
        );
        assert!(message.contains("stack overflow"), "{message}");
    }

    /// Every example must evaluate and validate; new examples are covered automatically.
    #[test]
    fn examples_evaluate_and_validate() {
        let examples = crate_dir().join("examples");
        let mut names = Vec::new();
        for entry in fs::read_dir(&examples).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "jsonnet") {
                let loaded = match load(
                    &ManifestSource::File(path.clone()),
                    &options_in(&crate_dir()),
                ) {
                    Ok(loaded) => loaded,
                    Err(error) => panic!("{}: {error}", path.display()),
                };
                assert!(!loaded.manifest.packages.is_empty());
                assert_eq!(paths(&loaded.files_read).first(), Some(&path));
                names.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        names.sort();
        assert_eq!(
            names,
            [
                "core-venv.jsonnet",
                "every-field.jsonnet",
                "python-venv.jsonnet"
            ]
        );
    }

    /// The seed's quick start: examples are importable from `-e` code by path.
    #[test]
    fn examples_import_from_cmdline() {
        let loaded = load_ok(
            &code(r#"(import "examples/core-venv.jsonnet")"#),
            &options_in(&crate_dir()),
        );
        assert_eq!(
            loaded.manifest.packages,
            ["bash", "coreutils", "git", "dash"]
        );
        assert_eq!(
            paths(&loaded.files_read),
            [crate_dir().join("examples/core-venv.jsonnet")]
        );
    }

    #[test]
    fn every_field_example_sets_every_field() {
        let loaded = load_ok(
            &ManifestSource::File("examples/every-field.jsonnet".into()),
            &options_in(&crate_dir()),
        );
        let manifest = loaded.manifest;
        assert!(!manifest.env_keep.is_empty());
        assert!(!manifest.env_set.is_empty());
        assert!(!manifest.mounts.is_empty());
        for kind in [
            MountKind::Bind,
            MountKind::RoBind,
            MountKind::DevBind,
            MountKind::Tmpfs,
            MountKind::Proc,
        ] {
            assert!(
                manifest.mounts.iter().any(|m| m.kind == kind),
                "no {kind:?} mount"
            );
        }
        assert!(
            manifest
                .fs_entries
                .iter()
                .any(|e| matches!(e, FsEntry::Dir { .. }))
        );
        assert!(
            manifest
                .fs_entries
                .iter()
                .any(|e| matches!(e, FsEntry::File { .. }))
        );
        assert!(
            manifest
                .fs_entries
                .iter()
                .any(|e| matches!(e, FsEntry::Symlink { .. }))
        );
        // Every bind of a host path that may be absent is optional.
        for mount in &manifest.mounts {
            if let Some(source) = &mount.source
                && !source.exists()
            {
                assert!(
                    mount.optional,
                    "{} may not exist; mark it optional",
                    source.display()
                );
            }
        }
    }

    /// Every helper of the embedded library, checked through validation.
    #[test]
    fn library_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_ok(
            &ManifestSource::File(fixtures().join("library.jsonnet")),
            &options_in(dir.path()),
        );
        let manifest = loaded.manifest;
        assert_eq!(
            manifest.packages,
            [
                "bash",
                "coreutils",
                "git",
                "python3",
                "python3-pip",
                "python3-venv",
                "ca-certificates"
            ]
        );
        use crate::manifest::Mount;
        let bind = |kind, source: Option<&str>, target: &str, optional| Mount {
            kind,
            source: source.map(PathBuf::from),
            target: PathBuf::from(target),
            optional,
        };
        let mut expected = vec![
            bind(MountKind::Bind, Some("/srv/data"), "/srv/data", false),
            bind(MountKind::Bind, Some("/srv/a"), "/a", false),
            bind(
                MountKind::RoBind,
                Some("/etc/os-release"),
                "/etc/os-release",
                false,
            ),
            bind(MountKind::RoBind, Some("/opt/x"), "/x", false),
            bind(MountKind::DevBind, Some("/dev/fuse"), "/dev/fuse", true),
            bind(MountKind::Tmpfs, None, "/var/cache", false),
            bind(MountKind::Bind, Some("/maybe"), "/maybe", true),
        ];
        expected.extend(
            ["/etc/ssl/certs", "/etc/pki", "/etc/ca-certificates"]
                .map(|path| bind(MountKind::RoBind, Some(path), path, true)),
        );
        assert_eq!(manifest.mounts, expected);
        assert_eq!(
            manifest.fs_entries,
            [
                FsEntry::Dir {
                    path: "/work".into(),
                    mode: 0o755
                },
                FsEntry::Dir {
                    path: "/secret".into(),
                    mode: 0o700
                },
                FsEntry::File {
                    path: "/etc/empty".into(),
                    mode: 0o644,
                    contents: String::new(),
                    overrides: false,
                },
                FsEntry::File {
                    path: "/etc/motd".into(),
                    mode: 0o600,
                    contents: "hi\n".into(),
                    overrides: false,
                },
                FsEntry::Symlink {
                    path: "/usr/bin/python".into(),
                    target: "python3".into(),
                    overrides: false,
                },
            ]
        );
    }
}
