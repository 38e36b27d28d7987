//! The sandbox's seccomp filter, in the form bwrap's `--seccomp FD` reads. Every launch gets
//! it; it refuses the system calls that development tools do not need and that widen what a
//! hostile program can reach (README, "The seccomp filter", gives a reason for each):
//!
//! - refused whole, with ENOSYS, as a kernel without them would answer (programs fall back):
//!   the keyring (`keyctl`, `add_key`, `request_key`; the caller's session keyring is
//!   otherwise readable inside), io_uring, `perf_event_open`, `bpf`, `userfaultfd`, kexec,
//!   the new mount API (`fsopen` and the rest, `open_tree`, `move_mount`, `mount_setattr`),
//!   `clone3` (whose flags a filter cannot read; the C library falls back to `clone`), and
//!   the machine's administration (modules, reboot, swap, `acct`, `syslog`, `iopl`,
//!   `ioperm`, `lookup_dcookie`, `open_by_handle_at`, `uselib`, vm86), which needs
//!   capabilities the sandbox lacks anyway; on i386 also `socketcall`, whose socket family a
//!   filter cannot read;
//! - refused by argument, with EPERM: a new user namespace (`clone` and `unshare` with
//!   `CLONE_NEWUSER`), a personality other than the default ones (which would turn address
//!   randomisation off), and the terminal requests `TIOCSTI` and `TIOCLINUX`, which push
//!   bytes into the input of the user's terminal;
//! - refused by argument, with EAFNOSUPPORT: `AF_VSOCK` sockets, which reach the virtual
//!   machine's host past any network namespace.
//!
//! Everything else is allowed, `ptrace` of the sandbox's own processes among it (gdb, strace).
//!
//! bwrap reads the descriptor to its end and hands the bytes to the kernel as the body of a
//! `sock_fprog`: classic-BPF `sock_filter` instructions (u16 code, u8 jt, u8 jf, u32 k; 8
//! bytes) in native byte order, nothing before or after them. The program runs over the
//! kernel's `seccomp_data` (nr: u32 at 0, arch: u32 at 4, then args: six u64 from 16):
//!
//! ```text
//! arch is one of this CPU family's ABIs?   no → kill the process
//! nr (per ABI) has a rule?                 no → allow
//! the rule: refuse, or look at an argument's low 32 bits and refuse or allow
//! ```
//!
//! Only the low 32 bits of an argument are compared, because each of these calls takes it as
//! a 32-bit value (`unsigned int` for ioctl's request and personality, `int` for the socket
//! family) or has its flag there (`CLONE_NEWUSER`): a filter comparing 64 bits is bypassed
//! by setting the high ones, as flatpak learned (CVE-2019-10063).

use libc::sock_filter;

/// Where `seccomp_data` keeps what the filter reads.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
/// The low half of `args[i]`, a u64 from 16: it comes first only on little-endian machines,
/// which are the only ones this module knows.
const fn arg_offset(index: u32) -> u32 {
    16 + 8 * index
}

/// The terminal requests blocked, from `asm-generic/ioctls.h`, which x86, arm and riscv use
/// (powerpc, mips, sparc and alpha number their tty requests differently; see `FAMILY`).
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541C;
/// `CLONE_NEWUSER`, the same on every architecture.
const CLONE_NEWUSER: u32 = 0x1000_0000;
/// `AF_VSOCK`.
const AF_VSOCK: u32 = 40;
/// The personalities allowed, as Docker's default profile allows them: the query
/// (`0xffffffff`), `PER_LINUX`, `PER_LINUX32`, and both with `UNAME26`.
const PERSONALITIES: [u32; 5] = [0xffff_ffff, 0, 0x0008, 0x2_0000, 0x2_0008];

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

/// What the filter does with one system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rule {
    /// Refused whole, with ENOSYS.
    Absent,
    /// `ioctl`: `TIOCSTI` and `TIOCLINUX` in `args[1]` refused (EPERM).
    Ioctl,
    /// `clone`, `unshare`: `CLONE_NEWUSER` in `args[0]` refused (EPERM).
    NewUser,
    /// `socket`: `AF_VSOCK` in `args[0]` refused (EAFNOSUPPORT).
    Socket,
    /// `personality`: `args[0]` not in [`PERSONALITIES`] refused (EPERM).
    Personality,
}

/// One system call convention: the arch the kernel reports for it, the mask applied to
/// `seccomp_data.nr`, and the numbers (after the mask) that have a rule.
struct Abi {
    arch: u32,
    nr_mask: u32,
    rules: &'static [(u32, Rule)],
}

/// A CPU family's ABIs, listed whole, compat ABIs included, because a 32-bit process (or a
/// 32-bit call from a 64-bit one) may run on the 64-bit kernel: a process left out would be
/// killed, not let through. `complete` says whether its tables hold every rule above, or only
/// the terminal requests (system call numbers not checked for that family).
struct Family {
    abis: &'static [Abi],
    complete: bool,
}

use Rule::{Absent, Ioctl, NewUser, Personality, Socket};

/// x86_64, with x32 folded in by masking its bit (x32 shares x86_64's numbers but for a few
/// compat entries, of which `ioctl` and `kexec_load` concern the filter: 514 and 528).
/// Numbers from the kernel's `arch/x86/entry/syscalls/syscall_64.tbl`.
const X86_64_RULES: &[(u32, Rule)] = &[
    (16, Ioctl),
    (514, Ioctl),
    (56, NewUser),  // clone
    (272, NewUser), // unshare
    (41, Socket),   // socket
    (135, Personality),
    (250, Absent), // keyctl
    (248, Absent), // add_key
    (249, Absent), // request_key
    (425, Absent), // io_uring_setup
    (426, Absent), // io_uring_enter
    (427, Absent), // io_uring_register
    (298, Absent), // perf_event_open
    (321, Absent), // bpf
    (323, Absent), // userfaultfd
    (246, Absent), // kexec_load
    (528, Absent), // kexec_load (x32)
    (320, Absent), // kexec_file_load
    (428, Absent), // open_tree
    (429, Absent), // move_mount
    (430, Absent), // fsopen
    (431, Absent), // fsconfig
    (432, Absent), // fsmount
    (433, Absent), // fspick
    (442, Absent), // mount_setattr
    (467, Absent), // open_tree_attr
    (435, Absent), // clone3
    (175, Absent), // init_module
    (313, Absent), // finit_module
    (176, Absent), // delete_module
    (169, Absent), // reboot
    (167, Absent), // swapon
    (168, Absent), // swapoff
    (163, Absent), // acct
    (103, Absent), // syslog
    (172, Absent), // iopl
    (173, Absent), // ioperm
    (212, Absent), // lookup_dcookie
    (304, Absent), // open_by_handle_at
    (134, Absent), // uselib
];

/// i386, as `int 0x80` from any process reaches it; `syscall_32.tbl`.
const I386_RULES: &[(u32, Rule)] = &[
    (54, Ioctl),
    (120, NewUser), // clone
    (310, NewUser), // unshare
    (359, Socket),  // socket
    (102, Absent),  // socketcall
    (136, Personality),
    (288, Absent), // keyctl
    (286, Absent), // add_key
    (287, Absent), // request_key
    (425, Absent), // io_uring_setup
    (426, Absent), // io_uring_enter
    (427, Absent), // io_uring_register
    (336, Absent), // perf_event_open
    (357, Absent), // bpf
    (374, Absent), // userfaultfd
    (283, Absent), // kexec_load
    (428, Absent), // open_tree
    (429, Absent), // move_mount
    (430, Absent), // fsopen
    (431, Absent), // fsconfig
    (432, Absent), // fsmount
    (433, Absent), // fspick
    (442, Absent), // mount_setattr
    (467, Absent), // open_tree_attr
    (435, Absent), // clone3
    (128, Absent), // init_module
    (350, Absent), // finit_module
    (129, Absent), // delete_module
    (88, Absent),  // reboot
    (87, Absent),  // swapon
    (115, Absent), // swapoff
    (51, Absent),  // acct
    (103, Absent), // syslog
    (110, Absent), // iopl
    (101, Absent), // ioperm
    (253, Absent), // lookup_dcookie
    (342, Absent), // open_by_handle_at
    (86, Absent),  // uselib
    (113, Absent), // vm86old
    (166, Absent), // vm86
];

const X86: Family = Family {
    abis: &[
        Abi {
            arch: AUDIT_ARCH_X86_64,
            nr_mask: !X32_SYSCALL_BIT,
            rules: X86_64_RULES,
        },
        // `int 0x80` from a 64-bit process is reported as i386 too.
        Abi {
            arch: AUDIT_ARCH_I386,
            nr_mask: !0,
            rules: I386_RULES,
        },
    ],
    complete: true,
};
const ARM: Family = Family {
    abis: &[
        Abi {
            arch: AUDIT_ARCH_AARCH64,
            nr_mask: !0,
            rules: &[(29, Ioctl)],
        },
        Abi {
            arch: AUDIT_ARCH_ARM,
            nr_mask: !0,
            rules: &[(54, Ioctl)],
        },
    ],
    complete: false,
};
const RISCV: Family = Family {
    abis: &[
        Abi {
            arch: AUDIT_ARCH_RISCV64,
            nr_mask: !0,
            rules: &[(29, Ioctl)],
        },
        Abi {
            arch: AUDIT_ARCH_RISCV32,
            nr_mask: !0,
            rules: &[(29, Ioctl)],
        },
    ],
    complete: false,
};

/// The family of this build; `None` where the numbers above are not known to hold: other
/// families number `ioctl` or the tty requests differently, and big-endian variants of these
/// have not been checked.
const FAMILY: Option<&Family> = if cfg!(not(target_endian = "little")) {
    None
} else if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
    Some(&X86)
} else if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
    Some(&ARM)
} else if cfg!(any(target_arch = "riscv64", target_arch = "riscv32")) {
    Some(&RISCV)
} else {
    None
};

const LOAD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const AND: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JUMP_IF_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JUMP_IF_SET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const fn refuse(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | errno as u32
}
/// For an arch outside the family. The kernel cannot report one for a process of this
/// machine (emulators such as qemu-user make native calls), so it would mean the table
/// above is wrong; then which call is which is unknown, and failing loudly beats letting
/// anything through. libseccomp's default for a foreign arch is also to kill.
const UNKNOWN_ARCH: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// The filter, as bytes for bwrap's `--seccomp FD`, and whether it holds every rule (else
/// only the terminal requests'); `None` on a CPU family whose system call and request
/// numbers this module does not know.
pub fn sandbox_filter() -> Option<(Vec<u8>, bool)> {
    FAMILY.map(|family| (to_bytes(&program(family)), family.complete))
}

/// An instruction whose jumps name labels, resolved by [`assemble`].
enum Insn {
    Stmt(u16, u32),
    /// If the accumulator equals (or, with `set`, has a bit of) `k`, go to the label.
    Jump {
        set: bool,
        k: u32,
        to: Label,
    },
    Here(Label),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Label {
    Block(usize),
    Rule(Rule),
    Allow,
    Eperm,
    Eafnosupport,
}

/// Lays out, in order: the arch dispatch (load, one jump per ABI, kill); per ABI, its block
/// (load nr, mask if any, one jump per numbered rule, allow); then one check per rule the
/// family uses, and the shared answers.
fn program(family: &Family) -> Vec<sock_filter> {
    use Insn::{Here, Jump, Stmt};
    let jump = |k: u32, to: Label| Jump { set: false, k, to };
    let mut code = vec![Stmt(LOAD, ARCH_OFFSET)];
    for (index, abi) in family.abis.iter().enumerate() {
        code.push(jump(abi.arch, Label::Block(index)));
    }
    code.push(Stmt(RETURN, UNKNOWN_ARCH));
    let mut used: Vec<Rule> = Vec::new();
    for (index, abi) in family.abis.iter().enumerate() {
        code.push(Here(Label::Block(index)));
        code.push(Stmt(LOAD, NR_OFFSET));
        if abi.nr_mask != !0 {
            code.push(Stmt(AND, abi.nr_mask));
        }
        for &(nr, rule) in abi.rules {
            code.push(jump(nr, Label::Rule(rule)));
            if !used.contains(&rule) {
                used.push(rule);
            }
        }
        code.push(Stmt(RETURN, ALLOW));
    }
    for rule in used {
        code.push(Here(Label::Rule(rule)));
        match rule {
            Absent => code.push(Stmt(RETURN, refuse(libc::ENOSYS))),
            Ioctl => {
                code.push(Stmt(LOAD, arg_offset(1)));
                code.push(jump(TIOCSTI, Label::Eperm));
                code.push(jump(TIOCLINUX, Label::Eperm));
                code.push(Stmt(RETURN, ALLOW));
            }
            NewUser => {
                code.push(Stmt(LOAD, arg_offset(0)));
                code.push(Jump {
                    set: true,
                    k: CLONE_NEWUSER,
                    to: Label::Eperm,
                });
                code.push(Stmt(RETURN, ALLOW));
            }
            Socket => {
                code.push(Stmt(LOAD, arg_offset(0)));
                code.push(jump(AF_VSOCK, Label::Eafnosupport));
                code.push(Stmt(RETURN, ALLOW));
            }
            Personality => {
                code.push(Stmt(LOAD, arg_offset(0)));
                for persona in PERSONALITIES {
                    code.push(jump(persona, Label::Allow));
                }
                code.push(Stmt(RETURN, refuse(libc::EPERM)));
            }
        }
    }
    code.push(Here(Label::Allow));
    code.push(Stmt(RETURN, ALLOW));
    code.push(Here(Label::Eperm));
    code.push(Stmt(RETURN, refuse(libc::EPERM)));
    code.push(Here(Label::Eafnosupport));
    code.push(Stmt(RETURN, refuse(libc::EAFNOSUPPORT)));
    assemble(&code)
}

/// Resolves labels into forward jump offsets. Classic BPF jumps only forward, by at most
/// 255; the layout above keeps every jump within that (the tests check every family).
fn assemble(code: &[Insn]) -> Vec<sock_filter> {
    let mut at = std::collections::HashMap::new();
    let mut position = 0;
    for insn in code {
        match insn {
            Insn::Here(label) => {
                at.insert(*label, position);
            }
            _ => position += 1,
        }
    }
    let mut program = Vec::with_capacity(position);
    for insn in code {
        match insn {
            Insn::Here(_) => {}
            Insn::Stmt(code, k) => program.push(stmt(*code, *k)),
            Insn::Jump { set, k, to } => {
                let target = at[to];
                let here = program.len();
                debug_assert!(target > here && target - (here + 1) <= usize::from(u8::MAX));
                let jt = (target - (here + 1)).min(usize::from(u8::MAX)) as u8;
                let code = if *set { JUMP_IF_SET } else { JUMP_IF_EQUAL };
                program.push(sock_filter {
                    jt,
                    ..stmt(code, *k)
                });
            }
        }
    }
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

    const FAMILIES: [&Family; 3] = [&X86, &ARM, &RISCV];
    const EPERM: u32 = refuse(libc::EPERM);
    const ENOSYS: u32 = refuse(libc::ENOSYS);
    const EAFNOSUPPORT: u32 = refuse(libc::EAFNOSUPPORT);

    /// Runs `program` over a `seccomp_data` with `nr`, `arch` and the first two arguments,
    /// as the kernel would, knowing only the instructions `program` emits.
    fn run(program: &[sock_filter], arch: u32, nr: u32, args: [u64; 2]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&args[0].to_ne_bytes());
        data[24..32].copy_from_slice(&args[1].to_ne_bytes());
        let (mut a, mut pc) = (0u32, 0);
        loop {
            let insn = program[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
            match insn.code {
                LOAD => a = u32::from_ne_bytes(data[insn.k as usize..][..4].try_into().unwrap()),
                AND => a &= insn.k,
                JUMP_IF_EQUAL => pc += jump(a == insn.k),
                JUMP_IF_SET => pc += jump(a & insn.k != 0),
                RETURN => return insn.k,
                code => panic!("unexpected instruction {code:#x}"),
            }
        }
    }

    /// Every number that reaches `nr` under `abi`, as a caller may spell it.
    fn spellings(abi: &Abi, nr: u32) -> [u32; 2] {
        [nr, nr | !abi.nr_mask]
    }

    /// The numbers with `rule` under `abi`, every spelling.
    fn numbers(abi: &Abi, rule: Rule) -> Vec<u32> {
        abi.rules
            .iter()
            .filter(|(_, r)| *r == rule)
            .flat_map(|(nr, _)| spellings(abi, *nr))
            .collect()
    }

    const HIGH: [u64; 4] = [0, 0xffff_ffff, 1, 0x8000_0000];

    #[test]
    fn injecting_requests_are_refused_on_every_abi_whatever_the_high_bits() {
        for family in FAMILIES {
            let program = program(family);
            for abi in family.abis {
                for nr in numbers(abi, Ioctl) {
                    for request in [TIOCSTI, TIOCLINUX] {
                        for high in HIGH {
                            let request = u64::from(request) | high << 32;
                            assert_eq!(run(&program, abi.arch, nr, [0, request]), EPERM);
                        }
                    }
                    // TIOCGWINSZ, FIONREAD, the blocked numbers' neighbours, and TIOCSTI in
                    // the high half, which the kernel drops.
                    for request in [0x5413, 0x541B, 0x5411, 0x541D, 0, 0x5412_0000_0000] {
                        assert_eq!(run(&program, abi.arch, nr, [0, request]), ALLOW);
                    }
                }
            }
        }
        // The numbers again, spelled out from the kernel's headers rather than taken from
        // the tables, so that a wrong table entry fails here: (family, arch, nr of ioctl).
        let spelled = [
            (&X86, 0xC000_003E, 16),
            (&X86, 0xC000_003E, 0x4000_0202),
            (&X86, 0x4000_0003, 54),
            (&ARM, 0xC000_00B7, 29),
            (&ARM, 0x4000_0028, 54),
            (&RISCV, 0xC000_00F3, 29),
            (&RISCV, 0x4000_00F3, 29),
        ];
        for (family, arch, nr) in spelled {
            for request in [0x5412, 0x541C] {
                let seen = run(&program(family), arch, nr, [0, request]);
                assert_eq!(seen, EPERM, "{arch:#x} {nr}");
            }
        }
    }

    #[test]
    fn refused_calls_get_enosys_on_every_abi() {
        let program = program(&X86);
        for abi in X86.abis {
            let absent = numbers(abi, Absent);
            assert!(absent.len() >= 60, "{}", absent.len());
            for nr in absent {
                assert_eq!(run(&program, abi.arch, nr, [0, 0]), ENOSYS, "{nr}");
            }
        }
    }

    #[test]
    fn a_new_user_namespace_is_refused_and_other_clones_are_not() {
        let program = program(&X86);
        for abi in X86.abis {
            for nr in numbers(abi, NewUser) {
                for high in HIGH {
                    // CLONE_NEWUSER alone, with the flags `unshare -U` and `fork` use.
                    for flags in [0x1000_0000u64, 0x1002_0000, 0x7e02_0000] {
                        let args = [flags | high << 32, 0];
                        assert_eq!(run(&program, abi.arch, nr, args), EPERM);
                    }
                    // A thread (CLONE_VM|CLONE_FS|CLONE_FILES|...), a fork, a new mount ns.
                    for flags in [0x003d_0f00u64, 0x0120_0011, 0x0002_0000] {
                        let args = [flags | high << 32, 0];
                        assert_eq!(run(&program, abi.arch, nr, args), ALLOW);
                    }
                }
            }
        }
    }

    #[test]
    fn vsock_sockets_and_unusual_personalities_are_refused() {
        let program = program(&X86);
        for abi in X86.abis {
            for nr in numbers(abi, Socket) {
                for high in HIGH {
                    let vsock = [u64::from(AF_VSOCK) | high << 32, 1];
                    assert_eq!(run(&program, abi.arch, nr, vsock), EAFNOSUPPORT);
                }
                // AF_UNIX, AF_INET, AF_INET6, AF_NETLINK.
                for family in [1u64, 2, 10, 16] {
                    assert_eq!(run(&program, abi.arch, nr, [family, 1]), ALLOW);
                }
            }
            for nr in numbers(abi, Personality) {
                for persona in PERSONALITIES {
                    let args = [u64::from(persona), 0];
                    assert_eq!(run(&program, abi.arch, nr, args), ALLOW);
                }
                // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, PER_SVR4.
                for persona in [0x0004_0000u64, 0x0040_0000, 0x0400_0001] {
                    assert_eq!(run(&program, abi.arch, nr, [persona, 0]), EPERM);
                }
            }
        }
    }

    #[test]
    fn calls_without_a_rule_are_allowed() {
        for family in FAMILIES {
            let program = program(family);
            for abi in family.abis {
                let ruled: Vec<u32> = abi
                    .rules
                    .iter()
                    .flat_map(|(nr, _)| spellings(abi, *nr))
                    .collect();
                // `write` among them, even with TIOCSTI and CLONE_NEWUSER as arguments.
                let others = (0..1024).chain((0..1024).map(|nr| nr | X32_SYSCALL_BIT));
                for nr in others.filter(|nr| !ruled.contains(nr)) {
                    let args = [u64::from(CLONE_NEWUSER | AF_VSOCK), TIOCSTI.into()];
                    assert_eq!(run(&program, abi.arch, nr, args), ALLOW, "{nr}");
                }
            }
        }
    }

    #[test]
    fn an_arch_outside_the_family_is_killed() {
        let (ppc64le, kill) = (21 | ARCH_64BIT | ARCH_LE, libc::SECCOMP_RET_KILL_PROCESS);
        for arch in [ppc64le, 0, AUDIT_ARCH_AARCH64] {
            assert_eq!(run(&program(&X86), arch, 1, [0, 0]), kill);
        }
        assert_eq!(
            run(&program(&ARM), AUDIT_ARCH_X86_64, 16, [0, 0x5412]),
            kill
        );
    }

    #[test]
    fn programs_are_well_formed_and_match_this_build() {
        for family in FAMILIES {
            let program = program(family);
            assert!(program.len() < 4096, "BPF_MAXINSNS");
            assert_eq!(program.last().unwrap().code, RETURN);
            for (at, insn) in program.iter().enumerate() {
                if insn.code == JUMP_IF_EQUAL || insn.code == JUMP_IF_SET {
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
        assert_eq!(
            (TIOCSTI, TIOCLINUX),
            (libc::TIOCSTI as u32, libc::TIOCLINUX as u32)
        );
        assert_eq!(CLONE_NEWUSER, libc::CLONE_NEWUSER as u32);
        assert_eq!(AF_VSOCK, libc::AF_VSOCK as u32);
    }

    /// This build's own numbers, as its C library knows them: every x86_64 rule names the
    /// system call its comment says.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_x86_64_table_matches_the_c_librarys_numbers() {
        let named: &[(i64, Rule)] = &[
            (libc::SYS_ioctl, Ioctl),
            (libc::SYS_clone, NewUser),
            (libc::SYS_unshare, NewUser),
            (libc::SYS_socket, Socket),
            (libc::SYS_personality, Personality),
            (libc::SYS_keyctl, Absent),
            (libc::SYS_add_key, Absent),
            (libc::SYS_request_key, Absent),
            (libc::SYS_io_uring_setup, Absent),
            (libc::SYS_io_uring_enter, Absent),
            (libc::SYS_io_uring_register, Absent),
            (libc::SYS_perf_event_open, Absent),
            (libc::SYS_bpf, Absent),
            (libc::SYS_userfaultfd, Absent),
            (libc::SYS_kexec_load, Absent),
            (libc::SYS_kexec_file_load, Absent),
            (libc::SYS_open_tree, Absent),
            (libc::SYS_move_mount, Absent),
            (libc::SYS_fsopen, Absent),
            (libc::SYS_fsconfig, Absent),
            (libc::SYS_fsmount, Absent),
            (libc::SYS_fspick, Absent),
            (libc::SYS_mount_setattr, Absent),
            (libc::SYS_clone3, Absent),
            (libc::SYS_init_module, Absent),
            (libc::SYS_finit_module, Absent),
            (libc::SYS_delete_module, Absent),
            (libc::SYS_reboot, Absent),
            (libc::SYS_swapon, Absent),
            (libc::SYS_swapoff, Absent),
            (libc::SYS_acct, Absent),
            (libc::SYS_syslog, Absent),
            (libc::SYS_iopl, Absent),
            (libc::SYS_ioperm, Absent),
            (libc::SYS_lookup_dcookie, Absent),
            (libc::SYS_open_by_handle_at, Absent),
            (libc::SYS_uselib, Absent),
        ];
        for (nr, rule) in named {
            assert!(
                X86_64_RULES.contains(&(*nr as u32, *rule)),
                "{nr} {rule:?} is not in the table"
            );
        }
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
        let mut program = program(FAMILY.unwrap());
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
