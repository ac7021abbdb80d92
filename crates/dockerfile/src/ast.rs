//! The syntax tree: a Dockerfile read into instructions exactly as BuildKit's
//! parser reads it, before any meaning is given to them.
//!
//! The pest grammar splits the file into directives, comments and (joined)
//! instruction lines; [`crate::words`] splits each line into name, flags and
//! arguments; heredoc bodies are read here. [`Ast::dump`] prints BuildKit's
//! AST dump format (one S-expression per instruction).
//!
//! Why it is shaped this way (parsing is meant to cost a build nothing): the
//! words of a node borrow the Dockerfile's text (only a line joined from
//! several, or a word whose quotes were removed, is copied); positions are
//! byte offsets, turned into line and column only where one is shown or
//! kept; the typed layer gets each node as soon as it is read
//! ([`parse_each`]), so a node's word lists are reused for the next one.

use std::borrow::Cow;

use pest::Parser;
use pest::iterators::Pair;
use serde::Serialize;

use crate::error::{DockerfileError, ErrorKind, SourceMap, Span};
use crate::grammar::{DockerfileGrammar, Rule};
use crate::shell::{Lexer, NoEnv};
use crate::words::{self, Piece, go_lower, go_quote, split_blanks, trim_space};

/// BuildKit reads lines with a 64 KiB buffer; longer lines are an error.
pub const MAX_LINE_BYTES: usize = 65535;

/// A parsed Dockerfile, before instructions are checked (its text borrowed
/// from the Dockerfile's bytes).
#[derive(Debug, Clone, Serialize)]
pub struct Ast<'a> {
    /// Parser directives (`# syntax=`, `# escape=`, `# check=`), in file order.
    pub directives: Vec<Directive>,
    /// The escape character in effect (`\` or `` ` ``).
    pub escape: char,
    /// One node per instruction.
    pub nodes: Vec<Node<'a>>,
}

/// A parser directive at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// Lower-case name: `syntax`, `escape` or `check`.
    pub name: String,
    pub value: String,
    pub span: Span,
}

/// A word of an instruction as written (quotes and escapes kept), with its
/// position: the form the typed instructions use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    pub value: String,
    pub span: Span,
}

/// A word of the syntax tree: its text (borrowed from the Dockerfile unless
/// the lines of the instruction were joined or quotes were removed) and the
/// byte offset in the Dockerfile where it starts (`SourceMap` turns it into
/// a line and column when one is needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Token<'a> {
    pub text: Cow<'a, str>,
    pub at: usize,
}

impl<'a> Token<'a> {
    pub(crate) fn borrowed(text: &'a str, at: usize) -> Token<'a> {
        Token { text: Cow::Borrowed(text), at }
    }

    fn into_owned(self) -> Token<'static> {
        Token { text: Cow::Owned(self.text.into_owned()), at: self.at }
    }
}

/// A heredoc attached to an instruction (`<<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The file descriptor before `<<` (0 when none).
    pub fd: u32,
    /// False when any part of the delimiter was quoted: the body is taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body lines.
    pub chomp: bool,
    /// The body lines, each with its line ending, as written.
    pub content: String,
}

/// One instruction as parsed. Its text is borrowed from the Dockerfile where
/// it is written there as is (`'a`).
#[derive(Debug, Clone, Serialize)]
pub struct Node<'a> {
    /// The instruction name as written (any case).
    pub keyword: Cow<'a, str>,
    /// Where the instruction name starts in the joined line.
    pub keyword_at: usize,
    /// The instruction name in lower case (see [`Node::name`]).
    #[serde(skip)]
    lower: Cow<'static, str>,
    /// `--flag[=value]` words before the arguments (quotes removed).
    pub flags: Vec<Token<'a>>,
    /// The arguments; their shape depends on the instruction (ENV and LABEL
    /// give name, value, separator triples).
    pub args: Vec<Token<'a>>,
    /// The instruction an ONBUILD wraps.
    pub child: Option<Box<Node<'a>>>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
    /// The joined instruction line (continuations and comments removed).
    pub original: Cow<'a, str>,
    /// Where the instruction name starts.
    pub span: Span,
    /// The last line of the instruction (including heredoc bodies).
    pub end_line: usize,
}

impl<'a> Node<'a> {
    /// The instruction name in lower case.
    pub fn name(&self) -> String {
        go_lower(&self.keyword)
    }

    /// The node in BuildKit's dump format, without the surrounding parentheses.
    pub fn dump(&self) -> String {
        let mut s = go_lower(&self.keyword);
        if !self.flags.is_empty() {
            s.push_str(" [");
            let quoted: Vec<String> = self.flags.iter().map(|f| go_quote(&f.text)).collect();
            s.push_str(&quoted.join(" "));
            s.push(']');
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go_quote(&a.text));
        }
        if let Some(child) = &self.child {
            s.push_str(" (");
            s.push_str(&child.dump());
            s.push(')');
        }
        trim_space(&s).0.to_string()
    }

    /// [`Node::name`], without allocating for the known instructions.
    pub(crate) fn lower_name(&self) -> &str {
        &self.lower
    }

    fn can_contain_heredoc(&self) -> bool {
        let node = match (&self.child, self.lower_name()) {
            (Some(child), "onbuild") => child,
            _ => self,
        };
        matches!(node.lower_name(), "add" | "copy" | "run") && !node.json
    }

    /// The node with all its text owned (for a line joined from several).
    fn into_owned(self) -> Node<'static> {
        Node {
            keyword: Cow::Owned(self.keyword.into_owned()),
            keyword_at: self.keyword_at,
            lower: self.lower,
            flags: self.flags.into_iter().map(Token::into_owned).collect(),
            args: self.args.into_iter().map(Token::into_owned).collect(),
            child: self.child.map(|c| Box::new(c.into_owned())),
            json: self.json,
            heredocs: self.heredocs,
            original: Cow::Owned(self.original.into_owned()),
            span: self.span,
            end_line: self.end_line,
        }
    }
}

impl Ast<'_> {
    /// BuildKit's AST dump: one `(instruction …)` line per instruction.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push('(');
            out.push_str(&n.dump());
            out.push_str(")\n");
        }
        out
    }
}

/// Maps byte offsets of a joined instruction line back to the source.
struct LineMap<'s, 'a> {
    map: &'s SourceMap<'a>,
    /// Where the line starts in the source (when it is one piece).
    base: usize,
    /// (offset in the joined line, offset in the source) where each piece
    /// starts, when the line was joined from several (else empty).
    pieces: Vec<(usize, usize)>,
}

impl LineMap<'_, '_> {
    /// The source offset of a byte offset in the joined line.
    fn at(&self, offset: usize) -> usize {
        if self.pieces.is_empty() {
            return self.base + offset;
        }
        let i = self.pieces.partition_point(|&(l, _)| l <= offset).max(1) - 1;
        match self.pieces.get(i) {
            Some(&(l, s)) => s + (offset - l),
            None => 0,
        }
    }

    fn span(&self, offset: usize) -> Span {
        self.map.span(self.at(offset))
    }
}

/// Parses Dockerfile bytes into the syntax tree.
pub fn parse<'a>(source: &'a [u8], file: &'a str) -> Result<Ast<'a>, DockerfileError> {
    let mut nodes = Vec::new();
    let parsed = parse_each(source, file, |_, _, read| {
        nodes.push(match read {
            ReadNode::Source(node) => node,
            ReadNode::Joined(node) => node.clone().into_owned(),
        });
        None
    })?;
    Ok(Ast { directives: parsed.directives, escape: parsed.escape, nodes })
}

/// A node as [`parse_each`] hands it over.
pub(crate) enum ReadNode<'a, 'n> {
    /// Its text borrowed from the Dockerfile: the callback may keep it, or
    /// give it back so that its word lists are reused for the next node.
    Source(Node<'a>),
    /// Its text borrowed from a line joined from several lines, which lives
    /// only during the call (so it is not copied for the typed layer).
    Joined(&'n Node<'n>),
}

/// An emptied word list, kept for the next node (whatever text its words
/// borrowed: an empty list is collected in place, without allocating).
fn reuse<'x, 'y>(mut words: Vec<Token<'x>>) -> Vec<Token<'y>> {
    words.clear();
    words.into_iter().map(Token::into_owned).collect()
}

/// A read node's position, end line and heredoc bodies; where reading goes
/// on after the bodies (`None` without heredocs).
fn finish_node(map: &SourceMap<'_>, node: &mut Node<'_>, first_span: Span, instr_end: usize) -> Result<Option<usize>, DockerfileError> {
    node.span = first_span;
    node.end_line = map.line(instr_end.saturating_sub(1)).max(first_span.line);
    if node.can_contain_heredoc() && has_double_lt(&node.original) {
        let docs = heredocs_from_line(&node.original).map_err(|m| map.error(ErrorKind::Syntax, first_span, m))?;
        if !docs.is_empty() {
            let resume = read_heredoc_bodies(map, instr_end, docs, node, first_span)?;
            node.end_line = map.line(resume.saturating_sub(1));
            return Ok(Some(resume));
        }
    }
    Ok(None)
}

/// What [`parse_each`] gives besides the nodes.
pub(crate) struct Parsed<'a> {
    pub directives: Vec<Directive>,
    pub escape: char,
    /// The source map (so the typed layer need not build it again).
    pub map: SourceMap<'a>,
}

/// Parses Dockerfile bytes, handing each node to `each` (with the source
/// map and the escape character) as soon as it is read.
pub(crate) fn parse_each<'a>(
    source: &'a [u8],
    file: &'a str,
    mut each: impl FnMut(&SourceMap<'a>, char, ReadNode<'a, '_>) -> Option<Node<'a>>,
) -> Result<Parsed<'a>, DockerfileError> {
    let text = match std::str::from_utf8(source) {
        Ok(t) => t,
        Err(e) => {
            let good = std::str::from_utf8(&source[..e.valid_up_to()]).unwrap_or_default();
            let map = SourceMap::new(good, file);
            let span = map.span(good.len());
            return Err(map.error(
                ErrorKind::Encoding,
                span,
                format!("the Dockerfile is not UTF-8 text (invalid byte 0x{:02x})", source[e.valid_up_to()]),
            ));
        }
    };
    let map = SourceMap::new(text, file);
    if let Some(i) = map.first_nul() {
        return Err(map.error(ErrorKind::Encoding, map.span(i), "the Dockerfile contains a NUL byte"));
    }
    if let Some(offset) = map.first_line_longer_than(MAX_LINE_BYTES) {
        return Err(map.error(
            ErrorKind::Encoding,
            map.span(offset),
            format!("dockerfile line greater than max allowed size of {MAX_LINE_BYTES}"),
        ));
    }
    let start = if text.starts_with('\u{FEFF}') { 3 } else { 0 };
    let (directives, escape) = parse_directives(&map, start)?;
    let mut any_node = false;
    let mut spare: (Vec<Token<'a>>, Vec<Token<'a>>) = (Vec::new(), Vec::new());
    let mut pos = start;
    // Heredoc bodies are raw lines, known only once their instruction's line
    // has been lexed. The grammar reads them as lines like any other; the
    // driver then skips what it read inside the bodies and goes on after
    // them, in the same pest run, when that point is a line the run started
    // afresh (no token spans it). When a token does span it (a body line
    // continued into the line after the bodies), the text after the bodies
    // is read again, and from then on in windows cut after each line with
    // `<<` (which bounds what is read twice).
    let mut cut_windows = false;
    // The driver may not cut a window before this offset (set when an
    // instruction continued past the end of the previous window).
    let mut min_end = start;
    let rule = if escape == '`' { Rule::chunk_bt } else { Rule::chunk_bs };
    'windows: while pos < text.len() {
        let end = if cut_windows { window_end(text, pos.max(min_end)) } else { text.len() };
        let pairs = DockerfileGrammar::parse(rule, &text[pos..end]).map_err(|e| {
            // The grammar accepts any text; this is a bug guard, not user error.
            map.error(ErrorKind::Syntax, map.span(pos), format!("cannot parse the Dockerfile here: {e}"))
        })?;
        let window_start = pos;
        // Where the last heredoc's bodies ended, while tokens before it are skipped.
        let mut after_bodies: Option<usize> = None;
        let Some(chunk) = pairs.into_iter().next() else { break };
        for instruction in chunk.into_inner() {
            let one_line = matches!(instruction.as_rule(), Rule::instruction_bs | Rule::instruction_bt);
            if !one_line && !matches!(instruction.as_rule(), Rule::continued_bs | Rule::continued_bt) {
                continue;
            }
            let span = instruction.as_span();
            let (instr_start, instr_end) = (window_start + span.start(), window_start + span.end());
            if let Some(resume) = after_bodies {
                if instr_end <= resume {
                    continue;
                }
                if instr_start < resume {
                    pos = resume;
                    min_end = resume;
                    cut_windows = true;
                    continue 'windows;
                }
            }
            // A continuation mark on the window's last line: the instruction
            // may go on in lines this window does not have.
            // (Its last line then ends in a mark, or only comments, blank
            // lines or the window's end follow the last mark.)
            let window_len = end - window_start;
            let continues = !one_line
                && end < text.len()
                && span.end() == window_len
                && instruction.clone().into_inner().filter(|p| p.as_rule() != Rule::comment).last().is_some_and(|p| {
                    matches!(p.as_rule(), Rule::continue_mark_bs | Rule::continue_mark_bt) || last_line_text(p.as_str()).is_empty()
                });
            if continues {
                // The instruction goes on past this window: read it again in a longer one.
                pos = instr_start;
                min_end = end;
                continue 'windows;
            }
            let (line, line_map, first) = join_instruction(&map, window_start, instruction);
            let first_span = map.span(first);
            let syntax_error = |message| map.error(ErrorKind::Syntax, first_span, message);
            let (args, flags) = (std::mem::take(&mut spare.0), std::mem::take(&mut spare.1));
            any_node = true;
            let given_back = match line {
                Cow::Borrowed(line) => {
                    let mut node = node_from_line(line, 0, escape, &line_map, args, flags).map_err(syntax_error)?;
                    node.original = Cow::Borrowed(line);
                    after_bodies = finish_node(&map, &mut node, first_span, instr_end)?;
                    each(&map, escape, ReadNode::Source(node))
                }
                Cow::Owned(line) => {
                    let mut node = node_from_line(&line, 0, escape, &line_map, args, flags).map_err(syntax_error)?;
                    node.original = Cow::Borrowed(&line);
                    after_bodies = finish_node(&map, &mut node, first_span, instr_end)?;
                    each(&map, escape, ReadNode::Joined(&node));
                    spare = (reuse(node.args), reuse(node.flags));
                    None
                }
            };
            // The node's word lists are kept for the next node (emptied).
            if let Some(node) = given_back {
                spare = (reuse(node.args), reuse(node.flags));
            }
        }
        pos = after_bodies.map_or(end, |resume| resume.max(end));
    }
    if !any_node {
        return Err(map.error(ErrorKind::Empty, map.span(text.len()), "file with no instructions"));
    }
    Ok(Parsed { directives, escape, map })
}

/// Whether the text has `<<` (a possible heredoc).
fn has_double_lt(s: &str) -> bool {
    let mut from = 0;
    while let Some(i) = s[from..].find('<') {
        if s.as_bytes().get(from + i + 1) == Some(&b'<') {
            return true;
        }
        from += i + 1;
    }
    false
}

/// Where the window starting at `from` ends: after the first line at or
/// after `from` containing `<<` (a possible heredoc), or at the end.
fn window_end(text: &str, from: usize) -> usize {
    match text[from..].find("<<") {
        Some(i) => text[from + i..].find('\n').map(|j| from + i + j + 1).unwrap_or(text.len()),
        None => text.len(),
    }
}

/// Reads the bodies of `docs` starting at `pos`; returns where reading stopped.
fn read_heredoc_bodies(
    map: &SourceMap<'_>,
    mut pos: usize,
    docs: Vec<Heredoc>,
    node: &mut Node,
    first_span: Span,
) -> Result<usize, DockerfileError> {
    let text = map.text;
    for mut doc in docs {
        let mut content = String::new();
        let mut terminated = false;
        while pos < text.len() {
            let end = text[pos..].find('\n').map(|i| pos + i + 1).unwrap_or(text.len());
            let raw = &text[pos..end];
            pos = end;
            let mut candidate = raw.trim_end_matches(['\r', '\n']);
            if doc.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == doc.name {
                terminated = true;
                break;
            }
            content.push_str(raw);
        }
        if !terminated {
            return Err(map.error(ErrorKind::Syntax, first_span, format!("unterminated heredoc: no line \"{}\" ends it", doc.name)));
        }
        doc.content = content;
        node.heredocs.push(doc);
    }
    Ok(pos)
}

/// Reads the parser directives at the top of the file.
fn parse_directives(map: &SourceMap<'_>, start: usize) -> Result<(Vec<Directive>, char), DockerfileError> {
    let text = map.text;
    let mut pos = start;
    let mut directives: Vec<Directive> = Vec::new();
    let mut escape = '\\';
    while pos < text.len() {
        // Only this line: a directive never spans lines, and pest's error for
        // the first line that is not one would otherwise scan the whole file.
        let line_end = text[pos..].find('\n').map(|i| pos + i + 1).unwrap_or(text.len());
        let Ok(mut pairs) = DockerfileGrammar::parse(Rule::directive_line, &text[pos..line_end]) else { break };
        let Some(line) = pairs.next() else { break };
        let end = pos + line.as_span().end();
        let mut name = String::new();
        let mut value = String::new();
        let mut span = map.span(pos);
        for p in line.into_inner() {
            match p.as_rule() {
                Rule::directive_name => {
                    name = p.as_str().to_ascii_lowercase();
                    span = map.span(pos + p.as_span().start());
                }
                Rule::directive_value => value = p.as_str().trim_end_matches([' ', '\t', '\r', '\u{0C}']).to_string(),
                _ => {}
            }
        }
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            break;
        }
        if directives.iter().any(|d| d.name == name) {
            return Err(map.error(ErrorKind::Directive, span, format!("only one {name} parser directive can be used")));
        }
        if name == "escape" {
            escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(map.error(
                        ErrorKind::Directive,
                        span,
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    ));
                }
            };
        }
        directives.push(Directive { name, value, span });
        pos = end;
    }
    Ok((directives, escape))
}

/// Joins the lines of one instruction; returns the line (borrowed from the
/// source when it is one line), its map back to the source, and where the
/// instruction starts.
///
/// A one-line `instruction` token is the line with its line feed, and the
/// carriage returns before it (the grammar leaves them in the text). A
/// `continued` one has the text of its lines as tokens.
fn join_instruction<'s, 'a>(map: &'s SourceMap<'a>, base: usize, instruction: Pair<'_, Rule>) -> (Cow<'a, str>, LineMap<'s, 'a>, usize) {
    let text = map.text;
    let span = instruction.as_span();
    let start = base + span.start();
    if matches!(instruction.as_rule(), Rule::instruction_bs | Rule::instruction_bt) {
        let mut end = base + span.end();
        if text[..end].ends_with('\n') {
            end -= 1;
        }
        while end > start && text.as_bytes()[end - 1] == b'\r' {
            end -= 1;
        }
        return (Cow::Borrowed(&text[start..end]), LineMap { map, base: start, pieces: Vec::new() }, start);
    }
    let mut single: Option<(usize, usize)> = None;
    let mut joined: Option<(String, Vec<(usize, usize)>)> = None;
    let texts = instruction.into_inner().filter(|p| {
        matches!(
            p.as_rule(),
            Rule::first_text_bs | Rule::first_text_bt | Rule::line_text_bs | Rule::line_text_bt | Rule::last_line_bs | Rule::last_line_bt
        )
    });
    for part in texts {
        let span = part.as_span();
        let (start, mut end) = (base + span.start(), base + span.end());
        if matches!(part.as_rule(), Rule::last_line_bs | Rule::last_line_bt) {
            end = start + last_line_text(part.as_str()).len();
        }
        if let Some((line, pieces)) = &mut joined {
            pieces.push((line.len(), start));
            line.push_str(&text[start..end]);
        } else if let Some((s, e)) = single.take() {
            let mut line = String::with_capacity(e - s + (end - start) + 64);
            line.push_str(&text[s..e]);
            line.push_str(&text[start..end]);
            joined = Some((line, vec![(0, s), (e - s, start)]));
        } else {
            single = Some((start, end));
        }
    }
    match (joined, single) {
        (Some((line, pieces)), _) => (Cow::Owned(line), LineMap { map, base, pieces }, start),
        (None, Some((s, e))) => (Cow::Borrowed(&text[s..e]), LineMap { map, base: s, pieces: Vec::new() }, start),
        (None, None) => (Cow::Borrowed(""), LineMap { map, base, pieces: Vec::new() }, start),
    }
}

/// The text of a continued instruction's last line: without the carriage
/// returns before its line end, and empty when it has only blanks (that is
/// a blank line at the end of the file).
fn last_line_text(line: &str) -> &str {
    let text = line.trim_end_matches('\r');
    if text.chars().all(|c| c != '\n' && words::is_go_space(c)) { "" } else { text }
}

/// Builds the node for one joined line (BuildKit's `newNodeFromLine`); `base`
/// is where `line` starts within the instruction's joined line. The caller
/// sets the node's span and original text (an ONBUILD trigger's are set here).
/// `args` and `flags` are empty vectors to fill (the driver reuses them).
fn node_from_line<'l>(
    line: &'l str,
    base: usize,
    escape: char,
    lm: &LineMap<'_, '_>,
    mut args: Vec<Token<'l>>,
    mut flags: Vec<Token<'l>>,
) -> Result<Node<'l>, String> {
    let split = words::split_command(line, escape, &mut flags);
    let name = words::keyword_lower(split.command.text);
    let rest = split.rest.text;
    let rest_at = split.rest.offset;
    let mut json = false;
    let mut child = None;
    match &*name {
        "add" | "copy" | "volume" => {
            json = parse_json(rest, rest_at, &mut args)?;
            if !json {
                whitespace_words(rest, rest_at, &mut args);
            }
        }
        "cmd" | "entrypoint" | "run" | "shell" => json = maybe_json(rest, rest_at, &mut args)?,
        "arg" => words::parse_words(rest, escape, |w, at| args.push(Piece::borrowed(w, rest_at + at))),
        "env" | "label" => name_values(rest, rest_at, split.command.text, escape, &mut args)?,
        "expose" | "from" => whitespace_words(rest, rest_at, &mut args),
        "healthcheck" => json = health_config(rest, rest_at, &mut args)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !rest.is_empty() {
                args.push(Piece::borrowed(rest, rest_at));
            }
        }
        "onbuild" => {
            if !rest.is_empty() {
                let mut trigger = node_from_line(rest, base + rest_at, escape, lm, Vec::new(), Vec::new())?;
                let keyword_span = lm.span(trigger.keyword_at);
                trigger.span = keyword_span;
                trigger.end_line = keyword_span.line;
                trigger.original = Cow::Borrowed(rest);
                child = Some(Box::new(trigger));
            }
        }
        // BuildKit's parser keeps unknown instructions (with one empty
        // argument); the instruction layer rejects them.
        _ => args.push(Piece::borrowed("", rest_at)),
    }
    // Offsets in the line become offsets in the Dockerfile.
    for t in args.iter_mut().chain(flags.iter_mut()) {
        t.at = lm.at(base + t.at);
    }
    Ok(Node {
        keyword: Cow::Borrowed(split.command.text),
        keyword_at: base + split.command.offset,
        lower: name,
        flags,
        args,
        child,
        json,
        heredocs: Vec::new(),
        original: Cow::Borrowed(""),
        span: Span::default(),
        end_line: 0,
    })
}

fn whitespace_words<'l>(rest: &'l str, at: usize, out: &mut Vec<Piece<'l>>) {
    if !rest.is_empty() {
        split_blanks(rest, at, None, out);
    }
}

/// The exec form's strings, or the shell form's one string; whether it was the exec form.
fn maybe_json<'l>(rest: &'l str, at: usize, out: &mut Vec<Piece<'l>>) -> Result<bool, String> {
    if rest.is_empty() {
        return Ok(false);
    }
    if parse_json(rest, at, out)? {
        return Ok(true);
    }
    out.push(Piece::borrowed(rest, at));
    Ok(false)
}

fn health_config<'l>(rest: &'l str, at: usize, out: &mut Vec<Piece<'l>>) -> Result<bool, String> {
    let is_sep = |c: char| c.is_ascii() && words::is_go_space(c);
    let sep = rest.find(is_sep).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(false);
    }
    let next = rest[sep..].find(|c: char| !is_sep(c)).map(|i| sep + i).unwrap_or(rest.len());
    out.push(Piece::borrowed(&rest[..sep], at));
    maybe_json(&rest[next..], at + next, out)
}

fn name_values<'l>(rest: &'l str, at: usize, keyword: &str, escape: char, out: &mut Vec<Piece<'l>>) -> Result<(), String> {
    // The first word says the form: `name=value …`, or the legacy `name value`.
    let mut legacy = None;
    let mut error = None;
    words::parse_words(rest, escape, |w, offset| {
        if *legacy.get_or_insert(!w.contains('=')) || error.is_some() {
            return;
        }
        let Some((k, v)) = w.split_once('=') else {
            error = Some(format!("Syntax error - can't find = in {}. Must be of the form: name=value", go_quote(w)));
            return;
        };
        let o = at + offset;
        out.push(Piece::borrowed(k, o));
        out.push(Piece::borrowed(v, o + k.len() + 1));
        out.push(Piece::borrowed("=", o + k.len()));
    });
    if let Some(e) = error {
        return Err(e);
    }
    if legacy == Some(true) {
        let first = out.len();
        split_blanks(rest, at, Some(2), out);
        if out.len() - first != 2 {
            return Err(format!("{} must have two arguments", keyword.to_uppercase()));
        }
        let v = &out[first + 1];
        let end = v.at + v.text.len();
        out.push(Piece::borrowed("", end));
    }
    Ok(())
}

/// The exec form: `true` (and the strings pushed to `out`) when `rest` is
/// one JSON array of strings, `false` when it is not JSON (shell form), an
/// error for a JSON array of something else.
pub(crate) fn parse_json<'l>(rest: &'l str, at: usize, out: &mut Vec<Piece<'l>>) -> Result<bool, String> {
    let trimmed = rest.trim_start_matches(words::is_go_space);
    let at = at + (rest.len() - trimmed.len());
    if !trimmed.starts_with('[') {
        return Ok(false);
    }
    if plain_string_array(trimmed, at, out) {
        return Ok(true);
    }
    if too_deep(trimmed) {
        return Ok(false);
    }
    let Ok(mut pairs) = DockerfileGrammar::parse(Rule::exec_form, trimmed) else { return Ok(false) };
    let Some(array) = pairs.next().and_then(|p| p.into_inner().find(|p| p.as_rule() == Rule::json_array)) else {
        return Ok(false);
    };
    let first = out.len();
    for element in array.clone().into_inner() {
        if element.as_rule() != Rule::json_string {
            out.truncate(first);
            // Go rejects numbers out of float64 range and raw control
            // characters in strings anywhere in the document: then the line
            // is not JSON (shell form). Otherwise it is an error.
            let flat = array.into_inner().flatten();
            let not_json = flat.clone().any(|p| match p.as_rule() {
                Rule::json_number => p.as_str().parse::<f64>().map(|f| f.is_infinite()).unwrap_or(true),
                Rule::json_string => p.as_str().bytes().any(|b| b < 0x20),
                _ => false,
            });
            if not_json {
                return Ok(false);
            }
            return Err("when using JSON array syntax, arrays must be comprised of strings only".into());
        }
        // The token includes its quotes.
        let start = element.as_span().start();
        let chars = trimmed.get(start + 1..element.as_span().end().saturating_sub(1)).unwrap_or_default();
        if chars.bytes().any(|b| b < 0x20) {
            out.truncate(first);
            return Ok(false);
        }
        out.push(Piece { text: json_unescape(chars), at: at + start });
    }
    Ok(true)
}

/// The common exec form, `["a", "b"]` with strings of plain characters (no
/// escapes, no control characters) and JSON blanks: the strings as written
/// are pushed to `out`. `false` (and `out` unchanged) for anything else,
/// which the grammar's `exec_form` then decides. (Such text is JSON for Go
/// exactly when it has this shape, so both agree.)
fn plain_string_array<'l>(s: &'l str, at: usize, out: &mut Vec<Piece<'l>>) -> bool {
    let b = s.as_bytes();
    let blanks = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    let first = out.len();
    let mut i = 1;
    blanks(&mut i);
    if b.get(i) == Some(&b']') {
        i += 1;
    } else {
        loop {
            let end = (b.get(i) == Some(&b'"'))
                .then(|| b[i + 1..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20))
                .flatten()
                .map(|len| i + 1 + len)
                .filter(|&end| b[end] == b'"');
            let Some(end) = end else {
                out.truncate(first);
                return false;
            };
            out.push(Piece::borrowed(&s[i + 1..end], at + i));
            i = end + 1;
            blanks(&mut i);
            match b.get(i) {
                Some(b',') => {
                    i += 1;
                    blanks(&mut i);
                }
                Some(b']') => {
                    i += 1;
                    break;
                }
                _ => {
                    out.truncate(first);
                    return false;
                }
            }
        }
    }
    blanks(&mut i);
    if i != b.len() {
        out.truncate(first);
        return false;
    }
    true
}

/// Guards the recursive grammar against absurd nesting.
fn too_deep(s: &str) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in s.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > 64 {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Decodes the inside of a JSON string as Go does (bad surrogates become U+FFFD).
fn json_unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    let hex4 = |it: &mut std::str::Chars<'_>| -> Option<u32> {
        let h: String = it.by_ref().take(4).collect();
        u32::from_str_radix(&h, 16).ok()
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{08}'),
            Some('f') => out.push('\u{0C}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let Some(u) = hex4(&mut chars) else { continue };
                if (0xD800..0xDC00).contains(&u) {
                    // A high surrogate pairs with an immediately following low one.
                    let mut look = chars.clone();
                    if look.next() == Some('\\') && look.next() == Some('u')
                        && let Some(lo) = hex4(&mut look)
                            && (0xDC00..0xE000).contains(&lo) {
                                let c = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                                out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                                chars = look;
                                continue;
                            }
                    out.push('\u{FFFD}');
                } else {
                    out.push(char::from_u32(u).unwrap_or('\u{FFFD}'));
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

/// The heredocs an instruction line starts, in order (BuildKit lexes the
/// whole line with quotes and escapes kept and looks for `<<` words).
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut docs = Vec::new();
    if is_plain_for_lexer(line) && !line.split("<<").skip(1).any(|after| after.starts_with(['\t', '\r', ' '])) {
        // Without quotes, escapes or variables, and with no blanks glued to a
        // `<<`, the lexer's words are the blank-separated parts.
        for w in line.split(words::is_go_space).filter(|w| !w.is_empty()) {
            if let Some(doc) = parse_heredoc(w)? {
                docs.push(doc);
            }
        }
        return Ok(docs);
    }
    let lexer = Lexer { raw_quotes: true, raw_escapes: true, skip_unset_env: true, ..Lexer::new('\\') };
    let Ok((_, words)) = lexer.process(line, &NoEnv) else { return Ok(Vec::new()) };
    for w in words {
        if let Some(doc) = parse_heredoc(&w)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Text the shell lexer reads as it is: no quotes, escapes or variables.
fn is_plain_for_lexer(s: &str) -> bool {
    !s.bytes().any(|b| matches!(b, b'\'' | b'"' | b'\\' | b'$'))
}

/// Reads a heredoc marker word such as `<<EOF`, `<<-"EOF"` or `3<<EOF`.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(after) = word[digits..].strip_prefix("<<") else { return Ok(None) };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, after),
    };
    let rest = after.trim_start_matches([' ', '\t', '\n', '\r', '\u{0C}']);
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    let fd = word[..digits].parse::<u32>().unwrap_or(0);
    if is_plain_for_lexer(rest) && !rest.contains(words::is_go_space) {
        // The lexer would give `rest` back as the one word: a plain name.
        return Ok(Some(Heredoc { name: rest.to_string(), fd, expand: true, chomp, content: String::new() }));
    }
    let plain = Lexer { skip_unset_env: true, ..Lexer::new('\\') };
    let (_, words) = plain.process(rest, &NoEnv).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = Lexer { raw_quotes: true, ..plain };
    let (_, raw_words) = raw.process(rest, &NoEnv).map_err(|e| e.to_string())?;
    if raw_words.len() != words.len() {
        return Err(format!("internal lexing of heredoc produced inconsistent results: {rest}"));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let name = words[0].clone();
    let expand = quotes(&name) == quotes(&raw_words[0]);
    Ok(Some(Heredoc { name, fd, expand, chomp, content: String::new() }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_markers() {
        let h = parse_heredoc("<<-\"EOF\"").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.chomp, h.expand), ("EOF", true, false));
        let h = parse_heredoc("3<<END").unwrap().unwrap();
        assert_eq!((h.fd, h.expand), (3, true));
        assert!(parse_heredoc("cat<<EOF").unwrap().is_none());
    }

    #[test]
    fn spans_point_at_words_across_continuations() {
        let mut nodes = Vec::new();
        let parsed = parse_each(b"FROM a\nRUN --mount=type=cache,target=/x \\\n  echo hi\n", "Dockerfile", |_, _, read| {
            nodes.push(match read {
                ReadNode::Source(n) => n,
                ReadNode::Joined(n) => n.clone().into_owned(),
            });
            None
        })
        .unwrap();
        let (run, map) = (&nodes[1], &parsed.map);
        assert_eq!(run.span, Span { line: 2, column: 1 });
        assert_eq!(map.span(run.flags[0].at), Span { line: 2, column: 5 });
        assert_eq!(run.args[0].text, "echo hi");
        assert_eq!(map.span(run.args[0].at), Span { line: 3, column: 3 });
    }
}
