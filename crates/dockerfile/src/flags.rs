//! `--flag[=value]` checking, as BuildKit's BFlags: each instruction declares
//! its flags and their types; anything else is an error naming the flag.

use std::collections::BTreeMap;

use crate::ast::Word;
use crate::error::Span;

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

/// The flags given to one instruction, checked.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    bools: BTreeMap<&'static str, bool>,
    strings: BTreeMap<&'static str, (String, Span)>,
    lists: BTreeMap<&'static str, Vec<(String, Span)>>,
}

/// `--name` in messages (formatted only when a message is made).
struct FlagName<'a>(&'a str);

impl std::fmt::Display for FlagName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--{}", self.0)
    }
}

/// A flag error: message and the flag's position.
pub(crate) type FlagError = (String, Span);

impl Flags {
    /// Checks `given` against the `declared` flags of `instruction`.
    pub(crate) fn parse(instruction: &str, given: &[Word], declared: &[(&'static str, FlagType)]) -> Result<Flags, FlagError> {
        let mut flags = Flags::default();
        let mut used: Vec<&str> = Vec::new();
        for w in given {
            let a = w.value.as_str();
            if a == "--" {
                break;
            }
            let Some(body) = a.strip_prefix("--") else {
                return Err((format!("arg should start with -- : {a}"), w.span));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let flag_name = FlagName(name);
            let Some(&(key, ty)) = declared.iter().find(|(n, _)| *n == name) else {
                let valid = if declared.is_empty() {
                    format!("{instruction} takes no flags")
                } else {
                    let names: Vec<String> = declared.iter().map(|(n, _)| format!("--{n}")).collect();
                    format!("{instruction} accepts {}", names.join(", "))
                };
                return Err((format!("unknown flag: {flag_name} ({valid})"), w.span));
            };
            if used.contains(&key) && ty != FlagType::Strings {
                return Err((format!("duplicate flag specified: {flag_name}"), w.span));
            }
            used.push(key);
            match ty {
                FlagType::Bool => {
                    let v = match value {
                        Some("") => return Err((format!("missing a value on flag: {flag_name}"), w.span)),
                        None => true,
                        Some(v) if v.eq_ignore_ascii_case("true") => true,
                        Some(v) if v.eq_ignore_ascii_case("false") => false,
                        Some(v) => return Err((format!("expecting boolean value for flag {flag_name}, not: {v}"), w.span)),
                    };
                    flags.bools.insert(key, v);
                }
                FlagType::String => {
                    let Some(v) = value else {
                        return Err((format!("missing a value on flag: {flag_name}"), w.span));
                    };
                    flags.strings.insert(key, (v.to_string(), w.span));
                }
                FlagType::Strings => {
                    let Some(v) = value else {
                        return Err((format!("missing a value on flag: {flag_name}"), w.span));
                    };
                    flags.lists.entry(key).or_default().push((v.to_string(), w.span));
                }
            }
        }
        Ok(flags)
    }

    /// A boolean flag: `None` when not given.
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }

    pub(crate) fn string(&self, name: &str) -> Option<(String, Span)> {
        self.strings.get(name).cloned()
    }

    pub(crate) fn strings(&self, name: &str) -> Vec<(String, Span)> {
        self.lists.get(name).cloned().unwrap_or_default()
    }
}
