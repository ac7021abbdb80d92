//! `COPY/ADD --chmod`, parsed once: the frontend refuses what does not parse (with the
//! instruction's file:line:col) and the solver applies what does, so nothing that passes
//! `builder parse` fails mid-build.
//!
//! The forms are chmod(1)'s: an octal mode up to `7777`, or comma-separated symbolic clauses
//! `[ugoa]*([-+=]([rwxXst]*|[ugo]))+` (`u+x`, `go-w`, `a=rX`, `u+x-w`, `g=u`). A clause without
//! `ugoa` applies to all (no umask, as BuildKit). In the graph it is its text, so vertex digests
//! and cache keys are those of the string the Dockerfile wrote.

use serde::{Deserialize, Serialize};

/// A parsed `--chmod` value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Chmod {
    text: String,
    mode: Mode,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Clause {
    /// The bits the clause may touch (`u` = 0o4700: rwx and set-uid).
    who: u32,
    actions: Vec<Action>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Action {
    op: Op,
    perm: Perm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
    Set,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Perm {
    /// `rwxst` as bits for all three classes; `X`: execute when a directory or executable by anyone.
    Bits { bits: u32, cap_x: bool },
    /// `u`, `g` or `o`: that class's current rwx, for each class.
    Copy(u32),
}

/// Why a `--chmod` value does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid --chmod={text}: {reason} (expected an octal mode such as 0755, or a symbolic one such as u+x,go-w)")]
pub struct ChmodError {
    pub text: String,
    pub reason: String,
}

impl Chmod {
    pub fn parse(text: &str) -> Result<Chmod, ChmodError> {
        let err = |reason: String| ChmodError { text: text.to_string(), reason };
        if text.is_empty() {
            return Err(err("empty".into()));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            let m = u32::from_str_radix(text, 8).map_err(|_| err("not an octal number".into()))?;
            if m > 0o7777 {
                return Err(err("more than 7777".into()));
            }
            return Ok(Chmod { text: text.to_string(), mode: Mode::Octal(m) });
        }
        let mut clauses = Vec::new();
        for clause in text.split(',') {
            let start = clause.find(['+', '-', '=']).ok_or_else(|| err(format!("clause {clause:?} has no +, - or =")))?;
            let (who_text, mut rest) = clause.split_at(start);
            let mut who = 0;
            for c in who_text.chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(err(format!("\"{c}\" in clause {clause:?} is not one of u, g, o, a"))),
                };
            }
            if who_text.is_empty() {
                who = 0o7777;
            }
            let mut actions = Vec::new();
            while let Some(c) = rest.chars().next() {
                let op = match c {
                    '+' => Op::Add,
                    '-' => Op::Remove,
                    '=' => Op::Set,
                    _ => return Err(err(format!("\"{c}\" in clause {clause:?} is not a permission"))),
                };
                rest = &rest[1..];
                let end = rest.find(['+', '-', '=']).unwrap_or(rest.len());
                let (perm_text, next) = rest.split_at(end);
                rest = next;
                let perm = match perm_text {
                    "u" => Perm::Copy(6),
                    "g" => Perm::Copy(3),
                    "o" => Perm::Copy(0),
                    _ => {
                        let (mut bits, mut cap_x) = (0, false);
                        for p in perm_text.chars() {
                            bits |= match p {
                                'r' => 0o444,
                                'w' => 0o222,
                                'x' => 0o111,
                                'X' => {
                                    cap_x = true;
                                    0
                                }
                                's' => 0o6000,
                                't' => 0o1000,
                                _ => return Err(err(format!("\"{p}\" in clause {clause:?} is not one of r, w, x, X, s, t (or a single u, g, o)"))),
                            };
                        }
                        Perm::Bits { bits, cap_x }
                    }
                };
                actions.push(Action { op, perm });
            }
            clauses.push(Clause { who, actions });
        }
        Ok(Chmod { text: text.to_string(), mode: Mode::Symbolic(clauses) })
    }

    /// The value as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The octal mode, when it is one.
    pub fn octal(&self) -> Option<u32> {
        match self.mode {
            Mode::Octal(m) => Some(m),
            Mode::Symbolic(_) => None,
        }
    }

    /// The mode a file (`is_dir`: a directory) of mode `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match &self.mode {
            Mode::Octal(m) => return *m,
            Mode::Symbolic(c) => c,
        };
        let mut m = mode & 0o7777;
        for c in clauses {
            for a in &c.actions {
                let p = match a.perm {
                    Perm::Bits { bits, cap_x } => bits | if cap_x && (is_dir || m & 0o111 != 0) { 0o111 } else { 0 },
                    Perm::Copy(shift) => ((m >> shift) & 0o7) * 0o111,
                } & c.who;
                m = match a.op {
                    Op::Add => m | p,
                    Op::Remove => m & !p,
                    Op::Set => (m & !(c.who & 0o777)) | p,
                };
            }
        }
        m
    }
}

impl std::fmt::Display for Chmod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<Chmod> for String {
    fn from(c: Chmod) -> String {
        c.text
    }
}

impl TryFrom<String> for Chmod {
    type Error = ChmodError;
    fn try_from(s: String) -> Result<Chmod, ChmodError> {
        Chmod::parse(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(c: &str, mode: u32, is_dir: bool) -> u32 {
        Chmod::parse(c).unwrap_or_else(|e| panic!("{e}")).apply(mode, is_dir)
    }

    #[test]
    fn octal_and_symbolic_forms_apply_as_chmod_does() {
        assert_eq!(apply("640", 0o777, false), 0o640);
        assert_eq!(apply("0755", 0o600, true), 0o755);
        assert_eq!(apply("u+x,g-r", 0o644, false), 0o704);
        assert_eq!(apply("a=rX", 0o700, true), 0o555);
        assert_eq!(apply("a=rX", 0o600, false), 0o444);
        assert_eq!(apply("go-w", 0o666, false), 0o644);
        assert_eq!(apply("+x", 0o644, false), 0o755);
        assert_eq!(apply("u+s", 0o755, false), 0o4755);
        assert_eq!(apply("o=", 0o757, false), 0o750);
    }

    #[test]
    fn forms_the_old_frontend_accepted_and_the_solver_refused_now_build() {
        // Copying a class's bits, and several operations in one clause.
        assert_eq!(apply("g=u", 0o640, false), 0o660);
        assert_eq!(apply("go=u", 0o700, false), 0o777);
        assert_eq!(apply("o=g", 0o754, false), 0o755);
        assert_eq!(apply("u+x-w", 0o644, false), 0o544);
        assert_eq!(apply("u=rwx,g=u-w,o=", 0o000, false), 0o750);
    }

    #[test]
    fn what_cannot_apply_is_refused_with_the_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("789", "octal"),
            ("17777", "more than 7777"),
            ("rwx", "no +, - or ="),
            ("u*x", "no +, - or ="),
            ("z+x", "\"z\""),
            ("u+x,", "no +, - or ="),
            ("u+rwu", "\"u\""),
            ("u+q", "\"q\""),
        ] {
            let e = Chmod::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(&format!("--chmod={bad}")) && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn it_is_its_text_on_the_wire() {
        let c = Chmod::parse("u+x-w").expect("parse");
        assert_eq!(serde_json::to_string(&c).expect("json"), "\"u+x-w\"");
        assert_eq!(serde_json::from_str::<Chmod>("\"u+x-w\"").expect("back"), c);
        assert!(serde_json::from_str::<Chmod>("\"u*x\"").is_err());
    }
}
