//! Secrets: random tokens (stored as SHA-256, cheap to check on every request) and human
//! passwords (argon2, deliberately slow).

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// API token prefix, so leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "bt_";
/// Session token prefix.
pub const SESSION_PREFIX: &str = "bs_";

/// A new random secret: `prefix` + 256 random bits, base64url.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What is stored for a random secret.
pub fn hash_token(secret: &str) -> String {
    crate::store::hex(&Sha256::digest(secret.as_bytes()))
}

/// What is stored for a password.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// Whether `password` matches a stored hash. A malformed stored hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), stored).is_ok()
}

/// A hash to verify against when the user does not exist, so timing does not reveal usernames.
pub fn dummy_password_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not-a-real-password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_only_against_its_own_hash() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "garbage"));
    }

    #[test]
    fn generated_tokens_are_unique_and_prefixed() {
        let (a, b) = (generate(TOKEN_PREFIX), generate(TOKEN_PREFIX));
        assert!(a.starts_with("bt_") && a.len() > 40 && a != b);
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
