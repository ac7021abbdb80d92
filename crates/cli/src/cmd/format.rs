//! `--format` as Docker reads it, for every listing command: `table` (the default columns),
//! `table TEMPLATE` (a header and aligned columns), `json` (one JSON object a line), or a Go
//! template printed once per row. Templates are Go's text/template (the `gotmpl` crate) with
//! Docker's extra functions (`json`, `join`, `split`, `upper`, `lower`, `title`, `pad`,
//! `truncate`, `println`). A row is a JSON object whose keys are the fields a template names
//! (`{{.ID}}`, `{{.Repository}}`…); a table's header is the same template run over the fields'
//! column titles.

use std::io::Write;

use anyhow::{Context, bail};
use gotmpl::{Template, TemplateError, Value};

/// The end every `ls` shares: with `quiet`, each item's `key` on a line; else the items' rows
/// (`row`) through `--format` (`default_table` when it is not given), under the column `titles`.
pub fn list<T>(items: &[T], quiet: bool, key: impl Fn(&T) -> String, format: Option<&str>, default_table: &str, titles: &[(&str, &str)], row: impl Fn(&T) -> serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if quiet {
        for item in items {
            writeln!(out, "{}", key(item))?;
        }
        return Ok(());
    }
    let format = Format::parse(format, default_table)?;
    let rows: Vec<serde_json::Value> = items.iter().map(row).collect();
    format.write(&mut out, titles, &rows)
}

/// What `--format` asked for.
pub enum Format {
    /// A table: header and rows aligned as Docker's tabwriter does.
    Table(Template),
    /// One template execution per row.
    Rows(Template),
}

impl Format {
    /// Parses `--format` (None or "table": the command's `default_table`, itself `table …`).
    pub fn parse(flag: Option<&str>, default_table: &str) -> anyhow::Result<Format> {
        let text = match flag.map(str::trim) {
            None | Some("" | "table") => default_table,
            Some(t) => t,
        };
        // Docker lets a shell-quoted `\t` stand for a tab.
        let text = text.replace("\\t", "\t").replace("\\n", "\n");
        if text == "json" {
            return Ok(Format::Rows(compile("{{json .}}", "json")?));
        }
        match text.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with([' ', '\t']) => {
                let rest = rest.trim_start_matches(' ');
                Ok(Format::Table(compile(rest, &text)?))
            }
            _ => Ok(Format::Rows(compile(&text, &text)?)),
        }
    }

    /// Writes `rows`. `titles` maps each field to its column title (`ID` -> `IMAGE ID`), for the
    /// header of a table.
    pub fn write(&self, out: &mut impl Write, titles: &[(&str, &str)], rows: &[serde_json::Value]) -> anyhow::Result<()> {
        match self {
            Format::Rows(t) => {
                for row in rows {
                    let line = execute(t, row)?;
                    writeln!(out, "{line}")?;
                }
            }
            Format::Table(t) => {
                let mut tw = tabwriter::TabWriter::new(Vec::new()).minwidth(7).padding(3);
                let header: serde_json::Map<String, serde_json::Value> = titles.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect();
                // Go's tabwriter(minwidth 10, padding 3) as Docker sets it: this crate's minwidth excludes the padding.
                // A template naming no known column (`table {{"x"}}`) still gets a header line.
                writeln!(tw, "{}", execute(t, &serde_json::Value::Object(header))?)?;
                for row in rows {
                    writeln!(tw, "{}", execute(t, row)?)?;
                }
                tw.flush()?;
                let bytes = tw.into_inner().context("aligning the table")?;
                // tabwriter pads the last cell of a line that ends in a tab; Docker's lines end with the text.
                for line in String::from_utf8_lossy(&bytes).lines() {
                    writeln!(out, "{}", line.trim_end())?;
                }
            }
        }
        Ok(())
    }
}

fn compile(text: &str, shown: &str) -> anyhow::Result<Template> {
    let t = Template::new("")
        .missing_key(gotmpl::MissingKey::Error)
        .func("json", |a| {
            let [v] = a else { return Err(arity("json", 1, a.len())) };
            Ok(Value::String(serde_json::to_string(&to_json(v)).unwrap_or_default().into()))
        })
        .func("join", |a| {
            let [list, sep] = a else { return Err(arity("join", 2, a.len())) };
            let sep = sep.as_str().unwrap_or_default();
            let parts: Vec<String> = match list {
                Value::List(l) => l.iter().map(plain).collect(),
                other => vec![plain(other)],
            };
            Ok(Value::String(parts.join(sep).into()))
        })
        .func("split", |a| {
            let [s, sep] = a else { return Err(arity("split", 2, a.len())) };
            let (s, sep) = (plain(s), plain(sep));
            Ok(Value::List(s.split(sep.as_str()).map(|p| Value::String(p.into())).collect()))
        })
        .func("upper", |a| one_string("upper", a, |s| s.to_uppercase()))
        .func("lower", |a| one_string("lower", a, |s| s.to_lowercase()))
        .func("title", |a| {
            one_string("title", a, |s| {
                s.split(' ')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
                    })
                    .collect::<Vec<String>>()
                    .join(" ")
            })
        })
        .func("pad", |a| {
            let [s, l, r] = a else { return Err(arity("pad", 3, a.len())) };
            let (l, r) = (l.as_int().unwrap_or(0).max(0) as usize, r.as_int().unwrap_or(0).max(0) as usize);
            Ok(Value::String(format!("{}{}{}", " ".repeat(l), plain(s), " ".repeat(r)).into()))
        })
        .func("truncate", |a| {
            let [s, n] = a else { return Err(arity("truncate", 2, a.len())) };
            let n = n.as_int().unwrap_or(0).max(0) as usize;
            Ok(Value::String(plain(s).chars().take(n).collect::<String>().into()))
        })
        .func("println", |a| Ok(Value::String(format!("{}\n", a.iter().map(plain).collect::<Vec<_>>().join(" ")).into())));
    t.parse(text).map_err(|e| anyhow::anyhow!("--format {shown:?}: {e}"))
}

fn execute(t: &Template, row: &serde_json::Value) -> anyhow::Result<String> {
    let data = gotmpl::to_value(row).map_err(|e| anyhow::anyhow!("--format: {e}"))?;
    match t.execute_to_string(&data) {
        Ok(s) => Ok(s),
        Err(TemplateError::MissingKey { key: k }) => bail!("--format: the template names a field that is not there: {k} (fields: {})", fields(row)),
        Err(e) => bail!("--format: {e}"),
    }
}

fn fields(row: &serde_json::Value) -> String {
    row.as_object().map(|o| o.keys().map(|k| format!(".{k}")).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

fn arity(name: &str, expected: usize, got: usize) -> TemplateError {
    TemplateError::ArgCount { name: name.to_string(), expected, got }
}

fn one_string(name: &str, a: &[Value], f: impl Fn(&str) -> String) -> gotmpl::Result<Value> {
    let [s] = a else { return Err(arity(name, 1, a.len())) };
    Ok(Value::String(f(&plain(s)).into()))
}

/// A value as `{{.}}` prints it.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Nil => String::new(),
        other => other.to_string(),
    }
}

/// The template value back as JSON, for `{{json .}}`.
fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Uint(u) => (*u).into(),
        Value::Float(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null),
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::List(l) => serde_json::Value::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => serde_json::Value::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
        #[allow(unreachable_patterns)]
        _ => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(flag: &str, rows: &[serde_json::Value]) -> String {
        let mut out = Vec::new();
        Format::parse(Some(flag), "table {{.ID}}\t{{.Name}}").expect("parse").write(&mut out, &[("ID", "ID"), ("Name", "NAME")], rows).expect("write");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn tables_align_like_dockers_tabwriter() {
        let rows = [serde_json::json!({"ID": "abc", "Name": "first"}), serde_json::json!({"ID": "abcdefghijkl", "Name": "x"})];
        assert_eq!(render("table", &rows), "ID             NAME\nabc            first\nabcdefghijkl   x\n");
        assert_eq!(render("table {{.Name}}\\t{{.ID}}", &rows), "NAME      ID\nfirst     abc\nx         abcdefghijkl\n");
    }

    #[test]
    fn rows_json_and_functions() {
        let rows = [serde_json::json!({"ID": "abc", "Name": "first", "Labels": "a=1,b=2"})];
        assert_eq!(render("{{.Name}}:{{.ID}}", &rows), "first:abc\n");
        assert_eq!(render("json", &rows), "{\"ID\":\"abc\",\"Labels\":\"a=1,b=2\",\"Name\":\"first\"}\n");
        assert_eq!(render("{{upper .Name}} {{join (split .Labels \",\") \"|\"}} {{truncate .ID 2}}", &rows), "FIRST a=1|b=2 ab\n");
    }

    #[test]
    fn a_bad_template_or_field_is_named() {
        let err = Format::parse(Some("{{.Name"), "table").err().expect("error").to_string();
        assert!(err.contains("--format \"{{.Name\""), "{err}");
        let mut out = Vec::new();
        let err = Format::parse(Some("{{.Nope}}"), "table").expect("parse").write(&mut out, &[], &[serde_json::json!({"ID": "x"})]).expect_err("error").to_string();
        assert!(err.contains("Nope") && err.contains(".ID"), "{err}");
    }
}
