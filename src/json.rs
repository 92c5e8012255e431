//! JSON strings as the response writer and the log lines write them.

/// Whether `text` needs escaping inside a JSON string: a control
/// character, a quote or a backslash. Most text needs none, and this check
/// (branch-free, so the compiler can compare many bytes at once) lets
/// writers copy such text whole instead of looking at it byte by byte.
pub fn needs_escaping(text: &str) -> bool {
    text.bytes().fold(false, |found, byte| found | (byte < 0x20) | (byte == b'"') | (byte == b'\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_controls_quotes_and_backslashes_need_escaping() {
        for plain in ["", "service-1", "é ü ✓ 🚀", "a/b <c> 'd' \u{7f}"] {
            assert!(!needs_escaping(plain), "{plain:?}");
            assert_eq!(serde_json::to_string(plain).unwrap(), format!("\"{plain}\""));
        }
        for escaped in ["a\"b", "a\\b", "line\n", "\t", "\u{1}", "\u{1f}"] {
            assert!(needs_escaping(escaped), "{escaped:?}");
            assert_ne!(serde_json::to_string(escaped).unwrap(), format!("\"{escaped}\""));
        }
    }
}
