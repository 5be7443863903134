//! Sends stored webhook events: claims due deliveries from the store,
//! POSTs each signed event, and records the result (done, or the next try
//! on `retry_schedule`, or given up after `webhook_max_age`).
//!
//! An event is in the store before it is sent (written in the commit of the
//! status change), and a claimed delivery whose result never arrived is due
//! again when its claim runs out, so a restart loses none; a receiver may
//! see an event twice and should use its `id` to tell.
//!
//! Unless `allow_private_networks`, a URL is checked again before each
//! POST (an address host must not be internal), and the HTTP client
//! resolves names with [`PublicResolver`], which leaves internal addresses
//! out of what it connects to: a name that resolved to a public address
//! when the webhook was created and to `127.0.0.1` now (DNS rebinding) is
//! not reached. The client follows no redirects and uses no proxy, so the
//! address checked is the address connected to.

use crate::webhooks::{check_url_host, internal_refusal};
use crate::ApiConfig;
use hmac::{Hmac, Mac};
use posthorn_store::{DueWebhookDelivery, Store, WebhookResult};
use posthorn_types::time::{rfc3339, unix_now};
use serde::Serialize;
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Deliveries claimed at once.
const BATCH: u32 = 64;
/// POSTs in flight at once.
const PARALLEL: usize = 16;
/// Longest wait between looks at the store when nothing is due.
const IDLE: Duration = Duration::from_secs(1);

/// The JSON POSTed for one event.
#[derive(Serialize, Debug)]
pub struct EventPayload<'a> {
    /// Unique per event; the same on every retry.
    pub id: String,
    /// `delivered`, `deferred`, `bounced`, `expired`, `suppressed`,
    /// `unsubscribed`, `opened` or `clicked`; `test`
    /// for a test event sent from the console.
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub created_at: String,
    pub message_id: &'a str,
    pub recipient: &'a str,
    pub attempts: u32,
    pub reply: Option<&'a str>,
    pub remote_host: Option<&'a str>,
    pub label: Option<&'a str>,
    /// The link's URL, for `clicked`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<&'a str>,
}

/// `t=<unix>,v1=<hex of HMAC-SHA256("<t>.<body>")>`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// When to try again after `attempts` failed attempts, or `None` to give
/// up (the event is older than `max_age` by then).
pub fn next_try(config: &ApiConfig, event_at: i64, attempts: u32, now: i64) -> Option<i64> {
    let schedule = &config.webhook_retry_schedule;
    let step = schedule
        .get((attempts as usize).saturating_sub(1))
        .or(schedule.last())
        .copied()
        .unwrap_or(60);
    let at = now + step as i64;
    (at <= event_at + config.webhook_max_age as i64).then_some(at)
}

/// The sender task.
pub struct WebhookSender {
    store: Arc<dyn Store>,
    config: Arc<ApiConfig>,
    wake: Arc<Notify>,
    client: reqwest::Client,
}

impl WebhookSender {
    pub fn new(store: Arc<dyn Store>, config: Arc<ApiConfig>, wake: Arc<Notify>) -> Self {
        Self {
            client: http_client(&config),
            store,
            config,
            wake,
        }
    }

    /// Run until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let sent = match self.round().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook round failed");
                    0
                }
            };
            if sent > 0 {
                continue;
            }
            let wait = match self.store.next_webhook_due().await {
                Ok(Some(t)) => {
                    let now = self.store.now();
                    Duration::from_secs((t - now).clamp(0, IDLE.as_secs() as i64) as u64)
                }
                _ => IDLE,
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(200))) => {}
            }
        }
    }

    /// Claim what is due, send it, record the results. Returns how many.
    async fn round(&self) -> Result<usize, posthorn_store::StoreError> {
        let now = self.store.now();
        let lease = now + self.config.webhook_timeout.as_secs() as i64 * 2 + 30;
        let due = self
            .store
            .claim_webhook_deliveries(now, lease, BATCH)
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let n = due.len();
        let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
        let mut tasks = tokio::task::JoinSet::new();
        for d in due {
            let permit = sem.clone().acquire_owned().await.expect("semaphore");
            let client = self.client.clone();
            let config = self.config.clone();
            let store = self.store.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let (status, outcome) = post(&client, &config, &d).await;
                let attempts = d.attempts + 1;
                let (retry_at, error) = match outcome {
                    Ok(()) => (None, None),
                    Err(e) => match next_try(&config, d.event.created_at, attempts, store.now()) {
                        Some(t) => (Some(t), Some(e)),
                        None => (None, Some(format!("gave up after {attempts} attempts: {e}"))),
                    },
                };
                metrics::counter!("posthorn_webhook_posts_total",
                    "outcome" => if error.is_none() { "ok" } else if retry_at.is_some() { "retry" } else { "gave_up" })
                .increment(1);
                if let Some(e) = &error {
                    tracing::info!(webhook = %d.webhook_id, event = d.event.id, attempts, error = %e, "webhook not accepted");
                }
                WebhookResult {
                    webhook_id: d.webhook_id,
                    event_id: d.event.id,
                    retry_at,
                    error,
                    status,
                }
            });
        }
        let mut results = Vec::with_capacity(n);
        while let Some(r) = tasks.join_next().await {
            if let Ok(r) = r {
                results.push(r);
            }
        }
        self.store.record_webhook_results(results).await?;
        Ok(n)
    }
}

/// The client that POSTs events: webpki roots, the configured timeout, no
/// redirects, no proxy, names resolved by [`PublicResolver`].
pub fn http_client(config: &ApiConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config())
        .timeout(config.webhook_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(PublicResolver {
            allow_private: config.allow_private_networks,
        }))
        .user_agent(concat!("Posthorn/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("HTTP client")
}

/// The webhook client's resolver: the system's (`getaddrinfo`, as
/// reqwest's default), without internal addresses unless `allow_private`;
/// a name left with none fails to connect, saying why.
#[derive(Debug, Clone, Copy)]
pub struct PublicResolver {
    pub allow_private: bool,
}

impl PublicResolver {
    /// The addresses of `host` to connect to.
    pub async fn addresses(&self, host: &str) -> Result<Vec<SocketAddr>, String> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if self.allow_private {
            return Ok(found);
        }
        let mut refused = None;
        let public: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| match posthorn_types::net::is_internal(a.ip()) {
                Some(why) => {
                    refused.get_or_insert((a.ip(), why));
                    false
                }
                None => true,
            })
            .collect();
        match (public.is_empty(), refused) {
            (true, Some((ip, why))) => Err(internal_refusal(host, ip, why)),
            (true, None) => Err(format!("{host} has no address")),
            (false, _) => Ok(public),
        }
    }
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = *self;
        Box::pin(async move {
            let addrs = resolver
                .addresses(name.as_str())
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// TLS for webhook URLs: the webpki roots, aws-lc-rs (the build's one provider).
fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports the default versions")
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// The body of one event.
pub fn payload(d: &DueWebhookDelivery) -> Vec<u8> {
    let e = &d.event;
    serde_json::to_vec(&EventPayload {
        id: format!("evt_{}", e.id),
        kind: &e.kind,
        created_at: rfc3339(e.created_at),
        message_id: &e.message_id,
        recipient: &e.recipient,
        attempts: e.attempts,
        reply: e.reply.as_deref(),
        remote_host: e.remote_host.as_deref(),
        label: e.label.as_deref(),
        url: e.url.as_deref(),
    })
    .expect("serializes")
}

/// One POST: the HTTP status, if the receiver answered, and `Err` with why
/// it was not accepted (non-2xx, timeout, ...).
async fn post(
    client: &reqwest::Client,
    config: &ApiConfig,
    d: &DueWebhookDelivery,
) -> (Option<u16>, Result<(), String>) {
    // Names are checked as they are resolved (PublicResolver).
    if let Err(e) = check_url_host(&d.url, config.allow_private_networks) {
        return (None, Err(e));
    }
    let body = payload(d);
    let sig = signature(&d.secret, unix_now(), &body);
    let response = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("x-posthorn-signature", sig)
        .header("x-posthorn-event", d.event.kind.as_str())
        .header("x-posthorn-event-id", format!("evt_{}", d.event.id))
        .body(body)
        .send()
        .await;
    let status = match response {
        Ok(r) => r.status(),
        Err(e) => return (None, Err(error_chain(&e))),
    };
    let result = if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    };
    (Some(status.as_u16()), result)
}

/// An error with its causes (reqwest's own `Display` leaves out why a
/// connection failed, such as the resolver's refusal).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_resolver_leaves_internal_addresses_out() {
        let strict = PublicResolver {
            allow_private: false,
        };
        let err = strict.addresses("localhost").await.unwrap_err();
        assert!(
            err.starts_with("localhost resolves to an internal address (")
                && err.ends_with("allow_private_networks is false"),
            "{err}"
        );
        let lax = PublicResolver {
            allow_private: true,
        };
        let found = lax.addresses("localhost").await.unwrap();
        assert!(found.iter().all(|a| a.ip().is_loopback()), "{found:?}");
        // An address is passed through getaddrinfo like a name.
        assert!(strict.addresses("127.0.0.1").await.is_err());
        assert!(strict.addresses("8.8.8.8").await.is_ok());
    }

    /// A URL whose name resolves to loopback is not POSTed to, even when
    /// the check before the POST (addresses only) lets it through: the
    /// client's resolver refuses at connect time.
    #[tokio::test]
    async fn the_client_does_not_connect_to_a_name_resolving_inside() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(500), listener.accept())
                .await
                .is_ok()
        });
        let client = http_client(&ApiConfig {
            allow_private_networks: false,
            webhook_timeout: Duration::from_secs(2),
            ..Default::default()
        });
        let url = format!("http://localhost:{port}/hook");
        assert!(check_url_host(&url, false).is_ok());
        let err = client.post(&url).body("{}").send().await.unwrap_err();
        let text = error_chain(&err);
        assert!(text.contains("resolves to an internal address"), "{text}");
        assert!(!accepted.await.unwrap(), "nothing connected");
    }

    #[test]
    fn signature_is_hmac_sha256_of_time_dot_body() {
        // Reference value from Python: hmac.new(b"k", b"1700000000.{}", sha256).hexdigest()
        let s = signature("k", 1_700_000_000, b"{}");
        assert!(s.starts_with("t=1700000000,v1="));
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(signature("k2", 1_700_000_000, b"{}"), s);
    }

    #[test]
    fn retries_follow_the_schedule_then_give_up() {
        let config = ApiConfig {
            webhook_retry_schedule: vec![10, 60],
            webhook_max_age: 100,
            ..Default::default()
        };
        assert_eq!(next_try(&config, 0, 1, 0), Some(10));
        assert_eq!(next_try(&config, 0, 2, 10), Some(70));
        assert_eq!(next_try(&config, 0, 3, 70), None);
    }
}
