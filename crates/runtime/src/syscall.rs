//! The kernel interface of the sandbox, as a trait: [`LinuxSyscall`] calls the kernel,
//! [`RecordingSyscall`] writes down what would have been called, so tests can check the
//! order of mounts and credential changes without root.
//!
//! Every method takes C strings prepared in advance: the real implementation runs in
//! the freshly cloned child, where allocating is not safe (another thread of the
//! parent may have held the allocator's lock at clone time).

use std::ffi::CStr;
use std::os::fd::RawFd;

use nix::errno::Errno;

pub type SysResult<T = ()> = Result<T, Errno>;

/// What the container's init asks of the kernel.
pub trait Syscall {
    fn mount(&self, source: Option<&CStr>, target: &CStr, fstype: Option<&CStr>, flags: u64, data: Option<&CStr>) -> SysResult;
    fn umount2(&self, target: &CStr, flags: i32) -> SysResult;
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> SysResult;
    fn chdir(&self, path: &CStr) -> SysResult;
    fn mkdir(&self, path: &CStr, mode: u32) -> SysResult;
    fn mknod(&self, path: &CStr, mode: u32, dev: u64) -> SysResult;
    fn symlink(&self, target: &CStr, link: &CStr) -> SysResult;
    /// Creates an empty file (for a file bind-mount target) if missing.
    fn create_file(&self, path: &CStr) -> SysResult;
    /// Writes `data` to an existing file (a `/proc/sys` entry).
    fn write_file(&self, path: &CStr, data: &[u8]) -> SysResult;
    /// Some(true) for a directory, Some(false) for anything else, None when missing.
    fn is_dir(&self, path: &CStr) -> Option<bool>;
    fn sethostname(&self, name: &CStr) -> SysResult;
    /// A detached copy of the mount tree at `source` (open_tree OPEN_TREE_CLONE).
    fn open_tree(&self, source: &CStr) -> SysResult<RawFd>;
    /// Makes a detached tree read-only, recursively.
    fn set_tree_readonly(&self, fd: RawFd) -> SysResult;
    /// Attaches a detached tree at `target`.
    fn move_mount(&self, fd: RawFd, target: &CStr) -> SysResult;
    /// Mounts an overlay of `lowers` (top first) at `target` with the new mount API,
    /// which has no page-size limit on the number of layers.
    /// `volatile` skips syncing the upper dir when the overlay goes away.
    fn mount_overlay(&self, lowers: &[&CStr], upper: &CStr, work: &CStr, volatile: bool, target: &CStr) -> SysResult;
    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> SysResult;
    fn setgroups(&self, gids: &[libc::gid_t]) -> SysResult;
    fn setresgid(&self, gid: u32) -> SysResult;
    fn setresuid(&self, uid: u32) -> SysResult;
    fn set_keepcaps(&self, keep: bool) -> SysResult;
    fn drop_bounding_cap(&self, cap: u32) -> SysResult;
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> SysResult;
    fn set_no_new_privs(&self) -> SysResult;
    fn set_parent_death_signal(&self, signal: i32) -> SysResult;
    fn seccomp(&self, filter: &[seccompiler::sock_filter]) -> SysResult;
    fn dup2(&self, from: RawFd, to: RawFd) -> SysResult;
    fn setsid_and_controlling_tty(&self) -> SysResult;
    /// Marks every descriptor from `first` up close-on-exec.
    fn cloexec_from(&self, first: u32) -> SysResult;
}

/// The real kernel.
pub struct LinuxSyscall;

fn check(r: libc::c_long) -> SysResult {
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

fn ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

impl Syscall for LinuxSyscall {
    fn mount(&self, source: Option<&CStr>, target: &CStr, fstype: Option<&CStr>, flags: u64, data: Option<&CStr>) -> SysResult {
        // SAFETY: all pointers are NUL-terminated strings or null, valid for the call.
        let r = unsafe { libc::mount(ptr(source), target.as_ptr(), ptr(fstype), flags as libc::c_ulong, ptr(data).cast()) };
        check(r as libc::c_long)
    }
    fn umount2(&self, target: &CStr, flags: i32) -> SysResult {
        // SAFETY: target is a valid C string.
        check(unsafe { libc::umount2(target.as_ptr(), flags) } as libc::c_long)
    }
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> SysResult {
        // SAFETY: both are valid C strings.
        check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
    }
    fn chdir(&self, path: &CStr) -> SysResult {
        // SAFETY: valid C string.
        check(unsafe { libc::chdir(path.as_ptr()) } as libc::c_long)
    }
    fn mkdir(&self, path: &CStr, mode: u32) -> SysResult {
        // SAFETY: valid C string.
        check(unsafe { libc::mkdir(path.as_ptr(), mode) } as libc::c_long)
    }
    fn mknod(&self, path: &CStr, mode: u32, dev: u64) -> SysResult {
        // SAFETY: valid C string.
        check(unsafe { libc::mknod(path.as_ptr(), mode, dev) } as libc::c_long)
    }
    fn symlink(&self, target: &CStr, link: &CStr) -> SysResult {
        // SAFETY: valid C strings.
        check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) } as libc::c_long)
    }
    fn create_file(&self, path: &CStr) -> SysResult {
        // Mode 0755, as runc makes a missing file mount point (and Docker's init layer its
        // /etc/hosts, /etc/hostname, /etc/resolv.conf).
        // SAFETY: valid C string; the returned descriptor is closed right away.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o755) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: fd was just opened by us.
        unsafe { libc::close(fd) };
        Ok(())
    }
    fn write_file(&self, path: &CStr, data: &[u8]) -> SysResult {
        // SAFETY: valid C string; the descriptor is closed before returning.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: fd is ours and `data` is a valid buffer of its length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        let err = Errno::last();
        // SAFETY: fd was just opened by us.
        unsafe { libc::close(fd) };
        if n < 0 { Err(err) } else { Ok(()) }
    }
    fn is_dir(&self, path: &CStr) -> Option<bool> {
        // SAFETY: an all-zero stat is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid C string and a writable stat buffer.
        if unsafe { libc::stat(path.as_ptr(), &mut st) } < 0 {
            return None;
        }
        Some(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
    }
    fn sethostname(&self, name: &CStr) -> SysResult {
        let b = name.to_bytes();
        // SAFETY: pointer and length describe the bytes of `name`.
        check(unsafe { libc::sethostname(b.as_ptr().cast(), b.len()) } as libc::c_long)
    }
    fn open_tree(&self, source: &CStr) -> SysResult<RawFd> {
        let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint;
        // SAFETY: valid C string; the kernel returns a new descriptor or -1.
        let r = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, source.as_ptr(), flags) };
        if r < 0 { Err(Errno::last()) } else { Ok(r as RawFd) }
    }
    fn set_tree_readonly(&self, fd: RawFd) -> SysResult {
        let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
        let empty = c"";
        // SAFETY: attr is a valid mount_attr of the size passed; empty is a valid C string.
        check(unsafe {
            libc::syscall(libc::SYS_mount_setattr, fd, empty.as_ptr(), libc::AT_EMPTY_PATH | libc::AT_RECURSIVE, &attr as *const MountAttr, std::mem::size_of::<MountAttr>())
        })
    }
    fn move_mount(&self, fd: RawFd, target: &CStr) -> SysResult {
        let empty = c"";
        // SAFETY: valid C strings; fd is a detached tree from open_tree.
        check(unsafe { libc::syscall(libc::SYS_move_mount, fd, empty.as_ptr(), libc::AT_FDCWD, target.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH) })
    }
    fn mount_overlay(&self, lowers: &[&CStr], upper: &CStr, work: &CStr, volatile: bool, target: &CStr) -> SysResult {
        // SAFETY: "overlay" is a valid C string; fsopen returns a new fd or -1.
        let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), libc::FSOPEN_CLOEXEC) };
        if fs < 0 {
            return Err(Errno::last());
        }
        let fs = fs as RawFd;
        let set = |key: &CStr, value: &CStr| -> SysResult {
            // SAFETY: fs is our fs context; key and value are valid C strings.
            check(unsafe { libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr(), 0) })
        };
        let result = (|| {
            // lowerdir+ takes layers top first, one call each.
            for l in lowers {
                set(c"lowerdir+", l)?;
            }
            set(c"upperdir", upper)?;
            set(c"workdir", work)?;
            if volatile {
                // SAFETY: FSCONFIG_SET_FLAG with a valid C string key.
                check(unsafe { libc::syscall(libc::SYS_fsconfig, fs, 0 as libc::c_uint, c"volatile".as_ptr(), 0usize, 0) })?;
            }
            // SAFETY: fs is our fs context; no pointers.
            check(unsafe { libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, 0usize, 0usize, 0) })?;
            // SAFETY: fs is our fs context.
            let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs, libc::FSMOUNT_CLOEXEC, 0) };
            if mnt < 0 {
                return Err(Errno::last());
            }
            let r = self.move_mount(mnt as RawFd, target);
            // SAFETY: mnt is our descriptor.
            unsafe { libc::close(mnt as RawFd) };
            r
        })();
        // SAFETY: fs is our descriptor.
        unsafe { libc::close(fs) };
        result
    }
    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> SysResult {
        let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
        // SAFETY: lim is a valid rlimit.
        check(unsafe { libc::setrlimit(resource as _, &lim) } as libc::c_long)
    }
    fn setgroups(&self, gids: &[libc::gid_t]) -> SysResult {
        // Raw syscall: glibc's wrapper synchronises with the parent's other threads,
        // which it still believes exist after a raw clone, and would wait forever.
        // SAFETY: pointer and length describe the slice.
        check(unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) })
    }
    fn setresgid(&self, gid: u32) -> SysResult {
        // Raw syscall: glibc's wrapper would broadcast to all threads (there is one here).
        // SAFETY: plain integers.
        check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })
    }
    fn setresuid(&self, uid: u32) -> SysResult {
        // SAFETY: plain integers.
        check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })
    }
    fn set_keepcaps(&self, keep: bool) -> SysResult {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, keep as libc::c_ulong, 0, 0, 0) } as libc::c_long)
    }
    fn drop_bounding_cap(&self, cap: u32) -> SysResult {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } as libc::c_long)
    }
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> SysResult {
        let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
        let data = [
            CapData { effective: effective as u32, permitted: permitted as u32, inheritable: inheritable as u32 },
            CapData { effective: (effective >> 32) as u32, permitted: (permitted >> 32) as u32, inheritable: (inheritable >> 32) as u32 },
        ];
        // SAFETY: header and a two-element data array, as capset v3 expects.
        check(unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) })
    }
    fn set_no_new_privs(&self) -> SysResult {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as libc::c_long)
    }
    fn set_parent_death_signal(&self, signal: i32) -> SysResult {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) } as libc::c_long)
    }
    fn seccomp(&self, filter: &[seccompiler::sock_filter]) -> SysResult {
        #[repr(C)]
        struct SockFprog {
            len: u16,
            filter: *const seccompiler::sock_filter,
        }
        let prog = SockFprog { len: filter.len() as u16, filter: filter.as_ptr() };
        // SAFETY: prog points at `filter`, alive for the call; seccomp copies it.
        check(unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const SockFprog) })
    }
    fn dup2(&self, from: RawFd, to: RawFd) -> SysResult {
        if from == to {
            // Clear close-on-exec on a descriptor already in place.
            // SAFETY: fcntl on a descriptor number.
            return check(unsafe { libc::fcntl(from, libc::F_SETFD, 0) } as libc::c_long);
        }
        // SAFETY: plain descriptor numbers.
        check(unsafe { libc::dup2(from, to) } as libc::c_long)
    }
    fn setsid_and_controlling_tty(&self) -> SysResult {
        // SAFETY: setsid has no arguments; TIOCSCTTY on stdin, which is the pty.
        check(unsafe { libc::setsid() } as libc::c_long)?;
        // SAFETY: ioctl on descriptor 0 with an integer argument.
        check(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } as libc::c_long)
    }
    fn cloexec_from(&self, first: u32) -> SysResult {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
        check(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) })
    }
}

/// Records calls as lines of text; every call succeeds (or fails, for paths listed in `fail`).
#[derive(Default)]
pub struct RecordingSyscall {
    pub calls: std::cell::RefCell<Vec<String>>,
    /// Paths `is_dir` reports as directories; everything else is a file.
    pub dirs: Vec<String>,
}

impl RecordingSyscall {
    fn rec(&self, s: String) -> SysResult {
        self.calls.borrow_mut().push(s);
        Ok(())
    }
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

fn s(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}
fn o(c: Option<&CStr>) -> String {
    c.map(s).unwrap_or_else(|| "-".into())
}

impl Syscall for RecordingSyscall {
    fn mount(&self, source: Option<&CStr>, target: &CStr, fstype: Option<&CStr>, flags: u64, data: Option<&CStr>) -> SysResult {
        self.rec(format!("mount {} {} {} {flags:#x} {}", o(source), s(target), o(fstype), o(data)))
    }
    fn umount2(&self, target: &CStr, flags: i32) -> SysResult {
        self.rec(format!("umount2 {} {flags}", s(target)))
    }
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> SysResult {
        self.rec(format!("pivot_root {} {}", s(new_root), s(put_old)))
    }
    fn chdir(&self, path: &CStr) -> SysResult {
        self.rec(format!("chdir {}", s(path)))
    }
    fn mkdir(&self, path: &CStr, mode: u32) -> SysResult {
        self.rec(format!("mkdir {} {mode:o}", s(path)))
    }
    fn mknod(&self, path: &CStr, mode: u32, dev: u64) -> SysResult {
        self.rec(format!("mknod {} {mode:o} {dev}", s(path)))
    }
    fn symlink(&self, target: &CStr, link: &CStr) -> SysResult {
        self.rec(format!("symlink {} {}", s(target), s(link)))
    }
    fn create_file(&self, path: &CStr) -> SysResult {
        self.rec(format!("create_file {}", s(path)))
    }
    fn write_file(&self, path: &CStr, data: &[u8]) -> SysResult {
        self.rec(format!("write_file {} {}", s(path), String::from_utf8_lossy(data)))
    }
    fn is_dir(&self, path: &CStr) -> Option<bool> {
        Some(self.dirs.iter().any(|d| d.as_str() == s(path)))
    }
    fn sethostname(&self, name: &CStr) -> SysResult {
        self.rec(format!("sethostname {}", s(name)))
    }
    fn open_tree(&self, source: &CStr) -> SysResult<RawFd> {
        let n = self.calls.borrow().len() as RawFd;
        self.rec(format!("open_tree {} -> {}", s(source), 100 + n))?;
        Ok(100 + n)
    }
    fn set_tree_readonly(&self, fd: RawFd) -> SysResult {
        self.rec(format!("set_tree_readonly {fd}"))
    }
    fn move_mount(&self, fd: RawFd, target: &CStr) -> SysResult {
        self.rec(format!("move_mount {fd} {}", s(target)))
    }
    fn mount_overlay(&self, lowers: &[&CStr], upper: &CStr, work: &CStr, volatile: bool, target: &CStr) -> SysResult {
        let l: Vec<String> = lowers.iter().map(|c| s(c)).collect();
        let v = if volatile { " volatile" } else { "" };
        self.rec(format!("mount_overlay lower={} upper={} work={}{v} {}", l.join(":"), s(upper), s(work), s(target)))
    }
    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> SysResult {
        self.rec(format!("setrlimit {resource} {soft} {hard}"))
    }
    fn setgroups(&self, gids: &[libc::gid_t]) -> SysResult {
        self.rec(format!("setgroups {gids:?}"))
    }
    fn setresgid(&self, gid: u32) -> SysResult {
        self.rec(format!("setresgid {gid}"))
    }
    fn setresuid(&self, uid: u32) -> SysResult {
        self.rec(format!("setresuid {uid}"))
    }
    fn set_keepcaps(&self, keep: bool) -> SysResult {
        self.rec(format!("set_keepcaps {keep}"))
    }
    fn drop_bounding_cap(&self, cap: u32) -> SysResult {
        self.rec(format!("drop_bounding_cap {cap}"))
    }
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> SysResult {
        self.rec(format!("capset {effective:#x} {permitted:#x} {inheritable:#x}"))
    }
    fn set_no_new_privs(&self) -> SysResult {
        self.rec("set_no_new_privs".into())
    }
    fn set_parent_death_signal(&self, signal: i32) -> SysResult {
        self.rec(format!("set_parent_death_signal {signal}"))
    }
    fn seccomp(&self, filter: &[seccompiler::sock_filter]) -> SysResult {
        self.rec(format!("seccomp {} instructions", filter.len()))
    }
    fn dup2(&self, from: RawFd, to: RawFd) -> SysResult {
        self.rec(format!("dup2 {from} {to}"))
    }
    fn setsid_and_controlling_tty(&self) -> SysResult {
        self.rec("setsid_and_controlling_tty".into())
    }
    fn cloexec_from(&self, first: u32) -> SysResult {
        self.rec(format!("cloexec_from {first}"))
    }
}
