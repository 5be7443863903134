//! Signatures made ahead: a message's DKIM signature started as its commit
//! starts, on a signing thread of its own that gets only CPU nothing else
//! wants (`SCHED_IDLE`, [`crate::signer::Priority::Idle`]), and taken by
//! its delivery if it is ready by then.
//!
//! Why: while sessions wait for their group commits (an fsync each), a
//! quarter of a 2-core machine sat idle, and delivery, held back for the
//! sessions (`yield_to_sessions`), signed nothing; every signature was made
//! after the burst. Made ahead, they use that idle time. On the niced
//! threads delivery signs with, signing ahead took the CPU from the
//! sessions (a third off the accept rate); at `SCHED_IDLE` any session
//! that wakes takes the core back at once.
//!
//! The engine asks for them only while it holds its claims back
//! (`Engine::accepting`): once delivery runs beside the sessions it signs
//! in their gaps itself, and signing ahead as well only took those gaps
//! over (13 % off the accept rate of a burst of one-message connections).
//!
//! Nothing waits for a signature made ahead: a delivery that finds its
//! message's not ready signs as before, and the one queued is skipped when
//! a thread comes to it. Bounded, and skipped (the delivery signs) past
//! any bound: the bytes queued for signing ([`AHEAD_BYTES`], copies of the
//! contents), the signatures kept ([`AHEAD_MAX`]), and their age
//! ([`AHEAD_AGE`]: one whose delivery never came here, a failed commit or
//! another node's claim, is dropped). Only domains whose key delivery
//! already holds are signed ahead (`Engine::accepting` looks a domain up
//! once in the background).

use crate::dkim::DkimKey;
use crate::signer::{Priority, Signature, Signer};
use posthorn_types::MessageId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Signing threads of their own: two. At `SCHED_IDLE` they still slow the
/// sessions a little (a busy vCPU is not free to its sibling on the host).
/// One thread ran flat out through a burst of 10,000 messages on reused
/// connections while the machine stood 10-15 % idle; a second fills that. Measured on an Intel
/// Xeon (model 207), `SCENARIOS="a b b1" SYSTEMS=posthorn
/// bench/compare.sh`, three pairs, two against one (2026-12-07): end to
/// end b 4,394/4,398/4,292 against 3,782/4,081/4,111/s, b'
/// 2,326/2,237/2,282 against 1,980/2,212/2,154/s, a the same
/// (3,546/3,623/3,645 against 3,478/3,685/3,749/s), a's accept rate 6 %
/// lower (7,098/6,840/7,222 against 7,367/7,469/7,971/s). On the Intel
/// host of 2026-12-06 (model 167) two had cost a and b' 5-7 % of their
/// accept rate for no end-to-end gain, so one thread was kept then.
pub const AHEAD_THREADS: usize = 2;
/// Most bytes of content copied for signing and not yet signed.
pub const AHEAD_BYTES: usize = 4 << 20;
/// Most signatures kept (made or being made) for deliveries to take.
pub const AHEAD_MAX: usize = 8192;
/// How long a signature made ahead waits for its delivery.
pub const AHEAD_AGE: Duration = Duration::from_secs(30);

/// A signature on its way, and when it was asked for.
struct Made {
    at: Instant,
    signature: oneshot::Receiver<Signature>,
}

/// See the module documentation.
pub struct Ahead {
    signer: Signer,
    made: Mutex<HashMap<MessageId, Made>>,
    /// Bytes handed to the signing threads and not yet signed or skipped.
    queued: Arc<AtomicUsize>,
}

impl Ahead {
    /// With `threads` signing threads of its own.
    pub fn new(threads: usize) -> Ahead {
        Ahead {
            signer: Signer::start_at(threads, Priority::Idle),
            made: Mutex::new(HashMap::new()),
            queued: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Queue the signing of `content` with `key` for message `id`, unless
    /// a bound says no. Never blocks.
    pub fn start(&self, id: MessageId, key: Arc<DkimKey>, content: &[u8]) {
        let len = content.len();
        if self.queued.load(Ordering::Relaxed) + len > AHEAD_BYTES {
            return;
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut made = self.made.lock().expect("signatures ahead");
            if made.len() >= AHEAD_MAX {
                made.retain(|_, m| m.at.elapsed() < AHEAD_AGE);
                if made.len() >= AHEAD_MAX {
                    return;
                }
            }
            made.insert(
                id,
                Made {
                    at: Instant::now(),
                    signature: rx,
                },
            );
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        let queued = self.queued.clone();
        self.signer.sign_ahead(key, content.to_vec(), tx, move || {
            queued.fetch_sub(len, Ordering::Relaxed);
        });
    }

    /// The signature made ahead for message `id` if it is ready (and
    /// young enough); otherwise `None`, the delivery signs itself, and
    /// the one queued is skipped.
    pub fn take(&self, id: MessageId) -> Option<String> {
        let mut made = self.made.lock().expect("signatures ahead").remove(&id)?;
        if made.at.elapsed() >= AHEAD_AGE {
            return None;
        }
        let signature = made.signature.try_recv().ok()?.ok()?;
        // The other outcomes are counted where the signing thread ends.
        metrics::counter!("posthorn_dkim_ahead_total", "outcome" => "taken").increment(1);
        Some(signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::tests::ED25519_PEM;
    const MESSAGE: &[u8] =
        b"From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n";

    fn key() -> Arc<DkimKey> {
        Arc::new(DkimKey::from_pem("example.com", "s1", ED25519_PEM).expect("key"))
    }

    fn kept(ahead: &Ahead) -> usize {
        ahead.made.lock().unwrap().len()
    }

    /// A message signed ahead, waited for.
    fn signed_ahead() -> (Ahead, MessageId) {
        let ahead = Ahead::new(1);
        let id = MessageId::generate();
        ahead.start(id, key(), MESSAGE);
        settle(&ahead);
        (ahead, id)
    }

    /// Until nothing is queued (bounded: an idle test machine gives the
    /// idle-priority threads the CPU).
    fn settle(ahead: &Ahead) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while ahead.queued.load(Ordering::Relaxed) > 0 {
            assert!(Instant::now() < deadline, "signing ahead never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_signature_made_ahead_is_taken_once() {
        let (ahead, id) = signed_ahead();
        let field = ahead.take(id).expect("made ahead");
        assert!(field.starts_with("DKIM-Signature:"), "{field}");
        // The same as signing at delivery would make, bar the time stamp.
        let fresh = key().sign(MESSAGE).expect("signed");
        assert_eq!(field.split("t=").next(), fresh.split("t=").next());
        assert!(ahead.take(id).is_none(), "taken once");
        assert_eq!(kept(&ahead), 0);
        assert!(ahead.take(MessageId::generate()).is_none());
    }

    #[test]
    fn one_not_ready_is_left_to_the_delivery_and_skipped() {
        let ahead = Ahead::new(1);
        let id = MessageId::generate();
        // Taken before any thread could come to it: the queued request is
        // not wanted any more and is dropped unsigned.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (to, _unread) = oneshot::channel();
        ahead.signer.sign_ahead(key(), Vec::new(), to, move || {
            let _ = rx.recv();
        });
        ahead.start(id, key(), MESSAGE);
        assert!(ahead.take(id).is_none(), "not ready: the delivery signs");
        tx.send(()).expect("the thread waits for it");
        settle(&ahead);
        assert_eq!(kept(&ahead), 0);
    }

    #[test]
    fn the_bytes_bound_skips_what_does_not_fit() {
        let ahead = Ahead::new(1);
        let big = vec![b'x'; AHEAD_BYTES + 1];
        let id = MessageId::generate();
        ahead.start(id, key(), &big);
        assert_eq!(kept(&ahead), 0);
        assert!(ahead.take(id).is_none());
        assert_eq!(ahead.queued.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_signature_past_its_age_is_not_used() {
        let (ahead, id) = signed_ahead();
        ahead.made.lock().unwrap().get_mut(&id).unwrap().at -= AHEAD_AGE;
        assert!(ahead.take(id).is_none());
    }
}
