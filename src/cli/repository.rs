//! `init` and `key add|list|remove`.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use chrono::Utc;
use clap::{Args, Subcommand};
use heirloom_backup::config::{KeySpec, RepoSettings};
use heirloom_backup::repo::format::InitParams;
use heirloom_backup::repo::keys::KeySource;
use heirloom_backup::repo::Repository;

use super::{print_json, Context, Exit};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Smallest chunk (bytes; K/M/KiB/MiB suffixes allowed)
    #[arg(long, value_parser = parse_size, default_value = "256KiB")]
    chunk_min: u32,
    /// Average chunk
    #[arg(long, value_parser = parse_size, default_value = "1MiB")]
    chunk_avg: u32,
    /// Largest chunk
    #[arg(long, value_parser = parse_size, default_value = "4MiB")]
    chunk_max: u32,
    /// Target size of a pack
    #[arg(long, value_parser = parse_size, default_value = "32MiB")]
    pack_size: u32,
    /// zstd level for chunks (1-22)
    #[arg(long, default_value_t = 3)]
    compression_level: i32,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a key: a new key file (created if missing) or the passphrase in HEIRLOOM_NEW_PASSPHRASE
    Add {
        /// The key file to add (32 random bytes are written to it if it does not exist)
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List the keys
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a key (never the last one)
    Remove { id: String },
}

/// Parses `1048576`, `256K`, `256KiB`, `1M`, `1MiB`, `1G`.
pub fn parse_size(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 1MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        other => return Err(format!("{text:?}: unknown unit {other:?}")),
    };
    u32::try_from(n * factor).map_err(|_| format!("{text:?} is too large"))
}

/// Loads the key for `init`, creating a key file that does not exist yet.
fn init_key(settings: &RepoSettings) -> anyhow::Result<KeySource> {
    match &settings.key {
        KeySpec::File(path) if !path.exists() => {
            let source = KeySource::create_key_file(path)?;
            eprintln!(
                "created key file {} (32 random bytes): keep a copy somewhere safe; without it the repository cannot be read",
                path.display()
            );
            Ok(source)
        }
        _ => Ok(settings.load_key()?),
    }
}

pub async fn init(ctx: &Context, args: &InitArgs) -> anyhow::Result<Exit> {
    let (store, settings) = ctx.store()?;
    let key = init_key(&settings)?;
    let params = InitParams {
        chunk_min: args.chunk_min,
        chunk_avg: args.chunk_avg,
        chunk_max: args.chunk_max,
        pack_size: args.pack_size,
        compression_level: args.compression_level,
    };
    let location = store.location();
    let repo = Repository::init(store, &key, &params, Utc::now())
        .await
        .with_context(|| format!("creating a repository at {location}"))?;
    if args.json {
        print_json(repo.config())?;
    } else {
        outln!("created repository {} at {location}", repo.config().id);
    }
    Ok(Exit::Ok)
}

pub async fn key(ctx: &Context, cmd: &KeyCommand) -> anyhow::Result<Exit> {
    let repo = ctx.open().await?;
    match cmd {
        KeyCommand::Add { new_key_file, json } => {
            let source = match new_key_file {
                Some(path) if path.exists() => {
                    KeySource::key_file(path, ctx.settings()?.key_file_permissions)?
                }
                Some(path) => KeySource::create_key_file(path)?,
                None => match std::env::var("HEIRLOOM_NEW_PASSPHRASE") {
                    Ok(p) if !p.is_empty() => KeySource::passphrase(p),
                    _ => bail!(super::UsageError(
                        "key add needs --new-key-file FILE or the new passphrase in HEIRLOOM_NEW_PASSPHRASE".into()
                    )),
                },
            };
            let id = repo.add_key(&source, Utc::now()).await?;
            if *json {
                print_json(&serde_json::json!({ "id": id }))?;
            } else {
                outln!("added key {id} ({})", source.describe());
            }
        }
        KeyCommand::List { json } => {
            let keys = repo.list_keys().await?;
            if *json {
                print_json(&keys)?;
            } else {
                outln!("{:<18} {:<11} {:<26} HOST", "ID", "KIND", "CREATED");
                for k in keys {
                    let kind = serde_json::to_value(k.kind)?;
                    outln!(
                        "{:<18} {:<11} {:<26} {}{}",
                        k.id,
                        kind.as_str().unwrap_or("?"),
                        k.created.format("%Y-%m-%d %H:%M:%S UTC"),
                        k.host,
                        if k.current { "  (this session)" } else { "" }
                    );
                }
            }
        }
        KeyCommand::Remove { id } => {
            repo.remove_key(id).await?;
            outln!("removed key {id}");
        }
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("5X").is_err());
        assert!(parse_size("8G").is_err());
    }
}
