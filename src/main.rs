//! paude's entry point: parse, dispatch, print errors, map them to exit codes.
//!
//! Exit status, as `podman run` and `env` use it: the sandboxed command's own status passes
//! through (paude execs bwrap, which returns it); paude's own failures are 125; a command that
//! cannot be run is 126, one that is not found 127.
//!
//! paude starts at the C `main`, not at Rust's: the start-up Rust runs before its `main`
//! installs a stack-overflow handler, and to find the main thread's stack it reads and parses
//! `/proc/self/maps`. That costs a launch about fifteen system calls and two dozen page faults,
//! a sizeable part of what paude spends before it becomes bwrap. The rest of that start-up
//! paude does itself, in [`main`]: descriptors 0-2 are made open (on /dev/null where the
//! caller closed one), SIGPIPE is ignored (writing to a closed pipe is an error, not death),
//! a panic exits with 101, and stdout is flushed before returning. What differs: a stack
//! overflow stops at the kernel's guard gap as a plain SIGSEGV instead of Rust's message, and
//! a panic message names the thread `<unnamed>` instead of `main`.

//! Before all that, and before the C library starts, the launch front (`paude::front`) runs
//! from the program's entry point ([`entry`]): a launch whose record still holds goes from
//! there straight to bwrap.

// The test build of this binary runs the test harness's `main` (it has no tests of its own).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

use clap::Parser;
use paude::cli::{Cli, Command};
use paude::commands::{self, ExitError};
use paude::host::HostFacts;
use std::ffi::{OsString, c_int};
use std::process::ExitCode;

/// paude's own failures, as podman's.
const EXIT_PAUDE_FAILED: u8 = 125;

/// A panic, as Rust's own start-up reports it.
const EXIT_PANICKED: c_int = 101;

/// The C entry point; see the module documentation for what it does in place of Rust's.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(
    argc: c_int,
    argv: *const *const std::ffi::c_char,
    envp: *const *const std::ffi::c_char,
) -> c_int {
    use std::io::Write;
    use std::os::unix::ffi::OsStringExt;
    // Where the program's entry point is not the front's own, the front runs here, with the C
    // library started.
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    // SAFETY: the C runtime's arguments and environment; nothing has run yet.
    unsafe {
        paude::front::launch(paude::front::Start::new(argc as usize, argv, envp))
    };
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    let _ = envp;
    open_standard_descriptors();
    // SAFETY: setting a signal's disposition to "ignore" involves no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let args: Vec<OsString> = (0..usize::try_from(argc).unwrap_or(0))
        .map(|index| {
            // SAFETY: the C runtime passes `argc` valid, NUL-terminated strings in `argv`.
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(index)) };
            OsString::from_vec(arg.to_bytes().to_vec())
        })
        .collect();
    let status = match std::panic::catch_unwind(move || paude_main(args)) {
        Ok(status) => c_int::from(status),
        // The panic hook has printed the message.
        Err(_) => EXIT_PANICKED,
    };
    std::io::stdout().flush().ok();
    status
}

/// The program's entry point on x86-64 Linux (the linker is told so in build.rs): the launch
/// front first, then the C library's own entry point `_start` with the stack and registers
/// as the kernel (or the loader) left them, as if the front had not run.
/// (The test build of this binary starts here too: the linker is told so for both.)
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod entry {
    use std::sync::atomic::{AtomicBool, Ordering};

    // The entry point. A static position-independent program is relocated first, here in
    // assembly (the C library would do it at its start): until then every pointer stored in
    // the program's data is off by where the program was loaded, and in an unoptimized build
    // so is every call from one crate to another. Only the relative relocations are applied,
    // which the C library then applies again, writing the same values. A program that names
    // an interpreter was relocated by it, and one that is not position-independent needs none.
    std::arch::global_asm!(
        ".globl paude_entry",
        ".type paude_entry, @function",
        "paude_entry:",
        // The stack the kernel laid out, and what a loader passes in rdx for `_start`.
        "mov r12, rsp",
        "mov r13, rdx",
        "lea rsi, [rip + _DYNAMIC]",
        "lea rdx, [rip + __ehdr_start]",
        "test rsi, rsi",
        "jz 3f",
        // ET_DYN: position-independent.
        "cmp word ptr [rdx + 16], 3",
        "jne 3f",
        // No PT_INTERP among the program headers; r10 gets the address the first segment
        // (the one at offset 0, with the ELF header) was linked at.
        "mov rax, [rdx + 32]",
        "add rax, rdx",
        "movzx ecx, word ptr [rdx + 56]",
        "xor r10d, r10d",
        "1:",
        "test ecx, ecx",
        "jz 2f",
        "cmp dword ptr [rax], 3",
        "je 3f",
        "cmp dword ptr [rax], 1",
        "jne 8f",
        "cmp qword ptr [rax + 8], 0",
        "jne 8f",
        "mov r10, [rax + 16]",
        "8:",
        "add rax, 56",
        "dec ecx",
        "jmp 1b",
        // The load base: where the header is less where it was linked.
        "2:",
        "sub rdx, r10",
        // DT_RELA (7) and DT_RELASZ (8) from the dynamic section, up to DT_NULL. Packed
        // relative relocations (DT_RELR, 36), which build.rs tells the linker not to make,
        // would leave pointers this code does not fix: then the front does not run.
        "xor r8d, r8d",
        "xor r9d, r9d",
        "4:",
        "mov rax, [rsi]",
        "test rax, rax",
        "jz 5f",
        "cmp rax, 36",
        "je 9f",
        "cmp rax, 7",
        "cmove r8, [rsi + 8]",
        "cmp rax, 8",
        "cmove r9, [rsi + 8]",
        "add rsi, 16",
        "jmp 4b",
        "5:",
        "test r8, r8",
        "jz 3f",
        "add r8, rdx",
        "add r9, r8",
        // Each R_X86_64_RELATIVE (8): the place at base + offset gets base + addend.
        "6:",
        "cmp r8, r9",
        "jae 3f",
        "cmp dword ptr [r8 + 8], 8",
        "jne 7f",
        "mov rax, [r8 + 16]",
        "add rax, rdx",
        "mov rcx, [r8]",
        "mov [rdx + rcx], rax",
        "7:",
        "add r8, 24",
        "jmp 6b",
        "3:",
        "mov rdi, r12",
        "and rsp, -16",
        "call {front}",
        "9:",
        "mov rsp, r12",
        "mov rdx, r13",
        "jmp _start",
        ".weak _DYNAMIC",
        front = sym front,
    );

    /// Set while the front runs: the C library's string functions are not set up yet (their
    /// implementations are chosen by the CPU's features as it starts), so the program's calls
    /// to them, which the linker sends here (`--wrap`, build.rs), go to plain versions.
    static FRONT_RUNNING: AtomicBool = AtomicBool::new(false);

    /// Runs the front; returns to `paude_entry` when the launch is the full program's.
    unsafe extern "C" fn front(stack: *const usize) {
        use std::sync::atomic::compiler_fence;
        FRONT_RUNNING.store(true, Ordering::Relaxed);
        // No call to a string function may be moved to either side of the flag's changes.
        compiler_fence(Ordering::SeqCst);
        // SAFETY: the stack is the kernel's, as `paude_entry` found it; the front runs once,
        // first, alone.
        unsafe {
            paude::front::launch(paude::front::Start::from_stack(stack));
        }
        compiler_fence(Ordering::SeqCst);
        FRONT_RUNNING.store(false, Ordering::Relaxed);
    }

    unsafe extern "C" {
        fn __real_memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
        fn __real_memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
        fn __real_memset(dst: *mut u8, byte: i32, n: usize) -> *mut u8;
        fn __real_memcmp(a: *const u8, b: *const u8, n: usize) -> i32;
        fn __real_bcmp(a: *const u8, b: *const u8, n: usize) -> i32;
        fn __real_strlen(s: *const u8) -> usize;
    }

    // The plain versions are written in assembly or with volatile reads, so that the compiler
    // cannot turn them back into calls to the functions they stand in for.

    #[unsafe(no_mangle)]
    unsafe extern "C" fn __wrap_memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        if !FRONT_RUNNING.load(Ordering::Relaxed) {
            // SAFETY: the caller's arguments, passed on.
            return unsafe { __real_memcpy(dst, src, n) };
        }
        // SAFETY: the caller vouches for `n` bytes at each; the direction flag is clear.
        unsafe {
            std::arch::asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _,
                inout("rcx") n => _, options(nostack, preserves_flags));
        }
        dst
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn __wrap_memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        if !FRONT_RUNNING.load(Ordering::Relaxed) {
            // SAFETY: the caller's arguments, passed on.
            return unsafe { __real_memmove(dst, src, n) };
        }
        if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
            // SAFETY: as for memcpy: forward is safe when the destination starts first.
            return unsafe { __wrap_memcpy(dst, src, n) };
        }
        // SAFETY: backwards from the last byte, the direction flag set and cleared again.
        unsafe {
            std::arch::asm!("std", "rep movsb", "cld",
                inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                inout("rcx") n => _, options(nostack));
        }
        dst
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn __wrap_memset(dst: *mut u8, byte: i32, n: usize) -> *mut u8 {
        if !FRONT_RUNNING.load(Ordering::Relaxed) {
            // SAFETY: the caller's arguments, passed on.
            return unsafe { __real_memset(dst, byte, n) };
        }
        // SAFETY: the caller vouches for `n` bytes; the direction flag is clear.
        unsafe {
            std::arch::asm!("rep stosb", inout("rdi") dst => _, in("al") byte as u8,
                inout("rcx") n => _, options(nostack, preserves_flags));
        }
        dst
    }

    /// The difference of the first differing bytes, as `memcmp` gives it.
    fn compare(a: *const u8, b: *const u8, n: usize) -> i32 {
        for at in 0..n {
            // SAFETY: the caller vouches for `n` bytes at each.
            let (x, y) = unsafe { (a.add(at).read_volatile(), b.add(at).read_volatile()) };
            if x != y {
                return i32::from(x) - i32::from(y);
            }
        }
        0
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn __wrap_memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        if !FRONT_RUNNING.load(Ordering::Relaxed) {
            // SAFETY: the caller's arguments, passed on.
            return unsafe { __real_memcmp(a, b, n) };
        }
        compare(a, b, n)
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn __wrap_bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        if !FRONT_RUNNING.load(Ordering::Relaxed) {
            // SAFETY: the caller's arguments, passed on.
            return unsafe { __real_bcmp(a, b, n) };
        }
        compare(a, b, n)
    }

    #[unsafe(no_mangle)]
    unsafe extern "C" fn __wrap_strlen(s: *const u8) -> usize {
        if !FRONT_RUNNING.load(Ordering::Relaxed) {
            // SAFETY: the caller's argument, passed on.
            return unsafe { __real_strlen(s) };
        }
        let mut length = 0;
        // SAFETY: the caller vouches for a NUL-terminated string.
        while unsafe { s.add(length).read_volatile() } != 0 {
            length += 1;
        }
        length
    }
}

fn paude_main(args: Vec<OsString>) -> u8 {
    // A launch's usual command line is read without building clap's parser (see
    // `quick_venv_args`); every other line, and every mistake, goes to clap.
    let cli = match paude::cli::quick_venv_args(&args) {
        Some(venv) => Cli {
            command: Command::Venv(venv),
        },
        None => match Cli::try_parse_from(&args) {
            Ok(cli) => cli,
            Err(error) if error.use_stderr() => {
                // clap's text starts with "error: "; prefixed, it reads like every other failure.
                eprint!("paude: {}", error.render());
                return EXIT_PAUDE_FAILED;
            }
            Err(help_or_version) => {
                help_or_version.print().ok();
                return 0;
            }
        },
    };
    match run(cli, &args) {
        Ok(code) => status_of(code),
        Err(error) => {
            eprintln!("paude: error: {error:#}");
            match error.downcast_ref::<ExitError>() {
                Some(exit) => exit.code,
                None => EXIT_PAUDE_FAILED,
            }
        }
    }
}

fn run(cli: Cli, words: &[OsString]) -> anyhow::Result<ExitCode> {
    let host = HostFacts::gather()?;
    match cli.command {
        Command::Venv(args) => commands::venv::run(args, words, &host),
        Command::List(args) => commands::list::run(args, &host),
        Command::Cleanup(args) => commands::cleanup::run(args, &host),
        Command::Doctor(args) => commands::doctor::run(args, &host),
    }
}

/// The status an `ExitCode` stands for, which the standard library gives no way to read back.
fn status_of(code: ExitCode) -> u8 {
    (0..=u8::MAX)
        .find(|status| ExitCode::from(*status) == code)
        .unwrap_or(EXIT_PAUDE_FAILED)
}

/// Makes sure descriptors 0-2 are open, on /dev/null where the caller closed one, so that no
/// file paude opens takes one of their numbers: bwrap passes 0-2 on to the sandboxed command.
fn open_standard_descriptors() {
    let mut standard = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `standard` is an array of three pollfd; a zero timeout does not wait.
    let polled = unsafe { libc::poll(standard.as_mut_ptr(), 3, 0) } != -1;
    for pollfd in standard {
        let closed = if polled {
            pollfd.revents & libc::POLLNVAL != 0
        } else {
            // SAFETY: F_GETFD only reads the descriptor's flags.
            let flags = unsafe { libc::fcntl(pollfd.fd, libc::F_GETFD) };
            flags == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
        };
        // The lowest free number is this one: those below it are open by now.
        // SAFETY: opening /dev/null has no effect but the new descriptor.
        if closed && unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } == -1 {
            std::process::abort();
        }
    }
}
