//! Shell-word processing as BuildKit's Dockerfile lexer does it: quote
//! removal, escapes, and variable expansion (`$v`, `${v}`, `${v:-w}`,
//! `${v-w}`, `${v:+w}`, `${v+w}`, `${v:?msg}`, `${v?msg}`, `${v#p}`,
//! `${v##p}`, `${v%p}`, `${v%%p}`, `${v/p/r}`, `${v//p/r}`).
//!
//! This is not a shell: there is no command substitution, arithmetic, globbing
//! or field splitting on `$IFS`. [`expand_word`] gives one string (spaces kept);
//! [`expand_words`] splits the result into words after expansion, where quoted
//! or escaped spaces do not split.

use std::collections::BTreeMap;

/// Where variable values come from.
pub trait Env {
    /// The value of `name`, or `None` when it is not set (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// `KEY=VALUE` strings, as in an image config's `Env`; the last one wins.
impl Env for Vec<String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl Env for [String] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter().rev().find_map(|kv| match kv.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if kv == name => Some(""),
            _ => None,
        })
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// No variables at all.
pub struct NoEnv;

impl Env for NoEnv {
    fn lookup(&self, _: &str) -> Option<&str> {
        None
    }
}

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process \"{word}\": {message}")]
pub struct ExpandError {
    /// The word as written.
    pub word: String,
    /// What went wrong (as BuildKit says it).
    pub message: String,
}

/// Expands variables and removes quotes and escapes in `word`, keeping spaces.
pub fn expand_word(word: &str, env: &impl Env, escape: char) -> Result<String, ExpandError> {
    Lexer::new(escape).process(word, env).map(|(s, _)| s)
}

/// Like [`expand_word`], then splits into words on unquoted, unescaped spaces
/// (BuildKit's `ProcessWords`).
pub fn expand_words(word: &str, env: &impl Env, escape: char) -> Result<Vec<String>, ExpandError> {
    Lexer::new(escape).process(word, env).map(|(_, w)| w)
}

/// Expands variables in a heredoc body: `$` and escapes only, quotes are
/// ordinary characters, the escape character is always `\`.
pub fn expand_heredoc(body: &str, env: &impl Env) -> Result<String, ExpandError> {
    let lexer = Lexer { skip_quotes: true, ..Lexer::new('\\') };
    lexer.process(body, env).map(|(s, _)| s)
}

/// The lexer with BuildKit's switches (used raw by the parser to find heredocs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters (heredoc bodies).
    pub skip_quotes: bool,
}

impl Lexer {
    pub(crate) fn new(escape: char) -> Lexer {
        Lexer { escape, raw_quotes: false, raw_escapes: false, skip_unset_env: false, skip_quotes: false }
    }

    /// The expanded string and its words.
    pub(crate) fn process(&self, word: &str, env: &dyn Env) -> Result<(String, Vec<String>), ExpandError> {
        let chars: Vec<char> = word.chars().collect();
        let mut sw = ShellWord { lex: *self, env, chars: &chars, pos: 0, raw_escapes: self.raw_escapes, depth: 0 };
        sw.process_stop_on(None, self.raw_escapes)
            .map_err(|message| ExpandError { word: word.to_string(), message })
    }
}

struct ShellWord<'a> {
    lex: Lexer,
    env: &'a dyn Env,
    chars: &'a [char],
    pos: usize,
    raw_escapes: bool,
    /// Nesting of `${…}` being read (bounded so hostile input cannot exhaust the stack).
    depth: usize,
}

/// How many `*` a `${v#pattern}` pattern may have (each one is a level of backtracking).
const MAX_STARS: usize = 128;

/// How deeply `${a:-${b:-…}}` may nest.
const MAX_NESTING: usize = 64;

/// Builds the word list while the string is assembled.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if crate::words::is_go_space(c) {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

type Res<T> = Result<T, String>;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Res<(String, Vec<String>)> {
        if self.depth > MAX_NESTING {
            return Err(format!("variable substitutions nested more than {MAX_NESTING} deep"));
        }
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        self.depth += 1;
        let r = self.process_stop_on_inner(stop);
        self.depth -= 1;
        self.raw_escapes = saved;
        r
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Res<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            let special = match ch {
                '$' => Some(self.process_dollar()?),
                '<' => Some(self.process_possible_heredoc()),
                '\'' if !self.lex.skip_quotes => Some(self.process_single_quote()?),
                '"' if !self.lex.skip_quotes => Some(self.process_double_quote()?),
                _ => None,
            };
            if let Some(tmp) = special {
                result.push_str(&tmp);
                if ch == '$' {
                    words.add_string(&tmp);
                } else {
                    words.add_raw_string(&tmp);
                }
                continue;
            }
            let mut ch = match self.next() {
                Some(c) => c,
                None => break,
            };
            if ch == self.lex.escape {
                if self.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                ch = match self.next() {
                    Some(c) => c,
                    None => break,
                };
                words.add_raw_char(ch);
            } else {
                words.add_char(ch);
            }
            result.push(ch);
        }
        if let Some(stop) = stop {
            return Err(format!("unexpected end of statement while looking for matching {stop}"));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Res<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err("unexpected end of statement while looking for matching single-quote".into()),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Res<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err("unexpected end of statement while looking for matching double-quote".into()),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.lookup(name).map(str::to_string)
    }

    fn process_dollar(&mut self) -> Res<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.process_name();
        let first = self.next();
        let mut chs: String = first.map(String::from).unwrap_or_else(|| "\u{FFFD}".into());
        match first {
            Some('}') => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let mut ch = first;
                let null_is_unset = first == Some(':');
                if null_is_unset {
                    ch = self.next();
                    chs.push(ch.unwrap_or('\u{FFFD}'));
                }
                let raw = matches!(ch, Some('#' | '%'));
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".into());
                        }
                        return Err(e);
                    }
                };
                let value = self.lookup(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let unset = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
                match ch {
                    Some('-') => Ok(if unset { word } else { value.unwrap_or_default() }),
                    Some('+') => Ok(if unset { String::new() } else { word }),
                    Some('?') => match value {
                        None => Err(format!("{name}: {}", if word.is_empty() { "is not allowed to be unset" } else { &word })),
                        Some(v) if null_is_unset && v.is_empty() => {
                            Err(format!("{name}: {}", if word.is_empty() { "is not allowed to be empty" } else { &word }))
                        }
                        Some(v) => Ok(v),
                    },
                    Some(c @ ('#' | '%')) => {
                        let value = value.unwrap_or_default();
                        let (greedy, pattern) = match word.strip_prefix(c) {
                            Some(p) => (true, p.to_string()),
                            None => (false, word.clone()),
                        };
                        if c == '%' {
                            trim_suffix(&pattern, &value, greedy)
                        } else {
                            trim_prefix(&pattern, &value, greedy)
                        }
                    }
                    _ => Err(format!("unsupported modifier ({chs}) in substitution")),
                }
            }
            Some('/') => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '/' in ${}".into());
                        }
                        return Err(e);
                    }
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".into());
                        }
                        return Err(e);
                    }
                };
                let value = self.lookup(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let value = value.unwrap_or_default();
                let pat = Pattern::compile(&pattern)
                    .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
                let v: Vec<char> = value.chars().collect();
                let mut out = String::new();
                if !replace_all {
                    return Ok(match pat.find_from(&v, 0, true) {
                        Some((s, e)) => {
                            out.extend(&v[..s]);
                            out.push_str(&replacement);
                            out.extend(&v[e..]);
                            out
                        }
                        None => value,
                    });
                }
                // Go's ReplaceAllString: no replacement for an empty match
                // right after another match; always move on by one character.
                let mut last = 0;
                let mut search = 0;
                while search <= v.len() {
                    let Some((s, e)) = pat.find_from(&v, search, true) else { break };
                    out.extend(&v[last..s]);
                    if e > last || s == 0 {
                        out.push_str(&replacement);
                    }
                    last = e;
                    search = if search + 1 > e { search + 1 } else { e };
                }
                out.extend(&v[last.min(v.len())..]);
                Ok(out)
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() && is_go_digit(ch) {
                while let Some(c) = self.peek() {
                    if !is_go_digit(c) {
                        break;
                    }
                    name.push(c);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphabetic() && !is_go_digit(ch) && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut result = String::from("<<");
        while let Some(c @ ('\t' | '\r' | ' ')) = self.peek() {
            result.push(c);
            self.next();
        }
        result
    }
}

/// Go's `unicode.IsDigit` (decimal digits, category Nd). Rust's `is_numeric`
/// is wider (No, Nl); this keeps the ones with a decimal value.
fn is_go_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric() && is_unicode_decimal(c))
}

fn is_unicode_decimal(c: char) -> bool {
    // Decimal digit blocks start at a code point ending in 0 and run ten long;
    // the common ones, enough for names in Dockerfiles.
    let u = c as u32;
    const STARTS: &[u32] = &[
        0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6, 0xE50, 0xED0,
        0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0xFF10,
    ];
    STARTS.iter().any(|&s| u >= s && u < s + 10)
}

// ---------------------------------------------------------------- patterns

/// A shell pattern of `${v#p}` and friends: `*` any run, `?` one character,
/// `\` escapes `*`, `?` and `\` (and is dropped before `}` and `/`). Like
/// BuildKit's regular expressions, `*` and `?` do not match a line feed.
#[derive(Debug)]
struct Pattern {
    tokens: Vec<Tok>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Lit(char),
    Any,
    Star,
}

impl Pattern {
    fn compile(p: &str) -> Result<Pattern, String> {
        let chars: Vec<char> = p.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                // `**` matches what `*` matches.
                '*' if tokens.last() == Some(&Tok::Star) => {}
                '*' => tokens.push(Tok::Star),
                '?' => tokens.push(Tok::Any),
                '\\' => {
                    if matches!(chars.get(i), Some('}' | '/')) {
                        continue;
                    }
                    match chars.get(i) {
                        Some(&n @ ('*' | '?' | '\\')) => {
                            tokens.push(Tok::Lit(n));
                            i += 1;
                        }
                        Some(&n) => return Err(format!("invalid escape '\\{n}'")),
                        None => return Err("invalid escape '\\'".into()),
                    }
                }
                c => tokens.push(Tok::Lit(c)),
            }
        }
        if tokens.iter().filter(|t| **t == Tok::Star).count() > MAX_STARS {
            return Err(format!("more than {MAX_STARS} wildcards"));
        }
        Ok(Pattern { tokens })
    }

    /// The first match starting at or after `from` (leftmost), with stars
    /// preferring the longest (`greedy`) or shortest run, in the order a
    /// backtracking regular expression engine tries them.
    fn find_from(&self, s: &[char], from: usize, greedy: bool) -> Option<(usize, usize)> {
        (from..=s.len()).find_map(|start| self.match_at(s, start, greedy).map(|end| (start, end)))
    }

    fn match_at(&self, s: &[char], start: usize, greedy: bool) -> Option<usize> {
        // Failed (star, position) states, so the search stays polynomial.
        let mut failed = std::collections::HashSet::new();
        self.m(s, 0, start, greedy, &mut failed)
    }

    /// Literal steps are a loop; only `*` branches (and recurses), and the
    /// number of stars is bounded at compile time.
    fn m(&self, s: &[char], mut t: usize, mut p: usize, greedy: bool, failed: &mut std::collections::HashSet<(usize, usize)>) -> Option<usize> {
        loop {
            match self.tokens.get(t) {
                None => return Some(p),
                Some(Tok::Lit(c)) => {
                    if s.get(p) != Some(c) {
                        return None;
                    }
                }
                Some(Tok::Any) => match s.get(p) {
                    Some(&c) if c != '\n' => {}
                    _ => return None,
                },
                Some(Tok::Star) => {
                    if failed.contains(&(t, p)) {
                        return None;
                    }
                    let mut max = p;
                    while max < s.len() && s[max] != '\n' {
                        max += 1;
                    }
                    let r = if greedy {
                        (p..=max).rev().find_map(|q| self.m(s, t + 1, q, greedy, failed))
                    } else {
                        (p..=max).find_map(|q| self.m(s, t + 1, q, greedy, failed))
                    };
                    if r.is_none() {
                        failed.insert((t, p));
                    }
                    return r;
                }
            }
            t += 1;
            p += 1;
        }
    }
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Res<String> {
    let pat = Pattern::compile(pattern).map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    let v: Vec<char> = value.chars().collect();
    Ok(match pat.match_at(&v, 0, greedy) {
        Some(end) => v[end..].iter().collect(),
        None => value.to_string(),
    })
}

/// Reverses a pattern, keeping `\x` pairs in order.
fn reverse_pattern(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let n = chars.len();
    let mut out = vec!['\0'; n];
    let mut i = 0;
    while i < n {
        let c = chars[i];
        let o = n - 1 - i;
        if c == '\\' && i != n - 1 {
            out[o - 1] = c;
            out[o] = chars[i + 1];
            i += 2;
        } else {
            out[o] = c;
            i += 1;
        }
    }
    out.into_iter().collect()
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Res<String> {
    let rp = reverse_pattern(pattern);
    let rv: String = value.chars().rev().collect();
    let r = trim_prefix(&rp, &rv, greedy)?;
    Ok(r.chars().rev().collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("FOO", "abc.tar.gz"), ("E", ""), ("P", "/a/b/c")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn prefix_and_suffix_trimming() {
        let e = env();
        assert_eq!(expand_word("${FOO%.*}", &e, '\\').unwrap(), "abc.tar");
        assert_eq!(expand_word("${FOO%%.*}", &e, '\\').unwrap(), "abc");
        assert_eq!(expand_word("${FOO#*.}", &e, '\\').unwrap(), "tar.gz");
        assert_eq!(expand_word("${FOO##*.}", &e, '\\').unwrap(), "gz");
        assert_eq!(expand_word("${P#/}", &e, '\\').unwrap(), "a/b/c");
    }

    #[test]
    fn replacement_first_and_all() {
        let e = env();
        assert_eq!(expand_word("${P/\\//_}", &e, '\\').unwrap(), "_a/b/c");
        assert_eq!(expand_word("${P//\\//_}", &e, '\\').unwrap(), "_a_b_c");
        assert_eq!(expand_word("${FOO/t*r/X}", &e, '\\').unwrap(), "abc.X.gz");
    }

    #[test]
    fn error_forms() {
        let e = env();
        assert!(expand_word("${E:?must be set}", &e, '\\').unwrap_err().message.contains("E: must be set"));
        assert!(expand_word("${NOPE?}", &e, '\\').unwrap_err().message.contains("is not allowed to be unset"));
        assert!(expand_word("${FOO:#x}", &e, '\\').is_err());
    }

    #[test]
    fn words_split_after_expansion_only_on_unquoted_space() {
        let e: Vec<String> = vec!["S=a  b".into()];
        assert_eq!(expand_words("x${S}y \"${S}\"", &e, '\\').unwrap(), ["xa", "by", "a  b"]);
    }
}
