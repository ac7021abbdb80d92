//! `exec`: another process in a running container, in its namespaces and cgroups.

use std::path::PathBuf;

use crate::config::{expand_env, merge_env};
use crate::error::{Error, Result};
use crate::{ContainerState, Containers, Status};

/// The options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub interactive: bool,
    pub tty: bool,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub command: Vec<String>,
}

impl Containers {
    /// Runs `opts.command` in the running container and waits for it. A command that cannot
    /// be executed is `Error::Runtime(runtime::Error::Exec)` (exit code 127 to docker users).
    pub fn exec(&self, state: &ContainerState, opts: &ExecOptions) -> Result<runtime::ExitStatus> {
        let pid = state.pid.filter(|_| state.status == Status::Running).ok_or_else(|| Error::NotRunning { name: state.name.clone() })?;
        let spec = exec_spec(&self.dir_of(&state.id), &state.id, pid, opts)?;
        if opts.tty {
            let mut proc_ = runtime::exec(pid, state.cgroup_dirs.clone(), &spec, runtime::Stdio::terminal())?;
            let master = proc_.take_terminal().ok_or_else(|| Error::NotStarted { id: state.id.clone(), reason: "the exec has no terminal".into() })?;
            crate::terminal::relay(master, opts.interactive, None)?;
            return Ok(proc_.wait()?);
        }
        let stdio = runtime::Stdio { stdin: if opts.interactive { runtime::Io::Inherit } else { runtime::Io::Null }, stdout: runtime::Io::Inherit, stderr: runtime::Io::Inherit };
        Ok(runtime::exec(pid, state.cgroup_dirs.clone(), &spec, stdio)?.wait()?)
    }
}

/// The spec of a process to run in the container of bundle `dir` (running as `pid`): the
/// container's own process settings with the exec's command, env, user and cwd.
pub(crate) fn exec_spec(dir: &std::path::Path, id: &str, pid: i32, opts: &ExecOptions) -> Result<runtime::Spec> {
    let mut spec = runtime::read_bundle(dir)?;
    let mut process = spec.process().clone().ok_or_else(|| Error::NotStarted { id: id.to_string(), reason: "its spec has no process".into() })?;
    let container_root = PathBuf::from(format!("/proc/{pid}/root"));
    if let Some(u) = &opts.user {
        let user = runtime::resolve_user(&container_root, u)?;
        let mut pu = process.user().clone();
        pu.set_uid(user.uid);
        pu.set_gid(user.gid);
        pu.set_additional_gids(Some(user.additional_gids));
        process.set_user(pu);
    }
    let env = merge_env(&process.env().clone().unwrap_or_default(), &opts.env.iter().map(|e| expand_env(e)).collect::<Vec<_>>());
    process.set_env(Some(env));
    process.set_args(Some(opts.command.clone()));
    if let Some(w) = &opts.workdir {
        process.set_cwd(PathBuf::from(w));
    }
    process.set_terminal(Some(opts.tty));
    spec.set_process(Some(process));
    Ok(spec)
}
