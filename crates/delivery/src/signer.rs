//! The DKIM signing threads: one per core, at a lower CPU priority than the
//! threads that answer clients.
//!
//! An RSA-2048 signature is 0.45-0.7 ms of CPU that cannot be split, and
//! delivery makes one per message. On the async threads it would hold up
//! every connection of that thread; on the blocking pool, as it was, at the
//! same priority as those threads, a client waiting for its `250` waited
//! behind signatures whenever the cores were busy. Here the signatures run
//! on threads of their own, niced by [`NICENESS`]: on a machine with CPU to
//! spare they use every core (a queue drain signs on all of them); on a
//! saturated one the scheduler gives the sessions their turn first and the
//! signatures the rest, so accepting stays fast and delivery catches up
//! as the load falls. Nothing waits unboundedly: a niced thread still gets
//! its share (about a tenth of a core against each busy normal thread).

use crate::dkim::{DkimError, DkimKey};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The nice value of the signing threads (0 is the rest of the process,
/// 19 the lowest priority). At 10 the scheduler weighs a signing thread at
/// about a tenth of a normal one.
pub const NICENESS: i32 = 10;

/// The content back, with its DKIM-Signature field or why there is none.
pub type Signed = (Vec<u8>, Result<String, DkimError>);

type Request = (Arc<DkimKey>, Vec<u8>, Answer);

/// Where a signature goes.
enum Answer {
    /// Back to a delivery waiting for it, with the content.
    Content(oneshot::Sender<Signed>),
    /// To whoever asked ahead of delivery (`crate::ahead`), signed only
    /// if its receiver is still open when a thread comes to it; the
    /// content is dropped on the signing thread, then `done` runs, either
    /// way.
    Ahead {
        to: oneshot::Sender<Signature>,
        done: Box<dyn FnOnce() + Send>,
    },
}

/// A DKIM-Signature field, or why there is none.
pub type Signature = Result<String, DkimError>;

/// How the signing threads stand against the rest of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Niced by [`NICENESS`]: below the sessions, with a share of the CPU
    /// however busy it is.
    Below,
    /// `SCHED_IDLE`: only CPU nothing else wants; any other thread that
    /// wakes takes the core at once. For work that may be dropped
    /// (signing ahead), never for work something waits on.
    Idle,
}

/// A pool of signing threads. They end when it is dropped.
pub struct Signer {
    requests: mpsc::Sender<Request>,
}

impl Signer {
    /// Starts `threads` signing threads (at least one) at [`NICENESS`].
    pub fn start(threads: usize) -> Signer {
        Signer::start_at(threads, Priority::Below)
    }

    /// Starts `threads` signing threads (at least one) at `priority`.
    pub fn start_at(threads: usize, priority: Priority) -> Signer {
        let (requests, queue) = mpsc::channel::<Request>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(match priority {
                    Priority::Below => format!("dkim-sign-{i}"),
                    Priority::Idle => format!("dkim-ahead-{i}"),
                })
                .spawn(move || {
                    lower_priority(priority);
                    loop {
                        // The lock is held only while waiting for the next
                        // request, never while signing.
                        let next = queue.lock().expect("signing queue").recv();
                        let Ok((key, content, answer)) = next else {
                            return;
                        };
                        match answer {
                            Answer::Content(back) => {
                                let signature = key.sign(&content);
                                let _ = back.send((content, signature));
                            }
                            Answer::Ahead { to, done } => {
                                // Made and taken, made while its delivery
                                // came and signed itself (work lost), or
                                // skipped because it came first.
                                let outcome = if to.is_closed() {
                                    "skipped"
                                } else if to.send(key.sign(&content)).is_ok() {
                                    "made"
                                } else {
                                    "lost"
                                };
                                metrics::counter!("posthorn_dkim_ahead_total", "outcome" => outcome)
                                    .increment(1);
                                drop(content);
                                done();
                            }
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a DKIM signing thread");
            }
        }
        Signer { requests }
    }

    /// Signs `content` with `key` on a signing thread. `None` when no
    /// thread answered: none could be started, or the one that took this
    /// request panicked (it is then gone; the others go on).
    pub async fn sign(&self, key: Arc<DkimKey>, content: Vec<u8>) -> Option<Signed> {
        let (answer, signed) = oneshot::channel();
        self.requests
            .send((key, content, Answer::Content(answer)))
            .ok()?;
        signed.await.ok()
    }

    /// Queues `content` for signing with `key` and returns at once. When a
    /// thread comes to it, it signs into `to` unless `to`'s receiver is
    /// gone by then (the delivery came first), drops the content and calls
    /// `done`, which must not block. Dropped uncalled if no thread is left
    /// to sign.
    pub fn sign_ahead(
        &self,
        key: Arc<DkimKey>,
        content: Vec<u8>,
        to: oneshot::Sender<Signature>,
        done: impl FnOnce() + Send + 'static,
    ) {
        let answer = Answer::Ahead {
            to,
            done: Box::new(done),
        };
        let _ = self.requests.send((key, content, answer));
    }
}

/// Lowers the calling thread's CPU priority to `priority`. On Linux the
/// nice value and the scheduling policy belong to the thread, not the
/// process.
fn lower_priority(priority: Priority) {
    #[cfg(not(target_os = "linux"))]
    let _ = priority;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id (0:
        // the calling thread, for sched_setscheduler).
        let done = unsafe {
            match priority {
                Priority::Below => {
                    let tid = libc::gettid();
                    libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICENESS)
                }
                Priority::Idle => {
                    let param = libc::sched_param { sched_priority: 0 };
                    libc::sched_setscheduler(0, libc::SCHED_IDLE, &param)
                }
            }
        };
        if done != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "cannot lower the priority of a DKIM signing thread"
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An Ed25519 key the delivery crate's tests sign with.
    pub(crate) const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIAbjG9nE3nx+ahOVJfeuuSWVPpjnbMwWwUmh4DB/hNBT
-----END PRIVATE KEY-----
";

    #[tokio::test]
    async fn signs_on_its_threads_and_gives_the_content_back() {
        let key = Arc::new(DkimKey::from_pem("example.com", "s1", ED25519_PEM).expect("key"));
        let signer = Signer::start(2);
        let content =
            b"From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n".to_vec();
        let mut waiting = Vec::new();
        for _ in 0..8 {
            waiting.push(signer.sign(key.clone(), content.clone()));
        }
        for signed in waiting {
            let (back, signature) = signed.await.expect("a signing thread answered");
            assert_eq!(back, content);
            let field = signature.expect("signed");
            assert!(field.starts_with("DKIM-Signature:"), "{field}");
            assert!(field.contains("a=ed25519-sha256"), "{field}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_signing_thread_runs_at_the_lower_priority() {
        let nice = std::thread::spawn(|| {
            lower_priority(Priority::Below);
            // SAFETY: reads the calling thread's own nice value.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        })
        .join()
        .expect("thread");
        assert_eq!(nice, NICENESS);
        let policy = std::thread::spawn(|| {
            lower_priority(Priority::Idle);
            // SAFETY: reads the calling thread's own policy.
            unsafe { libc::sched_getscheduler(0) }
        })
        .join()
        .expect("thread");
        assert_eq!(policy, libc::SCHED_IDLE);
    }
}
