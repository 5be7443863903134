//! Secrets (SMTP passwords, API keys) are kept only as argon2id hashes in
//! PHC string form. Checks run on one thread per core, off the async
//! threads: they take tens of milliseconds and 19 MiB each by design, so a
//! burst of logins queues instead of taking a gigabyte.
//!
//! A check that succeeded is remembered for [`VERIFIED_FOR`] under an
//! HMAC-SHA-256, with a key drawn at start, of the stored hash and the
//! secret: an application that opens a connection per message logs in with
//! the same password again and again, and pays argon2 once a minute, not
//! once per message. Only successes are remembered (a wrong password always
//! costs the full check); a changed password has a new hash, so the entry
//! no longer matches; the remembered value is useless without the process's
//! key.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a successful check is remembered.
pub const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Most remembered checks (expired ones are dropped first).
const REMEMBERED: usize = 10_000;

struct Verified {
    key: [u8; 32],
    at: Mutex<HashMap<[u8; 32], Instant>>,
}

fn verified() -> &'static Verified {
    static V: OnceLock<Verified> = OnceLock::new();
    V.get_or_init(|| Verified {
        key: rand::random(),
        at: Mutex::new(HashMap::new()),
    })
}

fn fingerprint(secret: &str, hash: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&verified().key).expect("any key length");
    mac.update(hash.as_bytes());
    mac.update(&[0]);
    mac.update(secret.as_bytes());
    mac.finalize().into_bytes().into()
}

fn remembered(print: &[u8; 32]) -> bool {
    let map = verified().at.lock().expect("verified checks");
    map.get(print).is_some_and(|at| at.elapsed() < VERIFIED_FOR)
}

fn remember(print: [u8; 32]) {
    let mut map = verified().at.lock().expect("verified checks");
    if map.len() >= REMEMBERED {
        map.retain(|_, at| at.elapsed() < VERIFIED_FOR);
        if map.len() >= REMEMBERED {
            map.clear();
        }
    }
    map.insert(print, Instant::now());
}

/// A check for the argon2 threads: secret, PHC hash, where the answer goes.
type CheckJob = (String, String, tokio::sync::oneshot::Sender<bool>);

/// The argon2 threads, one per core: at most that many checks run at once,
/// and their 19 MiB buffers come from that many malloc arenas only (on
/// the blocking pool each new thread kept its own, which held 300 MiB after
/// a burst of logins).
fn argon2_threads() -> &'static std::sync::mpsc::Sender<CheckJob> {
    static T: OnceLock<std::sync::mpsc::Sender<CheckJob>> = OnceLock::new();
    T.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<CheckJob>();
        let rx = Arc::new(Mutex::new(rx));
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        for i in 0..n {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    let job = rx.lock().expect("argon2 jobs").recv();
                    let Ok((secret, hash, answer)) = job else {
                        return;
                    };
                    let _ = answer.send(check(&secret, &hash));
                });
        }
        tx
    })
}

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

/// How many argon2 checks ran against each hash (the tests' witness that
/// overlapping checks share one).
#[cfg(test)]
static RUNS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn check(secret: &str, hash: &str) -> bool {
    #[cfg(test)]
    {
        *RUNS
            .lock()
            .expect("runs")
            .get_or_insert_with(HashMap::new)
            .entry(hash.to_string())
            .or_default() += 1;
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether `secret` matches the PHC `hash`, computed off the async threads
/// (or remembered from a check that succeeded within [`VERIFIED_FOR`]).
/// Checks of the same secret against the same hash that overlap share one
/// computation (see [`InFlight`]).
pub async fn verify_secret(secret: String, hash: String) -> bool {
    let print = fingerprint(&secret, &hash);
    if remembered(&print) {
        return true;
    }
    let check = in_flight().join(print);
    *check
        .cell()
        .get_or_init(|| async {
            let ok = argon2_check(secret, hash).await;
            if ok {
                remember(print);
            }
            ok
        })
        .await
}

/// The checks running now, by fingerprint. A pool of 20 connections that
/// logs in at once with one password (an application starting, or all its
/// connections reopened after a restart) would otherwise run argon2 20
/// times, 19 of them queued behind the others on the argon2 threads; the
/// same secret against the same hash has one answer, so they wait for the
/// first. A check abandoned half way (its session closed) hands the work
/// to the next waiter (`OnceCell::get_or_init`). An entry leaves the map
/// with its last caller.
#[derive(Default)]
struct InFlight {
    checks: Mutex<HashMap<[u8; 32], Arc<tokio::sync::OnceCell<bool>>>>,
}

/// One caller's share of a check in flight.
struct Joined {
    print: [u8; 32],
    /// Taken only in `drop`, under the map's lock, so every change to the
    /// count of holders happens under it.
    cell: Option<Arc<tokio::sync::OnceCell<bool>>>,
}

impl InFlight {
    fn join(&self, print: [u8; 32]) -> Joined {
        let mut checks = self.checks.lock().expect("checks in flight");
        let cell = checks.entry(print).or_default().clone();
        Joined {
            print,
            cell: Some(cell),
        }
    }
}

impl Joined {
    fn cell(&self) -> &tokio::sync::OnceCell<bool> {
        self.cell.as_ref().expect("taken only when dropped")
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        let mut checks = in_flight().checks.lock().expect("checks in flight");
        if let Some(cell) = self.cell.take() {
            // The map's reference and this one: nobody else waits on it.
            if Arc::strong_count(&cell) == 2 {
                checks.remove(&self.print);
            }
        }
    }
}

fn in_flight() -> &'static InFlight {
    static F: OnceLock<InFlight> = OnceLock::new();
    F.get_or_init(InFlight::default)
}

async fn argon2_check(secret: String, hash: String) -> bool {
    let (answer, wait) = tokio::sync::oneshot::channel();
    let sent = argon2_threads().send((secret, hash, answer));
    sent.is_ok() && wait.await.unwrap_or(false)
}

/// Do the work of one verification against a hash nobody knows, so a login
/// with an unknown user takes as long as one with a wrong password.
pub async fn burn_time(secret: String) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_secret("posthorn-dummy")).clone();
    let _ = argon2_check(secret, hash).await;
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

    fn runs(hash: &str) -> u32 {
        RUNS.lock()
            .expect("runs")
            .as_ref()
            .and_then(|m| m.get(hash).copied())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn overlapping_checks_of_one_secret_share_one_run() {
        for (secret, expect) in [("pool", true), ("wrong", false)] {
            let h = hash_secret("pool");
            // Polled together: each joins before any can finish.
            let check = || verify_secret(secret.to_string(), h.clone());
            let all = tokio::join!(check(), check(), check(), check());
            assert_eq!(all, (expect, expect, expect, expect), "{secret}");
            assert_eq!(runs(&h), 1, "{secret}: one argon2 run for 4 logins");
            // Nothing is left behind in flight.
            let print = fingerprint(secret, &h);
            assert!(!in_flight().checks.lock().unwrap().contains_key(&print));
        }
        // A wrong secret is not joined to a right one's check.
        let h = hash_secret("pool");
        let (a, b) = tokio::join!(
            verify_secret("pool".into(), h.clone()),
            verify_secret("nope".into(), h.clone())
        );
        assert!(a && !b);
        assert_eq!(runs(&h), 2);
    }

    #[tokio::test]
    async fn a_success_is_remembered_for_that_hash_only() {
        let h = hash_secret("again");
        assert!(!remembered(&fingerprint("again", &h)));
        assert!(verify_secret("again".into(), h.clone()).await);
        assert!(remembered(&fingerprint("again", &h)));
        // Wrong secrets are never remembered, and another hash of the same
        // secret (a changed password) does not match the entry.
        assert!(!verify_secret("wrong".into(), h.clone()).await);
        assert!(!remembered(&fingerprint("wrong", &h)));
        let other = hash_secret("again");
        assert!(!remembered(&fingerprint("again", &other)));
        assert!(!verify_secret("again".into(), "not a hash".into()).await);
    }
}
