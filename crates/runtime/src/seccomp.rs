//! Seccomp: Docker's default policy as an OCI `linux.seccomp` section, and its
//! compilation to BPF (seccompiler) for the builder's own runtime.
//!
//! Docker's policy is an allow-list (everything else fails with EPERM) plus a few
//! rules with other actions (clone3 fails with ENOSYS so libcs fall back to clone,
//! whose namespace flags can be checked). seccompiler has one match action per
//! filter, so each distinct action becomes its own stacked filter: the kernel applies
//! the most restrictive verdict of all filters, which gives the same result.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch};
use serde_json::json;

use crate::error::{Error, Result};

/// Syscalls Docker's default profile allows unconditionally (those this architecture has).
const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget", "capset", "chdir", "chmod",
    "chown", "clock_adjtime", "clock_getres", "clock_gettime", "clock_nanosleep", "close", "close_range", "connect",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat",
    "faccessat2", "fadvise64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown",
    "fchownat", "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat",
    "fstatfs", "fsync", "ftruncate", "futex", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake", "futimesat",
    "getcpu", "getcwd", "getdents", "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer",
    "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresuid",
    "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid",
    "gettimeofday", "getuid", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
    "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "ioprio_get", "ioprio_set", "io_setup",
    "io_submit", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lgetxattr",
    "link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr", "lseek", "lsetxattr", "lstat", "madvise",
    "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat",
    "mlock", "mlock2", "mlockall", "mmap", "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedsend", "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock",
    "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "open", "openat", "openat2", "pause",
    "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll",
    "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6", "pwrite64", "pwritev",
    "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg",
    "remap_file_pages", "removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select",
    "semctl", "semget", "semop", "semtimedop", "sendfile", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsuid",
    "setgid", "setgroups", "setitimer", "setpgid", "setpriority", "setregid", "setresgid", "setresuid", "setreuid",
    "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setxattr",
    "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "socketpair", "splice",
    "stat", "statfs", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill",
    "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime", "timerfd_create",
    "timerfd_gettime", "timerfd_settime", "times", "tkill", "truncate", "umask", "uname", "unlink", "unlinkat", "utime",
    "utimensat", "utimes", "vfork", "vmsplice", "wait4", "waitid", "write", "writev",
    // Allowed by Docker on kernels >= 4.8, where they no longer bypass seccomp.
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    // x86_64 specifics.
    "arch_prctl", "modify_ldt",
    // Allowed because CAP_SYS_CHROOT is in the default capability set.
    "chroot",
];

/// clone(2) flags that create namespaces; Docker denies them without CAP_SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
const AF_VSOCK: u64 = 40;

/// Docker's default policy, in runtime-spec form (readable by runc too).
pub fn docker_default_policy() -> serde_json::Value {
    let known: Vec<&str> = ALLOWED.iter().copied().filter(|n| syscall_number(n).is_some()).collect();
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": known, "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 131072, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 131080, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]},
        ]
    })
}

/// Compiled filters, in the order they must be installed.
pub type Filters = Vec<BpfProgram>;

/// Compiles a spec's seccomp section, caching by content: a build with many RUN steps
/// (or threads) compiles the same policy once.
pub fn compile_cached(policy: &LinuxSeccomp) -> Result<std::sync::Arc<Filters>> {
    static CACHE: OnceLock<Mutex<HashMap<String, std::sync::Arc<Filters>>>> = OnceLock::new();
    let key = serde_json::to_string(policy).map_err(|e| Error::Seccomp(e.to_string()))?;
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().map_err(|_| Error::Seccomp("cache poisoned".into()))?.get(&key) {
        return Ok(hit.clone());
    }
    let compiled = std::sync::Arc::new(compile(policy)?);
    if let Ok(mut c) = cache.lock() {
        c.insert(key, compiled.clone());
    }
    Ok(compiled)
}

fn action_of(action: LinuxSeccompAction, errno: Option<u32>, default_errno: u32) -> Result<SeccompAction> {
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(default_errno)),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => SeccompAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(errno.unwrap_or(0)),
        other => return Err(Error::Seccomp(format!("action {other:?} is not supported"))),
    })
}

/// Compiles an OCI seccomp section into stacked BPF filters (see the module comment).
pub fn compile(policy: &LinuxSeccomp) -> Result<Filters> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| Error::Seccomp(e.to_string()))?;
    let default_errno = policy.default_errno_ret().unwrap_or(libc::EPERM as u32);
    let default = action_of(policy.default_action(), None, default_errno)?;
    // action (as a sortable key) -> syscall -> rules (OR); an empty rule list matches always.
    let mut by_action: BTreeMap<String, (SeccompAction, BTreeMap<i64, Vec<SeccompRule>>)> = BTreeMap::new();
    let mut unconditional: BTreeMap<String, std::collections::BTreeSet<i64>> = BTreeMap::new();
    for sc in policy.syscalls().iter().flatten() {
        let action = action_of(sc.action(), sc.errno_ret(), default_errno)?;
        if action == default {
            continue;
        }
        let key = format!("{action:?}");
        let conds = match sc.args() {
            Some(args) if !args.is_empty() => {
                let mut v = Vec::new();
                for a in args {
                    let op = match a.op() {
                        LinuxSeccompOperator::ScmpCmpEq => SeccompCmpOp::Eq,
                        LinuxSeccompOperator::ScmpCmpNe => SeccompCmpOp::Ne,
                        LinuxSeccompOperator::ScmpCmpLt => SeccompCmpOp::Lt,
                        LinuxSeccompOperator::ScmpCmpLe => SeccompCmpOp::Le,
                        LinuxSeccompOperator::ScmpCmpGt => SeccompCmpOp::Gt,
                        LinuxSeccompOperator::ScmpCmpGe => SeccompCmpOp::Ge,
                        LinuxSeccompOperator::ScmpCmpMaskedEq => SeccompCmpOp::MaskedEq(a.value()),
                    };
                    let value = if matches!(a.op(), LinuxSeccompOperator::ScmpCmpMaskedEq) { a.value_two().unwrap_or(0) } else { a.value() };
                    let c = SeccompCondition::new(a.index() as u8, SeccompCmpArgLen::Qword, op, value).map_err(|e| Error::Seccomp(e.to_string()))?;
                    v.push(c);
                }
                Some(v)
            }
            _ => None,
        };
        let entry = by_action.entry(key.clone()).or_insert_with(|| (action.clone(), BTreeMap::new()));
        for name in sc.names() {
            let Some(nr) = syscall_number(name) else { continue };
            match &conds {
                None => {
                    unconditional.entry(key.clone()).or_default().insert(nr);
                    entry.1.insert(nr, Vec::new());
                }
                Some(c) => {
                    if unconditional.get(&key).is_some_and(|s| s.contains(&nr)) {
                        continue;
                    }
                    let rule = SeccompRule::new(c.clone()).map_err(|e| Error::Seccomp(e.to_string()))?;
                    entry.1.entry(nr).or_default().push(rule);
                }
            }
        }
    }
    let mut filters = Vec::new();
    // The allow filter carries the default action; every other action is a deny-list
    // stacked on top (mismatch = allow).
    let allow_key = format!("{:?}", SeccompAction::Allow);
    let allow_rules = by_action.remove(&allow_key).map(|(_, r)| r).unwrap_or_default();
    if default != SeccompAction::Allow {
        let f = SeccompFilter::new(allow_rules, default.clone(), SeccompAction::Allow, arch).map_err(|e| Error::Seccomp(e.to_string()))?;
        filters.push(BpfProgram::try_from(f).map_err(|e| Error::Seccomp(e.to_string()))?);
    }
    for (_, (action, rules)) in by_action {
        let f = SeccompFilter::new(rules, SeccompAction::Allow, action, arch).map_err(|e| Error::Seccomp(e.to_string()))?;
        filters.push(BpfProgram::try_from(f).map_err(|e| Error::Seccomp(e.to_string()))?);
    }
    Ok(filters)
}

/// The number of a syscall on this architecture, by name (None for names this
/// architecture does not have: a policy may list syscalls of other architectures).
#[cfg(target_arch = "x86_64")]
pub fn syscall_number(name: &str) -> Option<i64> {
    Some(match name {
        "accept" => libc::SYS_accept,
        "accept4" => libc::SYS_accept4,
        "access" => libc::SYS_access,
        "adjtimex" => libc::SYS_adjtimex,
        "alarm" => libc::SYS_alarm,
        "bind" => libc::SYS_bind,
        "brk" => libc::SYS_brk,
        "capget" => libc::SYS_capget,
        "capset" => libc::SYS_capset,
        "chdir" => libc::SYS_chdir,
        "chmod" => libc::SYS_chmod,
        "chown" => libc::SYS_chown,
        "clock_adjtime" => libc::SYS_clock_adjtime,
        "clock_getres" => libc::SYS_clock_getres,
        "clock_gettime" => libc::SYS_clock_gettime,
        "clock_nanosleep" => libc::SYS_clock_nanosleep,
        "close" => libc::SYS_close,
        "close_range" => libc::SYS_close_range,
        "connect" => libc::SYS_connect,
        "copy_file_range" => libc::SYS_copy_file_range,
        "creat" => libc::SYS_creat,
        "dup" => libc::SYS_dup,
        "dup2" => libc::SYS_dup2,
        "dup3" => libc::SYS_dup3,
        "epoll_create" => libc::SYS_epoll_create,
        "epoll_create1" => libc::SYS_epoll_create1,
        "epoll_ctl" => libc::SYS_epoll_ctl,
        "epoll_pwait" => libc::SYS_epoll_pwait,
        "epoll_pwait2" => libc::SYS_epoll_pwait2,
        "epoll_wait" => libc::SYS_epoll_wait,
        "eventfd" => libc::SYS_eventfd,
        "eventfd2" => libc::SYS_eventfd2,
        "execve" => libc::SYS_execve,
        "execveat" => libc::SYS_execveat,
        "exit" => libc::SYS_exit,
        "exit_group" => libc::SYS_exit_group,
        "faccessat" => libc::SYS_faccessat,
        "faccessat2" => libc::SYS_faccessat2,
        "fadvise64" => libc::SYS_fadvise64,
        "fallocate" => libc::SYS_fallocate,
        "fanotify_mark" => libc::SYS_fanotify_mark,
        "fchdir" => libc::SYS_fchdir,
        "fchmod" => libc::SYS_fchmod,
        "fchmodat" => libc::SYS_fchmodat,
        "fchmodat2" => libc::SYS_fchmodat2,
        "fchown" => libc::SYS_fchown,
        "fchownat" => libc::SYS_fchownat,
        "fcntl" => libc::SYS_fcntl,
        "fdatasync" => libc::SYS_fdatasync,
        "fgetxattr" => libc::SYS_fgetxattr,
        "flistxattr" => libc::SYS_flistxattr,
        "flock" => libc::SYS_flock,
        "fork" => libc::SYS_fork,
        "fremovexattr" => libc::SYS_fremovexattr,
        "fsetxattr" => libc::SYS_fsetxattr,
        "fstat" => libc::SYS_fstat,
        "fstatfs" => libc::SYS_fstatfs,
        "fsync" => libc::SYS_fsync,
        "ftruncate" => libc::SYS_ftruncate,
        "futex" => libc::SYS_futex,
        "futex_waitv" => libc::SYS_futex_waitv,
        "futimesat" => libc::SYS_futimesat,
        "getcpu" => libc::SYS_getcpu,
        "getcwd" => libc::SYS_getcwd,
        "getdents" => libc::SYS_getdents,
        "getdents64" => libc::SYS_getdents64,
        "getegid" => libc::SYS_getegid,
        "geteuid" => libc::SYS_geteuid,
        "getgid" => libc::SYS_getgid,
        "getgroups" => libc::SYS_getgroups,
        "getitimer" => libc::SYS_getitimer,
        "getpeername" => libc::SYS_getpeername,
        "getpgid" => libc::SYS_getpgid,
        "getpgrp" => libc::SYS_getpgrp,
        "getpid" => libc::SYS_getpid,
        "getppid" => libc::SYS_getppid,
        "getpriority" => libc::SYS_getpriority,
        "getrandom" => libc::SYS_getrandom,
        "getresgid" => libc::SYS_getresgid,
        "getresuid" => libc::SYS_getresuid,
        "getrlimit" => libc::SYS_getrlimit,
        "get_robust_list" => libc::SYS_get_robust_list,
        "getrusage" => libc::SYS_getrusage,
        "getsid" => libc::SYS_getsid,
        "getsockname" => libc::SYS_getsockname,
        "getsockopt" => libc::SYS_getsockopt,
        "get_thread_area" => libc::SYS_get_thread_area,
        "gettid" => libc::SYS_gettid,
        "gettimeofday" => libc::SYS_gettimeofday,
        "getuid" => libc::SYS_getuid,
        "getxattr" => libc::SYS_getxattr,
        "inotify_add_watch" => libc::SYS_inotify_add_watch,
        "inotify_init" => libc::SYS_inotify_init,
        "inotify_init1" => libc::SYS_inotify_init1,
        "inotify_rm_watch" => libc::SYS_inotify_rm_watch,
        "io_cancel" => libc::SYS_io_cancel,
        "ioctl" => libc::SYS_ioctl,
        "io_destroy" => libc::SYS_io_destroy,
        "io_getevents" => libc::SYS_io_getevents,
        "ioprio_get" => libc::SYS_ioprio_get,
        "ioprio_set" => libc::SYS_ioprio_set,
        "io_setup" => libc::SYS_io_setup,
        "io_submit" => libc::SYS_io_submit,
        "kill" => libc::SYS_kill,
        "landlock_add_rule" => libc::SYS_landlock_add_rule,
        "landlock_create_ruleset" => libc::SYS_landlock_create_ruleset,
        "landlock_restrict_self" => libc::SYS_landlock_restrict_self,
        "lchown" => libc::SYS_lchown,
        "lgetxattr" => libc::SYS_lgetxattr,
        "link" => libc::SYS_link,
        "linkat" => libc::SYS_linkat,
        "listen" => libc::SYS_listen,
        "listxattr" => libc::SYS_listxattr,
        "llistxattr" => libc::SYS_llistxattr,
        "lremovexattr" => libc::SYS_lremovexattr,
        "lseek" => libc::SYS_lseek,
        "lsetxattr" => libc::SYS_lsetxattr,
        "lstat" => libc::SYS_lstat,
        "madvise" => libc::SYS_madvise,
        "membarrier" => libc::SYS_membarrier,
        "memfd_create" => libc::SYS_memfd_create,
        "memfd_secret" => libc::SYS_memfd_secret,
        "mincore" => libc::SYS_mincore,
        "mkdir" => libc::SYS_mkdir,
        "mkdirat" => libc::SYS_mkdirat,
        "mknod" => libc::SYS_mknod,
        "mknodat" => libc::SYS_mknodat,
        "mlock" => libc::SYS_mlock,
        "mlock2" => libc::SYS_mlock2,
        "mlockall" => libc::SYS_mlockall,
        "mmap" => libc::SYS_mmap,
        "mprotect" => libc::SYS_mprotect,
        "mq_getsetattr" => libc::SYS_mq_getsetattr,
        "mq_notify" => libc::SYS_mq_notify,
        "mq_open" => libc::SYS_mq_open,
        "mq_timedreceive" => libc::SYS_mq_timedreceive,
        "mq_timedsend" => libc::SYS_mq_timedsend,
        "mq_unlink" => libc::SYS_mq_unlink,
        "mremap" => libc::SYS_mremap,
        "mseal" => libc::SYS_mseal,
        "msgctl" => libc::SYS_msgctl,
        "msgget" => libc::SYS_msgget,
        "msgrcv" => libc::SYS_msgrcv,
        "msgsnd" => libc::SYS_msgsnd,
        "msync" => libc::SYS_msync,
        "munlock" => libc::SYS_munlock,
        "munlockall" => libc::SYS_munlockall,
        "munmap" => libc::SYS_munmap,
        "name_to_handle_at" => libc::SYS_name_to_handle_at,
        "nanosleep" => libc::SYS_nanosleep,
        "newfstatat" => libc::SYS_newfstatat,
        "open" => libc::SYS_open,
        "openat" => libc::SYS_openat,
        "openat2" => libc::SYS_openat2,
        "pause" => libc::SYS_pause,
        "pidfd_open" => libc::SYS_pidfd_open,
        "pidfd_send_signal" => libc::SYS_pidfd_send_signal,
        "pipe" => libc::SYS_pipe,
        "pipe2" => libc::SYS_pipe2,
        "pkey_alloc" => libc::SYS_pkey_alloc,
        "pkey_free" => libc::SYS_pkey_free,
        "pkey_mprotect" => libc::SYS_pkey_mprotect,
        "poll" => libc::SYS_poll,
        "ppoll" => libc::SYS_ppoll,
        "prctl" => libc::SYS_prctl,
        "pread64" => libc::SYS_pread64,
        "preadv" => libc::SYS_preadv,
        "preadv2" => libc::SYS_preadv2,
        "prlimit64" => libc::SYS_prlimit64,
        "process_mrelease" => libc::SYS_process_mrelease,
        "pselect6" => libc::SYS_pselect6,
        "pwrite64" => libc::SYS_pwrite64,
        "pwritev" => libc::SYS_pwritev,
        "pwritev2" => libc::SYS_pwritev2,
        "read" => libc::SYS_read,
        "readahead" => libc::SYS_readahead,
        "readlink" => libc::SYS_readlink,
        "readlinkat" => libc::SYS_readlinkat,
        "readv" => libc::SYS_readv,
        "recvfrom" => libc::SYS_recvfrom,
        "recvmmsg" => libc::SYS_recvmmsg,
        "recvmsg" => libc::SYS_recvmsg,
        "remap_file_pages" => libc::SYS_remap_file_pages,
        "removexattr" => libc::SYS_removexattr,
        "rename" => libc::SYS_rename,
        "renameat" => libc::SYS_renameat,
        "renameat2" => libc::SYS_renameat2,
        "restart_syscall" => libc::SYS_restart_syscall,
        "rmdir" => libc::SYS_rmdir,
        "rseq" => libc::SYS_rseq,
        "rt_sigaction" => libc::SYS_rt_sigaction,
        "rt_sigpending" => libc::SYS_rt_sigpending,
        "rt_sigprocmask" => libc::SYS_rt_sigprocmask,
        "rt_sigqueueinfo" => libc::SYS_rt_sigqueueinfo,
        "rt_sigreturn" => libc::SYS_rt_sigreturn,
        "rt_sigsuspend" => libc::SYS_rt_sigsuspend,
        "rt_sigtimedwait" => libc::SYS_rt_sigtimedwait,
        "rt_tgsigqueueinfo" => libc::SYS_rt_tgsigqueueinfo,
        "sched_getaffinity" => libc::SYS_sched_getaffinity,
        "sched_getattr" => libc::SYS_sched_getattr,
        "sched_getparam" => libc::SYS_sched_getparam,
        "sched_get_priority_max" => libc::SYS_sched_get_priority_max,
        "sched_get_priority_min" => libc::SYS_sched_get_priority_min,
        "sched_getscheduler" => libc::SYS_sched_getscheduler,
        "sched_rr_get_interval" => libc::SYS_sched_rr_get_interval,
        "sched_setaffinity" => libc::SYS_sched_setaffinity,
        "sched_setattr" => libc::SYS_sched_setattr,
        "sched_setparam" => libc::SYS_sched_setparam,
        "sched_setscheduler" => libc::SYS_sched_setscheduler,
        "sched_yield" => libc::SYS_sched_yield,
        "seccomp" => libc::SYS_seccomp,
        "select" => libc::SYS_select,
        "semctl" => libc::SYS_semctl,
        "semget" => libc::SYS_semget,
        "semop" => libc::SYS_semop,
        "semtimedop" => libc::SYS_semtimedop,
        "sendfile" => libc::SYS_sendfile,
        "sendmmsg" => libc::SYS_sendmmsg,
        "sendmsg" => libc::SYS_sendmsg,
        "sendto" => libc::SYS_sendto,
        "setfsgid" => libc::SYS_setfsgid,
        "setfsuid" => libc::SYS_setfsuid,
        "setgid" => libc::SYS_setgid,
        "setgroups" => libc::SYS_setgroups,
        "setitimer" => libc::SYS_setitimer,
        "setpgid" => libc::SYS_setpgid,
        "setpriority" => libc::SYS_setpriority,
        "setregid" => libc::SYS_setregid,
        "setresgid" => libc::SYS_setresgid,
        "setresuid" => libc::SYS_setresuid,
        "setreuid" => libc::SYS_setreuid,
        "setrlimit" => libc::SYS_setrlimit,
        "set_robust_list" => libc::SYS_set_robust_list,
        "setsid" => libc::SYS_setsid,
        "setsockopt" => libc::SYS_setsockopt,
        "set_thread_area" => libc::SYS_set_thread_area,
        "set_tid_address" => libc::SYS_set_tid_address,
        "setuid" => libc::SYS_setuid,
        "setxattr" => libc::SYS_setxattr,
        "shmat" => libc::SYS_shmat,
        "shmctl" => libc::SYS_shmctl,
        "shmdt" => libc::SYS_shmdt,
        "shmget" => libc::SYS_shmget,
        "shutdown" => libc::SYS_shutdown,
        "sigaltstack" => libc::SYS_sigaltstack,
        "signalfd" => libc::SYS_signalfd,
        "signalfd4" => libc::SYS_signalfd4,
        "socketpair" => libc::SYS_socketpair,
        "splice" => libc::SYS_splice,
        "stat" => libc::SYS_stat,
        "statfs" => libc::SYS_statfs,
        "statx" => libc::SYS_statx,
        "symlink" => libc::SYS_symlink,
        "symlinkat" => libc::SYS_symlinkat,
        "sync" => libc::SYS_sync,
        "sync_file_range" => libc::SYS_sync_file_range,
        "syncfs" => libc::SYS_syncfs,
        "sysinfo" => libc::SYS_sysinfo,
        "tee" => libc::SYS_tee,
        "tgkill" => libc::SYS_tgkill,
        "time" => libc::SYS_time,
        "timer_create" => libc::SYS_timer_create,
        "timer_delete" => libc::SYS_timer_delete,
        "timer_getoverrun" => libc::SYS_timer_getoverrun,
        "timer_gettime" => libc::SYS_timer_gettime,
        "timer_settime" => libc::SYS_timer_settime,
        "timerfd_create" => libc::SYS_timerfd_create,
        "timerfd_gettime" => libc::SYS_timerfd_gettime,
        "timerfd_settime" => libc::SYS_timerfd_settime,
        "times" => libc::SYS_times,
        "tkill" => libc::SYS_tkill,
        "truncate" => libc::SYS_truncate,
        "umask" => libc::SYS_umask,
        "uname" => libc::SYS_uname,
        "unlink" => libc::SYS_unlink,
        "unlinkat" => libc::SYS_unlinkat,
        "utime" => libc::SYS_utime,
        "utimensat" => libc::SYS_utimensat,
        "utimes" => libc::SYS_utimes,
        "vfork" => libc::SYS_vfork,
        "vmsplice" => libc::SYS_vmsplice,
        "wait4" => libc::SYS_wait4,
        "waitid" => libc::SYS_waitid,
        "write" => libc::SYS_write,
        "writev" => libc::SYS_writev,
        "ptrace" => libc::SYS_ptrace,
        "process_vm_readv" => libc::SYS_process_vm_readv,
        "process_vm_writev" => libc::SYS_process_vm_writev,
        "kcmp" => libc::SYS_kcmp,
        "arch_prctl" => libc::SYS_arch_prctl,
        "modify_ldt" => libc::SYS_modify_ldt,
        "chroot" => libc::SYS_chroot,
        "clone" => libc::SYS_clone,
        "clone3" => libc::SYS_clone3,
        "socket" => libc::SYS_socket,
        "personality" => libc::SYS_personality,
        "mount" => libc::SYS_mount,
        "umount2" => libc::SYS_umount2,
        "unshare" => libc::SYS_unshare,
        "setns" => libc::SYS_setns,
        "reboot" => libc::SYS_reboot,
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        "delete_module" => libc::SYS_delete_module,
        "pivot_root" => libc::SYS_pivot_root,
        "sethostname" => libc::SYS_sethostname,
        "keyctl" => libc::SYS_keyctl,
        "add_key" => libc::SYS_add_key,
        "request_key" => libc::SYS_request_key,
        "bpf" => libc::SYS_bpf,
        "perf_event_open" => libc::SYS_perf_event_open,
        "userfaultfd" => libc::SYS_userfaultfd,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "swapon" => libc::SYS_swapon,
        "swapoff" => libc::SYS_swapoff,
        "kexec_load" => libc::SYS_kexec_load,
        "acct" => libc::SYS_acct,
        "settimeofday" => libc::SYS_settimeofday,
        "clock_settime" => libc::SYS_clock_settime,
        "quotactl" => libc::SYS_quotactl,
        "lookup_dcookie" => libc::SYS_lookup_dcookie,
        "fsopen" => libc::SYS_fsopen,
        "fsmount" => libc::SYS_fsmount,
        "move_mount" => libc::SYS_move_mount,
        "open_tree" => libc::SYS_open_tree,
        "ioperm" => libc::SYS_ioperm,
        "iopl" => libc::SYS_iopl,
        _ => return None,
    })
}
