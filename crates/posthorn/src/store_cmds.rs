//! `posthorn store copy --to URL [--schema NAME]`: this node's embedded
//! store copied into an empty PostgreSQL database, to move a single node
//! into a cluster (`posthorn_store::copy_sqlite_to_postgres` does the
//! work). It never creates a store: with none in the data directory there
//! is nothing to copy, and that usually means the wrong configuration.

use crate::cli::StoreCmd;
use crate::config::Config;
use anyhow::{bail, Context};
use posthorn_store::{copy_sqlite_to_postgres, SqliteStore};

pub async fn run(config: &Config, cmd: StoreCmd) -> anyhow::Result<()> {
    match cmd {
        StoreCmd::Copy { to, schema } => copy(config, &to, schema.as_deref()).await,
    }
}

async fn copy(config: &Config, url: &str, schema: Option<&str>) -> anyhow::Result<()> {
    let db = SqliteStore::database_path(&config.data_dir);
    if !db.is_file() {
        bail!(
            "no store at {}: nothing to copy. If the server keeps its data elsewhere, point this command at its configuration (--config FILE or POSTHORN_CONFIG) or its --data-dir",
            db.display()
        );
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!(
            "--to {:?} is not a PostgreSQL URL: give postgres://USER:PASSWORD@HOST/DATABASE",
            redacted(url)
        );
    }
    let into = match schema {
        Some(s) => format!("{} (schema {s:?})", redacted(url)),
        None => redacted(url),
    };
    eprintln!(
        "copying {} into {into}; mail the server accepts from now on is not copied, so it should be stopped",
        db.display()
    );
    let report = copy_sqlite_to_postgres(&db, url, schema)
        .await
        .with_context(|| format!("cannot copy the store into {into}"))?;
    out!("copied {} into {into}:", db.display());
    out!("{report}");
    out!();
    out!("Next steps:");
    out!("  1. In every node's configuration (this one's too):");
    out!("       [store]");
    out!("       backend = \"postgres\"");
    out!("       url = \"{}\"", redacted(url));
    if let Some(s) = schema {
        out!("       schema = \"{s}\"");
    }
    out!("  2. Start the nodes. They share the copied queue; this node's");
    out!(
        "     {} is no longer used (keep it until the cluster runs as it should).",
        db.display()
    );
    Ok(())
}

/// The URL with its password, if any, replaced by `PASSWORD`, to be
/// printed.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:PASSWORD{}", &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redacted("postgres://posthorn:s3cr:et@db.test:5432/mail?sslmode=require"),
            "postgres://posthorn:PASSWORD@db.test:5432/mail?sslmode=require"
        );
        assert_eq!(
            redacted("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redacted("postgres:///test"), "postgres:///test");
    }
}
