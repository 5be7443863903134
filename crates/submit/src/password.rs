//! Secrets (SMTP passwords, API keys) are kept only as argon2id hashes in
//! PHC string form. Hashing and checking run on the blocking pool: they
//! take tens of milliseconds by design.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;
use std::sync::OnceLock;

/// A random secret of 24 characters from a 62-letter alphabet (~143 bits).
pub fn generate_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The argon2id PHC hash of `secret` with a fresh salt.
pub fn hash_secret(secret: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

fn check(secret: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether `secret` matches the PHC `hash`, computed off the async threads.
pub async fn verify_secret(secret: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || check(&secret, &hash))
        .await
        .unwrap_or(false)
}

/// Do the work of one verification against a hash nobody knows, so a login
/// with an unknown user takes as long as one with a wrong password.
pub async fn burn_time(secret: String) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_secret("posthorn-dummy")).clone();
    let _ = verify_secret(secret, hash).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let h = hash_secret("s3cret");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_secret("s3cret".into(), h.clone()).await);
        assert!(!verify_secret("nope".into(), h).await);
        assert!(!verify_secret("x".into(), "not a hash".into()).await);
        assert_eq!(generate_secret().len(), 24);
    }
}
