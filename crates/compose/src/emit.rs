//! The YAML `compose config` prints: block style, keys sorted (as serde_json's map keeps them),
//! strings quoted only where YAML would read them as something else.

use serde_json::Value;

pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => block(v, 0, &mut out),
        Value::Array(a) if !a.is_empty() => block(v, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push_str(&pad);
                out.push_str(&string(k));
                out.push(':');
                value(v, indent + 2, out);
            }
        }
        Value::Array(a) => {
            for v in a {
                out.push_str(&pad);
                out.push('-');
                match v {
                    // A mapping in a list starts on the dash's line.
                    Value::Object(m) if !m.is_empty() => {
                        let mut inner = String::new();
                        block(v, indent + 2, &mut inner);
                        out.push(' ');
                        out.push_str(&inner[indent + 2..]);
                    }
                    _ => value(v, indent + 2, out),
                }
            }
        }
        _ => {}
    }
}

fn value(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(v, indent, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(v, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// A string as a YAML scalar: plain when it reads back as the same string, else double-quoted.
fn string(s: &str) -> String {
    let special = s.is_empty()
        || s != s.trim()
        || matches!(s.to_ascii_lowercase().as_str(), "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n")
        || s.parse::<f64>().is_ok()
        || s.starts_with(['-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`'])
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.chars().any(|c| c.is_control());
    if !special {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if c.is_control() => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_maps_lists_and_quoting() {
        let v = serde_json::json!({"services": {"web": {"command": ["sh", "-c", "echo: hi"], "ports": [{"target": 80, "published": "8080"}], "environment": {"A": "", "B": "true", "C": "x"}}}});
        assert_eq!(
            to_yaml(&v),
            "services:\n  web:\n    command:\n      - sh\n      - \"-c\"\n      - \"echo: hi\"\n    environment:\n      A: \"\"\n      B: \"true\"\n      C: x\n    ports:\n      - published: \"8080\"\n        target: 80\n"
        );
    }
}
