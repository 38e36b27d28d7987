//! The launch front: a launch whose record (`store::record`) still holds, run from the
//! process's first instruction to bwrap's exec without starting the C library.
//!
//! Why: paude is a static program, and the C library's start-up asks the CPU about its
//! features and caches about forty times (`cpuid`), each a trap to the hypervisor on a virtual
//! machine: about 0.35 ms there, a third of what paude added to bwrap's own start on a hit
//! (BENCHMARKS.md). bwrap pays that too, but paude need not pay it first.
//!
//! How: the program's entry point (`main.rs`) calls [`launch`] with the stack the kernel laid
//! out. The front reads `paude venv`'s command line with the quick reader (`cli`), gathers the
//! launch's facts, finds the record by the same inputs the full program wrote it under, asks
//! every recorded question again ([`holds`]), takes the environment's lock without waiting,
//! checks the tree, marks it used, starts the lock's holder, says the recorded lines and execs
//! bwrap (or, for `--dry-run`, prints the line). Anything else (another command, a closed
//! standard descriptor, no record, a changed answer, a busy lock, a buffer too small), and it
//! returns having changed nothing that matters (at most the environment's last-used time),
//! and the full program starts as if the front were not there. Once the lock's holder runs,
//! the front does not return: an exec that fails ends paude with its error, as the full
//! program's would.
//!
//! Rules for code here, since the C library has not started: no allocation, no thread-local,
//! no `std`, no panic; system calls through `rustix` (raw on Linux) or `bare`; the C library's
//! string functions, which the compiler calls by name, are sent to plain versions while the
//! front runs (`main.rs`), and a static program is relocated before the front starts. The
//! tests that are served records (`tests/cache.rs`, as root and as an unprivileged user) run
//! this code with no thread pointer set: a C library function that touches its thread state
//! (errno, cancellation, the stack guard) would crash them.

use crate::bare::{self, CPath, Decimal, Fd, Fixed, PATH_MAX, Sink};
use crate::probe::Kind;
use crate::store::cache::Seen;
use crate::store::lock::{self, Close, Holder};
use crate::store::record::{self, CheckView, Facts, LaunchView};
use core::ffi::{CStr, c_char};
use rustix::fd::AsFd;
use rustix::fs::{Mode, OFlags};

/// The largest record the front reads; a larger one is left to the full program.
const RECORD_MAX: usize = 256 * 1024;
/// Room for a launch's encoded inputs.
const INPUTS_MAX: usize = 64 * 1024;
/// Room for bwrap's arguments, each with its NUL.
const STRINGS_MAX: usize = 256 * 1024;
/// bwrap's arguments at most, with the program and the terminating null.
const POINTERS_MAX: usize = 8192;
/// Supplementary groups at most (the kernel allows 65536; more goes to the full program).
const GROUPS_MAX: usize = 1024;

/// The front's memory: zero pages until used, in the program's `.bss` (all zero, so that
/// it takes no room in the file and a page the front writes is a fresh one).
struct Space {
    record: [u8; RECORD_MAX],
    inputs: [u8; INPUTS_MAX],
    strings: [u8; STRINGS_MAX],
    pointers: [*const c_char; POINTERS_MAX],
    groups: [u32; GROUPS_MAX],
    holder: core::mem::MaybeUninit<Holder>,
}

static mut SPACE: Space = Space {
    record: [0; RECORD_MAX],
    inputs: [0; INPUTS_MAX],
    strings: [0; STRINGS_MAX],
    pointers: [core::ptr::null(); POINTERS_MAX],
    groups: [0; GROUPS_MAX],
    holder: core::mem::MaybeUninit::uninit(),
};

/// The process's arguments and environment as the kernel laid them out.
#[derive(Clone, Copy)]
pub struct Start {
    argc: usize,
    argv: *const *const c_char,
    envp: *const *const c_char,
}

impl Start {
    /// The start found at the process's initial stack pointer: `argc`, the arguments, a null,
    /// the environment, a null.
    ///
    /// # Safety
    /// `stack` must be the stack pointer the kernel started the process with.
    pub unsafe fn from_stack(stack: *const usize) -> Start {
        // SAFETY: the layout above, which the kernel guarantees.
        unsafe {
            let argc = *stack;
            let argv = stack.add(1) as *const *const c_char;
            Start {
                argc,
                argv,
                envp: argv.add(argc + 1),
            }
        }
    }

    /// The start the C runtime passes to `main`.
    ///
    /// # Safety
    /// The arguments must be `main`'s own.
    pub unsafe fn new(
        argc: usize,
        argv: *const *const c_char,
        envp: *const *const c_char,
    ) -> Start {
        Start { argc, argv, envp }
    }

    fn word(&self, at: usize) -> &'static [u8] {
        // SAFETY: `at < argc`, and each argument is a NUL-terminated string that lives as long
        // as the process.
        unsafe { CStr::from_ptr(*self.argv.add(at)).to_bytes() }
    }

    fn words(&self) -> impl Iterator<Item = &'static [u8]> + Clone + use<> {
        let start = *self;
        (0..start.argc).map(move |at| start.word(at))
    }

    fn env(&self) -> impl Iterator<Item = &'static [u8]> + Clone + use<> {
        let envp = self.envp;
        (0..)
            // SAFETY: the environment is a null-terminated array of NUL-terminated strings;
            // `map_while` stops at the null.
            .map(move |at| unsafe { *envp.add(at) })
            .map_while(|entry| (!entry.is_null()).then_some(entry))
            // SAFETY: as above.
            .map(|entry| unsafe { CStr::from_ptr(entry).to_bytes() })
    }
}

/// Runs the launch if its record holds; returns, having changed nothing, if not.
///
/// # Safety
/// Called once, at the program's start, before anything else runs (the front's memory is
/// the program's own, without a lock).
pub unsafe fn launch(start: Start) {
    // SAFETY: the only reference to the front's memory, as the caller vouches.
    if let Some(space) = unsafe { (&raw mut SPACE).as_mut() } {
        attempt(start, space);
    }
}

/// `$PAUDE_HOME` as `HostFacts::gather` works it out (`host::store_home`); `None` where the
/// full program has something to say.
fn paude_home(env: impl Iterator<Item = &'static [u8]> + Clone) -> Option<CPath> {
    use crate::host::StoreHome;
    let given = bare::env_value(env.clone(), b"PAUDE_HOME");
    match crate::host::store_home(given, bare::env_value(env, b"HOME")) {
        StoreHome::Given(dir) => CPath::new(&[dir]),
        StoreHome::UnderHome(home) => joined(home, &[crate::host::STORE_IN_HOME.as_bytes()]),
        _ => None,
    }
}

/// Appends `/name` to `path`, as `Path::join` does (no second slash after one).
fn join(path: &mut CPath, name: &[u8]) -> Option<()> {
    if !path.as_bytes().ends_with(b"/") {
        path.push(b"/")?;
    }
    path.push(name)
}

/// `path` and then the names, joined.
fn joined(path: &[u8], names: &[&[u8]]) -> Option<CPath> {
    let mut joined = CPath::new(&[path])?;
    for name in names {
        join(&mut joined, name)?;
    }
    Some(joined)
}

/// Whether a recorded question, asked again, has the recorded answer (as `Check::holds`).
fn holds(check: CheckView<'_>, env: impl Iterator<Item = &'static [u8]>) -> bool {
    let path = |bytes: &[u8]| CPath::new(&[bytes]);
    match check {
        CheckView::Kind {
            path: p,
            follow,
            kind,
        } => path(p).is_some_and(|p| Kind::of(p.as_cstr(), follow) == kind),
        CheckView::Same { path: p, seen } => {
            path(p).is_some_and(|p| Seen::of(p.as_cstr()).is_ok_and(|now| now == seen))
        }
        CheckView::Executable { path: p, allowed } => {
            path(p).is_some_and(|p| crate::probe::executable(p.as_cstr()) == allowed)
        }
        CheckView::Real { path: p, real } => path(p).is_some_and(|p| {
            let mut out = [0; PATH_MAX];
            // No answer from /proc is no answer at all, whatever was recorded.
            bare::real_path(p.as_cstr(), &mut out) == Ok(real)
        }),
        CheckView::Subdirectories { path: p, names } => path(p).is_some_and(|p| {
            let (mut found, mut recorded) = (0, true);
            let listed = bare::subdirectories(p.as_cstr(), &mut |name| {
                found += 1;
                recorded &= names.is_some_and(|names| names.iter().any(|n| n == name));
            });
            match names {
                // Names in a directory are unique: as many, each recorded, is the same set.
                Some(names) => listed.is_ok() && recorded && found == names.len(),
                None => listed.is_err(),
            }
        }),
        CheckView::Env { name, value } => bare::env_value(env, name) == value,
    }
}

/// The front's work; `None` where it leaves the launch to the full program.
fn attempt(start: Start, space: &'static mut Space) -> Option<()> {
    let Space {
        record: record_space,
        inputs: inputs_space,
        strings,
        pointers,
        groups: groups_space,
        holder,
    } = space;
    let mut dry_run = false;
    // (`--dry-run` is a record input too: it is one of the command line's words.)
    let own = crate::cli::walk_venv_args(start.words(), &mut |option, _| {
        dry_run |= option == crate::cli::VenvOption::DryRun;
    })?;
    // A closed standard descriptor would be reused by what the front opens (the full
    // program opens /dev/null on it first).
    // SAFETY: F_GETFD only asks about the descriptor.
    let closed = |fd| rustix::io::fcntl_getfd(unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) });
    if (0..=2).any(|fd| closed(fd).is_err()) {
        return None;
    }
    let env = start.env();
    let uid = rustix::process::getuid().as_raw();
    // SAFETY: the kernel writes at most GROUPS_MAX ids into the array.
    let groups = unsafe {
        bare::raw::syscall(
            bare::raw::GETGROUPS,
            [GROUPS_MAX, groups_space.as_mut_ptr() as usize, 0, 0, 0, 0],
        )
    };
    let mut cwd = [0u8; PATH_MAX];
    // SAFETY: the kernel writes at most PATH_MAX bytes, the path and its NUL.
    let cwd_length = unsafe {
        bare::raw::syscall(
            bare::raw::GETCWD,
            [cwd.as_mut_ptr() as usize, PATH_MAX, 0, 0, 0, 0],
        )
    };
    // The length counts the NUL; an unreachable directory has no leading slash.
    let cwd = cwd.get(..usize::try_from(cwd_length).ok()?.checked_sub(1)?)?;
    if groups < 0 || !cwd.starts_with(b"/") {
        return None;
    }
    let home = paude_home(env.clone())?;
    let facts = Facts {
        uid,
        gid: rustix::process::getgid().as_raw(),
        groups: &groups_space[..groups as usize],
        cwd,
        paude_home: home.as_bytes(),
        stdin_is_terminal: rustix::termios::isatty(rustix::stdio::stdin()),
        stderr_is_terminal: rustix::termios::isatty(rustix::stdio::stderr()),
    };
    let mut inputs = Fixed::new(inputs_space);
    record::encode_inputs(&mut inputs, start.words(), own, &facts);
    let inputs = inputs.written()?;

    let build = crate::store::cache::build_name(crate::host::own_build_id()?)?;
    let slot = record::slot_name(inputs);
    let path = joined(home.as_bytes(), &[b"cache", &build, b"launch", &slot])?;
    let file = open(&path, OFlags::RDONLY)?;
    let bytes = read_whole(&file, record_space)?;
    let launch = record::walk(bytes, inputs, &mut |check| holds(check, env.clone()))?;

    // The kernel's settings are not files, so no record answers for them.
    let zero = |path: &str| Some(crate::host::sysctl_text(path, &mut [0; 64])? == "0");
    if crate::host::refusing_sysctl(uid, &zero).is_some() {
        return None;
    }
    let venv = joined(home.as_bytes(), &[b"venv"])?;
    let lease = lease(&venv, launch.venv)?;
    let tree = CPath::new(&[launch.tree.0])?;
    if Seen::of(tree.as_cstr()) != Ok(launch.tree.1) {
        return None;
    }
    // The command's words after the first, appended as given.
    let rest = start.words().skip(own + 1);
    if dry_run {
        // As `finish` prints it: the filter read from descriptor 3, redirected from its file.
        let mut line = Fixed::new(strings);
        let seccomp: [&[u8]; 2] = [b"--seccomp", b"3"];
        let descriptors = &seccomp[..2 * usize::from(launch.filter.is_some())];
        let arguments = arguments(&launch, descriptors, rest);
        crate::sandbox::bwrap::dry_run_line(&mut line, launch.bwrap, arguments, launch.filter);
        let line = line.written()?;
        // As in the full program, a closed pipe is an error to report, not a signal to die of.
        ignore_sigpipe();
        for (warning, text) in launch.lines.flagged() {
            say(warning, text);
        }
        if let Err(errno) = write_all(rustix::stdio::stdout(), line) {
            fail(&[b"writing to stdout: "], errno);
        }
        drop(lease);
        exit(0);
    }
    let filter = match launch.filter {
        Some(path) => Some(open(&CPath::new(&[path])?, OFlags::RDONLY)?),
        None => None,
    };
    touch(&joined(venv.as_bytes(), &[launch.venv, b"last-used"])?)?;
    // The first pointer is kept for the shell (see `exec`).
    let strings = Strings {
        buffer: strings,
        used: 0,
        pointers,
        count: 1,
    };
    exec(start, own, strings, holder, &launch, lease, filter)
}

/// Opens `path` close-on-exec.
fn open(path: &CPath, flags: OFlags) -> Option<Fd> {
    bare::open(path.as_cstr(), flags, Mode::empty()).ok()
}

/// Reads a whole file into `buffer`; `None` if it does not fit.
fn read_whole<'b>(file: &Fd, buffer: &'b mut [u8]) -> Option<&'b [u8]> {
    let mut length = 0;
    loop {
        let room = buffer.get_mut(length..).filter(|room| !room.is_empty())?;
        match rustix::io::read(file, room) {
            Ok(0) => return Some(&buffer[..length]),
            Ok(read) => length += read,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
}

/// The environment's lock taken shared without waiting (where `Store::acquire` would wait,
/// say why, or build): the lock file, still the one at its path, and the tree there.
fn lease(venv: &CPath, key: &[u8]) -> Option<Fd> {
    let lock_name = CPath::new(&[key, b".lock"])?;
    let path = joined(venv.as_bytes(), &[lock_name.as_bytes()])?;
    let lock = open(&path, OFlags::RDONLY | OFlags::NOFOLLOW)?;
    if lock::attempt(lock.as_fd(), false) != Ok(lock::Attempt::Locked)
        || lock::is_current(lock.as_fd(), path.as_cstr()) != Ok(true)
    {
        return None;
    }
    let rootfs = joined(venv.as_bytes(), &[key, b"rootfs"])?;
    Kind::of(rootfs.as_cstr(), true).is_dir().then_some(lock)
}

/// Marks the environment used now, as `Store::touch` does (the file's modification time).
fn touch(path: &CPath) -> Option<()> {
    use rustix::fs::{Timespec, Timestamps, UTIME_NOW, UTIME_OMIT};
    let file = bare::open(
        path.as_cstr(),
        OFlags::WRONLY | OFlags::CREATE,
        Mode::from_raw_mode(0o666),
    )
    .ok()?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        },
    };
    rustix::fs::futimens(&file, &times).ok()
}

/// Hands the lock to a holder, says the recorded lines and execs bwrap, as `finish` in
/// `commands::venv` does; returns (having started nothing) only when it cannot get that far.
fn exec(
    start: Start,
    own: usize,
    mut strings: Strings<'_>,
    holder: &'static mut core::mem::MaybeUninit<Holder>,
    launch: &LaunchView<'static>,
    lock: Fd,
    filter: Option<Fd>,
) -> Option<()> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
    let (read, write) = (Fd::from_owned(read), Fd::from_owned(write));
    let (mut keep_open, mut seccomp) = (Decimal::default(), Decimal::default());
    let descriptors: [&[u8]; 4] = [
        b"--sync-fd",
        keep_open.of(write.raw() as u64),
        b"--seccomp",
        match &filter {
            Some(filter) => seccomp.of(filter.raw() as u64),
            None => b"",
        },
    ];
    let descriptors = &descriptors[..if filter.is_some() { 4 } else { 2 }];
    strings.add(launch.bwrap)?;
    for arg in arguments(launch, descriptors, start.words().skip(own + 1)) {
        strings.add(arg)?;
    }
    strings.point(core::ptr::null())?;

    // Every descriptor the caller leaked to paude will be kept out of the sandbox (as in
    // `sandbox::exec`); a kernel without close_range (asked here with a range that holds no
    // descriptor) is left to the full program.
    // SAFETY: no descriptor is numbered that high.
    unsafe { bare::close_range(u32::MAX, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) }.ok()?;
    // The front's memory lives as long as the process, and nothing writes the holder's part
    // again: the process execs next, or ends.
    let holder: &'static Holder = holder.write(Holder {
        pipe: read.raw(),
        close: Close::AllBut([lock.raw(), read.raw()]),
    });
    lock::spawn_holder(holder).ok()?;
    // From here the front does not return: the holder, which shares this memory, would run
    // beside the C library's start-up.
    drop((lock, read));
    let running: [&[u8]; 3] = [b"running ", launch.bwrap, b": "];
    // SAFETY: marking descriptors close-on-exec changes nothing before the exec.
    if let Err(errno) = unsafe { bare::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } {
        fail(&running, errno);
    }
    for fd in [
        Some(write.as_fd()),
        filter.as_ref().map(|file| file.as_fd()),
    ]
    .into_iter()
    .flatten()
    {
        if let Err(errno) = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()) {
            fail(&running, errno);
        }
    }
    ignore_sigpipe();
    for (warning, text) in launch.lines.flagged() {
        say(warning, text);
    }
    reset_signals();
    let execve = |pointers: &[*const c_char]| {
        // SAFETY: the program and every argument are NUL-terminated strings, the array
        // null-terminated; the environment is the process's own.
        let result = unsafe {
            bare::raw::syscall(
                bare::raw::EXECVE,
                [
                    pointers[0] as usize,
                    pointers.as_ptr() as usize,
                    start.envp as usize,
                    0,
                    0,
                    0,
                ],
            )
        };
        rustix::io::Errno::from_raw_os_error(-result as i32)
    };
    let mut errno = execve(&strings.pointers[1..]);
    if errno == rustix::io::Errno::NOEXEC {
        // A file the kernel cannot run, the C library's `execvp` (which the full program's
        // exec is) hands to the shell, as POSIX has it: so does the front.
        strings.pointers[0] = c"/bin/sh".as_ptr();
        errno = execve(strings.pointers);
    }
    if errno == rustix::io::Errno::TOOBIG {
        let mut bytes = Decimal::default();
        // As the full program counts: each argument with its NUL, the program not.
        let length = (strings.used - launch.bwrap.len() - 1) as u64;
        fail(
            &[
                b"the bwrap command line is too long for the kernel (",
                bytes.of(length),
                b" bytes of arguments); ",
                crate::sandbox::exec::TOO_LONG_FIX.as_bytes(),
            ],
            errno,
        );
    }
    // The write end closes with this process: the holder ends.
    fail(&running, errno)
}

/// Ends paude as its full program ends on an error: `paude: error: `, the message's parts and
/// the error as the standard library writes an `io::Error` (`Permission denied (os error
/// 13)`) on stderr, then status 125. The too-long message names its fix instead.
fn fail(parts: &[&[u8]], errno: rustix::io::Errno) -> ! {
    let stderr = rustix::stdio::stderr();
    let _ = write_all(stderr, b"paude: error: ");
    for part in parts {
        let _ = write_all(stderr, part);
    }
    if errno != rustix::io::Errno::TOOBIG {
        let (mut number, mut code) = (Decimal::default(), Decimal::default());
        let [text, unknown] = errno_text(errno, &mut number);
        let code = code.of(errno.raw_os_error() as u64);
        for part in [text, unknown, b" (os error ", code, b")"] {
            let _ = write_all(stderr, part);
        }
    }
    let _ = write_all(stderr, b"\n");
    exit(125)
}

mod errno_text {
    include!(concat!(env!("OUT_DIR"), "/errno_text.rs"));
}

/// The C library's text for an error number (`Permission denied`), as the standard library
/// shows it; `Unknown error N`, as the C library says, for a number it does not know.
fn errno_text(errno: rustix::io::Errno, number: &mut Decimal) -> [&[u8]; 2] {
    let code = errno.raw_os_error();
    match usize::try_from(code)
        .ok()
        .and_then(|at| errno_text::ERRNO_TEXT.get(at))
    {
        Some(text) if !text.is_empty() => [text.as_bytes(), b""],
        _ => [b"Unknown error ", number.of(code as u64)],
    }
}

/// bwrap's arguments for a recorded launch: the recorded ones with the descriptor options at
/// their place, then the command's words after the first (as `finish` in `commands::venv`).
fn arguments<'r: 'd, 'd>(
    launch: &LaunchView<'r>,
    descriptors: &'d [&'d [u8]],
    rest: impl Iterator<Item = &'r [u8]>,
) -> impl Iterator<Item = &'d [u8]> {
    let at = launch.descriptors_at;
    let recorded = |arg: &'r [u8]| -> &'d [u8] { arg };
    launch
        .argv
        .iter()
        .take(at)
        .map(recorded)
        .chain(descriptors.iter().copied())
        .chain(launch.argv.iter().skip(at).map(recorded))
        .chain(rest.map(recorded))
}

/// Ends the process with `status` (nothing is buffered: the front writes directly).
fn exit(status: i32) -> ! {
    // SAFETY: exit_group ends the process; it does not return.
    unsafe {
        bare::raw::syscall(
            libc::SYS_exit_group as usize,
            [status as usize, 0, 0, 0, 0, 0],
        )
    };
    unreachable!()
}

/// bwrap's arguments: NUL-terminated copies in one buffer, and the array of pointers (from
/// the second on: the first is the shell's, for a file the kernel cannot run).
struct Strings<'s> {
    buffer: &'s mut [u8],
    used: usize,
    pointers: &'s mut [*const c_char],
    count: usize,
}

impl Strings<'_> {
    fn add(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.used.checked_add(bytes.len())?;
        if bytes.contains(&0) {
            return None;
        }
        let room = self.buffer.get_mut(self.used..=end)?;
        room[..bytes.len()].copy_from_slice(bytes);
        room[bytes.len()] = 0;
        let pointer = room.as_ptr() as *const c_char;
        self.used = end + 1;
        self.point(pointer)
    }

    fn point(&mut self, pointer: *const c_char) -> Option<()> {
        *self.pointers.get_mut(self.count)? = pointer;
        self.count += 1;
        Some(())
    }
}

/// Says a recorded line on stderr, as `commands::status` and `commands::warn` do.
fn say(warning: bool, text: &[u8]) {
    let prefix: &[u8] = if warning {
        b"paude: warning: "
    } else {
        b"paude: "
    };
    let mut line = [0u8; 4096];
    let mut sink = Fixed::new(&mut line);
    for part in [prefix, text, b"\n"] {
        sink.put(part);
    }
    // A line that cannot be said does not stop the launch.
    let stderr = rustix::stdio::stderr();
    let _ = match sink.written() {
        Some(line) => write_all(stderr, line),
        None => [prefix, text, b"\n"]
            .into_iter()
            .try_for_each(|part| write_all(stderr, part)),
    };
}

fn write_all(fd: rustix::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), rustix::io::Errno> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(written) => bytes = bytes.get(written..).unwrap_or_default(),
            Err(rustix::io::Errno::INTR) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

/// Ignores SIGPIPE, as the full program does from its start.
fn ignore_sigpipe() {
    sigpipe(1);
}

/// The signal state Rust's `Command::exec` gives a program, which the full program's launch
/// uses: an empty signal mask and SIGPIPE's default action (the caller may have ignored it).
fn reset_signals() {
    sigpipe(0);
    let empty: u64 = 0;
    // SAFETY: an empty mask, of the size the kernel expects.
    unsafe {
        bare::raw::syscall(
            libc::SYS_rt_sigprocmask as usize,
            [
                libc::SIG_SETMASK as usize,
                &raw const empty as usize,
                0,
                8,
                0,
                0,
            ],
        );
    }
}

/// Sets SIGPIPE's action: 0 the default, 1 ignore.
fn sigpipe(action: usize) {
    /// The kernel's `struct sigaction` on x86-64 and the other 64-bit targets paude knows.
    #[repr(C)]
    struct SigAction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let action = SigAction {
        handler: action,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: SIG_DFL or SIG_IGN, which need no handler code, of the size the kernel expects.
    unsafe {
        bare::raw::syscall(
            libc::SYS_rt_sigaction as usize,
            [
                libc::SIGPIPE as usize,
                &raw const action as usize,
                0,
                8,
                0,
                0,
            ],
        );
    }
}
