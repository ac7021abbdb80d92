//! `.env` and `env_file:` files: `KEY=VALUE` lines, as Compose reads them.
//!
//! `# comments`, blank lines and an `export ` prefix are allowed; a value may be single-quoted
//! (taken as is), double-quoted (`\n`, `\t`, `\"`, `\\` escapes, `${VAR}` interpolated) or bare
//! (trimmed, ` #` starts a comment, `${VAR}` interpolated). Earlier lines are visible to later
//! ones.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Error;
use crate::interpolate::{self, Lookup};

/// Reads `text` (from `file`, for errors) on top of `outer` for interpolation; returns the
/// variables in the file.
pub fn parse(file: &Path, text: &str, outer: &dyn Lookup) -> Result<BTreeMap<String, String>, Error> {
    struct Chain<'a>(&'a BTreeMap<String, String>, &'a dyn Lookup);
    impl Lookup for Chain<'_> {
        fn get(&self, name: &str) -> Option<&str> {
            self.1.get(name).or_else(|| self.0.get(name).map(String::as_str))
        }
    }
    let mut vars = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, raw)) = lines.next() {
        let err = |message: String| Error::EnvFile { file: file.to_path_buf(), line: n + 1, message };
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim_end(), v),
            // A bare name takes its value from the environment, if set.
            None => {
                let key = line.trim_end();
                if let Some(v) = outer.get(key) {
                    vars.insert(key.to_string(), v.to_string());
                }
                continue;
            }
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(err(format!("invalid variable name {key:?}")));
        }
        let value = value.trim_start();
        let value = if let Some(rest) = value.strip_prefix('\'') {
            let mut text = rest.to_string();
            // A quoted value may run over several lines.
            while !text.contains('\'') {
                let Some((_, more)) = lines.next() else { return Err(err(format!("unterminated ' in the value of {key}"))) };
                text.push('\n');
                text.push_str(more);
            }
            text[..text.find('\'').unwrap_or(text.len())].to_string()
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut text = rest.to_string();
            let end = loop {
                if let Some(end) = closing_quote(&text) {
                    break end;
                }
                let Some((_, more)) = lines.next() else { return Err(err(format!("unterminated \" in the value of {key}"))) };
                text.push('\n');
                text.push_str(more);
            };
            let unescaped = unescape(&text[..end]);
            interpolate::string(&unescaped, &Chain(&vars, outer)).map_err(err)?
        } else {
            let bare = match value.find(" #") {
                Some(i) => &value[..i],
                None => value,
            };
            interpolate::string(bare.trim_end(), &Chain(&vars, outer)).map_err(err)?
        };
        vars.insert(key.to_string(), value);
    }
    Ok(vars)
}

fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(c @ ('"' | '\\')) => out.push(c),
            Some(c) => {
                out.push('\\');
                out.push(c);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<BTreeMap<String, String>, Error> {
        let outer: BTreeMap<String, String> = [("HOME".to_string(), "/root".to_string())].into();
        parse(Path::new(".env"), text, &outer)
    }

    #[test]
    fn reads_the_forms_compose_reads() {
        let v = p("# a comment\n\nA=1\nexport B = two words # note\nC='$A literal'\nD=\"line\\nnext ${A}\"\nE=${HOME}/x\nF=\nG=\"multi\nline\"\n").unwrap();
        assert_eq!(v["A"], "1");
        assert_eq!(v["B"], "two words");
        assert_eq!(v["C"], "$A literal");
        assert_eq!(v["D"], "line\nnext 1");
        assert_eq!(v["E"], "/root/x");
        assert_eq!(v["F"], "");
        assert_eq!(v["G"], "multi\nline");
    }

    #[test]
    fn errors_name_the_line() {
        let e = p("A=1\nnot a name=3\n").unwrap_err().to_string();
        assert!(e.starts_with(".env:2: invalid variable name"), "{e}");
        let e = p("A=\"open\n").unwrap_err().to_string();
        assert!(e.contains(".env:1:") && e.contains("unterminated"), "{e}");
    }
}
