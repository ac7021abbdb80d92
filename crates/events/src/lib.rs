//! The event journal of a state root: what `builder events` shows, since there is no daemon
//! to ask. Every command that creates, starts, stops or removes a container, or pulls, tags or
//! removes an image, appends one JSON line to `<root>/events.jsonl`. A line is written with a
//! single `write` to a file opened with `O_APPEND`, so lines from concurrent processes never
//! interleave; readers skip a line that is not (yet) whole. Not for: anything that must not be
//! lost (recording is best effort, and never fails the command that records).

#![deny(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// One event, in Docker's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// `container`, `image`, `volume`, `network`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `create`, `start`, `die`, `destroy`, `pull`, `tag`, `untag`, `delete`…
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    /// Unix seconds.
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// The journal file of `root`.
pub fn journal_path(root: &Path) -> PathBuf {
    root.join("events.jsonl")
}

/// Appends an event now. Best effort: a failure is logged, never returned.
pub fn record(root: &Path, kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    let event = Event {
        kind: kind.into(),
        action: action.into(),
        actor: Actor { id: id.into(), attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() },
        scope: "local".into(),
        time: nanos / 1_000_000_000,
        time_nano: nanos,
    };
    if let Err(e) = append(root, &event) {
        tracing::warn!("recording the {kind} {action} event in {}: {e}", journal_path(root).display());
    }
}

fn append(root: &Path, event: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(journal_path(root))?;
    // One write: appends of one line from several processes do not interleave.
    f.write_all(&line)
}

/// Reads the journal from byte `offset`: the whole events there, and the offset after the last
/// whole line (where the next read starts).
pub fn read_from(root: &Path, offset: u64) -> std::io::Result<(Vec<Event>, u64)> {
    let mut f = match std::fs::File::open(journal_path(root)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut reader = std::io::BufReader::new(f.take(u64::MAX));
    let mut events = Vec::new();
    let mut pos = offset;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break; // the end, or a line still being written
        }
        pos += n as u64;
        match serde_json::from_slice::<Event>(&line) {
            Ok(e) => events.push(e),
            Err(e) => tracing::debug!("skipping a journal line: {e}"),
        }
    }
    Ok((events, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_appended_and_read_back_from_an_offset() {
        let d = tempfile::tempdir().expect("tmp");
        assert_eq!(read_from(d.path(), 0).expect("read").0, Vec::new());
        record(d.path(), "container", "create", "abc", &[("name", "web")]);
        let (first, pos) = read_from(d.path(), 0).expect("read");
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].kind.as_str(), first[0].action.as_str(), first[0].actor.attributes["name"].as_str()), ("container", "create", "web"));
        // A half-written line is not read until it is whole.
        std::fs::OpenOptions::new().append(true).open(journal_path(d.path())).and_then(|mut f| f.write_all(b"{\"Type\":")).expect("partial");
        let (none, same) = read_from(d.path(), pos).expect("read");
        assert!(none.is_empty() && same == pos);
    }
}
