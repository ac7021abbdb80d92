//! YAML text -> a tree of nodes that remember where they came from (file, line, column), so
//! every later error (a bad interpolation, an unknown key, a wrong type) can name the place.
//!
//! The events come from `saphyr-parser` (YAML 1.2). Anchors and aliases are resolved here, and
//! so are merge keys (`<<: *defaults`), which Compose files use to share service fragments.

use std::path::Path;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::error::{Error, Loc};

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// A scalar as written; `plain` scalars get their type (null, bool, number, string) from
    /// the field they land in, quoted ones are always strings.
    Scalar { value: String, plain: bool },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain: true } if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key and value of `key` in a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(k, v)| (k, v)),
            _ => None,
        }
    }
}

/// Parses one YAML document (an empty file is an empty mapping).
pub fn parse(file: &Path, text: &str) -> Result<Node, Error> {
    let file: Arc<Path> = Arc::from(file);
    let mut b = Builder { file: file.clone(), stack: Vec::new(), anchors: Vec::new(), root: None };
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e| Error::Yaml {
            loc: Loc { file: file.clone(), line: e.marker().line(), col: e.marker().col() + 1 },
            message: e.info().to_string(),
        })?;
        if matches!(ev, Event::DocumentStart(_)) {
            documents += 1;
            if documents > 1 {
                return Err(Error::Yaml { loc: b.loc(span), message: "a compose file holds one YAML document; found a second `---`".into() });
            }
        }
        b.event(ev, span)?;
    }
    let root = b.root.unwrap_or(Node { kind: Kind::Map(Vec::new()), loc: Loc { file, line: 1, col: 1 } });
    if root.is_null() {
        return Ok(Node { kind: Kind::Map(Vec::new()), loc: root.loc });
    }
    Ok(root)
}

enum Open {
    Seq(Node, usize),
    /// The mapping, its anchor, the key waiting for its value, and the keys a merge (`<<`) put
    /// there (which the mapping's own keys may override).
    Map(Node, usize, Option<Node>, Vec<String>),
}

struct Builder {
    file: Arc<Path>,
    stack: Vec<Open>,
    anchors: Vec<(usize, Node)>,
    root: Option<Node>,
}

impl Builder {
    fn loc(&self, span: Span) -> Loc {
        Loc { file: self.file.clone(), line: span.start.line(), col: span.start.col() + 1 }
    }

    fn event(&mut self, ev: Event<'_>, span: Span) -> Result<(), Error> {
        let loc = self.loc(span);
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let plain = matches!(style, ScalarStyle::Plain);
                if let Some(tag) = tag {
                    // `!!str 80` is a string; other tags (Compose's `!reset`, `!override`) are not ours.
                    if !(tag.handle == "tag:yaml.org,2002:" && tag.suffix == "str") {
                        return Err(Error::Yaml { loc, message: format!("YAML tag {tag} is not supported") });
                    }
                    return self.push(Node { kind: Kind::Scalar { value: value.into_owned(), plain: false }, loc }, anchor);
                }
                self.push(Node { kind: Kind::Scalar { value: value.into_owned(), plain }, loc }, anchor)
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) if tag.is_some() => {
                let _ = anchor;
                let tag = tag.map(|t| t.to_string()).unwrap_or_default();
                Err(Error::Yaml { loc, message: format!("YAML tag {tag} is not supported") })
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Open::Seq(Node { kind: Kind::Seq(Vec::new()), loc }, anchor));
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Map(Node { kind: Kind::Map(Vec::new()), loc }, anchor, None, Vec::new()));
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq(node, anchor)) | Some(Open::Map(node, anchor, None, _)) => self.push(node, anchor),
                Some(Open::Map(..)) | None => Err(Error::Yaml { loc, message: "unbalanced YAML structure".into() }),
            },
            Event::Alias(id) => {
                let Some((_, node)) = self.anchors.iter().rev().find(|(a, _)| *a == id) else {
                    return Err(Error::Yaml { loc, message: "alias to an unknown anchor".into() });
                };
                let mut node = node.clone();
                node.loc = loc;
                self.push(node, 0)
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart(_) | Event::DocumentEnd | Event::Nothing => Ok(()),
        }
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), Error> {
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(seq, _)) => {
                if let Kind::Seq(items) = &mut seq.kind {
                    items.push(node);
                }
            }
            Some(Open::Map(_, _, key @ None, _)) => *key = Some(node),
            Some(Open::Map(map, _, key, merged)) => {
                let Some(k) = key.take() else { return Ok(()) };
                let Kind::Map(entries) = &mut map.kind else { return Ok(()) };
                insert(entries, merged, k, node)?;
            }
        }
        Ok(())
    }
}

/// Adds one entry to a mapping: a duplicate key is an error (as in Compose), and the merge key
/// `<<` copies in the entries of the mapping (or list of mappings) it names that are not
/// already there.
fn insert(entries: &mut Vec<(Node, Node)>, merged: &mut Vec<String>, key: Node, value: Node) -> Result<(), Error> {
    let Kind::Scalar { value: name, plain } = &key.kind else {
        return Err(Error::Yaml { loc: key.loc, message: "a mapping key must be a scalar".into() });
    };
    if *plain && name == "<<" {
        let sources = match value.kind {
            Kind::Map(_) => vec![value],
            Kind::Seq(items) => items,
            _ => return Err(Error::Yaml { loc: value.loc, message: "the merge key << takes a mapping or a list of mappings".into() }),
        };
        for source in sources {
            let Kind::Map(from) = source.kind else {
                return Err(Error::Yaml { loc: source.loc, message: "the merge key << takes a mapping or a list of mappings".into() });
            };
            for (k, v) in from {
                if !entries.iter().any(|(e, _)| e.as_str() == k.as_str()) {
                    merged.push(k.as_str().unwrap_or_default().to_string());
                    entries.push((k, v));
                }
            }
        }
        return Ok(());
    }
    if let Some(pos) = entries.iter().position(|(k, _)| k.as_str() == Some(name)) {
        // A key a merge (<<) brought in is overridden by the mapping's own; two own keys clash.
        let Some(m) = merged.iter().position(|m| m == name) else {
            return Err(Error::Yaml { loc: key.loc, message: format!("duplicate key `{name}` (first at line {})", entries[pos].0.loc.line) });
        };
        merged.remove(m);
        entries[pos] = (key, value);
        return Ok(());
    }
    entries.push((key, value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Node, Error> {
        parse(Path::new("compose.yaml"), text)
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let n = p("services:\n  web:\n    image: busybox\n").unwrap();
        let image = n.get("services").unwrap().get("web").unwrap().get("image").unwrap();
        assert_eq!((image.loc.line, image.loc.col), (3, 12));
        assert_eq!(image.as_str(), Some("busybox"));
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let e = p("services:\n  web:\n    image: [busybox\n").unwrap_err().to_string();
        assert!(e.starts_with("compose.yaml:"), "{e}");
    }

    #[test]
    fn anchors_aliases_and_merge_keys_resolve() {
        let n = p("x-base: &base\n  image: busybox\n  user: nobody\nservices:\n  a:\n    <<: *base\n    user: root\n").unwrap();
        let a = n.get("services").unwrap().get("a").unwrap();
        assert_eq!(a.get("image").unwrap().as_str(), Some("busybox"));
        assert_eq!(a.get("user").unwrap().as_str(), Some("root"));
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let e = p("services:\n  web:\n    image: a\n    image: b\n").unwrap_err().to_string();
        assert!(e.contains("compose.yaml:4:") && e.contains("duplicate key `image`"), "{e}");
    }

    #[test]
    fn empty_file_is_an_empty_mapping() {
        assert!(matches!(p("").unwrap().kind, Kind::Map(ref m) if m.is_empty()));
    }
}
