//! HTTP API keys: `ph_<id>_<secret>`, 12 and 32 characters of an alphabet
//! without look-alikes; the secret is kept only as an argon2id hash. Made
//! here (for the CLI, the admin API and the console), checked by the HTTP
//! API's extractor with [`parse_key`].

use posthorn_store::ApiKey;
use rand::Rng;

const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;

/// A new key: what to show once, and what to store.
pub struct NewKey {
    pub key: String,
    pub record: ApiKey,
}

fn random(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Make a key for `account_id` (or an admin key with `None`). Hashes with
/// argon2: call it off the async threads.
pub fn new_key(account_id: Option<i64>, description: &str) -> NewKey {
    let id = random(ID_LEN);
    let secret = random(SECRET_LEN);
    NewKey {
        key: format!("ph_{id}_{secret}"),
        record: ApiKey {
            id,
            account_id,
            secret_hash: posthorn_submit::hash_secret(&secret),
            description: description.to_string(),
            created_at: posthorn_types::time::unix_now(),
        },
    }
}

/// `(id, secret)` of a well-formed key.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("ph_")?;
    let (id, secret) = rest.split_once('_')?;
    let ok = |s: &str, n| s.len() == n && s.bytes().all(|b| ALPHABET.contains(&b));
    (ok(id, ID_LEN) && ok(secret, SECRET_LEN)).then_some((id, secret))
}

/// The id of a key given whole (`ph_<id>_<secret>`) or as its id.
pub fn key_id(given: &str) -> &str {
    given
        .strip_prefix("ph_")
        .map(|rest| rest.split('_').next().unwrap_or(rest))
        .unwrap_or(given)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_name_their_id() {
        let k = new_key(Some(1), "ci");
        let (id, _) = parse_key(&k.key).expect("a new key parses");
        assert_eq!(id, k.record.id);
        assert_eq!(key_id(&k.key), id);
        assert_eq!(key_id(id), id);
        assert!(parse_key("ph_short_key").is_none());
        assert!(k.record.secret_hash.starts_with("$argon2id$"));
    }
}
