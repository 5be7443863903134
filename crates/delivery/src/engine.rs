//! The scheduler: claims due recipients from the store under a lease,
//! groups them into one transaction per message and destination domain,
//! delivers each group (DKIM, route, pooled connection), decides each
//! recipient's new state, and records the outcomes (with suppressions and
//! bounce notices) in batched commits.
//!
//! Nothing is lost on a crash: a recipient is `sending` and leased while it
//! is worked on; a restart gives this node's leases back at once (they are
//! named by the stable node id), and another node takes over a lease that
//! ran out. A message may then go out twice, never zero times.

use crate::ahead::{Ahead, AHEAD_THREADS};
use crate::client::{ClientError, ClientSettings, Connection, RcptOutcome, TlsPolicy};
use crate::config::DeliveryConfig;
use crate::destination::{Destination, DestinationStatus, Health, Take};
use crate::dkim::DkimKey;
use crate::dsn::{self, DsnAction, DsnInput, DsnRecipient};
use crate::outcome::{decide, suppresses, AttemptResult, RetryPolicy};
use crate::pool::{Checkout, Pool, PoolKey, Pooled};
use crate::route::{external_only, RouteError, Router, NULL_MX};
use crate::shaping::Shape;
use crate::signer::Signer;
use posthorn_store::{DueRecipient, NewMessage, OutcomeBatch, RecipientUpdate, Store, StoreError};
use posthorn_types::address::domain_of;
use posthorn_types::{Accepting, Committing, MessageId, RecipientStatus};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Recipients in one outbound transaction at most (RFC 5321 asks servers
/// to take at least 100).
const MAX_RCPTS_PER_TRANSACTION: usize = 100;
/// How long a DKIM key (or its absence) is remembered.
const KEY_TTL: Duration = Duration::from_secs(60);
/// How long an account's notice setting is remembered.
const SETTING_TTL: Duration = Duration::from_secs(5);
/// How often bodies and old records are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// The reply recorded for each recipient of a message kept in capture mode.
pub const CAPTURED_REPLY: &str =
    "250 2.0.0 captured: kept by Posthorn, not sent ([delivery] mode = \"capture\")";
/// The remote host recorded for a captured message.
pub const CAPTURE_HOST: &str = "capture";

/// The per-account setting that turns bounce notices off (`0`).
pub const BOUNCE_NOTICES_SETTING: &str = "bounce_notices";

/// One outbound transaction's worth of work: recipients of one message
/// whose mail goes to the same place.
struct Job {
    message_id: MessageId,
    account_id: i64,
    mail_from: String,
    header_from: String,
    label: Option<String>,
    received_at: i64,
    is_dsn: bool,
    /// The recipients' domain (empty in relay mode).
    domain: String,
    rcpts: Vec<DueRecipient>,
    /// The signed content, shared by the jobs of one message in a claim
    /// (one per destination domain), so it is read and signed once.
    signed: Arc<tokio::sync::OnceCell<Arc<Outgoing>>>,
    /// When it was claimed (its lease runs from then).
    claimed: Instant,
    /// Its destination, once routed (none in capture mode).
    dest: Option<DestKey>,
    /// The hosts to try, in order, each with its address.
    targets: Arc<Vec<(String, SocketAddr)>>,
    /// The destination's shaping.
    shape: Shape,
}

/// A message as it is sent: its DKIM-Signature field (empty when it goes
/// unsigned) and the stored content, apart, so that putting the field on
/// top does not copy the content.
struct Outgoing {
    signature: Vec<u8>,
    content: Vec<u8>,
}

impl Outgoing {
    fn unsigned(content: Vec<u8>) -> Self {
        Self {
            signature: Vec::new(),
            content,
        }
    }

    fn parts(&self) -> [&[u8]; 2] {
        [&self.signature, &self.content]
    }
}

/// A domain's signing key (or that it has none) and when it was read.
type CachedKey = (Instant, Option<Arc<DkimKey>>);

/// What a finished job hands the recorder.
struct Finished {
    updates: Vec<RecipientUpdate>,
    notice: Option<NewMessage>,
}

/// Where a job's connection goes and which shaping rule applies to it: the
/// key of a ready queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct DestKey {
    /// The mail servers (their names, in preference order), or the relay.
    place: Arc<str>,
    /// The `[[delivery.shaping]]` rule, if one matched.
    rule: Option<usize>,
}

/// A destination and what the scheduler keeps beside it.
struct DestEntry {
    dest: Destination<Job>,
    /// Recipient domains whose mail goes here (for leaving them out of
    /// claims while the queue is full), at most [`MAX_DOMAINS_PER_DEST`].
    domains: HashSet<String>,
    /// A wake-up for the rate limit is scheduled.
    timer: bool,
    /// The queue was full; claims left its domains out.
    full: bool,
}

/// Domains remembered per destination for leaving them out of claims.
const MAX_DOMAINS_PER_DEST: usize = 64;
/// Domains left out of one claim at most.
const MAX_SKIPPED_DOMAINS: usize = 1000;
/// Route lookups at once.
const ROUTE_LOOKUPS: usize = 64;
/// While work is outstanding, claims come at most this often: each claim
/// is a store commit, and under load it should take a batch rather than
/// the one or two messages each enqueue wakes it for (tiny claims crowd
/// the enqueues' commits and outrun the fresh-content hand-off). An idle
/// engine claims at once, and so does one whose last claim took all it
/// could (a backlog: the next claim is a batch too). Without that second
/// rule the cadence was a ceiling: half the claimed work in hand per
/// 100 ms, 2,500 messages/s through a relay, whatever the machine.
const CLAIM_EVERY: Duration = Duration::from_millis(100);
/// Sessions crowd the store while at least [`posthorn_types::CROWDED_AT`]
/// submissions waited for their commit at once within this window
/// (`DeliveryConfig::yield_to_sessions`).
const CROWDED_WINDOW: Duration = Duration::from_millis(100);
/// Finished jobs recorded in one store commit at most.
const RECORD_MAX: usize = 1024;
/// While deliveries are in flight, a batch of outcomes smaller than
/// [`RECORD_FULL`] waits [`RECORD_GATHER`] for more before it is
/// committed: without it a drain committed every few messages on their
/// own (a store commit, and on the embedded store an fsync, each), and the
/// store writer was a sixth of the machine. A recipient's status is then
/// recorded up to this much later; nothing waits on it (the job's slot and
/// the destination were freed when it finished).
const RECORD_GATHER: Duration = Duration::from_millis(5);
/// See [`RECORD_GATHER`].
const RECORD_FULL: usize = 64;
/// How often a held-back claim looks again.
const YIELD_LOOK: Duration = Duration::from_millis(10);

/// Acceptance first (`DeliveryConfig::yield_to_sessions`): while
/// sessions crowd the store (see [`CROWDED_WINDOW`]), wait until the crowd
/// has gone or has lasted `most` (counted from `crowd_since`, the crowd's
/// start, which this keeps); after that, return at once however long the
/// crowd lasts, so delivery goes on as usual.
async fn hold_for_crowd(
    committing: &Committing,
    most: Duration,
    crowd_since: &mut Option<Instant>,
    shutdown: &CancellationToken,
) {
    let crowded = || committing.crowded_within(CROWDED_WINDOW);
    if !crowded() {
        *crowd_since = None;
        return;
    }
    let until = *crowd_since.get_or_insert_with(Instant::now) + most;
    while Instant::now() < until {
        tokio::select! {
            _ = tokio::time::sleep(YIELD_LOOK) => {}
            _ = shutdown.cancelled() => return,
        }
        if !crowded() {
            *crowd_since = None;
            return;
        }
    }
}

/// What the scheduler shows of one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationView {
    /// The mail servers (or `relay:host:port`).
    pub destination: String,
    /// Some of the recipient domains whose mail goes there.
    pub domains: Vec<String>,
    pub status: DestinationStatus,
    /// Connections open for it, busy or idle in the pool.
    pub open_connections: usize,
}

/// See the module documentation.
pub struct Engine {
    store: Arc<dyn Store>,
    config: DeliveryConfig,
    router: Option<Router>,
    pool: Pool,
    wake: Arc<Notify>,
    /// Raised when claimed work drains enough that claiming may go on.
    space: Notify,
    /// Claimed jobs not yet recorded (waiting, routing or running).
    outstanding: AtomicUsize,
    max_outstanding: usize,
    destinations: Mutex<HashMap<DestKey, DestEntry>>,
    route_slots: Arc<Semaphore>,
    /// Attempts and route lookups in flight, waited for at shutdown.
    tracker: TaskTracker,
    stopping: CancellationToken,
    records: Mutex<Option<mpsc::UnboundedSender<Finished>>>,
    keys: Mutex<HashMap<String, CachedKey>>,
    /// The signing threads, one per core, below the sessions' priority.
    signer: Signer,
    /// Signatures started as messages were accepted (`crate::ahead`),
    /// only while claims are held back for the sessions (`holding`).
    ahead: Ahead,
    /// True while `yield_to_sessions` holds the claims back.
    holding: AtomicBool,
    /// Domains whose key is being looked up for signing ahead.
    key_lookups: Mutex<HashSet<String>>,
    notices: Mutex<HashMap<i64, (Instant, bool)>>,
    /// Submissions waiting for their commit (`yield_to`).
    committing: std::sync::OnceLock<Arc<Committing>>,
}

impl Engine {
    /// An engine for `store`. Fails when the resolver cannot be set up.
    pub fn new(store: Arc<dyn Store>, config: DeliveryConfig) -> Result<Arc<Engine>, String> {
        let router = match config.relay {
            Some(_) => None,
            None => Some(Router::new(&config.resolver).map_err(|e| e.to_string())?),
        };
        // Claimed work in memory at most: enough for many slow destinations
        // to hold their share (their domains are left out of claims) and
        // the others to go on; with a relay there is one destination.
        let batch = config.claim_batch.max(1) as usize;
        let max_outstanding = match config.relay {
            Some(_) => batch,
            None => batch.saturating_mul(8),
        };
        Ok(Arc::new(Engine {
            store,
            // The per-destination caps are the scheduler's (shaping); the
            // pool keeps the total.
            pool: Pool::new(config.max_connections, config.max_connections),
            router,
            wake: Arc::new(Notify::new()),
            space: Notify::new(),
            outstanding: AtomicUsize::new(0),
            max_outstanding,
            destinations: Mutex::new(HashMap::new()),
            route_slots: Arc::new(Semaphore::new(ROUTE_LOOKUPS)),
            tracker: TaskTracker::new(),
            stopping: CancellationToken::new(),
            records: Mutex::new(None),
            keys: Mutex::new(HashMap::new()),
            signer: Signer::start(std::thread::available_parallelism().map_or(2, |n| n.get())),
            ahead: Ahead::new(AHEAD_THREADS),
            key_lookups: Mutex::new(HashSet::new()),
            holding: AtomicBool::new(false),
            notices: Mutex::new(HashMap::new()),
            committing: std::sync::OnceLock::new(),
            config,
        }))
    }

    /// Notify this to make the engine look for due work now (after an
    /// enqueue); it also looks every `poll_interval`.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Every destination the scheduler knows now, busiest first.
    pub fn destinations(&self) -> Vec<DestinationView> {
        let now = Instant::now();
        let mut all: Vec<DestinationView> = self
            .lock_destinations()
            .iter_mut()
            .map(|(k, e)| {
                let mut domains: Vec<String> = e.domains.iter().cloned().collect();
                domains.sort();
                DestinationView {
                    destination: k.place.to_string(),
                    domains,
                    status: e.dest.status(now),
                    open_connections: self.pool.open_for(&k.place),
                }
            })
            .collect();
        all.sort_by(|a, b| {
            (b.status.queued + b.status.in_flight)
                .cmp(&(a.status.queued + a.status.in_flight))
                .then_with(|| a.destination.cmp(&b.destination))
        });
        all
    }

    fn lock_destinations(&self) -> std::sync::MutexGuard<'_, HashMap<DestKey, DestEntry>> {
        self.destinations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run until `shutdown`; then stop claiming, give back what waits,
    /// let the attempts in flight finish for up to `grace`, record their
    /// outcomes, and return.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, grace: Duration) {
        let node = self.config.node_id.clone();
        match self.store.release_leases(&node, self.store.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                recipients = n,
                "took back this node's leases after a restart"
            ),
            Err(e) => tracing::error!(error = %e, "cannot take back this node's leases"),
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *self.records.lock().expect("records") = Some(tx);
        let recorder = tokio::spawn(self.clone().record_loop(rx));
        let upkeep = tokio::spawn(self.clone().upkeep_loop(shutdown.clone()));

        let mut last_claim: Option<Instant> = None;
        let mut crowd_since: Option<Instant> = None;
        // The last claim took all it could: more is due, and the next
        // claim will be a batch too, so it need not wait for CLAIM_EVERY.
        let mut backlog = false;
        while !shutdown.is_cancelled() {
            let outstanding = self.outstanding.load(Ordering::Acquire);
            if outstanding >= self.max_outstanding {
                self.idle(&shutdown, self.config.poll_interval).await;
                continue;
            }
            if let Some(wait) = last_claim
                .filter(|_| outstanding > 0 && !backlog)
                .and_then(|t| CLAIM_EVERY.checked_sub(t.elapsed()))
            {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            self.yield_to_sessions(&mut crowd_since, &shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
            last_claim = Some(Instant::now());
            let now = self.store.now();
            let limit = (self.config.claim_batch.max(1) as usize)
                .min(self.max_outstanding - outstanding) as u32;
            let lease_until = now + self.config.lease.as_secs() as i64;
            let skip = self.full_domains();
            let due = match self
                .store
                .claim_due_except(&node, now, lease_until, limit, &skip)
                .await
            {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim due recipients");
                    self.idle(&shutdown, Duration::from_secs(1)).await;
                    continue;
                }
            };
            let claimed = due.len();
            backlog = claimed == limit as usize;
            if claimed > 0 {
                metrics::counter!("posthorn_delivery_claimed_total").increment(claimed as u64);
                self.dispatch_claimed(due);
            }
            if claimed < limit as usize {
                // Everything due (and not left out) is claimed: wait for
                // new work, room at a full destination, or the next due
                // time.
                let wait = match self.store.next_due().await {
                    Ok(Some(t)) if t > now => Duration::from_secs((t - now) as u64),
                    Ok(Some(_)) if skip.is_empty() => Duration::from_millis(50),
                    _ => self.config.poll_interval,
                };
                self.idle(&shutdown, wait.min(self.config.poll_interval))
                    .await;
            }
        }

        // Shutdown: give back what waits, let what runs finish, record.
        self.stopping.cancel();
        let waiting: Vec<Job> = self
            .lock_destinations()
            .values_mut()
            .flat_map(|e| e.dest.drain())
            .collect();
        for job in waiting {
            self.unclaim(job);
        }
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("deliveries still in flight at shutdown; they resume after the restart");
        }
        self.records.lock().expect("records").take();
        let _ = recorder.await;
        upkeep.abort();
        self.pool.close_all().await;
    }

    /// Acceptance first: see [`hold_for_crowd`].
    async fn yield_to_sessions(
        &self,
        crowd_since: &mut Option<Instant>,
        shutdown: &CancellationToken,
    ) {
        if let Some(committing) = self.committing.get() {
            self.holding.store(true, Ordering::Relaxed);
            hold_for_crowd(
                committing,
                self.config.yield_to_sessions,
                crowd_since,
                shutdown,
            )
            .await;
            self.holding.store(false, Ordering::Relaxed);
        }
    }

    /// What the submitter calls as each message's commit starts, so its
    /// signature is made ahead (`crate::ahead`).
    pub fn accepting(self: &Arc<Self>) -> Arc<dyn Accepting> {
        Arc::new(SignAhead(self.clone()))
    }

    /// Give acceptance the store first: hold claims back while
    /// `committing` (the submitter's count) shows sessions crowding it,
    /// for up to `DeliveryConfig::yield_to_sessions`.
    pub fn yield_to(&self, committing: Arc<Committing>) {
        let _ = self.committing.set(committing);
    }

    async fn idle(&self, shutdown: &CancellationToken, wait: Duration) {
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = self.space.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => {}
        }
    }

    /// The domains of destinations whose queues are full.
    fn full_domains(&self) -> Vec<String> {
        let map = self.lock_destinations();
        let mut skip = Vec::new();
        for e in map.values().filter(|e| e.full) {
            skip.extend(e.domains.iter().cloned());
            if skip.len() >= MAX_SKIPPED_DOMAINS {
                skip.truncate(MAX_SKIPPED_DOMAINS);
                break;
            }
        }
        skip
    }

    /// Hand claimed recipients on: in capture mode straight to an attempt,
    /// else to a route lookup per domain that puts the jobs in their
    /// destination's ready queue.
    fn dispatch_claimed(self: &Arc<Self>, due: Vec<DueRecipient>) {
        let jobs = self.group(due);
        self.outstanding.fetch_add(jobs.len(), Ordering::AcqRel);
        if self.config.capture {
            for job in jobs {
                self.tracker.spawn(self.clone().deliver(job));
            }
            return;
        }
        let mut by_domain: HashMap<String, Vec<Job>> = HashMap::new();
        for job in jobs {
            by_domain.entry(job.domain.clone()).or_default().push(job);
        }
        for (domain, jobs) in by_domain {
            let this = self.clone();
            self.tracker.spawn(async move {
                let _slot = this.route_slots.clone().acquire_owned().await;
                this.place(domain, jobs).await;
            });
        }
    }

    /// Route `domain` once for its jobs and put them in their
    /// destination's queue; a route that fails ends them here.
    async fn place(self: &Arc<Self>, domain: String, mut jobs: Vec<Job>) {
        let (place, hosts, targets) = match self.targets(&domain).await {
            Ok(t) => t,
            Err(e) => {
                let r = route_failure(&domain, &e);
                for job in jobs {
                    self.end_untried(job, r.clone()).await;
                }
                return;
            }
        };
        let (rule, shape) = if self.config.relay.is_some() {
            (None, self.config.shaping.defaults)
        } else {
            self.config.shaping.shape_for(&domain, &hosts)
        };
        let key = DestKey {
            place: Arc::from(place.as_str()),
            rule,
        };
        let targets = Arc::new(targets);
        for job in &mut jobs {
            job.targets = targets.clone();
            job.shape = shape;
            job.dest = Some(key.clone());
        }
        if self.stopping.is_cancelled() {
            for job in jobs {
                self.unclaim(job);
            }
            return;
        }
        let now = Instant::now();
        let mut suspended = Vec::new();
        {
            let mut map = self.lock_destinations();
            let entry = map.entry(key.clone()).or_insert_with(|| DestEntry {
                dest: Destination::new(shape, now),
                domains: HashSet::new(),
                timer: false,
                full: false,
            });
            if entry.domains.len() < MAX_DOMAINS_PER_DEST && !domain.is_empty() {
                entry.domains.insert(domain.clone());
            }
            for job in jobs {
                if let Err(deferred) = entry.dest.push(job, now) {
                    suspended.push(deferred);
                }
            }
            entry.full = entry.dest.is_full();
        }
        for (job, error, until) in suspended {
            self.defer_untried(job, &error, until).await;
        }
        self.pump(&key);
    }

    /// Start what the destination lets start now; schedule a wake-up when
    /// its rate is what holds the rest back.
    fn pump(self: &Arc<Self>, key: &DestKey) {
        let stale_after = self.config.lease / 2;
        loop {
            let now = Instant::now();
            let (action, stale) = {
                let mut map = self.lock_destinations();
                let Some(entry) = map.get_mut(key) else {
                    return;
                };
                if self.stopping.is_cancelled() {
                    (Take::Idle, entry.dest.drain())
                } else {
                    let stale = entry
                        .dest
                        .take_stale(|j| j.claimed.elapsed() >= stale_after);
                    let action = entry.dest.take(now);
                    if let Take::At(at) = &action {
                        if entry.timer {
                            (Take::Idle, stale)
                        } else {
                            entry.timer = true;
                            let at = *at;
                            let this = self.clone();
                            let key = key.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep_until(at.into()).await;
                                if let Some(e) = this.lock_destinations().get_mut(&key) {
                                    e.timer = false;
                                }
                                this.pump(&key);
                            });
                            (Take::Idle, stale)
                        }
                    } else {
                        if entry.full && entry.dest.queued() <= entry.dest.ready_cap() / 2 {
                            entry.full = false;
                            self.space.notify_one();
                        }
                        (action, stale)
                    }
                }
            };
            for job in stale {
                self.unclaim(job);
            }
            match action {
                Take::Start(job) => {
                    self.tracker.spawn(self.clone().deliver(job));
                }
                Take::Defer(jobs, error, until) => {
                    let this = self.clone();
                    self.tracker.spawn(async move {
                        for job in jobs {
                            this.defer_untried(job, &error, until).await;
                        }
                    });
                    return;
                }
                Take::Idle | Take::At(_) => return,
            }
        }
    }

    /// One job per message and destination (per message in relay mode),
    /// at most [`MAX_RCPTS_PER_TRANSACTION`] recipients each.
    fn group(&self, due: Vec<DueRecipient>) -> Vec<Job> {
        let relay = self.config.relay.is_some();
        let claimed = Instant::now();
        let mut jobs: Vec<Job> = Vec::new();
        let mut index: HashMap<(MessageId, String), usize> = HashMap::new();
        let mut signed: HashMap<MessageId, Arc<tokio::sync::OnceCell<Arc<Outgoing>>>> =
            HashMap::new();
        for r in due {
            let domain = if relay {
                String::new()
            } else {
                domain_of(&r.address).to_ascii_lowercase()
            };
            let key = (r.message_id, domain.clone());
            match index.get(&key) {
                Some(&i) if jobs[i].rcpts.len() < MAX_RCPTS_PER_TRANSACTION => {
                    jobs[i].rcpts.push(r)
                }
                _ => {
                    index.insert(key, jobs.len());
                    jobs.push(Job {
                        message_id: r.message_id,
                        account_id: r.account_id,
                        mail_from: r.mail_from.clone(),
                        header_from: r.header_from.clone(),
                        label: r.label.clone(),
                        received_at: r.received_at,
                        is_dsn: r.is_dsn,
                        domain,
                        signed: signed.entry(r.message_id).or_default().clone(),
                        rcpts: vec![r],
                        claimed,
                        dest: None,
                        targets: Arc::default(),
                        shape: self.config.shaping.defaults,
                    });
                }
            }
        }
        jobs
    }

    /// Hand a finished job to the recorder.
    fn record(&self, finished: Finished) {
        let before = self.outstanding.fetch_sub(1, Ordering::AcqRel);
        if before == self.max_outstanding / 2 + 1 {
            self.space.notify_one();
        }
        if let Some(tx) = self.records.lock().expect("records").as_ref() {
            let _ = tx.send(finished);
        }
    }

    /// Give a claimed job back untried (shutdown before it started, or it
    /// waited too long for its lease): due again now.
    fn unclaim(&self, job: Job) {
        let now = self.store.now();
        let updates = job
            .rcpts
            .iter()
            .map(|r| RecipientUpdate {
                message_id: r.message_id,
                idx: r.idx,
                status: if r.attempts == 0 {
                    RecipientStatus::Queued
                } else {
                    RecipientStatus::Deferred
                },
                attempts: r.attempts,
                last_reply: None,
                remote_host: None,
                next_try: Some(now),
                suppress: None,
            })
            .collect();
        self.record(Finished {
            updates,
            notice: None,
        });
    }

    /// End a job that was not sent because its route failed: every
    /// recipient gets `result` (with a bounce notice when it is final).
    async fn end_untried(&self, job: Job, result: AttemptResult) {
        let content = if result.code >= 500 {
            self.store.message_content(job.message_id).await.ok()
        } else {
            None
        };
        let results = vec![result; job.rcpts.len()];
        let finished = self.conclude(&job, results, content.as_deref(), None).await;
        self.record(finished);
    }

    /// Defer a job of a suspended destination without a connection, with
    /// the destination's last error, until the suspension ends.
    async fn defer_untried(&self, job: Job, error: &str, until: Instant) {
        let wait = until.saturating_duration_since(Instant::now());
        let next_try = self.store.now() + wait.as_secs().max(1) as i64;
        let result = temporary(451, "4.4.1", error, None);
        let results = vec![result; job.rcpts.len()];
        let finished = self.conclude(&job, results, None, Some(next_try)).await;
        self.record(finished);
    }

    async fn deliver(self: Arc<Self>, job: Job) {
        // An attempt never outlives its lease (less a margin to record it).
        let lease_left = self
            .config
            .lease
            .saturating_sub(job.claimed.elapsed())
            .saturating_sub(Duration::from_secs(30))
            .max(Duration::from_secs(1));
        let (results, content, health) = match tokio::time::timeout(lease_left, self.attempt(&job))
            .await
        {
            Ok(r) => r,
            Err(_) => (
                job.rcpts
                    .iter()
                    .map(|_| temporary(451, "4.4.7", "the delivery attempt took too long", None))
                    .collect(),
                None,
                Health::Connected,
            ),
        };
        let finished = self
            .conclude(
                &job,
                results,
                content.as_deref().map(|o| o.content.as_slice()),
                None,
            )
            .await;
        self.record(finished);
        if let Some(key) = &job.dest {
            let now = Instant::now();
            let suspended = {
                let mut map = self.lock_destinations();
                map.get_mut(key).and_then(|e| {
                    let s = e
                        .dest
                        .finish(health, now, |n| self.config.shaping.backoff(n));
                    if s.is_some() {
                        e.full = false;
                    }
                    s
                })
            };
            if let Some((jobs, error, until)) = suspended {
                tracing::warn!(destination = %key.place, %error, suspended_for = ?until.saturating_duration_since(now),
                    "destination unreachable; suspended");
                if !jobs.is_empty() {
                    self.space.notify_one();
                }
                for job in jobs {
                    self.defer_untried(job, &error, until).await;
                }
            }
            self.pump(key);
        }
    }

    /// Try the job once; one result per recipient, in order, the content
    /// when it could be read (for a bounce notice), and what the attempt
    /// said about the destination.
    async fn attempt(&self, job: &Job) -> (Vec<AttemptResult>, Option<Arc<Outgoing>>, Health) {
        let all = |r: AttemptResult| job.rcpts.iter().map(|_| r.clone()).collect::<Vec<_>>();
        // The first job of the message reads and signs; the others of the
        // same claim wait for it and send the same bytes. A failure is not
        // kept: the next job tries again.
        let signed = job
            .signed
            .get_or_try_init(|| async {
                let content = match self.store.message_content(job.message_id).await {
                    Ok(c) => c,
                    Err(StoreError::NotFound(m)) => {
                        let r = permanent(554, "5.3.0", &format!("message content is gone: {m}"));
                        return Err((r, None));
                    }
                    Err(e) => {
                        let r = temporary(451, "4.3.0", &format!("store: {e}"), None);
                        return Err((r, None));
                    }
                };
                match self.sign(job, content).await {
                    Ok(s) => Ok(Arc::new(s)),
                    Err((content, reason)) => Err((
                        temporary(451, "4.3.0", &reason, None),
                        Some(Arc::new(Outgoing::unsigned(content))),
                    )),
                }
            })
            .await;
        match signed {
            Ok(signed) => {
                let signed = signed.clone();
                let (results, health) = self.transmit(job, &signed.parts()).await;
                (results, Some(signed), health)
            }
            Err((r, content)) => (all(r), content, Health::NotTried),
        }
    }

    /// The content and, to go on top of it, a DKIM-Signature field made
    /// with the From domain's key (none, with a warning, when the domain
    /// has no key).
    async fn sign(&self, job: &Job, content: Vec<u8>) -> Result<Outgoing, (Vec<u8>, String)> {
        let domain = domain_of(&job.header_from).to_ascii_lowercase();
        let key = match self.key(&domain).await {
            Ok(k) => k,
            Err(e) => {
                return Err((
                    content,
                    format!("cannot read the DKIM key of {domain}: {e}"),
                ))
            }
        };
        let Some(key) = key else {
            tracing::warn!(%domain, id = %job.message_id, "no DKIM key for the From domain; sending unsigned");
            return Ok(Outgoing::unsigned(content));
        };
        if let Some(header) = self.ahead.take(job.message_id) {
            metrics::counter!("posthorn_dkim_signatures_total").increment(1);
            return Ok(Outgoing {
                signature: header.into_bytes(),
                content,
            });
        }
        match self.signer.sign(key, content).await {
            Some((content, Ok(header))) => {
                metrics::counter!("posthorn_dkim_signatures_total").increment(1);
                Ok(Outgoing {
                    signature: header.into_bytes(),
                    content,
                })
            }
            Some((content, Err(e))) => {
                tracing::warn!(%domain, id = %job.message_id, error = %e, "DKIM signing failed; sending unsigned");
                Ok(Outgoing::unsigned(content))
            }
            None => Err((Vec::new(), "no DKIM signing thread answered".to_string())),
        }
    }

    /// The key of `domain` if the cache holds it now (`None` inside: the
    /// domain has none).
    fn cached_key(&self, domain: &str) -> Option<Option<Arc<DkimKey>>> {
        let keys = self.keys.lock().expect("key cache");
        keys.get(domain)
            .filter(|(at, _)| at.elapsed() < KEY_TTL)
            .map(|(_, key)| key.clone())
    }

    async fn key(&self, domain: &str) -> Result<Option<Arc<DkimKey>>, StoreError> {
        if let Some(key) = self.cached_key(domain) {
            return Ok(key);
        }
        let key = match self.store.domain(domain).await {
            Ok(d) => match DkimKey::from_pem(&d.name, &d.dkim_selector, &d.dkim_private_key) {
                Ok(k) => Some(Arc::new(k)),
                Err(e) => {
                    tracing::error!(%domain, error = %e, "unusable DKIM key");
                    None
                }
            },
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        self.keys
            .lock()
            .expect("key cache")
            .insert(domain.to_string(), (Instant::now(), key.clone()));
        Ok(key)
    }

    /// Send `message` (its parts, in order) to the job's destination; one
    /// result per recipient, and what the attempt says about the
    /// destination's health.
    async fn transmit(&self, job: &Job, message: &[&[u8]]) -> (Vec<AttemptResult>, Health) {
        let n = job.rcpts.len();
        if self.config.capture {
            let kept = AttemptResult {
                code: 250,
                enhanced: Some("2.0.0".to_string()),
                reply: CAPTURED_REPLY.to_string(),
                remote_host: Some(CAPTURE_HOST.to_string()),
            };
            return (vec![kept; n], Health::NotTried);
        }
        let (settings, profile) = self.client_settings(&job.domain);
        let rcpts: Vec<String> = job.rcpts.iter().map(|r| r.address.clone()).collect();
        let mut last_error = String::from("no address to connect to");
        let mut busy = false;
        let place: Arc<str> = job
            .dest
            .as_ref()
            .map_or_else(|| Arc::from(""), |d| d.place.clone());
        for (name, addr) in job.targets.iter() {
            let key = PoolKey {
                place: place.clone(),
                addr: *addr,
                profile,
            };
            // A reused connection may have been closed while idle: one more
            // go on a fresh one.
            for _ in 0..2 {
                let mut pooled = match self.connection(&key, name, &settings).await {
                    Ok(p) => p,
                    Err(e) => {
                        last_error = e.message().to_string();
                        busy |= says_slow_down(&last_error);
                        break;
                    }
                };
                let peer = format!("{}[{}]", name.trim_end_matches('.'), addr.ip());
                match pooled
                    .conn
                    .send_parts(&job.mail_from, &rcpts, message)
                    .await
                {
                    Ok(outcomes) => {
                        pooled.used += 1;
                        self.give_back(&key, pooled, job.shape);
                        let health = match outcomes.iter().find(|o| {
                            o.code == 421
                                || (o.code / 100 == 4
                                    && o.enhanced.as_deref().is_some_and(|e| e.starts_with("4.7.")))
                        }) {
                            Some(o) => Health::SlowDown(format!("{} {}", o.code, o.text)),
                            None => Health::Connected,
                        };
                        return (
                            outcomes.iter().map(|o| from_outcome(o, &peer)).collect(),
                            health,
                        );
                    }
                    Err(ClientError::Temporary(m)) if pooled.reused => {
                        tracing::debug!(%peer, error = %m, "reused connection failed; trying a fresh one");
                        tokio::spawn(pooled.conn.quit());
                    }
                    Err(e) => {
                        let usable = pooled.conn.is_usable();
                        if usable {
                            self.give_back(&key, pooled, job.shape);
                        } else {
                            tokio::spawn(pooled.conn.quit());
                        }
                        let health = if says_slow_down(e.message()) {
                            Health::SlowDown(e.message().to_string())
                        } else {
                            Health::Connected
                        };
                        let r = match e {
                            ClientError::Permanent(m) => AttemptResult {
                                code: 554,
                                enhanced: None,
                                reply: format!("554 {m}"),
                                remote_host: Some(peer),
                            },
                            ClientError::Temporary(m) => temporary(451, "4.4.2", &m, Some(peer)),
                        };
                        return (vec![r; n], health);
                    }
                }
            }
        }
        let health = Health::Unreachable {
            error: last_error.clone(),
            busy,
        };
        (vec![temporary(451, "4.4.1", &last_error, None); n], health)
    }

    /// A pooled connection to `key`, or a new one.
    async fn connection(
        &self,
        key: &PoolKey,
        name: &str,
        settings: &ClientSettings,
    ) -> Result<Pooled, ClientError> {
        match self.pool.checkout(key).await {
            Checkout::Reuse(p) => Ok(p),
            Checkout::Open(permits) => {
                let conn =
                    Connection::open(key.addr, name, settings, &self.config.extra_roots).await?;
                metrics::counter!("posthorn_delivery_connections_total").increment(1);
                Ok(permits.into_pooled(conn))
            }
        }
    }

    fn give_back(&self, key: &PoolKey, pooled: Pooled, shape: Shape) {
        if pooled.conn.is_usable() && pooled.used < shape.messages_per_connection_cap() {
            self.pool.checkin(key, pooled);
        } else {
            tokio::spawn(pooled.conn.quit());
        }
    }

    /// Where mail to `domain` goes: the destination's name (the relay, or
    /// the mail servers' names in preference order), those host names, and
    /// the hosts to try in order, each with its address: the relay's (the
    /// operator's choice, whatever its address), or the route to the
    /// domain without internal addresses (unless
    /// `allow_private_destinations`).
    async fn targets(&self, domain: &str) -> Result<Target, RouteError> {
        if let Some(relay) = &self.config.relay {
            let addrs = tokio::net::lookup_host((relay.host.as_str(), relay.port))
                .await
                .map_err(|e| RouteError::Temporary(format!("relay host {}: {e}", relay.host)))?;
            let place = format!("relay:{}:{}", relay.host, relay.port);
            return Ok((
                place,
                vec![relay.host.clone()],
                addrs.map(|a| (relay.host.clone(), a)).collect(),
            ));
        }
        let router = self
            .router
            .as_ref()
            .expect("a router when there is no relay");
        let mut route = router.route(domain).await?;
        if !self.config.allow_private_destinations {
            route = external_only(domain, route)?;
        }
        let hosts: Vec<String> = route
            .hosts
            .iter()
            .map(|h| h.name.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        let targets = route
            .hosts
            .iter()
            .flat_map(|h| {
                h.addrs
                    .iter()
                    .map(|ip| (h.name.clone(), SocketAddr::new(*ip, self.config.port)))
            })
            .collect();
        Ok((hosts.join(","), hosts, targets))
    }

    fn client_settings(&self, domain: &str) -> (ClientSettings, &'static str) {
        let c = &self.config;
        let mut s = ClientSettings::new(c.hostname.clone());
        s.connect_timeout = c.connect_timeout;
        s.command_timeout = c.command_timeout;
        s.data_timeout = c.data_timeout;
        if let Some(relay) = &c.relay {
            s.tls = relay.tls;
            s.verify_tls = relay.verify_certificate;
            s.auth = relay.auth.clone();
            return (s, "relay");
        }
        if c.require_tls_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
        {
            s.tls = TlsPolicy::Required;
            return (s, "required");
        }
        (s, "opportunistic")
    }

    /// Each recipient's new state, and the bounce notice they call for.
    /// `defer_until` replaces the retry schedule's next try of a deferral
    /// (a suspended destination's mail comes back when it ends).
    async fn conclude(
        &self,
        job: &Job,
        results: Vec<AttemptResult>,
        content: Option<&[u8]>,
        defer_until: Option<i64>,
    ) -> Finished {
        let now = self.store.now();
        let policy = RetryPolicy {
            schedule: &self.config.retry_schedule,
            max_age: self.config.max_age,
        };
        let mut updates = Vec::with_capacity(results.len());
        let mut failed = Vec::new();
        for (r, result) in job.rcpts.iter().zip(results) {
            let mut d = decide(&result, r.attempts, job.received_at, now, &policy);
            if let (Some(t), RecipientStatus::Deferred) = (defer_until, d.status) {
                let expires = job.received_at + self.config.max_age.as_secs() as i64;
                d.next_try = Some(t.min(expires));
            }
            metrics::counter!("posthorn_deliveries_total", "outcome" => d.status.as_str())
                .increment(1);
            if d.status == RecipientStatus::Delivered {
                // Acceptance to delivery, in seconds.
                metrics::histogram!("posthorn_delivery_latency_seconds")
                    .record((now - job.received_at).max(0) as f64);
            }
            tracing::info!(id = %job.message_id, rcpt = %r.address, status = %d.status, attempts = d.attempts, reply = %result.reply, "delivery attempt");
            if matches!(
                d.status,
                RecipientStatus::Bounced | RecipientStatus::Expired
            ) {
                failed.push(DsnRecipient {
                    address: r.address.clone(),
                    action: DsnAction::Failed,
                    status: match (&result.enhanced, d.status) {
                        (_, RecipientStatus::Expired) => "4.4.7".to_string(),
                        (Some(e), _) => e.clone(),
                        (None, _) => "5.0.0".to_string(),
                    },
                    diagnostic: Some(result.reply.clone()),
                    remote_mta: result
                        .remote_host
                        .as_ref()
                        .map(|h| host_name(h).to_string()),
                    last_attempt: Some(now),
                });
            }
            updates.push(RecipientUpdate {
                message_id: r.message_id,
                idx: r.idx,
                status: d.status,
                attempts: d.attempts,
                suppress: suppresses(&d, &result, job.is_dsn).then(|| result.reply.clone()),
                last_reply: Some(result.reply),
                remote_host: result.remote_host,
                next_try: d.next_try,
            });
        }
        let notice = if failed.is_empty() {
            None
        } else {
            self.notice(job, &failed, content.unwrap_or_default(), now)
                .await
        };
        Finished { updates, notice }
    }

    /// The bounce notice for `failed`, unless none is due: notices are off,
    /// the message is itself a notice, or it had the null sender.
    async fn notice(
        &self,
        job: &Job,
        failed: &[DsnRecipient],
        original: &[u8],
        now: i64,
    ) -> Option<NewMessage> {
        if !self.config.dsn || !self.notices_on(job.account_id).await {
            return None;
        }
        bounce_notice(
            &self.config.hostname,
            &Bounced {
                message_id: job.message_id,
                account_id: job.account_id,
                mail_from: &job.mail_from,
                label: job.label.as_deref(),
                received_at: job.received_at,
                is_dsn: job.is_dsn,
            },
            failed,
            original,
            now,
        )
    }

    async fn notices_on(&self, account_id: i64) -> bool {
        if let Some((at, on)) = self.notices.lock().expect("cache").get(&account_id) {
            if at.elapsed() < SETTING_TTL {
                return *on;
            }
        }
        let on = match self.store.account_settings(account_id).await {
            Ok(settings) => bounce_notices_on(&settings),
            Err(_) => true,
        };
        self.notices
            .lock()
            .expect("cache")
            .insert(account_id, (Instant::now(), on));
        on
    }

    /// Record finished jobs, every batch waiting at that moment in one
    /// commit. A failed commit is retried: the leases keep the work from
    /// anyone else meanwhile.
    async fn record_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Finished>) {
        let mut waiting = Vec::new();
        while rx.recv_many(&mut waiting, RECORD_MAX).await > 0 {
            // A few finished jobs while more are in flight: let the batch
            // fill a moment (see RECORD_GATHER).
            if waiting.len() < RECORD_FULL && self.outstanding.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(RECORD_GATHER).await;
                while waiting.len() < RECORD_MAX {
                    match rx.try_recv() {
                        Ok(f) => waiting.push(f),
                        Err(_) => break,
                    }
                }
            }
            let mut batch = OutcomeBatch::default();
            for f in waiting.drain(..) {
                batch.updates.extend(f.updates);
                batch.notices.extend(f.notice);
            }
            let has_notices = !batch.notices.is_empty();
            let mut delay = Duration::from_millis(100);
            loop {
                match self
                    .store
                    .record_outcomes(Some(&self.config.node_id), batch.clone())
                    .await
                {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot record delivery outcomes; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
            }
            if has_notices {
                self.wake.notify_one();
            }
        }
    }

    /// Export the destinations as gauges, and forget the ones with nothing
    /// left to remember. The label is the shaping rule's name (its first
    /// domain or server suffix) or `default`, so the series stay as few as
    /// the configuration's rules, whatever the traffic.
    fn report_destinations(&self) {
        let now = Instant::now();
        let rules = &self.config.shaping.rules;
        let mut per_label: HashMap<String, (usize, usize, usize)> = HashMap::new();
        for r in rules {
            per_label.insert(rule_label(r), (0, 0, 0));
        }
        per_label.insert("default".into(), (0, 0, 0));
        let mut map = self.lock_destinations();
        for (key, entry) in map.iter_mut() {
            let label = key
                .rule
                .and_then(|i| rules.get(i))
                .map_or_else(|| "default".to_string(), rule_label);
            let status = entry.dest.status(now);
            let slot = per_label.entry(label).or_default();
            slot.0 += status.queued;
            slot.1 += status.in_flight;
            slot.2 += usize::from(status.suspended_for.is_some());
        }
        map.retain(|_, e| e.timer || !e.dest.is_forgettable(now));
        drop(map);
        for (label, (queued, in_flight, suspended)) in per_label {
            metrics::gauge!("posthorn_destination_queued", "shaping" => label.clone())
                .set(queued as f64);
            metrics::gauge!("posthorn_destination_in_flight", "shaping" => label.clone())
                .set(in_flight as f64);
            metrics::gauge!("posthorn_destinations_suspended", "shaping" => label)
                .set(suspended as f64);
        }
    }

    /// Close idle connections; purge old bodies and records.
    async fn upkeep_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_purge: Option<Instant> = None;
        let tick = self
            .config
            .idle_connection_timeout
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.cancelled() => return,
            }
            self.pool.close_idle(self.config.idle_connection_timeout);
            self.report_destinations();
            if last_purge.is_none_or(|t| {
                t.elapsed() >= PURGE_EVERY.min(self.config.body_retention.max(tick))
            }) {
                last_purge = Some(Instant::now());
                let now = self.store.now();
                let bodies = now - self.config.body_retention.as_secs() as i64;
                let records = now - self.config.status_retention.as_secs() as i64;
                match self.store.purge(bodies, records).await {
                    Ok((0, 0)) => {}
                    Ok((b, r)) => tracing::info!(bodies = b, records = r, "purged final messages"),
                    Err(e) => tracing::warn!(error = %e, "purge failed"),
                }
            }
        }
    }
}

/// The metrics label of a shaping rule: its first domain or server suffix.
/// [`Engine::accepting`]'s side of the submitter.
struct SignAhead(Arc<Engine>);

impl Accepting for SignAhead {
    fn accepting(&self, id: MessageId, header_from: &str, content: &[u8]) {
        let engine = &self.0;
        // Only while delivery holds its claims back: then the CPU the
        // sessions leave idle would go unused. Once delivery runs beside
        // them it signs in those gaps itself, and signing ahead as well
        // cost 13 % of the accept rate in scenario a (one message per
        // connection) for no end-to-end gain. Checked first, so a
        // submission outside a hold pays one atomic load here.
        if !engine.holding.load(Ordering::Relaxed) {
            return;
        }
        let domain = domain_of(header_from).to_ascii_lowercase();
        match engine.cached_key(&domain) {
            Some(Some(key)) => engine.ahead.start(id, key, content),
            Some(None) => {}
            // Looked up once in the background, for the messages after
            // this one.
            None => {
                if engine
                    .key_lookups
                    .lock()
                    .expect("key lookups")
                    .insert(domain.clone())
                {
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        let _ = engine.key(&domain).await;
                        engine
                            .key_lookups
                            .lock()
                            .expect("key lookups")
                            .remove(&domain);
                    });
                }
            }
        }
    }
}

fn rule_label(rule: &crate::shaping::ShapingRule) -> String {
    rule.domains
        .first()
        .or(rule.mx_suffixes.first())
        .cloned()
        .unwrap_or_else(|| "rule".into())
}

/// Whether an account's stored settings leave bounce notices on (they are
/// unless `bounce_notices` is `0`).
pub fn bounce_notices_on(settings: &[(String, String)]) -> bool {
    !settings
        .iter()
        .any(|(k, v)| k == BOUNCE_NOTICES_SETTING && v == "0")
}

/// The message a bounce notice is about.
pub struct Bounced<'a> {
    pub message_id: MessageId,
    pub account_id: i64,
    pub mail_from: &'a str,
    pub label: Option<&'a str>,
    pub received_at: i64,
    pub is_dsn: bool,
}

/// The bounce notice (RFC 3464) about `failed` recipients of `original`,
/// from `mailer-daemon@<the sender's domain>` (signed with that domain's
/// key) to the envelope sender, with the null sender so it can never cause
/// a notice itself. `None` for a notice about a notice or a message with
/// the null sender.
pub fn bounce_notice(
    hostname: &str,
    about: &Bounced,
    failed: &[DsnRecipient],
    original: &[u8],
    now: i64,
) -> Option<NewMessage> {
    if about.is_dsn || about.mail_from.is_empty() || failed.is_empty() {
        return None;
    }
    let id = MessageId::generate();
    let from = format!("mailer-daemon@{}", domain_of(about.mail_from));
    let queue_id = about.message_id.to_string();
    let message_id = format!("<{id}@{hostname}>");
    let content = dsn::build(&DsnInput {
        reporting_mta: hostname,
        queue_id: &queue_id,
        from: &from,
        to: about.mail_from,
        arrival: about.received_at,
        now,
        message_id: &message_id,
        original,
        recipients: failed,
    });
    Some(NewMessage {
        id,
        account_id: about.account_id,
        mail_from: String::new(),
        recipients: vec![about.mail_from.to_string()],
        auth_user: "mailer-daemon".into(),
        client_ip: None,
        label: about.label.map(str::to_string),
        received_at: now,
        subject: "Undelivered Mail Returned to Sender".into(),
        header_from: from,
        attachments: Vec::new(),
        content,
        suppressed: Vec::new(),
        is_dsn: true,
    })
}

/// A destination's name, its host names, and the hosts to try with their
/// addresses.
type Target = (String, Vec<String>, Vec<(String, SocketAddr)>);

/// What a recipient gets when its domain cannot be routed.
fn route_failure(domain: &str, e: &RouteError) -> AttemptResult {
    match e {
        RouteError::Permanent(m) if m == NULL_MX => permanent(556, "5.1.10", m),
        RouteError::Permanent(m) => permanent(550, "5.1.2", &format!("{domain}: {m}")),
        RouteError::Temporary(m) => temporary(451, "4.4.3", &format!("{domain}: {m}"), None),
        // A policy refusal (5.7.1), not a bad address: it never suppresses.
        RouteError::InternalDestination(m) => permanent(550, "5.7.1", m),
    }
}

/// Whether a failure says "too many connections / slow down": a `421`
/// reply (to the greeting or a command).
fn says_slow_down(error: &str) -> bool {
    error.contains("rejected: 421")
}

/// `mx.example.net` of `mx.example.net[192.0.2.1]`.
fn host_name(peer: &str) -> &str {
    peer.split('[').next().unwrap_or(peer)
}

fn temporary(code: u16, enhanced: &str, text: &str, remote: Option<String>) -> AttemptResult {
    AttemptResult {
        code,
        enhanced: Some(enhanced.to_string()),
        reply: format!("{code} {enhanced} {text}"),
        remote_host: remote,
    }
}

fn permanent(code: u16, enhanced: &str, text: &str) -> AttemptResult {
    AttemptResult {
        code,
        enhanced: Some(enhanced.to_string()),
        reply: format!("{code} {enhanced} {text}"),
        remote_host: None,
    }
}

fn from_outcome(o: &RcptOutcome, peer: &str) -> AttemptResult {
    let reply = match &o.enhanced {
        Some(e) => format!("{} {e} {}", o.code, o.text),
        None => format!("{} {}", o.code, o.text),
    };
    AttemptResult {
        code: o.code,
        enhanced: o.enhanced.clone(),
        reply,
        remote_host: Some(peer.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`hold_for_crowd`] with no shutdown; how long it held.
    async fn hold(c: &Committing, most: Duration, since: &mut Option<Instant>) -> Duration {
        let t = Instant::now();
        hold_for_crowd(c, most, since, &CancellationToken::new()).await;
        t.elapsed()
    }

    #[tokio::test]
    async fn no_crowd_holds_nothing() {
        let c = Committing::default();
        let _one = c.enter();
        let mut since = None;
        assert!(hold(&c, Duration::from_secs(60), &mut since).await < Duration::from_secs(5));
        assert_eq!(since, None);
    }

    #[tokio::test]
    async fn a_crowd_holds_claims_once_for_at_most_the_limit() {
        let c = Committing::default();
        let _crowd: Vec<_> = (0..posthorn_types::CROWDED_AT).map(|_| c.enter()).collect();
        let mut since = None;
        let most = Duration::from_millis(200);
        assert!(
            hold(&c, most, &mut since).await >= most,
            "held for the limit"
        );
        assert!(since.is_some(), "the crowd's start is kept");
        // The crowd goes on: claims go on as usual, not held again.
        assert!(hold(&c, most, &mut since).await < most);
    }

    #[tokio::test]
    async fn the_hold_ends_when_the_crowd_goes() {
        let c = Committing::default();
        let crowd: Vec<_> = (0..posthorn_types::CROWDED_AT).map(|_| c.enter()).collect();
        drop(crowd);
        let mut since = None;
        // The crowd was a moment ago: held until it is CROWDED_WINDOW old,
        // far sooner than the limit.
        assert!(hold(&c, Duration::from_secs(60), &mut since).await < Duration::from_secs(30));
        assert_eq!(since, None, "a new crowd starts a new hold");
    }

    #[tokio::test]
    async fn shutdown_ends_the_hold() {
        let c = Committing::default();
        let _crowd: Vec<_> = (0..posthorn_types::CROWDED_AT).map(|_| c.enter()).collect();
        let stop = CancellationToken::new();
        stop.cancel();
        let t = Instant::now();
        hold_for_crowd(&c, Duration::from_secs(60), &mut None, &stop).await;
        assert!(t.elapsed() < Duration::from_secs(30));
    }
}
