//! Variable interpolation as Compose does it: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` for
//! a literal `$`. Defaults may themselves hold variables (`${A:-${B}}`).

use crate::error::Error;
use crate::yaml::{Kind, Node};

/// Where variable values come from (the environment over `.env`, already combined).
pub trait Lookup {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Lookup for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::BTreeMap::get(self, name).map(String::as_str)
    }
}

/// Interpolates every scalar value of the tree (keys are left as written).
pub fn tree(node: &mut Node, path: &str, vars: &dyn Lookup) -> Result<(), Error> {
    let loc = node.loc.clone();
    match &mut node.kind {
        Kind::Scalar { value, .. } => {
            if value.contains('$') {
                *value = string(value, vars).map_err(|message| Error::Interpolation { loc, path: path.to_string(), message })?;
            }
        }
        Kind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                tree(item, &format!("{path}[{i}]"), vars)?;
            }
        }
        Kind::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let key = k.as_str().unwrap_or_default();
                let sub = if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
                tree(v, &sub, vars)?;
            }
        }
    }
    Ok(())
}

/// Interpolates one string; the error says what is wrong with it.
pub fn string(s: &str, vars: &dyn Lookup) -> Result<String, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    expand(&chars, &mut i, vars, &mut out, false).map_err(|e| format!("{e} in {s:?}"))?;
    Ok(out)
}

/// Expands from `chars[*i]` into `out`, stopping at the `}` that closes an enclosing `${…}`
/// when `nested` (left unconsumed).
fn expand(chars: &[char], i: &mut usize, vars: &dyn Lookup, out: &mut String, nested: bool) -> Result<(), String> {
    while *i < chars.len() {
        let c = chars[*i];
        if nested && c == '}' {
            return Ok(());
        }
        if c != '$' {
            out.push(c);
            *i += 1;
            continue;
        }
        match chars.get(*i + 1) {
            Some('$') => {
                out.push('$');
                *i += 2;
            }
            Some('{') => {
                *i += 2;
                braced(chars, i, vars, out)?;
            }
            Some(&c) if c == '_' || c.is_ascii_alphabetic() => {
                *i += 1;
                let name = name(chars, i);
                out.push_str(vars.get(&name).unwrap_or(""));
            }
            // As Compose: a `$` that starts no variable is an error, not kept, so a shell's `$(…)`
            // or `$1` in a command is not silently passed on to a different meaning.
            Some(&c) => return Err(format!("invalid interpolation format: `${c}` (write `$$` for a literal `$`)")),
            None => return Err("invalid interpolation format: a `$` at the end (write `$$` for a literal `$`)".into()),
        }
    }
    if nested {
        return Err("unclosed ${".into());
    }
    Ok(())
}

fn name(chars: &[char], i: &mut usize) -> String {
    let start = *i;
    while *i < chars.len() && (chars[*i] == '_' || chars[*i].is_ascii_alphanumeric()) {
        *i += 1;
    }
    chars[start..*i].iter().collect()
}

fn braced(chars: &[char], i: &mut usize, vars: &dyn Lookup, out: &mut String) -> Result<(), String> {
    let var = name(chars, i);
    if var.is_empty() || var.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("invalid interpolation format: ${ must be followed by a variable name".into());
    }
    let (colon, op) = match (chars.get(*i), chars.get(*i + 1)) {
        (Some('}'), _) => {
            *i += 1;
            out.push_str(vars.get(&var).unwrap_or(""));
            return Ok(());
        }
        (Some(':'), Some(&op @ ('-' | '?' | '+'))) => {
            *i += 2;
            (true, op)
        }
        (Some(&op @ ('-' | '?' | '+')), _) => {
            *i += 1;
            (false, op)
        }
        (None, _) => return Err(format!("invalid interpolation format: unclosed ${{{var}")),
        (Some(c), _) => return Err(format!("invalid interpolation format: unexpected {c:?} after ${{{var}")),
    };
    let mut word = String::new();
    expand(chars, i, vars, &mut word, true)?;
    *i += 1; // the closing `}`
    let value = vars.get(&var);
    // `:` treats an empty value like an unset one.
    let set = match value {
        Some(v) => !(colon && v.is_empty()),
        None => false,
    };
    match op {
        '-' => out.push_str(if set { value.unwrap_or("") } else { &word }),
        '+' => out.push_str(if set { &word } else { "" }),
        _ => {
            if !set {
                let why = if word.is_empty() { String::new() } else { format!(": {word}") };
                return Err(format!("required variable {var} is missing a value{why}"));
            }
            out.push_str(value.unwrap_or(""));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn vars() -> BTreeMap<String, String> {
        [("TAG", "1.2"), ("EMPTY", ""), ("USER", "ann")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn i(s: &str) -> Result<String, String> {
        string(s, &vars())
    }

    #[test]
    fn plain_and_braced_variables() {
        assert_eq!(i("app:$TAG").unwrap(), "app:1.2");
        assert_eq!(i("app:${TAG}-x").unwrap(), "app:1.2-x");
        assert_eq!(i("$UNSET|${UNSET}").unwrap(), "|");
    }

    #[test]
    fn defaults_with_and_without_colon() {
        assert_eq!(i("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(i("${EMPTY-d}").unwrap(), "");
        assert_eq!(i("${UNSET-d}").unwrap(), "d");
        assert_eq!(i("${TAG:-d}").unwrap(), "1.2");
        assert_eq!(i("${UNSET:-${USER}x}").unwrap(), "annx");
    }

    #[test]
    fn alternatives() {
        assert_eq!(i("${TAG:+yes}").unwrap(), "yes");
        assert_eq!(i("${EMPTY:+yes}").unwrap(), "");
        assert_eq!(i("${EMPTY+yes}").unwrap(), "yes");
    }

    #[test]
    fn required_variables() {
        assert_eq!(i("${TAG:?need tag}").unwrap(), "1.2");
        assert_eq!(i("${EMPTY?x}").unwrap(), "");
        let e = i("${DB_PASSWORD:?set it in .env}").unwrap_err();
        assert!(e.contains("required variable DB_PASSWORD is missing a value: set it in .env"), "{e}");
        assert!(i("${EMPTY:?}").unwrap_err().contains("required variable EMPTY"));
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(i("echo $$HOME $$$TAG").unwrap(), "echo $HOME $1.2");
        assert_eq!(i("cost: 5$$").unwrap(), "cost: 5$");
    }

    #[test]
    fn a_dollar_that_starts_no_variable_is_an_error_as_in_compose() {
        assert!(i("echo $(date)").unwrap_err().contains("invalid interpolation format: `$(` (write `$$` for a literal `$`)"));
        assert!(i("awk '{print $1}'").unwrap_err().contains("`$1`"));
        assert!(i("cost: 5$").unwrap_err().contains("a `$` at the end"));
    }

    #[test]
    fn bad_formats_are_errors() {
        assert!(i("${TAG").unwrap_err().contains("unclosed"));
        assert!(i("${}").unwrap_err().contains("invalid interpolation format"));
        assert!(i("${TAG!x}").unwrap_err().contains("invalid interpolation format"));
        assert!(i("${A:-${B}").unwrap_err().contains("unclosed"));
    }
}
