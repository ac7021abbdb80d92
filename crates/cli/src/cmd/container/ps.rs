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
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|c| {
            let mut cmd = c.command.join(" ");
            if cmd.chars().count() > 20 {
                cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
            }
            [c.id[..12].to_string(), c.image.clone(), format!("\"{cmd}\""), format!("{} ago", human_duration(&c.created)), status_text(c), c.name.clone()]
        })
        .collect();
    let header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"];
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
        Status::Running => format!("Up {}", human_duration(s.started_at.as_deref().unwrap_or(&s.created))),
        Status::Exited => format!("Exited ({}) {} ago", s.exit_code.unwrap_or(0), human_duration(s.finished_at.as_deref().unwrap_or(&s.created))),
    }
}
