//! A seccomp filter against terminal injection, in the form bwrap's `--seccomp FD` reads.
//!
//! A sandboxed program that shares the user's terminal could push bytes into its input queue
//! (`ioctl TIOCSTI`) or paste the console selection into it (`ioctl TIOCLINUX`): whatever it
//! pushes is read by the user's shell once the sandbox ends. The filter makes those two
//! requests fail with EPERM and allows every other system call.
//!
//! bwrap reads the descriptor to its end and hands the bytes to the kernel as the body of a
//! `sock_fprog`: classic-BPF `sock_filter` instructions (u16 code, u8 jt, u8 jf, u32 k; 8
//! bytes) in native byte order, nothing before or after them.
//!
//! The program runs over the kernel's `seccomp_data` (nr: u32 at 0, arch: u32 at 4, then
//! args: six u64 from 16):
//!
//! ```text
//! arch is one of this CPU family's ABIs?   no → kill the process
//! nr (per ABI) is ioctl?                   no → allow
//! low 32 bits of args[1] TIOCSTI/TIOCLINUX? yes → EPERM, no → allow
//! ```
//!
//! Only the low 32 bits of the request are compared because `ioctl` takes it as an
//! `unsigned int`: a filter comparing 64 bits is bypassed by setting the high ones, as
//! flatpak learned (CVE-2019-10063).

use libc::sock_filter;

/// Where `seccomp_data` keeps what the filter reads.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
/// `args[1]` is a u64 at 24: its low half comes first only on little-endian machines.
const REQUEST_OFFSET: u32 = if cfg!(target_endian = "little") {
    24
} else {
    28
};

/// The terminal requests blocked, from `asm-generic/ioctls.h`, which x86, arm and riscv use
/// (powerpc, mips, sparc and alpha number their tty requests differently; see `ABIS`).
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541C;

/// `AUDIT_ARCH_*` from `linux/audit.h`: the ELF machine number with 64-bit and
/// little-endian flags; the kernel reports one per system call in `seccomp_data.arch`.
const ARCH_64BIT: u32 = 0x8000_0000;
const ARCH_LE: u32 = 0x4000_0000;
const AUDIT_ARCH_X86_64: u32 = 62 | ARCH_64BIT | ARCH_LE;
const AUDIT_ARCH_I386: u32 = 3 | ARCH_LE;
const AUDIT_ARCH_AARCH64: u32 = 183 | ARCH_64BIT | ARCH_LE;
const AUDIT_ARCH_ARM: u32 = 40 | ARCH_LE;
const AUDIT_ARCH_RISCV64: u32 = 243 | ARCH_64BIT | ARCH_LE;
const AUDIT_ARCH_RISCV32: u32 = 243 | ARCH_LE;

/// x32 shares x86_64's arch value and marks its system call numbers with this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// One system call convention: the arch the kernel reports for it, and the numbers that
/// reach `ioctl` once `nr_mask` is applied to `seccomp_data.nr`.
struct Abi {
    arch: u32,
    nr_mask: u32,
    ioctl: &'static [u32],
}

/// An ABI whose numbers need no mask.
const fn native(arch: u32, ioctl: &'static [u32]) -> Abi {
    Abi {
        arch,
        nr_mask: !0,
        ioctl,
    }
}

/// The ABIs of each CPU family. A family is listed whole, compat ABIs included, because a
/// 32-bit process (or a 32-bit paude) may run on the 64-bit kernel: a process left out would
/// be killed, not let through.
const X86: &[Abi] = &[
    // x32's ioctl is 514 with the x32 bit. Masking the bit and matching 16 too covers kernels
    // whose single table took either number with or without the bit; in no table is any of
    // the four combinations a system call other than ioctl.
    Abi {
        arch: AUDIT_ARCH_X86_64,
        nr_mask: !X32_SYSCALL_BIT,
        ioctl: &[16, 514],
    },
    // `int 0x80` from a 64-bit process is reported as i386 too.
    native(AUDIT_ARCH_I386, &[54]),
];
const ARM: &[Abi] = &[
    native(AUDIT_ARCH_AARCH64, &[29]),
    native(AUDIT_ARCH_ARM, &[54]),
];
const RISCV: &[Abi] = &[
    native(AUDIT_ARCH_RISCV64, &[29]),
    native(AUDIT_ARCH_RISCV32, &[29]),
];

/// The family of this build; `None` where the numbers above are not known to hold: other
/// families number `ioctl` or the tty requests differently, and big-endian variants of these
/// have not been checked.
const ABIS: Option<&[Abi]> = if cfg!(not(target_endian = "little")) {
    None
} else if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
    Some(X86)
} else if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
    Some(ARM)
} else if cfg!(any(target_arch = "riscv64", target_arch = "riscv32")) {
    Some(RISCV)
} else {
    None
};

const LOAD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const AND: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JUMP_IF_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const DENY: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
/// For an arch outside the family. The kernel cannot report one for a process of this
/// machine (emulators such as qemu-user make native calls), so it would mean the table
/// above is wrong; then which call is ioctl is unknown, and failing loudly beats letting
/// injection through. libseccomp's default for a foreign arch is also to kill.
const UNKNOWN_ARCH: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// The filter, as bytes for bwrap's `--seccomp FD`, or `None` on a CPU family whose system
/// call and request numbers this module does not know.
pub fn terminal_injection_filter() -> Option<Vec<u8>> {
    ABIS.map(|abis| to_bytes(&program(abis)))
}

/// Lays out, in order: the arch dispatch (load, one jump per ABI, kill); per ABI, the ioctl
/// test (load nr, mask if any, one jump per number, allow); the request test (load, two
/// jumps, allow, deny). Jumps are forward offsets, so every position is counted first.
fn program(abis: &[Abi]) -> Vec<sock_filter> {
    let block_len = |abi: &Abi| 1 + usize::from(abi.nr_mask != !0) + abi.ioctl.len() + 1;
    let first_block = 1 + abis.len() + 1;
    let check = first_block + abis.iter().map(block_len).sum::<usize>();
    let deny = check + 4;

    let mut program = vec![stmt(LOAD, ARCH_OFFSET)];
    let mut block = first_block;
    for abi in abis {
        program.push(jump_if(abi.arch, program.len(), block));
        block += block_len(abi);
    }
    program.push(stmt(RETURN, UNKNOWN_ARCH));
    for abi in abis {
        program.push(stmt(LOAD, NR_OFFSET));
        if abi.nr_mask != !0 {
            program.push(stmt(AND, abi.nr_mask));
        }
        for &nr in abi.ioctl {
            program.push(jump_if(nr, program.len(), check));
        }
        program.push(stmt(RETURN, ALLOW));
    }
    debug_assert_eq!(program.len(), check);
    program.push(stmt(LOAD, REQUEST_OFFSET));
    program.push(jump_if(TIOCSTI, program.len(), deny));
    program.push(jump_if(TIOCLINUX, program.len(), deny));
    program.push(stmt(RETURN, ALLOW));
    program.push(stmt(RETURN, DENY));
    debug_assert_eq!(program.len(), deny + 1);
    program
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// At `at`: if the accumulator equals `k`, go to `target`, else to the next instruction.
/// Classic BPF jumps only forward, by at most 255; these programs are a few dozen long (the
/// tests check that every jump lands inside the program, for every family).
fn jump_if(k: u32, at: usize, target: usize) -> sock_filter {
    debug_assert!(target > at && target - (at + 1) <= usize::from(u8::MAX));
    let jt = (target - (at + 1)).min(usize::from(u8::MAX)) as u8;
    sock_filter {
        jt,
        ..stmt(JUMP_IF_EQUAL, k)
    }
}

fn to_bytes(program: &[sock_filter]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for insn in program {
        bytes.extend_from_slice(&insn.code.to_ne_bytes());
        bytes.extend_from_slice(&[insn.jt, insn.jf]);
        bytes.extend_from_slice(&insn.k.to_ne_bytes());
    }
    bytes
}

#[cfg(test)]
// The filter is tried for real: a forked child installs it and calls the ioctls it refuses.
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    const FAMILIES: [&[Abi]; 3] = [X86, ARM, RISCV];
    /// SECCOMP_RET_ERRNO with errno 1, spelled out.
    const EPERM: u32 = 0x0005_0001;

    /// Runs `program` over a `seccomp_data` with `nr`, `arch` and `args[1] = request`, as
    /// the kernel would, knowing only the instructions `program` emits.
    fn run(program: &[sock_filter], arch: u32, nr: u32, request: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[24..32].copy_from_slice(&request.to_ne_bytes());
        let (mut a, mut pc) = (0u32, 0);
        loop {
            let insn = program[pc];
            pc += 1;
            match insn.code {
                LOAD => a = u32::from_ne_bytes(data[insn.k as usize..][..4].try_into().unwrap()),
                AND => a &= insn.k,
                JUMP_IF_EQUAL => pc += usize::from(if a == insn.k { insn.jt } else { insn.jf }),
                RETURN => return insn.k,
                code => panic!("unexpected instruction {code:#x}"),
            }
        }
    }

    /// Every number that reaches ioctl under `abi`, as a caller may spell it.
    fn ioctl_numbers(abi: &Abi) -> Vec<u32> {
        let spellings = [0, !abi.nr_mask];
        abi.ioctl
            .iter()
            .flat_map(|nr| spellings.map(|bits| nr | bits))
            .collect()
    }

    #[test]
    fn injecting_requests_are_refused_on_every_abi_whatever_the_high_bits() {
        for abis in FAMILIES {
            let program = program(abis);
            for abi in abis {
                for nr in ioctl_numbers(abi) {
                    for request in [TIOCSTI, TIOCLINUX] {
                        for high in [0, 0xffff_ffff, 1, 0x8000_0000] {
                            let request = u64::from(request) | high << 32;
                            assert_eq!(run(&program, abi.arch, nr, request), EPERM);
                        }
                    }
                }
            }
        }
        // The numbers again, spelled out from the kernel's headers rather than taken from
        // the tables, so that a wrong table entry fails here: (family, arch, nr of ioctl).
        let spelled = [
            (X86, 0xC000_003E, 16),
            (X86, 0xC000_003E, 0x4000_0202),
            (X86, 0x4000_0003, 54),
            (ARM, 0xC000_00B7, 29),
            (ARM, 0x4000_0028, 54),
            (RISCV, 0xC000_00F3, 29),
            (RISCV, 0x4000_00F3, 29),
        ];
        for (abis, arch, nr) in spelled {
            for request in [0x5412, 0x541C] {
                let seen = run(&program(abis), arch, nr, request);
                assert_eq!(seen, EPERM, "{arch:#x} {nr}");
            }
        }
    }

    #[test]
    fn other_requests_and_other_calls_are_allowed() {
        for abis in FAMILIES {
            let program = program(abis);
            for abi in abis {
                for nr in ioctl_numbers(abi) {
                    // TIOCGWINSZ, FIONREAD, the blocked numbers' neighbours, and TIOCSTI in
                    // the high half, which the kernel drops.
                    for request in [0x5413, 0x541B, 0x5411, 0x541D, 0, 0x5412_0000_0000] {
                        assert_eq!(run(&program, abi.arch, nr, request), ALLOW);
                    }
                }
                // Every other call, `write` included, even with TIOCSTI as its argument.
                let others = (0..1024).chain((0..1024).map(|nr| nr | X32_SYSCALL_BIT));
                for nr in others.filter(|nr| !ioctl_numbers(abi).contains(nr)) {
                    assert_eq!(run(&program, abi.arch, nr, TIOCSTI.into()), ALLOW);
                }
            }
        }
    }

    #[test]
    fn an_arch_outside_the_family_is_killed() {
        let (ppc64le, kill) = (21 | ARCH_64BIT | ARCH_LE, libc::SECCOMP_RET_KILL_PROCESS);
        for arch in [ppc64le, 0, AUDIT_ARCH_AARCH64] {
            assert_eq!(run(&program(X86), arch, 1, 0), kill);
        }
        assert_eq!(run(&program(ARM), AUDIT_ARCH_X86_64, 16, 0x5412), kill);
    }

    #[test]
    fn programs_are_well_formed_and_match_this_build() {
        for abis in FAMILIES {
            let program = program(abis);
            assert!(program.len() < 4096, "BPF_MAXINSNS");
            assert_eq!(program.last().unwrap().code, RETURN);
            for (at, insn) in program.iter().enumerate() {
                if insn.code == JUMP_IF_EQUAL {
                    let (jt, jf) = (usize::from(insn.jt), usize::from(insn.jf));
                    assert!(at + 1 + jt.max(jf) < program.len(), "jump out at {at}");
                }
                if insn.code == LOAD {
                    assert!(insn.k < 64 && insn.k % 4 == 0, "the kernel checks loads so");
                }
            }
            assert_eq!(
                to_bytes(&program).len(),
                program.len() * size_of::<sock_filter>()
            );
        }
        assert_eq!(size_of::<sock_filter>(), 8);
        // This build's own numbers, as its C library knows them.
        let abis = ABIS.expect("paude's targets have a filter");
        let ioctl = libc::SYS_ioctl as u32;
        assert!(
            abis.iter()
                .any(|abi| abi.ioctl.contains(&(ioctl & abi.nr_mask)))
        );
        assert_eq!(
            (TIOCSTI, TIOCLINUX),
            (libc::TIOCSTI as u32, libc::TIOCLINUX as u32)
        );
    }

    /// What a child saw, each an errno or 0 for success (errno values fit a byte): taking
    /// the terminal and installing the filter, TIOCSTI, TIOCSTI with the request's high bits
    /// set, TIOCLINUX, TIOCGWINSZ.
    type Seen = [u8; 5];

    /// Opens a pseudo-terminal, forks a child that makes it its controlling terminal (so
    /// the kernel's own "not your terminal" EPERM cannot pass for the filter's), installs
    /// `filter` if given, and reports what the probing ioctls return.
    fn probe(filter: Option<&mut [sock_filter]>) -> Seen {
        let open = |fd: RawFd| {
            assert!(fd >= 0, "{}", std::io::Error::last_os_error());
            // SAFETY: `fd` was just opened by this function and is owned by nothing else.
            unsafe { OwnedFd::from_raw_fd(fd) }
        };
        let mut name = [0 as libc::c_char; 64];
        // SAFETY: plain calls on a descriptor this function owns; `name` outlives them and
        // its length is passed, and `ptsname_r` terminates what it writes.
        let (master, slave) = unsafe {
            let master = open(libc::posix_openpt(
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            ));
            let fd = master.as_raw_fd();
            assert!(libc::grantpt(fd) == 0 && libc::unlockpt(fd) == 0);
            assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
            let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
            (master, open(libc::open(name.as_ptr(), flags)))
        };
        let fprog = filter.map(|program| libc::sock_fprog {
            len: program.len() as libc::c_ushort,
            filter: program.as_mut_ptr(),
        });
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        // SAFETY: the test harness runs threads, so the child calls only async-signal-safe
        // functions (no allocation, no locks) and leaves through `_exit`; the buffers it
        // reads (`fprog` and the program) were made before the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            child(slave.as_raw_fd(), fprog.as_ref(), write.as_raw_fd());
        }
        drop(write);
        let mut seen = Seen::default();
        let read = std::fs::File::from(read).read_exact(&mut seen);
        let mut status = 0;
        // SAFETY: `pid` is this function's child and `status` a valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            read.is_ok() && status == 0,
            "child failed: {read:?}, status {status:#x}"
        );
        drop((master, slave));
        seen
    }

    fn child(tty: RawFd, fprog: Option<&libc::sock_fprog>, out: RawFd) -> ! {
        // SAFETY: raw system calls on descriptors inherited from the parent, with pointers to
        // this frame's locals and to the parent's filter, which the fork copied.
        unsafe {
            let errno = || u8::try_from(*libc::__errno_location()).unwrap_or(u8::MAX);
            let result = |ret: libc::c_long| if ret < 0 { errno() } else { 0 };
            // The fork copied every descriptor of the test process: close all but ours, or
            // this child could keep alive a lock that another test has just released.
            let (low, high) = (i64::from(tty.min(out)), i64::from(tty.max(out)));
            let all = i64::from(u32::MAX);
            for (first, last) in [(3, low - 1), (low.max(2) + 1, high - 1), (high + 1, all)] {
                if first <= last {
                    let (first, last) = (first as libc::c_uint, last as libc::c_uint);
                    libc::syscall(libc::SYS_close_range, first, last, 0);
                }
            }
            let mut seen: Seen = [0; 5];
            if libc::setsid() < 0 || libc::ioctl(tty, libc::TIOCSCTTY, 0) < 0 {
                seen[0] = errno();
            } else if let Some(fprog) = fprog {
                let mode = libc::SECCOMP_MODE_FILTER as libc::c_ulong;
                seen[0] = result(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into());
                if seen[0] == 0 {
                    let ret = libc::prctl(libc::PR_SET_SECCOMP, mode, fprog as *const _);
                    seen[0] = result(ret.into());
                }
            }
            let byte = b'x';
            seen[1] = result(libc::ioctl(tty, libc::TIOCSTI, &byte).into());
            // Zero where `unsigned long` is 32 bits wide: the high bits cannot be set there.
            let high = !libc::c_ulong::from(u32::MAX);
            let request = high | libc::TIOCSTI as libc::c_ulong;
            let fd = libc::c_long::from(tty);
            seen[2] = result(libc::syscall(libc::SYS_ioctl, fd, request, &byte));
            // TIOCL_GETSHIFTSTATE: a subcode that changes nothing, had this been a console.
            let mut subcode = 6u8;
            seen[3] = result(libc::ioctl(tty, libc::TIOCLINUX, &mut subcode).into());
            let mut size: libc::winsize = std::mem::zeroed();
            seen[4] = result(libc::ioctl(tty, libc::TIOCGWINSZ, &mut size).into());
            let ok = libc::write(out, seen.as_ptr().cast(), seen.len()) == seen.len() as isize;
            libc::_exit(if ok { 0 } else { 1 })
        }
    }

    #[test]
    fn the_kernel_refuses_injection_under_the_filter_only() {
        let (eperm, eio) = (libc::EPERM as u8, libc::EIO as u8);
        let unfiltered = probe(None);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if unfiltered[1] == eperm && !status.contains("Seccomp:\t0") {
            // Run inside a sandbox that already refuses TIOCSTI: nothing left to prove here.
            eprintln!("skipped: this process is under a seccomp filter already");
            return;
        }
        let mut program = program(ABIS.unwrap());
        let filtered = probe(Some(&mut program));
        eprintln!("unfiltered {unfiltered:?}, filtered {filtered:?}");
        // Without the filter TIOCSTI works, or fails with EIO for unprivileged callers where
        // `dev.tty.legacy_tiocsti` is 0; the high bits change nothing, as the kernel drops
        // them. Either way the probe can tell the filter's EPERM apart.
        assert_eq!(unfiltered[0], 0);
        assert!(unfiltered[1] == 0 || unfiltered[1] == eio, "{unfiltered:?}");
        assert_eq!(unfiltered[2], unfiltered[1]);
        assert_ne!(unfiltered[3], eperm);
        assert_eq!(unfiltered[4], 0);
        assert_eq!(filtered, [0, eperm, eperm, eperm, 0]);
    }
}
