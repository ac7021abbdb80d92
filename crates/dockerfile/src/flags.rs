//! `--flag[=value]` checking, as BuildKit's BFlags: each instruction declares
//! its flags and their types; anything else is an error naming the flag.

use crate::ast::Token;

/// The type of a declared flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagType {
    /// `--link`, `--link=true`, `--link=false`.
    Bool,
    /// `--from=x`, once.
    String,
    /// `--exclude=x`, any number of times.
    Strings,
}

/// The flags given to one instruction, checked. The values are read from the
/// instruction's words when asked for (an instruction has a handful of flags,
/// so this costs less than building a map).
#[derive(Debug)]
pub(crate) struct Flags<'n, 'a> {
    given: &'n [Token<'a>],
}

/// `--name` in messages (formatted only when a message is made).
struct FlagName<'a>(&'a str);

impl std::fmt::Display for FlagName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--{}", self.0)
    }
}

/// A flag error: message and the byte offset of the flag in the Dockerfile.
pub(crate) type FlagError = (String, usize);

/// A flag word split into name and value (`None` for `--name` alone); `None`
/// for `--` and words not starting with `--`.
fn split_flag(word: &str) -> Option<(&str, Option<&str>)> {
    let body = word.strip_prefix("--")?;
    Some(match body.bytes().position(|b| b == b'=') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    })
}

/// The value of `word` if it is the flag `--name` (`Some(None)` for `--name`
/// alone), without splitting other flags.
fn flag_value<'w>(word: &'w str, name: &str) -> Option<Option<&'w str>> {
    let b = word.as_bytes();
    let n = name.len();
    if b.len() < 2 + n || !b.starts_with(b"--") || &b[2..2 + n] != name.as_bytes() {
        return None;
    }
    match b.get(2 + n) {
        None => Some(None),
        Some(b'=') => Some(Some(&word[3 + n..])),
        Some(_) => None,
    }
}

impl<'n, 'a> Flags<'n, 'a> {
    /// Checks `given` against the `declared` flags of `instruction`.
    pub(crate) fn parse(instruction: &str, given: &'n [Token<'a>], declared: &[(&'static str, FlagType)]) -> Result<Flags<'n, 'a>, FlagError> {
        for (i, w) in given.iter().enumerate() {
            let a: &str = &w.text;
            if a == "--" {
                return Ok(Flags { given: &given[..i] });
            }
            let Some((name, value)) = split_flag(a) else {
                return Err((format!("arg should start with -- : {a}"), w.at));
            };
            let flag_name = FlagName(name);
            let Some(&(key, ty)) = declared.iter().find(|(n, _)| *n == name) else {
                let valid = if declared.is_empty() {
                    format!("{instruction} takes no flags")
                } else {
                    let names: Vec<String> = declared.iter().map(|(n, _)| format!("--{n}")).collect();
                    format!("{instruction} accepts {}", names.join(", "))
                };
                return Err((format!("unknown flag: {flag_name} ({valid})"), w.at));
            };
            if ty != FlagType::Strings && given[..i].iter().any(|p| split_flag(&p.text).is_some_and(|(n, _)| n == key)) {
                return Err((format!("duplicate flag specified: {flag_name}"), w.at));
            }
            match (ty, value) {
                (FlagType::Bool, Some("")) => return Err((format!("missing a value on flag: {flag_name}"), w.at)),
                (FlagType::Bool, Some(v)) if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") => {
                    return Err((format!("expecting boolean value for flag {flag_name}, not: {v}"), w.at));
                }
                (FlagType::String | FlagType::Strings, None) => return Err((format!("missing a value on flag: {flag_name}"), w.at)),
                _ => {}
            }
        }
        Ok(Flags { given })
    }

    /// Every given `--name` flag: its value and offset.
    fn all(&self, name: &'n str) -> impl Iterator<Item = (Option<&'n str>, usize)> + 'n {
        self.given.iter().filter_map(move |w| flag_value(&w.text, name).map(|v| (v, w.at)))
    }

    /// A boolean flag: `None` when not given.
    pub(crate) fn bool(&self, name: &'n str) -> Option<bool> {
        self.all(name).last().map(|(v, _)| v.is_none_or(|v| v.eq_ignore_ascii_case("true")))
    }

    /// A string flag: its value and offset, `None` when not given.
    pub(crate) fn string(&self, name: &'n str) -> Option<(&'n str, usize)> {
        self.all(name).last().map(|(v, at)| (v.unwrap_or_default(), at))
    }

    /// A flag given any number of times: each value and offset.
    pub(crate) fn strings(&self, name: &'n str) -> impl Iterator<Item = (&'n str, usize)> + 'n {
        self.all(name).map(|(v, at)| (v.unwrap_or_default(), at))
    }
}
