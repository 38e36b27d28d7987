//! Questions to the kernel asked without the C library and without allocating: what the
//! launch front (`front`) needs before the C library has started, and what the rest of paude
//! asks the same way, so that a recorded answer and the answer asked again come from one
//! piece of code.
//!
//! Everything here is either a `rustix` call (raw system calls on Linux) given a `&CStr`, so
//! that no path is copied into an allocation, or a raw system call of its own.

use core::ffi::CStr;
use rustix::io::Errno;

/// An open descriptor, closed by a raw system call when dropped. (The standard library's
/// `OwnedFd`, which `rustix` returns, closes through the C library, which the launch front
/// cannot call.)
#[derive(Debug)]
pub struct Fd(i32);

impl Fd {
    pub fn raw(&self) -> i32 {
        self.0
    }

    /// Takes over `fd` without closing it.
    pub fn from_owned(fd: rustix::fd::OwnedFd) -> Fd {
        Fd(rustix::fd::IntoRawFd::into_raw_fd(fd))
    }
}

impl rustix::fd::AsFd for Fd {
    fn as_fd(&self) -> rustix::fd::BorrowedFd<'_> {
        // SAFETY: the descriptor is open while `self` lives.
        unsafe { rustix::fd::BorrowedFd::borrow_raw(self.0) }
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is this value's alone.
        unsafe { rustix::io::try_close(self.0) }.ok();
    }
}

/// open(2) of `path`, close-on-exec.
pub fn open(path: &CStr, flags: rustix::fs::OFlags, mode: rustix::fs::Mode) -> Result<Fd, Errno> {
    rustix::fs::open(path, flags | rustix::fs::OFlags::CLOEXEC, mode).map(Fd::from_owned)
}

/// Where bytes go: a vector in the full program, a [`Fixed`] buffer in the launch front.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);

    fn u64(&mut self, value: u64) {
        self.put(&value.to_le_bytes());
    }

    /// A length, then the bytes.
    fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        self.put(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A fixed buffer that bytes go into; `overflowed` once they did not fit.
pub struct Fixed<'b> {
    pub buffer: &'b mut [u8],
    pub length: usize,
    pub overflowed: bool,
}

impl<'b> Fixed<'b> {
    pub fn new(buffer: &'b mut [u8]) -> Fixed<'b> {
        Fixed {
            buffer,
            length: 0,
            overflowed: false,
        }
    }

    /// What went in, unless some did not fit.
    pub fn written(&self) -> Option<&[u8]> {
        (!self.overflowed).then(|| &self.buffer[..self.length])
    }
}

impl Sink for Fixed<'_> {
    fn put(&mut self, bytes: &[u8]) {
        match self.buffer.get_mut(self.length..self.length + bytes.len()) {
            Some(room) if !self.overflowed => {
                room.copy_from_slice(bytes);
                self.length += bytes.len();
            }
            _ => self.overflowed = true,
        }
    }
}

/// The longest path the kernel takes, with its NUL.
pub const PATH_MAX: usize = 4096;

/// A NUL-terminated path built from parts in a buffer of its own (no allocation).
pub struct CPath {
    buffer: [u8; PATH_MAX],
    length: usize,
}

impl CPath {
    /// The parts joined as they are (no separator added); `None` when the result is longer
    /// than the kernel takes or a part holds a NUL.
    pub fn new(parts: &[&[u8]]) -> Option<CPath> {
        let mut path = CPath {
            buffer: [0; PATH_MAX],
            length: 0,
        };
        for part in parts {
            path.push(part)?;
        }
        Some(path)
    }

    /// Appends `bytes`.
    pub fn push(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.length.checked_add(bytes.len())?;
        if end >= PATH_MAX || bytes.contains(&0) {
            return None;
        }
        self.buffer[self.length..end].copy_from_slice(bytes);
        self.length = end;
        self.buffer[end] = 0;
        Some(())
    }

    pub fn as_cstr(&self) -> &CStr {
        // The buffer holds a NUL after `length` bytes and none before.
        CStr::from_bytes_with_nul(&self.buffer[..=self.length]).unwrap_or(c"")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer[..self.length]
    }
}

/// The path with every link resolved, as the kernel names the file it opens (the same text as
/// `realpath(3)` for a path that exists), written into `out`: `Ok(None)` when the path cannot
/// be opened, `Err` when `/proc` cannot name what was opened (it is not mounted, or the name
/// is longer than `out`).
pub fn real_path<'o>(path: &CStr, out: &'o mut [u8]) -> Result<Option<&'o [u8]>, Errno> {
    use rustix::fs::{CWD, Mode, OFlags};
    let Ok(fd) = open(path, OFlags::PATH, Mode::empty()) else {
        return Ok(None);
    };
    let mut number = Decimal::default();
    let link = CPath::new(&[b"/proc/self/fd/", number.of(fd.raw() as u64)]);
    let link = link.ok_or(Errno::NAMETOOLONG)?;
    let read = rustix::fs::readlinkat_raw(CWD, link.as_cstr(), &mut *out)?;
    // A name that filled the buffer may have been cut short; one without a leading slash is
    // not reachable from here.
    match out.get(..read).filter(|_| read < out.len()) {
        Some(real) if real.first() == Some(&b'/') => Ok(Some(real)),
        _ => Err(Errno::NAMETOOLONG),
    }
}

/// Calls `visit` with the name of each subdirectory of `path` (links not followed), in the
/// directory's order.
pub fn subdirectories(path: &CStr, visit: &mut dyn FnMut(&[u8])) -> Result<(), Errno> {
    use core::mem::MaybeUninit;
    use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir};
    let fd = open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
    let mut buffer = [MaybeUninit::<u8>::uninit(); 8192];
    let mut entries = RawDir::new(&fd, &mut buffer);
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let kind = match entry.file_type() {
            // Some file systems do not say: asked like `DirEntry::file_type` does.
            FileType::Unknown => rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|stat| FileType::from_raw_mode(stat.st_mode))
                .unwrap_or(FileType::Unknown),
            kind => kind,
        };
        if kind == FileType::Directory {
            visit(name.to_bytes());
        }
    }
    Ok(())
}

/// The value of `name` in an environment given as `NAME=VALUE` entries.
pub fn env_value<'e>(entries: impl Iterator<Item = &'e [u8]>, name: &[u8]) -> Option<&'e [u8]> {
    entries
        .filter_map(|entry| entry.strip_prefix(name)?.strip_prefix(b"="))
        .next()
}

/// A number in decimal, written into a buffer of its own.
#[derive(Default)]
pub struct Decimal([u8; 20]);

impl Decimal {
    pub fn of(&mut self, mut value: u64) -> &[u8] {
        let mut at = self.0.len();
        loop {
            at -= 1;
            self.0[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                return &self.0[at..];
            }
        }
    }
}

/// close_range(2): closes the descriptors `first..=last` (or, with `CLOSE_RANGE_CLOEXEC`,
/// marks them close-on-exec). A raw system call: a C library wrapper would write errno, which
/// the lock holder and the front cannot have.
///
/// # Safety
/// Nothing in this process may use a descriptor in the range after it is closed.
pub unsafe fn close_range(first: u32, last: u32, flags: u32) -> Result<(), Errno> {
    // SAFETY: the caller vouches for the range.
    let result = unsafe {
        raw::syscall(
            raw::CLOSE_RANGE,
            [first as usize, last as usize, flags as usize, 0, 0, 0],
        )
    };
    match result {
        0 => Ok(()),
        failed => Err(Errno::from_raw_os_error(-failed as i32)),
    }
}

/// Raw system calls: the instruction itself on x86-64; elsewhere the C library's `syscall`,
/// which the front only calls once the C library has started (see `front`).
pub mod raw {
    pub const CLOSE_RANGE: usize = libc::SYS_close_range as usize;
    pub const GETCWD: usize = libc::SYS_getcwd as usize;
    pub const GETGROUPS: usize = libc::SYS_getgroups as usize;
    pub const EXECVE: usize = libc::SYS_execve as usize;
    pub const MMAP: usize = libc::SYS_mmap as usize;

    /// The system call `number` with six arguments; the kernel's return value (a negative
    /// errno on failure).
    ///
    /// # Safety
    /// The arguments must be what the system call expects.
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn syscall(number: usize, arguments: [usize; 6]) -> isize {
        let result: isize;
        // SAFETY: the caller vouches for the arguments; the instruction clobbers rcx and r11.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") number as isize => result,
                in("rdi") arguments[0],
                in("rsi") arguments[1],
                in("rdx") arguments[2],
                in("r10") arguments[3],
                in("r8") arguments[4],
                in("r9") arguments[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        result
    }

    /// See the x86-64 version.
    ///
    /// # Safety
    /// The arguments must be what the system call expects.
    #[cfg(not(target_arch = "x86_64"))]
    pub unsafe fn syscall(number: usize, arguments: [usize; 6]) -> isize {
        let [a, b, c, d, e, f] = arguments;
        // SAFETY: the caller vouches for the arguments.
        let result = unsafe { libc::syscall(number as libc::c_long, a, b, c, d, e, f) };
        if result == -1 {
            -(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO) as isize)
        } else {
            result as isize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_joined_and_bounded() {
        let path = CPath::new(&[b"/a/", b"b"]).unwrap();
        assert_eq!(path.as_cstr(), c"/a/b");
        assert!(CPath::new(&[&[b'x'; PATH_MAX]]).is_none());
        assert!(CPath::new(&[b"a\0b"]).is_none());
    }

    #[test]
    fn real_paths_resolve_links_like_realpath() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(real.join("d")).unwrap();
        std::os::unix::fs::symlink(real.join("d"), real.join("l")).unwrap();
        let mut out = [0; PATH_MAX];
        let link = CPath::new(&[real.join("l/.").as_os_str().as_encoded_bytes()]).unwrap();
        assert_eq!(
            real_path(link.as_cstr(), &mut out),
            Ok(Some(real.join("d").as_os_str().as_encoded_bytes()))
        );
        let gone = CPath::new(&[real.join("gone").as_os_str().as_encoded_bytes()]).unwrap();
        assert_eq!(real_path(gone.as_cstr(), &mut out), Ok(None));
    }

    #[test]
    fn numbers_and_variables() {
        let mut number = Decimal::default();
        assert_eq!(number.of(0), b"0");
        assert_eq!(number.of(u64::MAX), b"18446744073709551615");
        let env: [&[u8]; 3] = [b"PATHX=1", b"PATH=/bin", b"PATH=/usr/bin"];
        assert_eq!(env_value(env.into_iter(), b"PATH"), Some(&b"/bin"[..]));
        assert_eq!(env_value(env.into_iter(), b"PAT"), None);
    }
}
