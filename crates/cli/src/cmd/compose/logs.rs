//! Service output with `service-1  | ` prefixes: `compose logs` and the foreground of `up`.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use clap::Args;
use runtime::containers::Status;

use super::engine::{Engine, Record};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of each container's log ("all" for everything).
    #[arg(long, value_name = "N")]
    tail: Option<String>,
    /// Produce monochrome output.
    #[arg(long)]
    no_color: bool,
    /// Don't print the prefix in logs.
    #[arg(long)]
    no_log_prefix: bool,
    services: Vec<String>,
}

const COLORS: &[&str] = &["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];

struct Prefixes {
    width: usize,
    color: bool,
    none: bool,
}

impl Prefixes {
    fn new(e: &Engine<'_>, records: &[Record], no_color: bool, none: bool) -> Prefixes {
        let width = records.iter().map(|r| e.short_name(r).len()).max().unwrap_or(0);
        Prefixes { width, color: !no_color && std::io::stdout().is_terminal(), none }
    }

    fn of(&self, e: &Engine<'_>, i: usize, r: &Record) -> String {
        if self.none {
            return String::new();
        }
        let name = format!("{:<w$}  | ", e.short_name(r), w = self.width);
        if self.color { format!("\x1b[{}m{name}\x1b[0m", COLORS[i % COLORS.len()]) } else { name }
    }
}

enum Event {
    Line(usize, Vec<u8>),
    Exited(usize, i32),
}

/// Whole lines out of log records, each stream on its own: a line's start in a stdout
/// record waits for its end there, not for the next stderr record (as Compose splits each
/// stream into lines).
#[derive(Default)]
struct Lines {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Lines {
    /// The lines `r` completes, in order.
    fn feed(&mut self, r: &container::logs::Record) -> Vec<Vec<u8>> {
        let pending = match r.stream {
            container::logs::Stream::Stdout => &mut self.stdout,
            container::logs::Stream::Stderr => &mut self.stderr,
        };
        pending.extend_from_slice(r.log.as_bytes());
        let mut lines = Vec::new();
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            lines.push(pending.drain(..=pos).collect());
        }
        lines
    }

    /// What is left when the log ends: unfinished lines, each ended.
    fn finish(&mut self) -> Vec<Vec<u8>> {
        [std::mem::take(&mut self.stdout), std::mem::take(&mut self.stderr)]
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(|mut l| {
                l.push(b'\n');
                l
            })
            .collect()
    }
}

/// Streams the log of container `i` (from where `file` stands, or its start), line by line,
/// until the container stops running.
fn stream(mut file: Option<std::fs::File>, log: std::path::PathBuf, store: runtime::containers::ContainerStore, id: String, i: usize, tx: mpsc::Sender<Event>) {
    let mut lines = Lines::default();
    let mut records = container::logs::Decoder::default();
    loop {
        if file.is_none() {
            file = std::fs::File::open(&log).ok();
        }
        let mut buf = Vec::new();
        if let Some(f) = &mut file {
            let _ = f.read_to_end(&mut buf);
        }
        for line in records.feed(&buf).iter().flat_map(|r| lines.feed(r)) {
            if tx.send(Event::Line(i, line)).is_err() {
                return;
            }
        }
        let state = store.load(&id).ok();
        let running = state.as_ref().is_some_and(|s| s.status == Status::Running);
        if !running && buf.is_empty() {
            for line in lines.finish() {
                let _ = tx.send(Event::Line(i, line));
            }
            let _ = tx.send(Event::Exited(i, state.and_then(|s| s.exit_code).unwrap_or(0)));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn last_lines(text: &[u8], n: usize) -> usize {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut count = 0;
    for (pos, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            count += 1;
            if count == n {
                return pos + 1;
            }
        }
    }
    0
}

pub fn run(e: Engine<'_>, args: LogsArgs) -> anyhow::Result<ExitCode> {
    for s in &args.services {
        if !e.project.services.contains_key(s) {
            anyhow::bail!("no such service: {s}");
        }
    }
    let records = e.records(&args.services);
    let prefixes = Prefixes::new(&e, &records, args.no_color, args.no_log_prefix);
    let store = e.store()?;
    let tail: Option<usize> = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse().map_err(|_| anyhow::anyhow!("invalid --tail {n:?}: a number of lines or \"all\""))?),
    };
    let mut out = std::io::stdout().lock();
    if !args.follow {
        for (i, r) in records.iter().enumerate() {
            let raw = std::fs::read(store.dir_of(&r.id).join(container::logs::LOG_FILE)).unwrap_or_default();
            let start = tail.map(|n| if n == 0 { raw.len() } else { last_lines(&raw, n) }).unwrap_or(0);
            let prefix = prefixes.of(&e, i, r);
            let mut raw = raw[start..].to_vec();
            if !raw.ends_with(b"\n") {
                raw.push(b'\n');
            }
            let mut lines = Lines::default();
            let records = container::logs::Decoder::default().feed(&raw);
            let mut shown: Vec<Vec<u8>> = records.iter().flat_map(|r| lines.feed(r)).collect();
            shown.extend(lines.finish());
            for line in shown {
                out.write_all(prefix.as_bytes())?;
                out.write_all(&line)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    drop(out);
    follow(&e, &records, &prefixes, tail, false, None, Arc::new(AtomicBool::new(false))).map(|_| ExitCode::SUCCESS)
}

/// Prints every container's output until all have exited, Ctrl-C, or (with `abort`) the first
/// exit; returns the exit code `up` ends with.
fn follow(e: &Engine<'_>, records: &[Record], prefixes: &Prefixes, tail: Option<usize>, abort: bool, timeout: Option<u64>, stop: Arc<AtomicBool>) -> anyhow::Result<i32> {
    let store = e.store()?;
    let (tx, rx) = mpsc::channel();
    for (i, r) in records.iter().enumerate() {
        let log = store.dir_of(&r.id).join(container::logs::LOG_FILE);
        let (store, id, tx) = (store.clone(), r.id.clone(), tx.clone());
        let mut skip = 0;
        if let Some(n) = tail {
            let text = std::fs::read(&log).unwrap_or_default();
            skip = if n == 0 { text.len() } else { last_lines(&text, n) };
        }
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(&log).ok();
            if let Some(f) = &mut f {
                let _ = std::io::Seek::seek(f, std::io::SeekFrom::Start(skip as u64));
            }
            stream(f, log, store, id, i, tx)
        });
    }
    drop(tx);
    let out = std::io::stdout();
    let mut running = records.len();
    loop {
        if stop.load(Ordering::Relaxed) {
            eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
            e.stop(records, timeout)?;
            return Ok(130);
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Line(i, line)) => {
                let mut l = out.lock();
                l.write_all(prefixes.of(e, i, &records[i]).as_bytes())?;
                l.write_all(&line)?;
                l.flush()?;
            }
            Ok(Event::Exited(i, code)) => {
                println!("{} exited with code {code}", e.short_name(&records[i]));
                running -= 1;
                if abort {
                    eprintln!("Aborting on container exit...");
                    e.stop(records, timeout)?;
                    return Ok(code);
                }
                if running == 0 {
                    return Ok(0);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) if !stop.load(Ordering::Relaxed) => return Ok(0),
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
    }
}

/// The foreground of `up`: follow every container, stop them all on Ctrl-C.
pub fn attach(e: &Engine<'_>, records: &[Record], abort: bool, timeout: Option<u64>) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
    });
    let prefixes = Prefixes::new(e, records, false, false);
    let code = follow(e, records, &prefixes, None, abort, timeout, stop)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

#[cfg(test)]
mod tests {
    use super::Lines;
    use container::logs::{Record, Stream};

    fn rec(stream: Stream, log: &str) -> Record {
        Record { log: log.into(), stream, attrs: Default::default(), time: String::new() }
    }

    #[test]
    fn a_line_started_on_stdout_is_not_cut_by_stderr() {
        let mut lines = Lines::default();
        let mut out: Vec<Vec<u8>> = Vec::new();
        for r in [rec(Stream::Stdout, "s3cret"), rec(Stream::Stderr, "sh: can't create\n"), rec(Stream::Stdout, "\n"), rec(Stream::Stdout, "tail")] {
            out.extend(lines.feed(&r));
        }
        out.extend(lines.finish());
        assert_eq!(out, vec![b"sh: can't create\n".to_vec(), b"s3cret\n".to_vec(), b"tail\n".to_vec()]);
    }
}
