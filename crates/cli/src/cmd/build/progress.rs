//! Rendering build progress: `plain` lines like BuildKit's (`#N [stage k/n] RUN …`, output
//! lines with timestamps, `CACHED`, `DONE 0.3s`), or a live `tty` view (indicatif) of the
//! running steps with timers and the tail of their output.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use graph::VertexDigest;
use solver::Event;

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Tty,
    Quiet,
}

struct Step {
    number: usize,
    started: Instant,
    partial: Vec<u8>,
    bar: Option<indicatif::ProgressBar>,
    tail: Vec<String>,
}

struct State {
    next: usize,
    steps: HashMap<VertexDigest, Step>,
    /// The number of every step shown so far (a miss names the earlier step by it).
    numbers: HashMap<VertexDigest, usize>,
    multi: Option<indicatif::MultiProgress>,
}

/// A progress sink for the solver that renders to stderr.
pub fn renderer(mode: Mode) -> (solver::ProgressSink, Arc<dyn Fn() + Send + Sync>) {
    let state = Arc::new(Mutex::new(State { next: 1, steps: HashMap::new(), numbers: HashMap::new(), multi: (mode == Mode::Tty).then(indicatif::MultiProgress::new) }));
    let s2 = state.clone();
    let sink: solver::ProgressSink = Arc::new(move |e: Event| {
        if mode == Mode::Quiet {
            return;
        }
        let mut st = match state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        render(&mut st, mode, e);
    });
    let finish: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        if let Ok(st) = s2.lock()
            && let Some(m) = &st.multi {
                let _ = m.clear();
            }
    });
    (sink, finish)
}

fn out(st: &State, line: String) {
    match &st.multi {
        Some(m) => {
            let _ = m.println(line);
        }
        None => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

fn render(st: &mut State, mode: Mode, e: Event) {
    match e {
        Event::Started { vertex, description } => {
            let number = st.next;
            st.next += 1;
            let bar = st.multi.as_ref().map(|m| {
                let b = m.add(indicatif::ProgressBar::new_spinner());
                b.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}").unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()));
                b.set_message(format!("#{number} {description}"));
                b.enable_steady_tick(Duration::from_millis(120));
                b
            });
            if mode == Mode::Plain {
                let _ = writeln!(std::io::stderr(), "#{number} {description}");
            }
            st.numbers.insert(vertex, number);
            st.steps.insert(vertex, Step { number, started: Instant::now(), partial: Vec::new(), bar, tail: Vec::new() });
            if mode == Mode::Tty {
                // The started line is printed when the step ends, with its outcome.
                let _ = description;
            }
        }
        Event::Log { vertex, bytes } => {
            let Some(step) = st.steps.get_mut(&vertex) else { return };
            step.partial.extend_from_slice(&bytes);
            let mut lines = Vec::new();
            while let Some(i) = step.partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = step.partial.drain(..=i).collect();
                lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
            }
            let elapsed = step.started.elapsed().as_secs_f64();
            let number = step.number;
            if let Some(b) = &step.bar {
                for l in &lines {
                    step.tail.push(l.clone());
                }
                let keep = step.tail.len().saturating_sub(6);
                step.tail.drain(..keep);
                let base = b.message().lines().next().unwrap_or_default().to_string();
                let tail: Vec<String> = step.tail.iter().map(|l| format!("    {l}")).collect();
                b.set_message(format!("{base}\n{}", tail.join("\n")));
            } else if mode == Mode::Plain {
                let mut err = std::io::stderr().lock();
                for l in lines {
                    let _ = writeln!(err, "#{number} {elapsed:.3} {l}");
                }
            }
        }
        Event::Cached { vertex } => finish(st, vertex, "CACHED".into(), mode),
        Event::CacheMiss { vertex, reason, earlier } => {
            let Some(number) = st.numbers.get(&vertex).copied() else { return };
            let earlier = earlier.and_then(|e| st.numbers.get(&e)).map(|n| format!(" (#{n})")).unwrap_or_default();
            // A line of its own under the step, in both views (the tty view above its bars).
            out(st, format!("#{number} cache miss: {reason}{earlier}"));
        }
        Event::Done { vertex, elapsed } => finish(st, vertex, format!("DONE {:.1}s", elapsed.as_secs_f64()), mode),
        Event::Failed { vertex, error, .. } => {
            let first = error.lines().next().unwrap_or_default().to_string();
            finish(st, vertex, format!("ERROR: {first}"), mode)
        }
        Event::Note { message } => {
            let number = st.next;
            st.next += 1;
            out(st, format!("#{number} {message}"));
        }
    }
}

fn finish(st: &mut State, vertex: VertexDigest, outcome: String, mode: Mode) {
    let Some(mut step) = st.steps.remove(&vertex) else { return };
    if !step.partial.is_empty() && mode == Mode::Plain {
        let l = String::from_utf8_lossy(&step.partial).into_owned();
        let _ = writeln!(std::io::stderr(), "#{} {:.3} {l}", step.number, step.started.elapsed().as_secs_f64());
        step.partial.clear();
    }
    match step.bar.take() {
        Some(b) => {
            let title = b.message().lines().next().unwrap_or_default().to_string();
            b.finish_and_clear();
            out(st, format!("{title} {outcome}"));
        }
        None => {
            let _ = writeln!(std::io::stderr(), "#{} {outcome}\n", step.number);
        }
    }
}
