//! `builder start`, `attach` and `wait`.

use std::process::ExitCode;

use clap::Args;
use container::Containers;
use container::attach::{AttachOptions, Ended, parse_detach_keys};

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach stdout and stderr, and return the container's exit code.
    #[arg(short, long)]
    attach: bool,
    /// Attach stdin too.
    #[arg(short, long)]
    interactive: bool,
    /// Keys that detach (default ctrl-p,ctrl-q).
    #[arg(long = "detach-keys", value_name = "KEYS")]
    detach_keys: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    #[command(flatten)]
    flags: AttachFlags,
    container: String,
}

/// The options of `attach` (`compose attach` passes them on).
#[derive(Args, Debug)]
pub struct AttachFlags {
    /// Do not attach stdin.
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Pass the signals builder gets on to the container (without -t).
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub sig_proxy: bool,
    /// Keys that detach (default ctrl-p,ctrl-q).
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
}

impl AttachFlags {
    /// The same options as `builder attach` arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![format!("--sig-proxy={}", self.sig_proxy)];
        if self.no_stdin {
            a.push("--no-stdin".into());
        }
        if let Some(k) = &self.detach_keys {
            a.extend(["--detach-keys".into(), k.clone()]);
        }
        a
    }
}

fn keys(value: Option<&str>) -> anyhow::Result<Vec<u8>> {
    Ok(match value {
        Some(k) => parse_detach_keys(k)?,
        None => AttachOptions::default().detach_keys,
    })
}

fn code_of(ended: Ended) -> ExitCode {
    match ended {
        Ended::Exited(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Ended::Detached => ExitCode::SUCCESS,
    }
}

pub(super) fn start(containers: &Containers, args: StartArgs) -> anyhow::Result<ExitCode> {
    if !args.attach && !args.interactive {
        return super::each(containers, &args.containers, |c, s| Ok(c.start(&s)?));
    }
    if args.containers.len() > 1 {
        anyhow::bail!("you cannot start and attach multiple containers at once");
    }
    let state = containers.find(&args.containers[0])?;
    let opts = AttachOptions { stdin: args.interactive, detach_keys: keys(args.detach_keys.as_deref())?, sig_proxy: true };
    Ok(code_of(containers.start_attached(&state, &opts)?))
}

pub(super) fn attach(containers: &Containers, args: AttachArgs) -> anyhow::Result<ExitCode> {
    let state = containers.find(&args.container)?;
    let f = &args.flags;
    let opts = AttachOptions { stdin: !f.no_stdin, detach_keys: keys(f.detach_keys.as_deref())?, sig_proxy: f.sig_proxy };
    match containers.attach(&state, &opts)? {
        // What Docker's `attach` says and returns on a detach (`run -it` and `start -ai` are silent, 0).
        Ended::Detached => {
            eprintln!("read escape sequence");
            Ok(ExitCode::from(1))
        }
        ended => Ok(code_of(ended)),
    }
}

/// Prints each container's exit code once it has stopped, in the order given.
pub(super) fn wait(containers: &Containers, keys: &[String]) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for key in keys {
        match containers.find(key).map_err(anyhow::Error::from).and_then(|s| Ok(containers.wait(&s)?)) {
            Ok(exit) => println!("{exit}"),
            Err(e) => {
                eprintln!("error: {e:#}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}
