//! Lays out a release build's warm path together: the functions a launch on a cache hit runs
//! are listed, in `link/warm-path.symbols`, for the linker to place side by side.
//!
//! Why: on a hit, a good part of what paude adds to bwrap's own start-up is the kernel mapping
//! the program's pages as they are first run, sixteen pages around each one touched. Scattered
//! over 4.4 MiB of code, the warm path mapped 2.5 MiB of it; laid out together, 0.7 MiB (see
//! BENCHMARKS.md). `scripts/warm-path-symbols` writes the list.
//!
//! GNU ld takes no symbol ordering file (LLD does), so the list is passed only where rustc
//! links with LLD by default (x86-64 Linux with glibc, from Rust 1.90) and no other linker
//! was configured. A
//! symbol the list names that the build does not have (a toolchain or dependency update
//! changes the hashes in names) is skipped silently; the script rewrites the list.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=link/warm-path.symbols");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    errno_texts();
    let Ok(manifest_dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    front_entry();
    let list = Path::new(&manifest_dir).join("link/warm-path.symbols");
    let release = env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let target = env::var("TARGET").unwrap_or_default();
    if !release || target != "x86_64-unknown-linux-gnu" || !list.is_file() {
        return;
    }
    // A linker named in the configuration may be any linker.
    if env::var_os("RUSTC_LINKER").is_some() {
        return;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.split('\x1f').any(|flag| flag.contains("linker")) {
        return;
    }
    if rustc_minor_version().is_none_or(|minor| minor < 90) {
        return;
    }
    println!(
        "cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// On x86-64 Linux, paude's entry point is the launch front's (`main.rs`), which runs before
/// the C library starts; the C library's string functions, which compiled code calls by name,
/// reach it through wrappers that use plain versions while the front runs.
fn front_entry() {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch != "x86_64" || os != "linux" {
        return;
    }
    println!("cargo::rustc-link-arg-bin=paude=-Wl,-e,paude_entry");
    // The entry point relocates the program itself and knows only the plain relocation
    // table; a linker that would pack them otherwise is told not to.
    println!("cargo::rustc-link-arg-bin=paude=-Wl,-z,nopack-relative-relocs");
    for function in ["memcpy", "memmove", "memset", "memcmp", "bcmp", "strlen"] {
        println!("cargo::rustc-link-arg-bin=paude=-Wl,--wrap={function}");
    }
}

/// The C library's text for each error number, as the standard library shows an `io::Error`
/// (`Permission denied`), for the front's messages (`$OUT_DIR/errno_text.rs`): the front
/// cannot ask the C library, which has not started, and the library linked in is this host's.
fn errno_texts() {
    let Some(out) = env::var_os("OUT_DIR") else {
        return;
    };
    let mut table = String::from("/// `strerror` of each error number, from build.rs.\n");
    table.push_str("pub const ERRNO_TEXT: [&str; 134] = [\n");
    for errno in 0..134 {
        let shown = std::io::Error::from_raw_os_error(errno).to_string();
        let text = shown.split(" (os error").next().unwrap_or_default();
        table.push_str(&format!("    {text:?},\n"));
    }
    table.push_str("];\n");
    std::fs::write(Path::new(&out).join("errno_text.rs"), table).ok();
}

/// The minor version of the rustc building this crate (`rustc 1.95.0 (…)` gives 95).
fn rustc_minor_version() -> Option<u32> {
    let rustc = env::var_os("RUSTC")?;
    let output = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse().ok()
}
