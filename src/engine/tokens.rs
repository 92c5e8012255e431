//! Counts a document's lexical tokens before it is parsed, so the parser
//! never works through a flood of them.

/// Whether `text` holds more than `limit` GraphQL tokens (names, numbers,
/// strings, punctuators; whitespace, commas and comments are not tokens).
/// Checked before parsing, so the parser never works through a flood; it
/// stops counting at the limit.
pub(crate) fn too_many_tokens(text: &str, limit: usize) -> bool {
    let bytes = text.as_bytes();
    let (mut at, mut tokens) = (0, 0);
    while at < bytes.len() {
        let byte = bytes[at];
        at += match byte {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                at += 1;
                continue;
            }
            b'#' => {
                at += bytes[at..].iter().position(|&b| b == b'\n').unwrap_or(bytes.len() - at);
                continue;
            }
            b'"' if bytes[at..].starts_with(b"\"\"\"") => block_string_len(&bytes[at..]),
            b'"' => string_len(&bytes[at..]),
            b'.' if bytes[at..].starts_with(b"...") => 3,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => bytes[at..]
                .iter()
                .position(|b| {
                    !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'.'))
                })
                .unwrap_or(bytes.len() - at),
            _ => 1,
        };
        tokens += 1;
        if tokens > limit {
            return true;
        }
    }
    false
}

/// Length of the `"..."` string at the start of `bytes` (to its end if open).
fn string_len(bytes: &[u8]) -> usize {
    let mut at = 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' | b'\n' => return at + 1,
            _ => at += 1,
        }
    }
    bytes.len()
}

/// Length of the `"""..."""` block string at the start of `bytes`.
fn block_string_len(bytes: &[u8]) -> usize {
    let mut at = 3;
    while at < bytes.len() {
        if bytes[at..].starts_with(b"\\\"\"\"") {
            at += 4;
        } else if bytes[at..].starts_with(b"\"\"\"") {
            return at + 3;
        } else {
            at += 1;
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted_without_whitespace_commas_comments_or_string_contents() {
        let query = "query Q($id: ID!) { # a comment { { {\n deployment(id: $id, x: \"a { b } c\") { ...F } }";
        // query Q ( $ id : ID ! ) { deployment ( id : $ id x : "..." ) { ... F } }
        assert!(!too_many_tokens(query, 25));
        assert!(too_many_tokens(query, 24));
        assert!(!too_many_tokens(r#"{ a(s: """ { { { \""" { """) }"#, 8));
        assert!(too_many_tokens(&"a ".repeat(1_000_000), 10_000));
    }
}
