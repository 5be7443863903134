//! Contents just committed, kept in memory for the delivery that usually
//! follows within milliseconds, so it need not read them back from the
//! database (at 100 KB a message that read was page lookups, an overflow
//! chain and two copies).
//!
//! The writer thread moves each committed message's content in here after
//! the commit and before any caller hears of it; [`FreshContents::take`]
//! hands it out once. Nothing depends on finding a content here: a miss
//! reads the store, which holds the same bytes. Off (a cap of 0) unless the
//! process delivers: a node that only accepts would keep bytes nobody
//! takes.
//!
//! Bounded two ways: at most `cap` bytes (a content that does not fit is
//! not kept, so under a backlog the ones kept are the oldest, which
//! delivery reaches first), and at most [`MAX_AGE`] in memory.

use posthorn_types::MessageId;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a content waits here for its delivery.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(crate) struct FreshContents {
    cap: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    contents: HashMap<MessageId, Vec<u8>>,
    /// Insertion order, for ageing out; ids already taken are skipped.
    order: VecDeque<(Instant, MessageId)>,
    bytes: usize,
}

impl FreshContents {
    /// Keep up to `bytes` of contents (0: keep none, and drop what is kept).
    pub(crate) fn set_cap(&self, bytes: usize) {
        self.cap.store(bytes, Ordering::Relaxed);
        if bytes == 0 {
            self.clear();
        }
    }

    /// Keep `content` of the committed message `id`, if it fits.
    pub(crate) fn keep(&self, id: MessageId, content: Vec<u8>, now: Instant) {
        let cap = self.cap.load(Ordering::Relaxed);
        if cap == 0 {
            return;
        }
        let mut inner = self.inner.lock().expect("fresh contents");
        inner.age_out(now);
        if inner.bytes + content.len() > cap {
            return;
        }
        inner.bytes += content.len();
        inner.order.push_back((now, id));
        inner.contents.insert(id, content);
    }

    /// The content of `id`, if it is still here; it is not kept after.
    pub(crate) fn take(&self, id: MessageId) -> Option<Vec<u8>> {
        let mut inner = self.inner.lock().expect("fresh contents");
        let content = inner.contents.remove(&id)?;
        inner.bytes -= content.len();
        if inner.contents.is_empty() {
            inner.order.clear();
        }
        Some(content)
    }

    /// Drop everything (contents were purged from the store; none of them
    /// may be handed out after that).
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock().expect("fresh contents");
        *inner = Inner::default();
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.inner.lock().expect("fresh contents").bytes
    }
}

impl Inner {
    /// Drop the contents kept longer than [`MAX_AGE`], and from the front
    /// of the order the ids already taken (delivery takes them about in
    /// order, so the queue stays about as long as what is kept).
    fn age_out(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.order.front() {
            let taken = !self.contents.contains_key(&id);
            if !taken && now.saturating_duration_since(at) < MAX_AGE {
                break;
            }
            self.order.pop_front();
            if let Some(content) = self.contents.remove(&id) {
                self.bytes -= content.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> MessageId {
        MessageId::first_at(n)
    }

    #[test]
    fn off_until_given_a_cap() {
        let fresh = FreshContents::default();
        fresh.keep(id(1), vec![1; 10], Instant::now());
        assert_eq!(fresh.take(id(1)), None);
    }

    #[test]
    fn a_content_is_handed_out_once() {
        let fresh = FreshContents::default();
        fresh.set_cap(100);
        let now = Instant::now();
        fresh.keep(id(1), vec![1; 10], now);
        assert_eq!(fresh.take(id(1)), Some(vec![1; 10]));
        assert_eq!(fresh.take(id(1)), None);
        assert_eq!(fresh.bytes(), 0);
    }

    #[test]
    fn what_does_not_fit_is_not_kept_and_the_older_stay() {
        let fresh = FreshContents::default();
        fresh.set_cap(25);
        let now = Instant::now();
        fresh.keep(id(1), vec![1; 10], now);
        fresh.keep(id(2), vec![2; 10], now);
        fresh.keep(id(3), vec![3; 10], now);
        assert_eq!(fresh.take(id(3)), None);
        assert_eq!(fresh.take(id(1)), Some(vec![1; 10]));
        // Room again once one was taken.
        fresh.keep(id(4), vec![4; 10], now);
        // 1 was taken: its place in the order is given up on the next keep.
        assert_eq!(fresh.inner.lock().unwrap().order.len(), 2);
        assert_eq!(fresh.take(id(4)), Some(vec![4; 10]));
        assert_eq!(fresh.take(id(2)), Some(vec![2; 10]));
    }

    #[test]
    fn contents_age_out() {
        let fresh = FreshContents::default();
        fresh.set_cap(100);
        let start = Instant::now();
        fresh.keep(id(1), vec![1; 10], start);
        fresh.keep(id(2), vec![2; 10], start + MAX_AGE / 2);
        fresh.keep(id(3), vec![3; 10], start + MAX_AGE);
        assert_eq!(fresh.take(id(1)), None);
        assert_eq!(fresh.take(id(2)), Some(vec![2; 10]));
        assert_eq!(fresh.bytes(), 10);
    }

    #[test]
    fn clear_and_a_cap_of_zero_drop_everything() {
        let fresh = FreshContents::default();
        fresh.set_cap(100);
        fresh.keep(id(1), vec![1; 10], Instant::now());
        fresh.clear();
        assert_eq!(fresh.take(id(1)), None);
        fresh.keep(id(2), vec![2; 10], Instant::now());
        fresh.set_cap(0);
        assert_eq!(fresh.take(id(2)), None);
        assert_eq!(fresh.bytes(), 0);
    }
}
