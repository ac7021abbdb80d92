//! A container's log, kept as Docker's `json-file` driver keeps it: one JSON record per line
//! of output, `{"log":"text\n","stream":"stdout","time":"2026-01-02T03:04:05.123456789Z"}`,
//! in `<container dir>/container.log`. Every container has one, foreground ones too. The
//! writer side ([`LogFile`], [`pump`]) is what supervisors use; the reader side is `logs`
//! ([`Containers::logs`] with [`LogOptions`]) and anything else that shows a container's
//! output ([`decode`], [`Decoder`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::{ContainerState, Containers, Status};

/// The file name of a container's log in its directory.
pub const LOG_FILE: &str = "container.log";

/// Which of the container's streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub log: String,
    pub stream: Stream,
    /// The attributes `--log-opt labels=…,env=…` asked for, as json-file keeps them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
    pub time: String,
}

impl Record {
    fn timestamp(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.time).ok().map(|t| t.with_timezone(&Utc))
    }
}

/// The log of one container, open for appending; shared by the threads that copy its
/// streams, so records of stdout and stderr never interleave inside a line.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    rotation: Option<Rotation>,
    attrs: BTreeMap<String, String>,
}

/// `--log-opt max-size=…,max-file=…`: past `max_size` bytes the log is moved to
/// `container.log.1` (the older ones to `.2` …), keeping `max_files` files in all, as
/// Docker's json-file driver does; with one file it starts again empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_size: u64,
    pub max_files: u32,
}

impl Rotation {
    /// The rotation `--log-opt` values ask for (already checked when the container was made).
    pub fn of(options: &std::collections::BTreeMap<String, String>) -> Result<Option<Rotation>> {
        let Some(size) = options.get("max-size") else {
            if let Some(files) = options.get("max-file").filter(|f| f.trim() != "1") {
                return Err(Error::option("--log-opt", &format!("max-file={files}"), "needs max-size (the size at which the log is rotated)"));
            }
            return Ok(None);
        };
        let max_size = crate::config::parse_bytes("--log-opt", size).map_err(|_| Error::option("--log-opt", &format!("max-size={size}"), "use a size such as 10m, 512k or 1g"))?;
        if max_size <= 0 {
            return Err(Error::option("--log-opt", &format!("max-size={size}"), "must be more than 0"));
        }
        let files = options.get("max-file").map(String::as_str).unwrap_or("1");
        let max_files: u32 = files.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(|| Error::option("--log-opt", &format!("max-file={files}"), "a number of files, at least 1"))?;
        Ok(Some(Rotation { max_size: max_size as u64, max_files }))
    }
}

/// The `--log-opt` keys json-file takes.
pub const OPTIONS: [&str; 6] = ["max-size", "max-file", "labels", "labels-regex", "env", "env-regex"];

/// The attributes each record carries, as Docker's json-file picks them: the container's
/// labels named in `labels` (comma-separated) or matching `labels-regex`, and its environment
/// variables named in `env` or matching `env-regex`. A regex that does not compile is an error.
pub fn attributes(options: &BTreeMap<String, String>, labels: &BTreeMap<String, String>, env: &[String]) -> Result<BTreeMap<String, String>> {
    let regex = |key: &str| -> Result<Option<regex::Regex>> {
        match options.get(key).filter(|v| !v.is_empty()) {
            Some(v) => regex::Regex::new(v).map(Some).map_err(|e| Error::option("--log-opt", &format!("{key}={v}"), format!("not a regular expression: {e}"))),
            None => Ok(None),
        }
    };
    let named = |key: &str| -> Vec<String> { options.get(key).map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_default() };
    let mut out = BTreeMap::new();
    for name in named("labels") {
        if let Some(v) = labels.get(&name) {
            out.insert(name, v.clone());
        }
    }
    if let Some(re) = regex("labels-regex")? {
        out.extend(labels.iter().filter(|(k, _)| re.is_match(k)).map(|(k, v)| (k.clone(), v.clone())));
    }
    let vars: BTreeMap<&str, &str> = env.iter().filter_map(|e| e.split_once('=')).collect();
    for name in named("env") {
        if let Some(v) = vars.get(name.as_str()) {
            out.insert(name, v.to_string());
        }
    }
    if let Some(re) = regex("env-regex")? {
        out.extend(vars.iter().filter(|(k, _)| re.is_match(k)).map(|(k, v)| (k.to_string(), v.to_string())));
    }
    Ok(out)
}

/// `k=v,k2=v2` of `--details`: sorted by key, each side escaped as Go's `url.QueryEscape` does.
fn details(attrs: &BTreeMap<String, String>) -> String {
    fn escape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    attrs.iter().map(|(k, v)| format!("{}={}", escape(k), escape(v))).collect::<Vec<_>>().join(",")
}

/// The log files of the container in `dir`, oldest first (rotated ones, then the current).
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix(LOG_FILE)?.strip_prefix('.')?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    rotated.into_iter().map(|(_, p)| p).chain(std::iter::once(dir.join(LOG_FILE))).collect()
}

impl LogFile {
    /// Opens (creating) the log in container directory `dir`, rotated as the container's
    /// `--log-opt` says.
    pub fn open(dir: &Path) -> Result<Arc<LogFile>> {
        let path = dir.join(LOG_FILE);
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io("opening", &path, e))?;
        let settings = crate::Settings::load(dir).unwrap_or_default();
        let options = &settings.host_config.log_config.config;
        let rotation = Rotation::of(options).unwrap_or(None);
        let attrs = attributes(options, &settings.config.labels, &settings.config.env).unwrap_or_default();
        Ok(Arc::new(LogFile { path, file: Mutex::new(file), rotation, attrs }))
    }

    /// Moves the full log aside (dropping the oldest) and starts an empty one.
    fn rotate(&self, file: &mut std::fs::File, r: Rotation) -> std::io::Result<()> {
        let numbered = |n: u32| self.path.with_file_name(format!("{LOG_FILE}.{n}"));
        if r.max_files > 1 {
            let _ = std::fs::remove_file(numbered(r.max_files - 1));
            for n in (1..r.max_files - 1).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        *file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        Ok(())
    }

    /// Appends `text` (whole lines, or a line's start) as records of `stream`, stamped now;
    /// with a rotation, the log is rotated after the record that fills it, as Docker's does.
    pub fn write(&self, stream: Stream, text: &str) {
        let time = crate::now();
        let mut records: Vec<Vec<u8>> = Vec::new();
        for line in text.split_inclusive('\n') {
            let record = Record { log: line.to_string(), stream, attrs: self.attrs.clone(), time: time.clone() };
            let mut out = Vec::with_capacity(line.len() + 80);
            if serde_json::to_writer(&mut out, &record).is_ok() {
                out.push(b'\n');
                records.push(out);
            }
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = self.rotation else {
            if let Err(e) = file.write_all(&records.concat()) {
                tracing::warn!(path = %self.path.display(), error = %e, "writing the container log");
            }
            return;
        };
        let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // Whole records between rotations, in as few writes as that allows.
        let mut pending: Vec<u8> = Vec::new();
        for rec in records {
            size += rec.len() as u64;
            pending.extend_from_slice(&rec);
            if size >= r.max_size {
                let written = file.write_all(&pending);
                pending.clear();
                if let Err(e) = written.and_then(|()| self.rotate(&mut file, r)) {
                    tracing::warn!(path = %self.path.display(), error = %e, "writing or rotating the container log");
                }
                size = 0;
            }
        }
        if let Err(e) = file.write_all(&pending) {
            tracing::warn!(path = %self.path.display(), error = %e, "writing the container log");
        }
    }
}

/// Copies what the container writes on `from` into the log (if any) as records of `stream`, and to
/// `also` (the user's terminal, attached clients) as it comes, until `from` ends. A line is
/// recorded as soon as it is read, a line's start too (a shell's prompt), and a UTF-8
/// character cut by a read waits for its other bytes.
pub fn pump(mut from: impl Read, stream: Stream, log: Option<Arc<LogFile>>, mut also: Option<Box<dyn Write + Send>>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut held: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO: the pty's other side closed (the container exited).
            Err(_) => break,
        };
        if let Some(w) = &mut also
            && w.write_all(&buf[..n]).and_then(|_| w.flush()).is_err()
        {
            also = None;
        }
        held.extend_from_slice(&buf[..n]);
        let valid = match std::str::from_utf8(&held) {
            Ok(_) => held.len(),
            // An incomplete character at the end: keep it for the next read.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => held.len(),
        };
        if valid > 0 {
            if let Some(log) = &log {
                log.write(stream, &String::from_utf8_lossy(&held[..valid]));
            }
            held.drain(..valid);
        }
    }
    if let Some(log) = log.filter(|_| !held.is_empty()) {
        log.write(stream, &String::from_utf8_lossy(&held));
    }
}

/// Turns log bytes into records, across reads that may cut a record in two.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Vec<u8>,
}

impl Decoder {
    /// The records completed by `bytes`. Lines that are not records (a log written by an
    /// older builder: plain text) come back as stdout records without a time.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Record> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            out.push(parse_line(&line));
        }
        out
    }
}

fn parse_line(line: &[u8]) -> Record {
    serde_json::from_slice(line).unwrap_or_else(|_| Record { log: String::from_utf8_lossy(line).into_owned(), stream: Stream::Stdout, attrs: BTreeMap::new(), time: String::new() })
}

/// The text of a whole log (both streams, in order), for callers that show it as it is.
pub fn decode(bytes: &[u8]) -> Vec<u8> {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    for r in d.feed(bytes) {
        out.extend_from_slice(r.log.as_bytes());
    }
    if !d.pending.is_empty() {
        out.extend_from_slice(parse_line(&d.pending).log.as_bytes());
    }
    out
}

/// What `logs` shows, as `docker logs` takes it.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// `-f`: keep showing new output until the container stops.
    pub follow: bool,
    /// `--tail N`: only the last N records.
    pub tail: Option<usize>,
    /// `--since`: only records from this time on.
    pub since: Option<DateTime<Utc>>,
    /// `--until`: only records before this time.
    pub until: Option<DateTime<Utc>>,
    /// `-t`: each line starts with its time.
    pub timestamps: bool,
    /// `--details`: each line starts with the record's attributes (`--log-opt labels=…,env=…`)
    /// as `k=v,k2=v2` and a space (just the space when it has none), after its time.
    pub details: bool,
}

impl LogOptions {
    fn shows(&self, r: &Record) -> bool {
        let Some(t) = r.timestamp() else { return self.since.is_none() && self.until.is_none() };
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }

    fn write(&self, r: &Record, stdout: &mut dyn Write, stderr: &mut dyn Write) -> std::io::Result<()> {
        let out: &mut dyn Write = if r.stream == Stream::Stderr { stderr } else { stdout };
        if self.timestamps && !r.time.is_empty() {
            out.write_all(r.time.as_bytes())?;
            out.write_all(b" ")?;
        }
        if self.details {
            out.write_all(details(&r.attrs).as_bytes())?;
            out.write_all(b" ")?;
        }
        out.write_all(r.log.as_bytes())?;
        out.flush()
    }
}

/// `--since` / `--until` as Docker takes them: an RFC 3339 time (`2026-01-02T15:04:05Z`,
/// with or without the zone, which is then UTC; or just a date), a Unix time (`1700000000`,
/// `1700000000.5`), or a duration back from now (`10m`, `1h30m`, `42s`).
pub fn parse_time(flag: &'static str, value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let bad = || Error::option(flag, value, "use a time (2026-01-02T15:04:05Z, 2026-01-02), a Unix time (1700000000) or a duration back from now (10m, 1h30m)");
    let v = value.trim();
    if let Some(d) = parse_duration(v) {
        return chrono::Duration::from_std(d).ok().and_then(|d| now.checked_sub_signed(d)).ok_or_else(bad);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, f) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).ok_or_else(bad);
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        let nanos = ((secs - secs.trunc()) * 1e9) as u32;
        return DateTime::from_timestamp(secs.trunc() as i64, nanos).ok_or_else(bad);
    }
    Err(bad())
}

/// A Go-style duration: `1h30m`, `10m`, `42s`, `1.5h`, `300ms`.
fn parse_duration(v: &str) -> Option<Duration> {
    if v.is_empty() || !v.ends_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let mut total = 0f64;
    let mut rest = v;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * unit;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

impl Containers {
    /// Writes the container's log as `docker logs` shows it: stdout records to `stdout`,
    /// stderr records to `stderr`, filtered and stamped as `opts` says; with `follow`, keeps
    /// writing what comes until the container stops (or `until` passes).
    pub fn logs(&self, state: &ContainerState, opts: &LogOptions, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<()> {
        let path = self.dir_of(&state.id).join(LOG_FILE);
        let io = |e| Error::io("reading", &path, e);
        let write = |e| Error::io("writing", "the log output", e);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        let mut decoder = Decoder::default();
        let mut text = Vec::new();
        // The rotated files first (`--log-opt max-file`), oldest first.
        for older in log_files(&self.dir_of(&state.id)).iter().filter(|p| **p != path) {
            if let Ok(mut f) = std::fs::File::open(older) {
                f.read_to_end(&mut text).map_err(io)?;
            }
        }
        if let Some(f) = &mut file {
            f.read_to_end(&mut text).map_err(io)?;
        }
        let records = decoder.feed(&text);
        let start = opts.tail.map_or(0, |n| records.len().saturating_sub(n));
        for r in records[start..].iter().filter(|r| opts.shows(r)) {
            opts.write(r, stdout, stderr).map_err(write)?;
        }
        if !opts.follow {
            return Ok(());
        }
        loop {
            if file.is_none() {
                file = std::fs::File::open(&path).ok();
            }
            let mut buf = Vec::new();
            if let Some(f) = &mut file {
                f.read_to_end(&mut buf).map_err(io)?;
            }
            // Rotated away under us: what was left is read, the new file follows.
            if buf.is_empty() && file.as_ref().is_some_and(|f| rotated(f, &path)) {
                file = std::fs::File::open(&path).ok();
                if let Some(f) = &mut file {
                    f.read_to_end(&mut buf).map_err(io)?;
                }
            }
            for r in decoder.feed(&buf) {
                if opts.until.is_some_and(|u| r.timestamp().is_some_and(|t| t >= u)) {
                    return Ok(());
                }
                if opts.shows(&r) {
                    opts.write(&r, stdout, stderr).map_err(write)?;
                }
            }
            if opts.until.is_some_and(|u| Utc::now() >= u) {
                return Ok(());
            }
            let running = self.load(&state.id).map(|s| s.status == Status::Running).unwrap_or(false);
            if !running && buf.is_empty() {
                // Drain what was written between the last read and the exit.
                let mut rest = Vec::new();
                if let Some(f) = &mut file {
                    f.read_to_end(&mut rest).map_err(io)?;
                }
                for r in decoder.feed(&rest).iter().filter(|r| opts.shows(r)) {
                    opts.write(r, stdout, stderr).map_err(write)?;
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether `open` is no longer the file at `path` (the log was rotated).
fn rotated(open: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (open.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() != b.ino() || a.dev() != b.dev(),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_lines_and_a_prompt_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::open(dir.path()).unwrap();
        pump(&b"one\ntwo\n/ # "[..], Stream::Stdout, Some(log.clone()), None);
        pump(&b"oops\n"[..], Stream::Stderr, Some(log), None);
        let bytes = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        let records = Decoder::default().feed(&bytes);
        let shown: Vec<(&str, Stream)> = records.iter().map(|r| (r.log.as_str(), r.stream)).collect();
        assert_eq!(shown, [("one\n", Stream::Stdout), ("two\n", Stream::Stdout), ("/ # ", Stream::Stdout), ("oops\n", Stream::Stderr)]);
        assert!(records.iter().all(|r| r.timestamp().is_some()));
        assert_eq!(decode(&bytes), b"one\ntwo\n/ # oops\n");
    }

    #[test]
    fn a_character_cut_between_reads_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::open(dir.path()).unwrap();
        let text = "é\n".as_bytes();
        let reader = std::io::Read::chain(&text[..1], &text[1..]);
        pump(reader, Stream::Stdout, Some(log), None);
        assert_eq!(decode(&std::fs::read(dir.path().join(LOG_FILE)).unwrap()), "é\n".as_bytes());
    }

    #[test]
    fn attributes_are_picked_as_json_file_picks_them_and_shown_escaped() {
        let opts: BTreeMap<String, String> = [("labels", "app,missing"), ("labels-regex", "^com\\."), ("env", "HOME"), ("env-regex", "^MY_")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let labels: BTreeMap<String, String> = [("app", "web"), ("com.x", "a b"), ("other", "no")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env = ["HOME=/root".to_string(), "MY_A=1&2".to_string(), "PATH=/bin".to_string()];
        let attrs = attributes(&opts, &labels, &env).unwrap();
        assert_eq!(details(&attrs), "HOME=%2Froot,MY_A=1%262,app=web,com.x=a+b");
        let bad: BTreeMap<String, String> = [("env-regex".to_string(), "(".to_string())].into();
        let err = attributes(&bad, &labels, &env).unwrap_err().to_string();
        assert!(err.starts_with("invalid --log-opt \"env-regex=(\": not a regular expression"), "{err}");
    }

    #[test]
    fn since_and_until_take_times_unix_times_and_durations() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T15:00:00Z").unwrap().with_timezone(&Utc);
        let t = |s: &str| parse_time("--since", s, now).unwrap().to_rfc3339();
        assert_eq!(t("10m"), "2026-01-02T14:50:00+00:00");
        assert_eq!(t("1h30m"), "2026-01-02T13:30:00+00:00");
        assert_eq!(t("2026-01-02T14:00:00Z"), "2026-01-02T14:00:00+00:00");
        assert_eq!(t("2026-01-02T14:00:00"), "2026-01-02T14:00:00+00:00");
        assert_eq!(t("2026-01-02"), "2026-01-02T00:00:00+00:00");
        assert_eq!(t("1767366000"), "2026-01-02T15:00:00+00:00");
        let err = parse_time("--since", "yesterday", now).unwrap_err().to_string();
        assert!(err.starts_with("invalid --since \"yesterday\": use a time"), "{err}");
    }
}
