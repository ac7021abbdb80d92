//! Splitting one joined instruction line into its parts, the way BuildKit's
//! parser does: the instruction name, `--flags`, and the arguments, whose
//! shape depends on the instruction (whitespace-separated words, quoted words,
//! `name=value` pairs, one string, or the exec form).
//!
//! The parser keeps quotes and escapes as written: quote removal and variable
//! expansion happen later (see [`crate::shell`]). Every word carries the byte
//! offset where it starts in the line it was cut from, for error positions.

use std::borrow::Cow;

/// Go's `unicode.IsSpace`.
pub(crate) fn is_go_space(c: char) -> bool {
    if c.is_ascii() {
        return matches!(c, '\t'..='\r' | ' ');
    }
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{85}' | '\u{A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}'
            | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// Go's `unicode.IsSpace(rune(b))` for a single byte, as BuildKit's byte-wise
/// scanners apply it (so the UTF-8 continuation bytes 0x85 and 0xA0 count).
fn is_go_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ' | 0x85 | 0xA0)
}

/// The bytes that end a flag's plain ASCII run: quotes, blanks (as
/// [`is_go_space_byte`]) and any byte above 0x7F (a table: the scan runs
/// over every flag).
const ENDS_PLAIN_FLAG: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c >= 0x80 || c == b'\'' || c == b'"' || matches!(c, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ');
        i += 1;
    }
    t
};

/// The blanks of BuildKit's `[\t\v\f\r ]+` separator.
fn is_sep(c: char) -> bool {
    matches!(c, '\t' | '\u{0B}' | '\u{0C}' | '\r' | ' ')
}

/// `strings.TrimSpace`: returns the trimmed slice and the offset where it starts.
pub(crate) fn trim_space(s: &str) -> (&str, usize) {
    // Usually there is nothing to trim: an ASCII character that is not a blank at both ends.
    let solid = |b: Option<&u8>| b.is_some_and(|&c| c < 0x80 && !matches!(c, b'\t'..=b'\r' | b' '));
    if solid(s.as_bytes().first()) && solid(s.as_bytes().last()) {
        return (s, 0);
    }
    let start = s.len() - s.trim_start_matches(is_go_space).len();
    let trimmed = s[start..].trim_end_matches(is_go_space);
    (trimmed, start)
}

/// A piece of a line: its text (borrowed from the line unless quote or
/// escape removal changed it) and the byte offset where it starts (in the
/// line it was cut from; the syntax tree then turns it into an offset in the
/// Dockerfile, in place).
pub(crate) use crate::ast::Token as Piece;

/// `regexp.MustCompile("[\t\v\f\r ]+").Split(s, n)` with n = 2 or -1 (all).
pub(crate) fn split_blanks<'s>(s: &'s str, base: usize, limit: Option<usize>, out: &mut Vec<Piece<'s>>) {
    let first = out.len();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if limit.is_some_and(|n| out.len() - first + 1 >= n) {
            break;
        }
        if is_sep(c) {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = iter.peek() {
                if !is_sep(d) {
                    break;
                }
                end = j + d.len_utf8();
                iter.next();
            }
            out.push(Piece::borrowed(&s[start..i], base + start));
            start = end;
        }
    }
    out.push(Piece::borrowed(&s[start..], base + start));
}

/// The instruction name, its flags and the rest of the line (BuildKit's
/// `splitCommand`). Offsets are relative to `line`.
pub(crate) struct SplitLine<'a> {
    pub command: Slice<'a>,
    pub rest: Slice<'a>,
}

/// A piece of a line borrowed from it (no copy): its text and where it starts.
pub(crate) struct Slice<'a> {
    pub text: &'a str,
    pub offset: usize,
}

/// The flags are pushed to `flags`.
pub(crate) fn split_command<'a>(line: &'a str, escape: char, flags: &mut Vec<Piece<'a>>) -> SplitLine<'a> {
    let (trimmed, base) = trim_space(line);
    // The name ends at the first blank of `[\t\v\f\r ]`; the rest starts after the run of them.
    // The blanks are ASCII, so they can be looked for byte by byte.
    let is_sep_byte = |b: &u8| matches!(b, b'\t' | 0x0B | 0x0C | b'\r' | b' ');
    let (command, after) = match trimmed.bytes().position(|b| is_sep_byte(&b)) {
        Some(i) => {
            let rest_start = trimmed.as_bytes()[i..].iter().position(|b| !is_sep_byte(b)).map(|j| i + j).unwrap_or(trimmed.len());
            (&trimmed[..i], Some((&trimmed[rest_start..], base + rest_start)))
        }
        None => (trimmed, None),
    };
    let mut rest = Slice { text: "", offset: line.len() };
    if let Some((after, after_offset)) = after {
        let first = flags.len();
        let (args, args_offset) = extract_builder_flags(after, escape, flags);
        for p in &mut flags[first..] {
            p.at += after_offset;
        }
        let (t, o) = trim_space(args);
        rest = Slice { text: t, offset: after_offset + args_offset + o };
    }
    SplitLine { command: Slice { text: command, offset: base }, rest }
}

/// Leading `--flag[=value]` words; stops at the first word not starting with
/// `--`, or after a lone `--`. BuildKit scans this byte by byte, so a byte
/// above 0x7F stands for the Latin-1 character of the same number: kept.
fn extract_builder_flags<'l>(line: &'l str, escape: char, words: &mut Vec<Piece<'l>>) -> (&'l str, usize) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let b = line.as_bytes();
    let esc = if escape.is_ascii() { escape as u8 } else { b'\\' };
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut quote = 0u8;
    let mut blank_ok = false;
    let mut pos = 0;
    let rest_at = |pos: usize| -> (&str, usize) {
        // A byte position inside a character (after a stray 0x85/0xA0 byte)
        // moves to the next character boundary.
        let mut p = pos;
        while p < line.len() && !line.is_char_boundary(p) {
            p += 1;
        }
        (&line[p..], p)
    };
    loop {
        let ch = if pos < b.len() { b[pos] } else { 0 };
        if phase == Phase::Spaces {
            if pos == b.len() {
                break;
            }
            if is_go_space_byte(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || pos + 1 == b.len() || b[pos + 1] != b'-' {
                return rest_at(pos);
            }
            // The usual flag is plain ASCII up to a blank: then it is the
            // text as written, borrowed (the byte loop below gives the same).
            let plain_end = b[pos..].iter().position(|&c| ENDS_PLAIN_FLAG[usize::from(c)] || c == esc).map_or(b.len(), |i| pos + i);
            if plain_end == b.len() || is_go_space_byte(b[plain_end]) {
                let text = &line[pos..plain_end];
                if text == "--" {
                    if plain_end == b.len() {
                        break;
                    }
                    return rest_at(plain_end);
                }
                words.push(Piece::borrowed(text, pos));
                pos = plain_end;
                continue;
            }
            phase = Phase::Word;
            word_start = pos;
            // Room for the word up to the next blank (its usual whole length), so it is not grown byte by byte.
            word = String::with_capacity(b[pos..].iter().position(|&c| is_go_space_byte(c)).unwrap_or(b.len() - pos));
        }
        if pos == b.len() {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(Piece { text: Cow::Owned(std::mem::take(&mut word)), at: word_start });
            }
            break;
        }
        if phase == Phase::Word {
            if is_go_space_byte(ch) {
                phase = Phase::Spaces;
                if word == "--" {
                    return rest_at(pos);
                }
                if blank_ok || !word.is_empty() {
                    words.push(Piece { text: Cow::Owned(std::mem::take(&mut word)), at: word_start });
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut c = ch;
            if c == esc {
                if pos + 1 == b.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = b[pos];
            }
            word.push(char::from(c));
            pos += 1;
            continue;
        }
        // Inside quotes.
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut c = ch;
        if c == esc {
            if pos + 1 == b.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            c = b[pos];
        }
        word.push(char::from(c));
        pos += 1;
    }
    ("", line.len())
}

/// Space-separated words where quotes group (and are kept), as BuildKit's
/// `parseWords` (used by ARG, ENV and LABEL). Quotes and escapes are kept, so
/// a word is the text as written (without a lone escape character ending
/// the input): borrowed.
pub(crate) fn parse_words<'r>(rest: &'r str, escape: char, mut word: impl FnMut(&'r str, usize)) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word_start = 0;
    // End of the characters taken into the current word so far.
    let mut word_end = 0;
    let mut chars = rest.char_indices();
    loop {
        let next = chars.next();
        let (pos, ch) = next.unwrap_or((rest.len(), '\0'));
        let at_end = next.is_none();
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if is_go_space(ch) {
                continue;
            }
            phase = Phase::Word;
            word_start = pos;
            word_end = pos;
        }
        if at_end {
            if blank_ok || word_end > word_start {
                word(&rest[word_start..word_end], word_start);
            }
            break;
        }
        if phase == Phase::Word {
            if is_go_space(ch) {
                phase = Phase::Spaces;
                if blank_ok || word_end > word_start {
                    word(&rest[word_start..word_end], word_start);
                }
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                // The escape and the character after it; a lone escape at the end is dropped.
                if let Some((p, c)) = chars.next() {
                    word_end = p + c.len_utf8();
                }
                continue;
            }
            word_end = pos + ch.len_utf8();
            continue;
        }
        // Inside quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            match chars.next() {
                None => phase = Phase::Word,
                Some((p, c)) => word_end = p + c.len_utf8(),
            }
            continue;
        }
        word_end = pos + ch.len_utf8();
    }
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0B}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and
/// the ASCII space. Without Unicode category tables, this rejects what is
/// certainly not printable: controls, non-ASCII spaces, format characters,
/// private use, noncharacters and surrogates.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD
        | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
    let private = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    let nonchar = matches!(u, 0xFDD0..=0xFDEF) || (u & 0xFFFE) == 0xFFFE;
    !(format || private || nonchar)
}

/// An instruction keyword in lower case, as Go's `strings.ToLower` gives it,
/// without allocating for the known instructions written in ASCII.
pub(crate) fn keyword_lower(keyword: &str) -> Cow<'static, str> {
    let b = keyword.as_bytes();
    if b.len() <= 11 {
        let mut buf = [0u8; 11];
        for (d, s) in buf.iter_mut().zip(b) {
            *d = s.to_ascii_lowercase();
        }
        let name = match &buf[..b.len()] {
            b"from" => "from",
            b"run" => "run",
            b"copy" => "copy",
            b"env" => "env",
            b"arg" => "arg",
            b"label" => "label",
            b"workdir" => "workdir",
            b"cmd" => "cmd",
            b"entrypoint" => "entrypoint",
            b"expose" => "expose",
            b"add" => "add",
            b"user" => "user",
            b"volume" => "volume",
            b"healthcheck" => "healthcheck",
            b"shell" => "shell",
            b"stopsignal" => "stopsignal",
            b"onbuild" => "onbuild",
            b"maintainer" => "maintainer",
            _ => "",
        };
        if !name.is_empty() {
            return Cow::Borrowed(name);
        }
    }
    Cow::Owned(go_lower(keyword))
}

/// Go's `strings.ToLower` (simple case mapping, rune by rune).
pub(crate) fn go_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn texts<'p>(p: &'p [Piece<'_>]) -> Vec<&'p str> {
        p.iter().map(|p| p.text.as_ref()).collect()
    }

    #[test]
    fn flags_stop_at_first_non_flag_and_after_double_dash() {
        let mut flags = Vec::new();
        let s = split_command("COPY --from=a  --chown=1:2 -- --x y", '\\', &mut flags);
        assert_eq!(s.command.text, "COPY");
        assert_eq!(texts(&flags), ["--from=a", "--chown=1:2"]);
        assert_eq!(s.rest.text, "--x y");
        assert_eq!(&"COPY --from=a  --chown=1:2 -- --x y"[s.rest.offset..], "--x y");
    }

    #[test]
    fn quoted_flag_values_lose_their_quotes() {
        let mut flags = Vec::new();
        let s = split_command(r#"RUN --mount="type=cache,target=/a b" echo"#, '\\', &mut flags);
        assert_eq!(texts(&flags), ["--mount=type=cache,target=/a b"]);
        assert_eq!(s.rest.text, "echo");
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        let texts = |line: &str| {
            let mut words = Vec::new();
            parse_words(line, '\\', |w, _| words.push(w.to_string()));
            words
        };
        assert_eq!(texts(r#"abc="123 456" def"#), [r#"abc="123 456""#, "def"]);
        assert_eq!(texts(r"a\ b c"), [r"a\ b", "c"]);
    }

    #[test]
    fn quote_matches_go() {
        assert_eq!(go_quote("a\"b\\\u{0}\u{7f}♥\u{a0}"), "\"a\\\"b\\\\\\x00\\x7f♥\\u00a0\"");
    }
}
