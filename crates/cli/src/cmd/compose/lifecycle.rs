//! `compose down`, `start`, `stop`, `restart`, `rm`, `kill`, `exec` and `run`.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::engine::{self, Engine, Record};
use super::{images, spec, up};

#[derive(Args, Debug, Default)]
pub struct DownArgs {
    /// Remove the named volumes of the file and anonymous volumes.
    #[arg(short, long)]
    volumes: bool,
    /// Remove images: "local" (those built without an `image:` name) or "all".
    #[arg(long, value_parser = ["local", "all"])]
    rmi: Option<String>,
    /// Remove containers of services that are no longer in the compose file.
    #[arg(long)]
    remove_orphans: bool,
    /// Seconds to wait when stopping containers.
    #[arg(short = 't', long = "timeout")]
    timeout: Option<u64>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing.
    #[arg(short = 't', long = "timeout")]
    timeout: Option<u64>,
    services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ServicesArgs {
    services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Don't ask to confirm removal.
    #[arg(short, long)]
    force: bool,
    /// Stop the containers first.
    #[arg(short, long)]
    stop: bool,
    /// Remove anonymous volumes too.
    #[arg(short, long)]
    volumes: bool,
    services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "SIGKILL")]
    signal: String,
    services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode.
    #[arg(short, long)]
    detach: bool,
    /// Set environment variables.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Run as this user.
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory.
    #[arg(short, long = "workdir")]
    workdir: Option<String>,
    /// The replica (container number).
    #[arg(long, default_value_t = 1)]
    index: u32,
    /// Disable pseudo-TTY allocation (the default here).
    #[arg(short = 'T', long = "no-TTY")]
    no_tty: bool,
    service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Run in the background.
    #[arg(short, long)]
    detach: bool,
    /// Set environment variables.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Don't start the services it depends on.
    #[arg(long)]
    no_deps: bool,
    /// Assign a name to the container.
    #[arg(long)]
    name: Option<String>,
    /// Disable pseudo-TTY allocation (the default here).
    #[arg(short = 'T', long = "no-TTY")]
    no_tty: bool,
    service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn check_services(e: &Engine<'_>, services: &[String]) -> anyhow::Result<()> {
    for s in services {
        if !e.project.services.contains_key(s) {
            bail!("no such service: {s}");
        }
    }
    Ok(())
}

pub fn down(mut e: Engine<'_>, args: DownArgs) -> anyhow::Result<ExitCode> {
    let mut records: Vec<Record> = e.state.containers.clone();
    if !args.remove_orphans {
        let (keep, orphans): (Vec<_>, Vec<_>) = records.into_iter().partition(|r| e.project.services.contains_key(&r.service));
        if !orphans.is_empty() {
            eprintln!("WARN Found orphan containers ({}); run down with --remove-orphans to remove them", orphans.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "));
        }
        records = keep;
    }
    // Dependents stop before what they depend on.
    let order = e.project.ordered(&[], false).unwrap_or_default();
    records.sort_by_key(|r| std::cmp::Reverse(order.iter().position(|s| *s == r.service).unwrap_or(usize::MAX)));
    e.stop(&records, args.timeout)?;
    e.remove(&records, args.volumes)?;
    super::up::remove_networks(&e)?;
    if args.volumes {
        let store = e.volumes()?;
        for (key, v) in &e.project.volumes {
            let name = v.name.clone().unwrap_or_else(|| key.clone());
            if v.external || store.get(&name).is_err() {
                continue;
            }
            eprintln!(" Volume {name}  Removing");
            store.remove(&name)?;
            eprintln!(" Volume {name}  Removed");
        }
    }
    if let Some(which) = &args.rmi {
        let services: Vec<String> = e.project.services.keys().cloned().collect();
        for s in services {
            let svc = &e.project.services[&s];
            if which == "local" && svc.image.is_some() {
                continue;
            }
            let image = e.image_of(&s);
            if e.image_id(&image).is_some() {
                eprintln!(" Image {image}  Removing");
                e.quiet(&["rmi".into(), image.clone()])?;
                eprintln!(" Image {image}  Removed");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stop(e: Engine<'_>, args: StopArgs) -> anyhow::Result<ExitCode> {
    check_services(&e, &args.services)?;
    let mut records = e.records(&args.services);
    records.reverse();
    e.stop(&records, args.timeout)?;
    Ok(ExitCode::SUCCESS)
}

pub fn start(e: Engine<'_>, args: ServicesArgs) -> anyhow::Result<ExitCode> {
    check_services(&e, &args.services)?;
    let order = e.project.ordered(&args.services, false)?;
    for s in order {
        for r in e.records(std::slice::from_ref(&s)) {
            if !e.is_running(&r) {
                eprintln!(" Container {}  Starting", r.name);
                e.quiet(&["start".into(), r.id.clone()])?;
                eprintln!(" Container {}  Started", r.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn restart(e: Engine<'_>, args: StopArgs) -> anyhow::Result<ExitCode> {
    check_services(&e, &args.services)?;
    let order = e.project.ordered(&args.services, false)?;
    for s in order {
        for r in e.records(std::slice::from_ref(&s)) {
            eprintln!(" Container {}  Restarting", r.name);
            e.stop(std::slice::from_ref(&r), args.timeout)?;
            e.quiet(&["start".into(), r.id.clone()])?;
            eprintln!(" Container {}  Started", r.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(mut e: Engine<'_>, args: RmArgs) -> anyhow::Result<ExitCode> {
    check_services(&e, &args.services)?;
    let records = e.records(&args.services);
    if args.stop {
        e.stop(&records, None)?;
    }
    let stopped: Vec<Record> = records.into_iter().filter(|r| !e.is_running(r)).collect();
    if stopped.is_empty() {
        eprintln!("No stopped containers");
        return Ok(ExitCode::SUCCESS);
    }
    let _ = args.force; // nothing is asked: there is no prompt to skip
    e.remove(&stopped, args.volumes)?;
    Ok(ExitCode::SUCCESS)
}

pub fn kill(e: Engine<'_>, args: KillArgs) -> anyhow::Result<ExitCode> {
    check_services(&e, &args.services)?;
    let signal = args.signal.trim_start_matches("SIG").to_string();
    for r in e.records(&args.services) {
        if e.is_running(&r) {
            eprintln!(" Container {}  Killing", r.name);
            e.quiet(&["kill".into(), "-s".into(), signal.clone(), r.id.clone()])?;
            eprintln!(" Container {}  Killed", r.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pause` / `unpause`: the services' running containers, through `builder pause|unpause`.
pub fn pause(e: Engine<'_>, args: ServicesArgs, pause: bool) -> anyhow::Result<ExitCode> {
    check_services(&e, &args.services)?;
    let (verb, doing, done) = if pause { ("pause", "Pausing", "Paused") } else { ("unpause", "Unpausing", "Unpaused") };
    for r in e.records(&args.services) {
        if e.is_running(&r) {
            eprintln!(" Container {}  {doing}", r.name);
            e.quiet(&[verb.into(), r.id.clone()])?;
            eprintln!(" Container {}  {done}", r.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    /// Stop the whole project (`down`) once the first container has exited.
    #[arg(long)]
    down_project: bool,
    #[arg(required = true)]
    services: Vec<String>,
}

/// `wait SERVICE…`: blocks until the services' containers exit and prints each exit code, as
/// `builder wait` does; its exit code is the first container's.
pub fn wait(e: Engine<'_>, args: WaitArgs) -> anyhow::Result<ExitCode> {
    check_services(&e, &args.services)?;
    let records = e.records(&args.services);
    if records.is_empty() {
        bail!("no containers for {}: run `builder compose up` first", args.services.join(", "));
    }
    let mut a: Vec<String> = vec!["wait".into()];
    a.extend(records.iter().map(|r| r.id.clone()));
    let out = e.quiet(&a)?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let code: u8 = String::from_utf8_lossy(&out.stdout).lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    if args.down_project {
        down(e, DownArgs::default())?;
    }
    Ok(ExitCode::from(code))
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Which replica of the service (default: the first).
    #[arg(long, default_value_t = 1)]
    index: u32,
    #[command(flatten)]
    flags: crate::cmd::container::AttachFlags,
    service: String,
}

/// `attach SERVICE`: `builder attach` to the service's (first) running container.
pub fn attach(e: Engine<'_>, args: AttachArgs) -> anyhow::Result<ExitCode> {
    check_services(&e, std::slice::from_ref(&args.service))?;
    let Some(r) = e.records(std::slice::from_ref(&args.service)).into_iter().find(|r| r.number == args.index) else {
        bail!("service {:?} has no container number {}", args.service, args.index);
    };
    let mut a: Vec<String> = vec!["attach".into()];
    a.extend(args.flags.to_args());
    a.push(r.id);
    let code = e.attached(&a)?;
    Ok(ExitCode::from(code as u8))
}

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Which replica of the service (default: the first).
    #[arg(long, default_value_t = 1)]
    index: u32,
    /// Archive mode: keep owners and permissions (always so; accepted for Compose compatibility).
    #[arg(short, long)]
    archive: bool,
    /// `SERVICE:SRC_PATH DEST_PATH` or `SRC_PATH SERVICE:DEST_PATH` (`-` for a tar on stdio).
    src: String,
    dest: String,
}

/// `cp`: `builder cp` with the service's container in place of the service name.
pub fn cp(e: Engine<'_>, args: CpArgs) -> anyhow::Result<ExitCode> {
    let _ = args.archive;
    let to_container = |side: &str| -> anyhow::Result<Option<String>> {
        let Some((service, path)) = side.split_once(':') else { return Ok(None) };
        check_services(&e, &[service.to_string()])?;
        let Some(r) = e.records(&[service.to_string()]).into_iter().find(|r| r.number == args.index) else {
            bail!("service {service:?} has no container number {}", args.index);
        };
        Ok(Some(format!("{}:{path}", r.id)))
    };
    let src = to_container(&args.src)?;
    let dest = to_container(&args.dest)?;
    if src.is_some() == dest.is_some() {
        bail!("copying between services or between local paths is not supported: one of {:?} and {:?} must be SERVICE:PATH", args.src, args.dest);
    }
    let code = e.attached(&["cp".into(), src.unwrap_or(args.src), dest.unwrap_or(args.dest)])?;
    Ok(ExitCode::from(code as u8))
}

pub fn exec(e: Engine<'_>, args: ExecArgs) -> anyhow::Result<ExitCode> {
    check_services(&e, std::slice::from_ref(&args.service))?;
    let Some(r) = e.records(std::slice::from_ref(&args.service)).into_iter().find(|r| r.number == args.index) else {
        bail!("service {:?} is not running (no container number {})", args.service, args.index);
    };
    if !e.is_running(&r) {
        bail!("service {:?} is not running", args.service);
    }
    let mut a: Vec<String> = vec!["exec".into()];
    if args.detach {
        a.push("-d".into());
    } else if !args.no_tty && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // As docker compose: a terminal by default when there is one (-T: none).
        a.push("-i".into());
        a.push("-t".into());
    }
    for v in &args.env {
        a.push("-e".into());
        a.push(v.clone());
    }
    if let Some(u) = &args.user {
        a.push("-u".into());
        a.push(u.clone());
    }
    if let Some(w) = &args.workdir {
        a.push("-w".into());
        a.push(w.clone());
    }
    a.push(r.id.clone());
    a.extend(args.command.iter().cloned());
    let code = e.attached(&a)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// `compose run`: a one-off container of the service (dependencies started first).
pub fn run(mut e: Engine<'_>, args: RunArgs) -> anyhow::Result<ExitCode> {
    check_services(&e, std::slice::from_ref(&args.service))?;
    if !args.no_deps {
        let deps: Vec<String> = e.project.ordered(std::slice::from_ref(&args.service), true)?.into_iter().filter(|s| *s != args.service).collect();
        if !deps.is_empty() {
            up::run(
                Engine::open(e.globals, e.project.clone(), e.compatibility)?,
                up::UpArgs { detach: true, services: deps, ..up::UpArgs::default() },
            )?;
        }
    }
    images::ensure(&e, std::slice::from_ref(&args.service), false, false)?;
    let number = e.state.containers.iter().filter(|r| r.oneoff && r.service == args.service).map(|r| r.number).max().unwrap_or(0) + 1;
    let name = args.name.clone().unwrap_or_else(|| {
        let sep = if e.compatibility { '_' } else { '-' };
        format!("{}{sep}{}{sep}run{sep}{number}", e.project.name, args.service)
    });
    let command = (!args.command.is_empty()).then_some(args.command.as_slice());
    super::up::create_volumes(&e)?;
    super::up::create_networks(&e)?;
    let spec = spec::run_args(&e, &args.service, &name, command, args.detach)?;
    let mut run_args = spec.args;
    // A one-off container is not restarted (as `docker compose run`).
    if let Some(i) = run_args.iter().position(|a| a == "--restart") {
        run_args.drain(i..i + 2);
    }
    // Extra -e before the image (after --name …): the image is where the options end.
    let image_at = run_args.iter().position(|a| *a == e.image_of(&args.service)).unwrap_or(run_args.len());
    for (k, v) in args.env.iter().enumerate() {
        run_args.insert(image_at + 2 * k, "-e".into());
        run_args.insert(image_at + 2 * k + 1, v.clone());
    }
    let mut full = vec!["run".to_string()];
    if args.rm {
        full.push("--rm".into());
    }
    if !args.detach && !args.no_tty && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        full.push("-i".into());
        full.push("-t".into());
    }
    let config = up::config_of(&e, &args.service);
    let hash = engine::config_hash(&config);
    full.extend(super::spec::label_args(&engine::labels(&e.project, &args.service, number, true, &hash)));
    full.extend(run_args);
    if args.detach {
        let out = e.quiet(&full)?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let labels = engine::labels(&e.project, &args.service, number, true, &hash);
        let image_id = e.image_id(&e.image_of(&args.service)).unwrap_or_default();
        e.state.containers.push(Record { name: name.clone(), id: id.clone(), service: args.service.clone(), number, oneoff: true, config, image_id, labels });
        e.save()?;
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    // The project lock is not held while the one-off container runs in the foreground.
    let mut cmd = e.builder();
    cmd.args(&full);
    let (globals, project, compatibility) = (e.globals, e.project.clone(), e.compatibility);
    drop(e);
    let code = cmd.status()?.code().unwrap_or(1);
    if !args.rm {
        let mut e = Engine::open(globals, project, compatibility)?;
        if let Ok(s) = e.store()?.find(&name) {
            let image_id = s.image_id.clone();
            let labels = engine::labels(&e.project, &args.service, number, true, &hash);
            e.state.containers.push(Record { name, id: s.id, service: args.service.clone(), number, oneoff: true, config, image_id, labels });
            e.save()?;
        }
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
