//! Signing per the Standard Webhooks specification: the secret is
//! `whsec_` and a random key in base64; a delivery's `webhook-signature`
//! is `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under that
//! key, one per active secret, space-separated.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// 24 random bytes, as Svix's libraries generate (the spec asks 24 to 64).
const KEY_BYTES: usize = 24;

/// A new signing secret.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key)?;
    Ok(format!("{PREFIX}{}", STANDARD.encode(key)))
}

/// The `webhook-signature` header of a message signed with each of `secrets`.
pub fn signature(secrets: &[&str], message_id: &str, timestamp: i64, body: &str) -> String {
    let signatures: Vec<String> = secrets
        .iter()
        .filter_map(|secret| {
            let key = STANDARD.decode(secret.strip_prefix(PREFIX).unwrap_or(secret)).ok()?;
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(format!("{message_id}.{timestamp}.").as_bytes());
            mac.update(body.as_bytes());
            Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
        })
        .collect();
    signatures.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the specification's README and of every Standard
    /// Webhooks library's tests.
    #[test]
    fn signs_the_specifications_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let header = signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn two_secrets_sign_side_by_side() {
        let (old, new) = (new_secret().unwrap(), new_secret().unwrap());
        assert!(new.starts_with("whsec_") && new != old);
        let both = signature(&[&new, &old], "msg_1", 1, "{}");
        let (first, second) = both.split_once(' ').unwrap();
        assert_eq!(first, signature(&[&new], "msg_1", 1, "{}"));
        assert_eq!(second, signature(&[&old], "msg_1", 1, "{}"));
    }
}
