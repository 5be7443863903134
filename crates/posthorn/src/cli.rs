//! The command line: `serve` and the admin commands. Every admin command
//! works on the data directory directly, also while the server runs.

use crate::config::Config;
use crate::{admin, serve};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "posthorn",
    version,
    about = "Self-hosted transactional email service"
)]
pub struct Cli {
    /// Configuration file (TOML); see posthorn.example.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (store, generated certificate); default ./posthorn-data.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Accounts.
    #[command(subcommand)]
    Account(AccountCmd),
    /// Sending domains and their DKIM keys.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Sender addresses and their SMTP passwords.
    #[command(subcommand)]
    Sender(SenderCmd),
    /// API users (SendCloud-style logins for any sender of the account).
    #[command(subcommand)]
    Apiuser(ApiUserCmd),
    /// Labels (`api_user#label_id` at login).
    #[command(subcommand)]
    Label(LabelCmd),
    /// Message templates (`{{variable}}` placeholders; sent with
    /// POST /v1/messages `template`; docs/templates.md).
    #[command(subcommand)]
    Template(TemplateCmd),
    /// The queue of accepted messages.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// One message.
    #[command(subcommand)]
    Message(MessageCmd),
    /// An account's suppression list: recipients it will not send to.
    #[command(subcommand)]
    Suppression(SuppressionCmd),
    /// HTTP API keys.
    #[command(subcommand)]
    Apikey(ApiKeyCmd),
    /// Write a consistent copy of the embedded store to a new file, also
    /// while the server runs (restore: stop, put it in place of
    /// DATA_DIR/posthorn.db, start).
    Backup {
        /// The file to write (must not exist).
        dest: PathBuf,
    },
    /// Apply the store's schema migrations now (the server applies them at
    /// start too; on PostgreSQL under a lock, so nodes take turns).
    Migrate,
    /// The nodes sharing this store (a cluster on PostgreSQL), their
    /// heartbeats and leases, and the queue by status.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Which configuration file and data directory this command uses (the
    /// server finds the same: --config, $POSTHORN_CONFIG, ./posthorn.toml,
    /// /etc/posthorn/posthorn.toml).
    Config,
    /// AUTH lockouts after failed SMTP logins.
    #[command(subcommand)]
    Lockout(LockoutCmd),
    /// The store itself: copy this node's embedded store into PostgreSQL.
    #[command(subcommand)]
    Store(StoreCmd),
    /// A message's status, every recipient (same as GET /v1/messages/ID).
    Status {
        id: String,
        /// Print JSON (the HTTP API's shape).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCmd {
    /// Make a key and print it (only now: it is stored hashed).
    Create {
        /// The account the key acts as.
        #[arg(
            long,
            value_name = "NAME",
            required_unless_present = "admin",
            conflicts_with = "admin"
        )]
        account: Option<String>,
        /// An admin key (admin routes) instead.
        #[arg(long)]
        admin: bool,
        /// What the key is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List keys (ids, not secrets).
    List {
        #[arg(
            long,
            value_name = "NAME",
            required_unless_present = "admin",
            conflicts_with = "admin"
        )]
        account: Option<String>,
        #[arg(long)]
        admin: bool,
    },
    /// Revoke a key by its id (the part after ph_, before the second _).
    Revoke { id: String },
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Implicit-TLS (SMTPS) listener address, e.g. 0.0.0.0:465; replaces the config's list.
    #[arg(long, value_name = "ADDR")]
    pub smtps: Vec<String>,
    /// STARTTLS listener address, e.g. 0.0.0.0:587; may be repeated; replaces the config's list.
    #[arg(long, value_name = "ADDR")]
    pub submission: Vec<String>,
    /// Listener that takes TLS from the first byte or STARTTLS (waits
    /// briefly for a TLS ClientHello before the greeting), e.g. 0.0.0.0:587;
    /// may be repeated; replaces the config's list.
    #[arg(long, value_name = "ADDR")]
    pub auto_tls: Vec<String>,
    /// Host name in the greeting, EHLO reply and generated certificate.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// HTTP API listener address, e.g. 127.0.0.1:8025; replaces [http] listen.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Keep outgoing mail instead of sending it ([delivery] mode =
    /// "capture"): every recipient is marked delivered, and the message
    /// stays readable with `posthorn message content ID`.
    #[arg(long)]
    pub capture: bool,
}

#[derive(Subcommand, Debug)]
pub enum AccountCmd {
    /// Create an account.
    Create { name: String },
    /// List accounts.
    List,
    /// Override one setting for an account (`0` where a limit allows it means no limit).
    Set {
        name: String,
        key: String,
        value: String,
    },
    /// Remove an override; the configured default applies again.
    Unset { name: String, key: String },
    /// The account's domains, senders and effective settings.
    Show { name: String },
    /// Remove an account with its domains, senders, API users, labels, keys,
    /// webhooks, suppressions and finished messages (refused while a
    /// message of it is in the queue).
    Remove {
        name: String,
        /// Confirm: this cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    /// Add a sending domain; generates its DKIM key and prints the DNS records to publish.
    Add {
        domain: String,
        #[arg(long)]
        account: String,
        /// DKIM key type: rsa (RSA-2048, rsa-sha256) or ed25519 (ed25519-sha256, RFC 8463).
        #[arg(long, default_value = "rsa", value_name = "TYPE")]
        dkim: String,
    },
    /// Print the DNS records of a domain again.
    Records { domain: String },
    /// The account's domains (all domains without --account).
    List {
        #[arg(long)]
        account: Option<String>,
    },
    /// Look the domain's DNS records up and say for each whether it is
    /// published as expected (exit 1 when the DKIM record is not).
    Check { domain: String },
    /// Remove a domain and its DKIM key (refused while it has senders).
    Remove { domain: String },
}

#[derive(Subcommand, Debug)]
pub enum SenderCmd {
    /// Add a sender address; without --password a strong one is generated and printed once.
    Add {
        address: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Set (or generate) a sender address's SMTP password.
    SetPassword {
        address: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// The account's sender addresses.
    List {
        #[arg(long)]
        account: String,
    },
    /// Remove a sender address: its login stops working at once.
    Remove { address: String },
}

#[derive(Subcommand, Debug)]
pub enum ApiUserCmd {
    /// Add an API user; without --key a strong key is generated and printed once.
    Add {
        name: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        key: Option<String>,
    },
    /// The account's API users.
    List {
        #[arg(long)]
        account: String,
    },
    /// Remove an API user: its login stops working at once.
    Remove { name: String },
}

#[derive(Subcommand, Debug)]
pub enum LabelCmd {
    /// Add a label to an account.
    Add {
        label_id: String,
        #[arg(long)]
        account: String,
    },
    /// The account's labels.
    List {
        #[arg(long)]
        account: String,
    },
    /// Remove a label (a login naming it is then refused).
    Remove {
        label_id: String,
        #[arg(long)]
        account: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TemplateCmd {
    /// Store a template for an account (text and/or HTML).
    Add {
        name: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        subject: String,
        /// The text body.
        #[arg(long, conflicts_with = "text_file")]
        text: Option<String>,
        /// The text body, from a file.
        #[arg(long, value_name = "FILE")]
        text_file: Option<PathBuf>,
        /// The HTML body.
        #[arg(long, conflicts_with = "html_file")]
        html: Option<String>,
        /// The HTML body, from a file.
        #[arg(long, value_name = "FILE")]
        html_file: Option<PathBuf>,
    },
    /// The account's templates: id, name, last change, subject.
    List {
        #[arg(long)]
        account: String,
    },
    /// One template, by name or id.
    Show {
        template: String,
        #[arg(long)]
        account: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a template, by name or id.
    Remove {
        template: String,
        #[arg(long)]
        account: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// One line per message, ID first.
    List {
        /// Only messages with a recipient in this status (queued, sending, delivered, deferred, bounced, expired, suppressed).
        #[arg(long)]
        status: Option<String>,
        /// Only messages of this account.
        #[arg(long)]
        account: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Make a message's queued and deferred recipients due now.
    Retry { id: String },
    /// Give up on every recipient of a message not yet final: they become
    /// bounced, and the sender gets a bounce notice (unless notices are off).
    Bounce { id: String },
    /// Delivery destinations of the running nodes, busiest first: waiting,
    /// in flight, suspended until, last error (as of each node's last
    /// heartbeat).
    Destinations {
        /// Print the document GET /v1/admin/destinations answers.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SuppressionCmd {
    /// One line per suppressed address: address, reason, since, message id.
    List {
        #[arg(long)]
        account: String,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Suppress an address: the account's messages to it are refused at RCPT.
    Add {
        address: String,
        #[arg(long)]
        account: String,
        /// Why (shown by `suppression list`).
        #[arg(long, default_value = "added by operator")]
        reason: String,
    },
    /// Take an address off the list; the account may send to it again.
    Remove {
        address: String,
        #[arg(long)]
        account: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum LockoutCmd {
    /// One line per running lockout: address, user (`*`: every user),
    /// locked until, failures counted.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Lift the lockouts of a client address and forget its failed logins.
    Clear {
        /// The client's IP address.
        address: String,
        /// Only this user's lockout and failures from that address.
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Every node with its last heartbeat, alive or dead (silent longer
    /// than [cluster] node_timeout), the leases it holds; the queue by
    /// status. The same from every node.
    Status {
        /// Print JSON (the same document as GET /v1/admin/cluster).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Copy this node's embedded store (DATA_DIR/posthorn.db) into an
    /// empty PostgreSQL database, to move a single node into a cluster:
    /// accounts, credentials, DKIM keys, the queue with every status,
    /// API keys, webhooks, suppressions. Refused when the database already
    /// holds data. Stop the server first: what it accepts after the copy
    /// starts is not copied.
    Copy {
        /// The database: postgres://USER:PASSWORD@HOST/DATABASE.
        #[arg(long, value_name = "URL")]
        to: String,
        /// A schema of that database to work in (created if missing)
        /// instead of the user's default search path.
        #[arg(long, value_name = "NAME")]
        schema: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum MessageCmd {
    /// Envelope, size, label, and each recipient's status, attempts and last reply.
    Show {
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The stored message bytes, as they will be delivered.
    Content { id: String },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref(), cli.data_dir.as_deref())?;
    match cli.command {
        Command::Serve(args) => serve::run(config, args).await,
        Command::Config => {
            out!(
                "config:   {}",
                config
                    .source
                    .as_deref()
                    .map_or("none (defaults)".to_string(), |p| p.display().to_string())
            );
            out!("data dir: {}", config.data_dir.display());
            match config.store_choice()? {
                crate::config::StoreChoice::Sqlite(dir) => {
                    let db = posthorn_store::SqliteStore::database_path(&dir);
                    out!(
                        "store:    {}{}",
                        db.display(),
                        if db.exists() {
                            ""
                        } else {
                            " (not created yet)"
                        }
                    );
                }
                choice => out!("store:    {choice}"),
            }
            Ok(())
        }
        Command::Store(cmd) => crate::store_cmds::run(&config, cmd).await,
        other => admin::run(&config, other).await,
    }
}
