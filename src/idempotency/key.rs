//! An idempotency key as a client sends it: the `Idempotency-Key` header, a
//! Structured Field string (`"8e03978e-..."`, RFC 8941) or, as Stripe's
//! clients send it, the bare value; or `extensions.idempotencyKey`.

/// A key: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Longest key.
pub(super) const MAX_KEY_LENGTH: usize = 255;

impl IdempotencyKey {
    /// The key an `Idempotency-Key` header's value holds.
    pub fn from_header(value: &[u8]) -> Result<Self, String> {
        let value = std::str::from_utf8(value).map_err(|_| malformed())?.trim();
        let key = match value.strip_prefix('"') {
            Some(quoted) => unquote(quoted).ok_or_else(malformed)?,
            None => value.to_owned(),
        };
        Self::new(key)
    }

    /// `key` if it is 1 to 255 printable ASCII characters.
    pub fn new(key: String) -> Result<Self, String> {
        let printable = key.bytes().all(|byte| (0x20..=0x7e).contains(&byte));
        if key.is_empty() || key.len() > MAX_KEY_LENGTH || !printable {
            return Err(malformed());
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn malformed() -> String {
    format!(
        "an idempotency key is 1 to {MAX_KEY_LENGTH} printable ASCII characters (a UUID per \
         user intent, reused on retry), sent as `Idempotency-Key: \"<key>\"` or \
         extensions.idempotencyKey"
    )
}

/// The rest of a Structured Field string after its opening quote, unescaped;
/// `None` unless it ends with the closing quote.
fn unquote(rest: &str) -> Option<String> {
    let mut key = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                escaped @ ('"' | '\\') => key.push(escaped),
                _ => return None,
            },
            '"' => return chars.as_str().is_empty().then_some(key),
            c => key.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_a_structured_field_string_or_a_bare_token() {
        let key = |value: &str| IdempotencyKey::from_header(value.as_bytes()).map(|k| k.0);
        assert_eq!(
            key("\"8e03978e-40d5-43e8-bc93-6894a57f9324\""),
            Ok("8e03978e-40d5-43e8-bc93-6894a57f9324".into())
        );
        assert_eq!(key("abc-123"), Ok("abc-123".into()));
        assert_eq!(key(r#""a \"quoted\" \\ key""#), Ok(r#"a "quoted" \ key"#.into()));
        for bad in ["", "\"\"", "\"unterminated", "\"a\"b", r#""bad \n escape""#, "tab\there"] {
            assert!(key(bad).is_err(), "{bad:?}");
        }
        assert!(key(&"k".repeat(255)).is_ok());
        assert!(key(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::new("é".into()).is_err(), "ASCII only");
    }
}
