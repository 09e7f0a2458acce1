//! `binlog-push`, `binlog-fetch`: closed MySQL/MariaDB binlog files into and out of the repository.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use heirloom_backup::engine::mysql::push::binlog_fetch;
use heirloom_backup::jobs::{push_log, PushRequest};
use heirloom_backup::repo::source::SourceName;

use super::{print_log_report, Context, Exit};

#[derive(Debug, Args)]
pub struct BinlogPushArgs {
    /// A MySQL/MariaDB source from the config
    source: SourceName,
    /// The server's binlog directory (with its .index file) [default: the source's data_dir]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Split files into segments of at most this many MiB of whole transactions
    #[arg(long, value_name = "MIB", default_value_t = 8)]
    segment_mib: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct BinlogFetchArgs {
    /// A MySQL/MariaDB source from the config
    source: SourceName,
    /// The binlog file's name (e.g. binlog.000042)
    file: String,
    /// Where to write it
    dest: PathBuf,
    /// The server the file is from, when the store holds files of that name from several
    #[arg(long, value_name = "ID")]
    server_id: Option<u32>,
}

pub async fn push(ctx: &Context, args: &BinlogPushArgs) -> anyhow::Result<Exit> {
    let (job, bar) = ctx.job(ctx.open().await?, "binlog-push");
    let request = PushRequest {
        path: args.dir.clone(),
        ahead: 0,
        segment_bytes: Some(args.segment_mib.max(1) << 20),
    };
    let report = push_log(
        &job,
        &ctx.config,
        &args.source,
        Some(heirloom_backup::engine::mysql::NAME),
        &request,
    )
    .await
    .with_context(|| format!("pushing the binlog of {}", args.source))?;
    bar.finish_and_clear();
    print_log_report(&args.source, &report, args.json)?;
    Ok(Exit::Ok)
}

pub async fn fetch(ctx: &Context, args: &BinlogFetchArgs) -> anyhow::Result<Exit> {
    let repo = ctx.open().await?;
    let tmp = args.dest.with_extension("heirloom-partial");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    let result = binlog_fetch(&repo, &args.source, &args.file, args.server_id, &mut out).await;
    let result = result.map_err(anyhow::Error::from).and_then(|n| {
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &args.dest)?;
        Ok(n)
    });
    match result {
        Ok(n) => {
            tracing::info!(file = %args.file, bytes = n, "binlog file written");
            Ok(Exit::Ok)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e).with_context(|| format!("fetching {} of {}", args.file, args.source))
        }
    }
}
