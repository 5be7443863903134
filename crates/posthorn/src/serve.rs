//! `posthorn serve`: open the store, bind the listeners, serve until
//! SIGTERM/SIGINT, reload TLS on SIGHUP.

use crate::cli::ServeArgs;
use crate::config::Config;
use anyhow::Context;
use posthorn_delivery::Engine;
use posthorn_ratelimit::{FallbackLimiter, Limiter, LocalLimiter};
use posthorn_smtpd::{ListenerKind, SmtpServer, TlsStore};
use posthorn_store::NodeInfo;
use posthorn_submit::Submitter;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Memory for contents accepted and not yet taken by their delivery (an
/// 8 MiB cap: 80 messages of 100 KB, 1,600 of 5 KB). 32 MiB was tried
/// (Intel, 2026-12-07): Posthorn's CPU in a burst of 10,000 5 KB messages
/// 1-2 % lower, within the noise, for 28 MiB more peak RSS in every
/// scenario of bench/compare.sh (d: 91 MiB against the 100 MiB target).
const FRESH_CONTENT_BYTES: usize = 8 << 20;

pub async fn run(mut config: Config, args: ServeArgs) -> anyhow::Result<()> {
    if !args.smtps.is_empty() {
        config.smtp.implicit_tls = args.smtps.clone();
    }
    if !args.submission.is_empty() {
        config.smtp.starttls = args.submission.clone();
    }
    if !args.auto_tls.is_empty() {
        config.smtp.auto_tls = args.auto_tls.clone();
    }
    if let Some(h) = args.hostname {
        config.hostname = Some(h);
    }
    if args.capture {
        config.delivery.mode = "capture".into();
        config.delivery.enabled = true;
    }
    if let Some(addr) = args.http {
        config.http.listen = addr;
        config.http.enabled = true;
    }
    init_logging(&config.log.level);
    tracing::info!("{}", config.describe());
    // Before anything opens files: connections get their part of the
    // raised limit below, once the store and the listeners are open.
    let fd_limit = crate::fdlimit::raise();
    let hostname = config.hostname();
    if !crate::config::Config::hostname_is_qualified(&hostname) {
        tracing::warn!(%hostname, "the host name is not a fully qualified domain name: it goes into the greeting, the EHLO of outbound mail and the SPF record `posthorn domain add` prints, where receivers look it up in DNS; set hostname = \"mail.example.com\" in the configuration (or serve --hostname)");
    }
    let metrics = posthorn_api::health::install_recorder();

    let listeners = config.listeners()?;
    let api_config = config.api_config()?;
    let smtp_config = config.smtp_config()?;
    let node_timeout = config.node_timeout()?;
    let opened = crate::stores::open(&config, crate::stores::Opener::Server).await?;
    tracing::info!(store = %opened.choice, "store open");
    if config.delivery.enabled {
        // What was just accepted is delivered from memory, not read back.
        opened.keep_fresh_contents(FRESH_CONTENT_BYTES);
    }
    let store = opened.store;
    let tls = Arc::new(match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => TlsStore::load(cert, key)?,
        (None, None) => TlsStore::self_signed(&config.data_dir.join("tls"), &smtp_config.hostname)?,
        _ => anyhow::bail!(
            "[tls] needs both cert and key, or neither (a self-signed pair is then generated)"
        ),
    });
    let limiter = limiter(&config).await?;
    tracing::info!(backend = %limiter.backend(), "rate limits");
    let engine = if config.delivery.enabled {
        let delivery = config.delivery_config()?;
        if delivery.capture {
            tracing::warn!("capture mode: outgoing mail is kept in the store and marked delivered, never sent; see it with `posthorn queue list` and `posthorn message content ID`; [delivery] mode = \"send\" delivers");
        }
        tracing::info!(
            node = %delivery.node_id,
            relay = delivery.relay.as_ref().map(|r| r.host.as_str()).unwrap_or("-"),
            "delivery on"
        );
        Some(Engine::new(store.clone(), delivery).map_err(|e| anyhow::anyhow!("delivery: {e}"))?)
    } else {
        tracing::info!("delivery off ([delivery] enabled = false): accepting and queueing only");
        None
    };
    let mut submit_config = config.submit_config();
    submit_config.links = config.links()?;
    if let Some(links) = &submit_config.links {
        tracing::info!(base_url = %links.base_url(), "unsubscribe links on for accounts with unsubscribe = 1");
    }
    let mut submitter = Submitter::with_limiter(store.clone(), limiter, submit_config);
    if let Some(engine) = &engine {
        submitter = submitter
            .notify_on_enqueue(engine.waker())
            .tell_accepting(engine.accepting());
        engine.yield_to(submitter.committing());
    }
    let submitter = Arc::new(submitter);

    let smtp_hostname = smtp_config.hostname.clone();
    let smtp_max_connections = smtp_config.max_connections;
    let mut server = SmtpServer::bind(&listeners, smtp_config, submitter.clone(), tls.clone())
        .await
        .map_err(|e| {
            let flag = match e.kind {
                ListenerKind::ImplicitTls => "--smtps",
                ListenerKind::StartTls => "--submission",
                ListenerKind::AutoTls => "--auto-tls",
            };
            let hint = if e.addr.port() < 1024 && e.source.kind() == std::io::ErrorKind::PermissionDenied {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            } else {
                ""
            };
            anyhow::anyhow!(
                "{e}{hint}; choose another address with {flag} ADDR (e.g. {flag} 127.0.0.1:{}) or in the config file's [smtp] section",
                e.addr.port() as u32 + 10000
            )
        })?;
    for (addr, kind) in server.local_addrs() {
        tracing::info!(%addr, kind = kind.name(), "listening");
    }

    let mut api_listen = None;
    let http = if config.http.enabled {
        let listener = tokio::net::TcpListener::bind(api_config.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen for HTTP on {}; choose another address with --http ADDR or [http] listen (or [http] enabled = false)",
                    api_config.listen
                )
            })?;
        tracing::info!(addr = %listener.local_addr()?, kind = "http", "listening");
        let mut state = posthorn_api::AppState::new(submitter.clone(), api_config);
        state.metrics = metrics;
        state.console = Some(posthorn_console::router(state.clone()));
        api_listen = listener.local_addr().ok();
        Some((listener, state))
    } else {
        tracing::info!("HTTP API off ([http] enabled = false)");
        None
    };

    // What the listeners' connections may hold of the open-file limit: the
    // store and the listeners are open by now, delivery and the rest get a
    // reserve (see fdlimit.rs).
    let http_cap = fd_limit.map(|limit| {
        let reserve = crate::fdlimit::BASE_RESERVE
            + if config.delivery.enabled {
                config.delivery.max_connections as u64
            } else {
                0
            }
            + config.store.max_connections as u64
            + u64::from(posthorn_store::ACCEPT_CONNECTIONS);
        let open = crate::fdlimit::open_now();
        let budget = crate::fdlimit::budget(limit.limit, open, reserve);
        let smtp_share = crate::fdlimit::share(&budget, smtp_max_connections);
        let http_share = crate::fdlimit::share(&budget, config.http.max_connections);
        tracing::info!(
            limit = limit.limit,
            raised_from = limit.was,
            open,
            reserve,
            connections = budget.total(),
            smtp = smtp_share,
            http = http_share,
            "open files: connections get what the store, delivery and DNS do not need"
        );
        if smtp_share < smtp_max_connections {
            tracing::warn!(
                "the open-file limit ({}) allows {smtp_share} SMTP connections, fewer than [smtp] max_connections = {smtp_max_connections}; raise LimitNOFILE (systemd) or ulimit -Hn",
                limit.limit
            );
        }
        if config.http.enabled && http_share < config.http.max_connections {
            tracing::warn!(
                "the open-file limit ({}) allows {http_share} HTTP connections, fewer than [http] max_connections = {}; raise LimitNOFILE (systemd) or ulimit -Hn",
                limit.limit,
                config.http.max_connections
            );
        }
        server.limit_connections(budget.cap(smtp_share));
        budget.cap(http_share)
    });
    let shutdown = CancellationToken::new();
    spawn_signal_handlers(shutdown.clone(), tls)?;
    let mut background = Vec::new();
    let node = NodeInfo {
        id: config.node_id()?,
        address: node_address(&smtp_hostname, &server, api_listen),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: store.now(),
    };
    background.push(tokio::spawn(crate::cluster::run(
        store.clone(),
        node,
        node_timeout,
        engine.clone(),
        shutdown.clone(),
    )));
    // Work other nodes add (a shared store) wakes this node's delivery and
    // webhook sender.
    let wakeups = store.wakeups();
    if let Some(engine) = &engine {
        background.push(forward(
            wakeups.queue.clone(),
            engine.waker(),
            shutdown.clone(),
        ));
    }
    if let Some((listener, state)) = http {
        background.push(forward(
            wakeups.webhooks.clone(),
            state.webhook_wake.clone(),
            shutdown.clone(),
        ));
        let sender = posthorn_api::webhook_sender::WebhookSender::new(
            state.store.clone(),
            state.config.clone(),
            state.webhook_wake.clone(),
        );
        let stop = shutdown.clone();
        background.push(tokio::spawn(async move {
            sender.run(stop.cancelled_owned()).await;
        }));
        let stop = shutdown.clone();
        background.push(tokio::spawn(async move {
            let served = match http_cap {
                Some(cap) => {
                    posthorn_api::serve_capped(listener, state, cap, stop.cancelled_owned()).await
                }
                None => posthorn_api::serve(listener, state, stop.cancelled_owned()).await,
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP API stopped");
            }
        }));
    }
    let grace = std::time::Duration::from_secs(config.smtp.shutdown_grace_secs);
    let delivery = engine.map(|e| tokio::spawn(e.run(shutdown.clone(), grace)));
    server.run(shutdown).await;
    if let Some(d) = delivery {
        let _ = d.await;
    }
    for task in background {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Pass each wakeup of `from` on to `to` until shutdown.
fn forward(
    from: Arc<tokio::sync::Notify>,
    to: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = from.notified() => to.notify_one(),
            }
        }
    })
}

/// What a node's heartbeat says about where it is: its host name and
/// listeners.
fn node_address(hostname: &str, server: &SmtpServer, http: Option<std::net::SocketAddr>) -> String {
    let mut out = hostname.to_string();
    for (addr, kind) in server.local_addrs() {
        let kind = match kind {
            ListenerKind::ImplicitTls => "smtps",
            ListenerKind::StartTls => "submission",
            ListenerKind::AutoTls => "auto_tls",
        };
        out.push_str(&format!(" {kind}={addr}"));
    }
    if let Some(addr) = http {
        out.push_str(&format!(" http={addr}"));
    }
    out
}

/// The rate limiter the config asks for. With Redis down at start, the
/// server still starts, on local limits, and switches when Redis answers.
async fn limiter(config: &Config) -> anyhow::Result<Arc<dyn Limiter>> {
    let r = &config.ratelimit;
    match r.backend.as_str() {
        "local" => Ok(Arc::new(LocalLimiter::new())),
        "redis" => Ok(Arc::new(
            FallbackLimiter::connecting(r.redis_url.clone(), r.redis_prefix.clone()).await,
        )),
        other => anyhow::bail!("[ratelimit] backend = {other:?}: use \"local\" or \"redis\""),
    }
}

fn spawn_signal_handlers(shutdown: CancellationToken, tls: Arc<TlsStore>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match tls.reload() {
                    Ok(()) => tracing::info!("TLS certificate reloaded"),
                    Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the old certificate"),
                },
            }
        }
        tracing::info!("shutting down: no new connections, finishing transactions in flight");
        shutdown.cancel();
    });
    Ok(())
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
