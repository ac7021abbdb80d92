//! The sandbox: runs a process in an OCI runtime-spec bundle with new mount, PID,
//! UTS and IPC namespaces (and network unless the host's), Docker's default
//! capabilities, masked paths, seccomp policy and cgroup limits.
//!
//! [`build_spec`] turns a few options into a complete `config.json` with Docker's
//! defaults; [`run`] / [`start`] execute a bundle with the builder's own small runtime
//! (no runc code, no re-exec: one `clone` and the container's own setup), and
//! [`exec`] runs more processes in a running container. Bundles are standard, so
//! [`run_external`] can hand the same one to runc.
//!
//! [`containers`] keeps the records of `builder run` containers (state, bundle, log
//! paths); supervising and presenting them (`ps`, `logs`, the detached shim) is the
//! CLI's job. This crate does not unpack images: see the `snapshot` crate.
//!
//! The kernel is reached through the [`Syscall`] trait, so the order of mounts and
//! credential changes is tested without root by a recording implementation.

pub mod bundle;
pub mod caps;
pub mod cgroup;
pub mod containers;
pub mod device_filter;
mod error;
pub mod external;
pub mod plan;
pub mod restart;
mod process;
pub mod rootpath;
pub mod seccomp;
pub mod spec;
pub mod stats;
pub mod syscall;
pub mod tty;
pub mod user;

pub use oci_spec::runtime::{Mount, Spec};
pub use bundle::{read_bundle, with_etc_files, write_bundle};
pub use error::{Error, Result};
pub use external::run_external;
pub use process::{Container, ExitStatus, Io, Stdio, exec, run, start};
pub use spec::{Limits, Network, OverlayRootfs, SpecOptions, bind_mount, build_spec, fs_mount, tmpfs_mount};
pub use syscall::{LinuxSyscall, RecordingSyscall, Syscall};
pub use user::{ResolvedUser, UnknownName, UserDb, resolve_user};
