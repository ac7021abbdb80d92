//! `builder ps`.

use std::process::ExitCode;

use container::{ContainerState, Containers, Status};

pub(super) fn ps(containers: &Containers, all: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    let list: Vec<_> = containers.list()?.into_iter().filter(|c| all || c.status == Status::Running).collect();
    if quiet {
        for c in &list {
            println!("{}", &c.id[..12]);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|c| {
            let mut cmd = c.command.join(" ");
            if cmd.chars().count() > 20 {
                cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
            }
            [c.id[..12].to_string(), c.image.clone(), format!("\"{cmd}\""), format!("{} ago", human_duration(&c.created)), status_text(c), ports_text(containers, c), c.name.clone()]
        })
        .collect();
    let header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, cell) in r.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    Ok(ExitCode::SUCCESS)
}

fn human_duration(since: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(since) else { return "unknown".into() };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 86400 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

fn status_text(s: &ContainerState) -> String {
    match s.status {
        Status::Created => "Created".into(),
        Status::Running if s.paused => format!("Up {} (Paused)", human_duration(s.started_at.as_deref().unwrap_or(&s.created))),
        Status::Running => format!("Up {}", human_duration(s.started_at.as_deref().unwrap_or(&s.created))),
        Status::Exited => format!("Exited ({}) {} ago", s.exit_code.unwrap_or(0), human_duration(s.finished_at.as_deref().unwrap_or(&s.created))),
    }
}

/// `0.0.0.0:8080->80/tcp, 0.0.0.0:5353->53/udp`, as the PORTS column of `docker ps`.
fn ports_text(containers: &Containers, c: &ContainerState) -> String {
    containers.ports(c).iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// `builder port CONTAINER [PORT[/PROTO]]`: `80/tcp -> 0.0.0.0:8080` lines.
pub(super) fn port(containers: &Containers, key: &str, which: Option<&str>) -> anyhow::Result<ExitCode> {
    let state = containers.find(key)?;
    let ports = containers.ports(&state);
    let wanted = which.map(|w| if w.contains('/') { w.to_string() } else { format!("{w}/tcp") });
    let mut found = false;
    for p in &ports {
        let key = format!("{}/{}", p.container_port, p.proto.as_str());
        match &wanted {
            Some(w) if *w != key => {}
            Some(_) => {
                println!("{}:{}", p.host_ip, p.host_port);
                found = true;
            }
            None => println!("{key} -> {}:{}", p.host_ip, p.host_port),
        }
    }
    if let Some(w) = wanted.filter(|_| !found) {
        anyhow::bail!("no public port '{w}' published for {}", state.name);
    }
    Ok(ExitCode::SUCCESS)
}
