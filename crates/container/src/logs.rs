//! `logs`: a detached container's output, whole, its last lines, or followed.

use std::io::{Read, Write};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::{ContainerState, Containers, Status};

impl Containers {
    /// Writes the container's log to `out`: the last `tail` lines, or all; with `follow`,
    /// keeps writing what comes until the container stops.
    pub fn logs(&self, state: &ContainerState, follow: bool, tail: Option<usize>, out: &mut dyn Write) -> Result<()> {
        let path = self.dir_of(&state.id).join("container.log");
        let io = |e| Error::io("reading", &path, e);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !follow {
                    return Ok(());
                }
                std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
                std::fs::File::open(&path).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        };
        let write = |e| Error::io("writing", "the log output", e);
        match tail {
            Some(n) => {
                let mut text = Vec::new();
                file.read_to_end(&mut text).map_err(io)?;
                let body = text.strip_suffix(b"\n").unwrap_or(&text);
                let lines: Vec<&[u8]> = if body.is_empty() { Vec::new() } else { body.split(|&b| b == b'\n').collect() };
                for l in &lines[lines.len().saturating_sub(n)..] {
                    out.write_all(l).map_err(write)?;
                    out.write_all(b"\n").map_err(write)?;
                }
            }
            None => {
                std::io::copy(&mut file, out).map_err(write)?;
            }
        }
        out.flush().map_err(write)?;
        if !follow {
            return Ok(());
        }
        loop {
            let mut buf = Vec::new();
            file.read_to_end(&mut buf).map_err(io)?;
            out.write_all(&buf).map_err(write)?;
            out.flush().map_err(write)?;
            let running = self.load(&state.id).map(|s| s.status == Status::Running).unwrap_or(false);
            if !running {
                // Drain what was written between the last read and the exit.
                let mut rest = Vec::new();
                file.read_to_end(&mut rest).map_err(io)?;
                out.write_all(&rest).map_err(write)?;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}
