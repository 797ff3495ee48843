//! A strict reader for the small YAML subset the `deploy/` files use, into `serde_json::Value`:
//! block mappings and sequences indented with spaces, plain / single- / double-quoted scalars,
//! `|` and `>` block scalars, one-line flow lists of scalars, and full-line comments. Anything
//! else (tabs, anchors, flow mappings, odd indentation, duplicate keys) is an error, so the
//! files stay in a shape this check understands. Scalars are kept as strings.

use serde_json::{Map, Value};

/// Parses `text`.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut lines = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let content = raw.trim_start_matches(' ');
        if content.starts_with('\t') {
            return Err(format!("line {}: tab in indentation", n + 1));
        }
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        lines.push(Line {
            number: n + 1,
            indent: raw.len() - content.len(),
            text: content.trim_end().to_string(),
        });
    }
    let mut p = Parser { lines, pos: 0 };
    if p.lines.is_empty() {
        return Ok(Value::Null);
    }
    if p.lines[0].indent != 0 {
        return Err("the document must start at column 0".into());
    }
    let value = p.node(0)?;
    match p.lines.get(p.pos) {
        Some(l) => Err(format!("line {}: unexpected indentation", l.number)),
        None => Ok(value),
    }
}

struct Line {
    number: usize,
    indent: usize,
    text: String,
}

struct Parser {
    lines: Vec<Line>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Line> {
        self.lines.get(self.pos)
    }

    fn node(&mut self, indent: usize) -> Result<Value, String> {
        match self.peek() {
            Some(l) if is_item(&l.text) => self.sequence(indent),
            _ => self.mapping(indent),
        }
    }

    fn sequence(&mut self, indent: usize) -> Result<Value, String> {
        let mut items = Vec::new();
        while let Some(l) = self.lines.get_mut(self.pos) {
            if l.indent != indent || !is_item(&l.text) {
                break;
            }
            let rest = l.text[1..].trim_start().to_string();
            if rest.is_empty() {
                return Err(format!("line {}: empty sequence item", l.number));
            }
            if rest.contains(": ") || rest.ends_with(':') {
                // `- key: value` opens a mapping indented past the dash.
                l.indent = indent + 2;
                l.text = rest;
                items.push(self.mapping(indent + 2)?);
            } else {
                let number = l.number;
                self.pos += 1;
                items.push(scalar(&rest, number)?);
            }
        }
        Ok(Value::Array(items))
    }

    fn mapping(&mut self, indent: usize) -> Result<Value, String> {
        let mut map = Map::new();
        while let Some(l) = self.peek() {
            if l.indent < indent {
                break;
            }
            let number = l.number;
            if l.indent > indent || is_item(&l.text) {
                return Err(format!("line {number}: unexpected indentation or item"));
            }
            let (key, rest) = match l.text.split_once(": ") {
                Some((k, r)) => (k.to_string(), r.trim().to_string()),
                None if l.text.ends_with(':') => {
                    (l.text[..l.text.len() - 1].to_string(), String::new())
                }
                None => return Err(format!("line {number}: expected `key: value`")),
            };
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("line {number}: unsupported key `{key}`"));
            }
            self.pos += 1;
            let value = match rest.as_str() {
                "" => match self.peek() {
                    Some(n) if n.indent > indent => {
                        let child = n.indent;
                        self.node(child)?
                    }
                    Some(n) if n.indent == indent && is_item(&n.text) => self.sequence(indent)?,
                    _ => Value::Null,
                },
                "|" | "|-" | ">" | ">-" => self.block_scalar(indent, rest.starts_with('>')),
                _ => scalar(&rest, number)?,
            };
            if map.insert(key.clone(), value).is_some() {
                return Err(format!("line {number}: duplicate key `{key}`"));
            }
        }
        Ok(Value::Object(map))
    }

    /// The lines indented past `indent`, joined by newlines (`|`) or spaces (`>`).
    fn block_scalar(&mut self, indent: usize, folded: bool) -> Value {
        let mut parts = Vec::new();
        while let Some(l) = self.peek() {
            if l.indent <= indent {
                break;
            }
            parts.push(l.text.clone());
            self.pos += 1;
        }
        Value::String(parts.join(if folded { " " } else { "\n" }))
    }
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

fn scalar(text: &str, line: usize) -> Result<Value, String> {
    let err = |what: &str| Err(format!("line {line}: {what}: {text}"));
    if let Some(inner) = text.strip_prefix('"') {
        let Some(inner) = inner.strip_suffix('"') else {
            return err("unterminated double-quoted string");
        };
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    _ => return err("unsupported escape"),
                },
                '"' => return err("unescaped quote"),
                c => out.push(c),
            }
        }
        return Ok(Value::String(out));
    }
    if let Some(inner) = text.strip_prefix('\'') {
        let Some(inner) = inner.strip_suffix('\'') else {
            return err("unterminated single-quoted string");
        };
        if inner.replace("''", "").contains('\'') {
            return err("unescaped quote");
        }
        return Ok(Value::String(inner.replace("''", "'")));
    }
    if let Some(inner) = text.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return err("unterminated flow list");
        };
        return inner
            .split(',')
            .map(|item| scalar(item.trim(), line))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if text.starts_with(['{', '&', '*', '!', '%', '@', '`', '|', '>'])
        || text.contains(": ")
        || text.contains(" #")
    {
        return err("unsupported plain scalar");
    }
    Ok(Value::String(text.to_string()))
}

#[test]
fn the_subset_parses_and_rejects_what_it_does_not_know() {
    let doc = parse(
        "# c\na:\n  - name: x\n    rules:\n      - alert: A\n        expr: |\n          up\n            == 0\n        \
         labels:\n          severity: \"warn\"\nb: ['q', \"r\"]\nc:\n- 1\n",
    )
    .unwrap();
    assert_eq!(doc["a"][0]["rules"][0]["expr"], "up\n== 0");
    assert_eq!(doc["a"][0]["rules"][0]["labels"]["severity"], "warn");
    assert_eq!(doc["b"][1], "r");
    assert_eq!(doc["c"][0], "1");
    for bad in [
        "a: 1\na: 2\n",
        "a:\n\t- 1\n",
        "a: {b: 1}\n",
        "a: \"x\n",
        "a:\n  b: 1\n   c: 2\n",
        "a: b: c\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}
