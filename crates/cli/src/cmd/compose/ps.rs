//! `compose ps`, `top` and `port`.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use runtime::containers::Status;

use super::engine::{Engine, Record};

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers, stopped ones too.
    #[arg(short, long)]
    all: bool,
    /// Only display IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Display services.
    #[arg(long)]
    services: bool,
    /// Output format: table or json.
    #[arg(long, value_parser = ["table", "json"], default_value = "table")]
    format: String,
    #[arg(value_name = "SERVICE")]
    names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PortArgs {
    /// The protocol.
    #[arg(long, default_value = "tcp")]
    protocol: String,
    /// The replica's number.
    #[arg(long, default_value_t = 1)]
    index: u32,
    service: String,
    private_port: u16,
}

pub fn print_table(rows: &[[String; 4]]) {
    print_rows(&rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>());
}

pub fn print_rows(rows: &[Vec<String>]) {
    let cols = rows.first().map(Vec::len).unwrap_or(0);
    let widths: Vec<usize> = (0..cols).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        println!("{}", line.trim_end());
    }
}

/// The ports a container publishes, as the container's state has them (a random host port
/// shows the one it got, as `docker compose ps` does), then the `expose` ones not published.
fn bindings(e: &Engine<'_>, r: &Record, s: &runtime::containers::ContainerState) -> (Vec<network::PortBinding>, Vec<String>) {
    let bound = container::Containers::open(&e.root).map(|c| c.ports(s)).unwrap_or_default();
    let Some(svc) = e.project.services.get(&r.service) else { return (bound, Vec::new()) };
    let exposed = svc
        .expose
        .iter()
        .map(|x| if x.contains('/') { x.clone() } else { format!("{x}/tcp") })
        .filter(|x| !bound.iter().any(|b| format!("{}/{}", b.container_port, b.proto.as_str()) == *x))
        .collect();
    (bound, exposed)
}

fn ports_of(e: &Engine<'_>, r: &Record, s: &runtime::containers::ContainerState) -> String {
    let (bound, exposed) = bindings(e, r, s);
    let mut v: Vec<String> = bound.iter().map(ToString::to_string).collect();
    v.extend(exposed);
    v.join(", ")
}

/// `Publishers` of `ps --format json`, in Compose v2's shape.
fn publishers(e: &Engine<'_>, r: &Record, s: &runtime::containers::ContainerState) -> serde_json::Value {
    let (bound, exposed) = bindings(e, r, s);
    let mut v: Vec<serde_json::Value> = bound
        .iter()
        .map(|b| serde_json::json!({"URL": b.host_ip.to_string(), "TargetPort": b.container_port, "PublishedPort": b.host_port, "Protocol": b.proto.as_str()}))
        .collect();
    for x in exposed {
        let (port, proto) = x.split_once('/').unwrap_or((&x, "tcp"));
        v.push(serde_json::json!({"URL": "", "TargetPort": port.parse::<u16>().unwrap_or(0), "PublishedPort": 0, "Protocol": proto}));
    }
    serde_json::Value::Array(v)
}

fn status_text(s: &runtime::containers::ContainerState) -> String {
    let since = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
                match secs {
                    0..=1 => "Less than a second".to_string(),
                    2..=59 => format!("{secs} seconds"),
                    60..=119 => "About a minute".to_string(),
                    120..=3599 => format!("{} minutes", secs / 60),
                    _ => format!("{} hours", secs / 3600),
                }
            })
            .unwrap_or_default()
    };
    match s.status {
        Status::Running => format!("Up {}", since(&s.started_at)),
        Status::Created => "Created".into(),
        Status::Exited => format!("Exited ({}) {} ago", s.exit_code.unwrap_or(0), since(&s.finished_at)),
    }
}

pub fn ps(e: Engine<'_>, args: PsArgs) -> anyhow::Result<ExitCode> {
    for s in &args.names {
        if !e.project.services.contains_key(s) {
            bail!("no such service: {s}");
        }
    }
    let records: Vec<(Record, runtime::containers::ContainerState)> = e
        .records(&args.names)
        .into_iter()
        .filter_map(|r| e.container(&r).map(|s| (r, s)))
        .filter(|(_, s)| args.all || s.status == Status::Running)
        .collect();
    if args.quiet {
        records.iter().for_each(|(_, s)| println!("{}", s.id));
        return Ok(ExitCode::SUCCESS);
    }
    if args.services {
        let mut names: Vec<&String> = records.iter().map(|(r, _)| &r.service).collect();
        names.dedup();
        names.iter().for_each(|n| println!("{n}"));
        return Ok(ExitCode::SUCCESS);
    }
    if args.format == "json" {
        let v: Vec<serde_json::Value> = records
            .iter()
            .map(|(r, s)| {
                serde_json::json!({
                    "ID": s.id, "Name": r.name, "Service": r.service, "Project": e.project.name, "Image": s.image,
                    "Command": s.command.join(" "), "State": format!("{:?}", s.status).to_lowercase(), "Status": status_text(s),
                    "ExitCode": s.exit_code.unwrap_or(0), "Publishers": publishers(&e, r, s), "Labels": r.labels,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec!["NAME".to_string(), "IMAGE".into(), "COMMAND".into(), "SERVICE".into(), "CREATED".into(), "STATUS".into(), "PORTS".into()]];
    for (r, s) in &records {
        let mut command = s.command.join(" ");
        if command.chars().count() > 20 {
            command = format!("{}…", command.chars().take(19).collect::<String>());
        }
        let created = chrono::DateTime::parse_from_rfc3339(&s.created).map(|t| format_ago(chrono::Utc::now() - t.with_timezone(&chrono::Utc))).unwrap_or_default();
        rows.push(vec![r.name.clone(), s.image.clone(), format!("\"{command}\""), r.service.clone(), created, status_text(s), ports_of(&e, r, s)]);
    }
    print_rows(&rows);
    Ok(ExitCode::SUCCESS)
}

fn format_ago(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s} seconds ago"),
        60..=3599 => format!("{} minutes ago", s / 60),
        _ => format!("{} hours ago", s / 3600),
    }
}

pub fn top(e: Engine<'_>, args: TopArgs) -> anyhow::Result<ExitCode> {
    for r in e.records(&args.services) {
        let Some(s) = e.container(&r).filter(|s| s.status == Status::Running) else { continue };
        println!("{}", r.name);
        let mut rows = vec![vec!["UID".to_string(), "PID".into(), "PPID".into(), "CMD".into()]];
        let Some(pid) = s.pid else { continue };
        // The container's processes: its first process and its descendants.
        let mut pids = vec![pid];
        let mut i = 0;
        while i < pids.len() {
            let parent = pids[i];
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(p) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
                if ppid(p) == Some(parent) && !pids.contains(&p) {
                    pids.push(p);
                }
            }
            i += 1;
        }
        for p in pids {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let cmd: Vec<String> = cmd.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let uid = std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1).map(str::to_string)))
                .unwrap_or_default();
            rows.push(vec![uid, p.to_string(), ppid(p).unwrap_or(0).to_string(), cmd.join(" ")]);
        }
        print_rows(&rows);
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

pub fn port(e: Engine<'_>, args: PortArgs) -> anyhow::Result<ExitCode> {
    let Some(s) = e.project.services.get(&args.service) else { bail!("no such service: {}", args.service) };
    if !e.records(std::slice::from_ref(&args.service)).iter().any(|r| r.number == args.index) {
        bail!("service {:?} has no container number {}", args.service, args.index);
    }
    if !s.ports.iter().any(|p| p.target == args.private_port && p.protocol == args.protocol) {
        bail!("no port {}/{} published for service {:?}", args.private_port, args.protocol, args.service);
    }
    // The host port the running container got (a random one when the file gives none).
    let record = e.records(std::slice::from_ref(&args.service)).into_iter().find(|r| r.number == args.index);
    let state = record.as_ref().and_then(|r| e.container(r));
    let bound = match &state {
        Some(st) => container::Containers::open(&e.root)?.ports(st),
        None => Vec::new(),
    };
    match bound.iter().find(|b| b.container_port == args.private_port && b.proto.as_str() == args.protocol) {
        Some(b) => {
            println!("{}:{}", b.host_ip, b.host_port);
            Ok(ExitCode::SUCCESS)
        }
        None => bail!("service {:?} container {} is not running, so port {}/{} is bound to no host port", args.service, args.index, args.private_port, args.protocol),
    }
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// One sample, then exit.
    #[arg(long)]
    no_stream: bool,
    /// Every container of the project, stopped ones too.
    #[arg(short, long)]
    all: bool,
    /// A Go template, as `builder stats --format`.
    #[arg(long)]
    format: Option<String>,
    services: Vec<String>,
}

/// `stats`: `builder stats` of the services' (running) containers.
pub fn stats(e: Engine<'_>, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let mut a: Vec<String> = vec!["stats".into()];
    if args.no_stream {
        a.push("--no-stream".into());
    }
    if let Some(f) = args.format {
        a.extend(["--format".into(), f]);
    }
    let ids: Vec<String> = e.records(&args.services).into_iter().filter(|r| args.all || e.is_running(r)).map(|r| r.id).collect();
    if ids.is_empty() {
        // Nothing of the project runs (`builder stats` without ids would show every container).
        return Ok(ExitCode::SUCCESS);
    }
    a.extend(ids);
    let code = e.attached(&a)?;
    Ok(ExitCode::from(code as u8))
}
