//! An operation's fingerprint: what a retry must repeat for its key to
//! replay. The document with its whitespace, commas and comments collapsed,
//! the operation name, and the variables with their keys sorted, hashed
//! with SHA-256.

use async_graphql::{Value, Variables};
use sha2::{Digest, Sha256};

use crate::digest::hex;

/// The fingerprint of running `document`'s operation `name` with `variables`.
pub fn fingerprint(document: &str, name: Option<&str>, variables: &Variables) -> String {
    let mut hash = Sha256::new();
    hash.update(collapsed(document).as_bytes());
    hash.update([0]);
    hash.update(name.unwrap_or_default().as_bytes());
    hash.update([0]);
    let mut canonical = String::new();
    write_sorted(&mut canonical, &variables.clone().into_value());
    hash.update(canonical.as_bytes());
    hex(&hash.finalize())
}

/// `document` with each run of ignored tokens (whitespace, commas,
/// comments) outside strings made one space, and none next to punctuation.
fn collapsed(document: &str) -> String {
    const PUNCTUATION: &[char] = &['{', '}', '(', ')', '[', ']', ':', '=', '!', '$', '@', '|', '&'];
    let mut out = String::with_capacity(document.len());
    let mut chars = document.chars().peekable();
    let mut gap = false;
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' | ',' | '\u{feff}' => gap = true,
            '#' => {
                gap = true;
                while chars.next_if(|&c| c != '\n' && c != '\r').is_some() {}
            }
            c => {
                let last = out.chars().last();
                if gap
                    && last.is_some_and(|last| !PUNCTUATION.contains(&last))
                    && !PUNCTUATION.contains(&c)
                {
                    out.push(' ');
                }
                gap = false;
                out.push(c);
                if c == '"' {
                    // A string (or block string) is copied as it is.
                    let block = chars.peek() == Some(&'"') && {
                        let mut ahead = chars.clone();
                        ahead.next();
                        ahead.peek() == Some(&'"')
                    };
                    if block {
                        out.push_str("\"\"");
                        chars.nth(1);
                        for c in chars.by_ref() {
                            out.push(c);
                            if c == '"' && out.ends_with("\"\"\"") && !out.ends_with("\\\"\"\"") {
                                break;
                            }
                        }
                    } else {
                        while let Some(c) = chars.next() {
                            out.push(c);
                            match c {
                                '\\' => out.extend(chars.next()),
                                '"' | '\n' => break,
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// `value` as JSON with every object's keys in sorted order.
fn write_sorted(out: &mut String, value: &Value) {
    match value {
        Value::Object(fields) => {
            let mut fields: Vec<_> = fields.iter().collect();
            fields.sort_by(|(a, _), (b, _)| a.as_str().cmp(b.as_str()));
            out.push('{');
            for (n, (name, value)) in fields.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(name.as_str()).unwrap_or_default());
                out.push(':');
                write_sorted(out, value);
            }
            out.push('}');
        }
        Value::List(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_sorted(out, item);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn of(document: &str, name: Option<&str>, variables: serde_json::Value) -> String {
        fingerprint(document, name, &Variables::from_json(variables))
    }

    #[test]
    fn key_order_whitespace_and_commas_do_not_matter_values_do() {
        let a = of(
            "mutation Scale($id: ID!, $n: Int!) { scaleDeployment(id: $id, targetReplicas: $n) { id } }",
            Some("Scale"),
            json!({ "id": "x", "n": 2, "o": { "a": 1, "b": [1, 2] } }),
        );
        let b = of(
            "mutation Scale($id:ID! $n:Int!){\n  scaleDeployment(id:$id targetReplicas:$n) {\n    id # the id\n  }\n}\n",
            Some("Scale"),
            json!({ "o": { "b": [1, 2], "a": 1 }, "n": 2, "id": "x" }),
        );
        assert_eq!(a, b);
        let other_value = of(
            "mutation Scale($id: ID!, $n: Int!) { scaleDeployment(id: $id, targetReplicas: $n) { id } }",
            Some("Scale"),
            json!({ "id": "x", "n": 3, "o": { "a": 1, "b": [1, 2] } }),
        );
        assert_ne!(a, other_value);
        assert_ne!(of("{ a }", Some("A"), json!({})), of("{ a }", None, json!({})));
        assert_ne!(
            of("{ a(s: \"x  y\") }", None, json!({})),
            of("{ a(s: \"x y\") }", None, json!({}))
        );
        assert_ne!(of("{ a b }", None, json!({})), of("{ ab }", None, json!({})));
    }
}
