//! The `restore_command` a restored PostgreSQL server runs to fetch WAL: this binary, reaching
//! this repository with this key file. Restores and drills give it to the engine; so does the
//! agent, for its drills.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use heirloom_backup::config::KeySpec;

use super::{Context, UsageError};

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    })
}

fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The restore_command a restored PostgreSQL cluster runs: this binary, reaching this repository.
pub fn restore_command(ctx: &Context, source: &str) -> anyhow::Result<String> {
    let settings = ctx.settings()?;
    let exe = std::env::current_exe().context("finding this program's path")?;
    let mut cmd = vec![sh_quote(&exe.to_string_lossy()), "-q".to_owned()];
    if let Some(config) = &ctx.config_path {
        cmd.push(format!(
            "--config {}",
            sh_quote(&absolute(config)?.to_string_lossy())
        ));
    }
    let url = if settings.url.contains("://") {
        settings.url.clone()
    } else {
        absolute(Path::new(&settings.url))?
            .to_string_lossy()
            .into_owned()
    };
    cmd.push(format!("--repo {}", sh_quote(&url)));
    match &settings.key {
        KeySpec::File(p) => cmd.push(format!("--key-file {}", sh_quote(&absolute(p)?.to_string_lossy()))),
        _ => bail!(UsageError(
            "a PostgreSQL restore needs a key file (--key-file, HEIRLOOM_KEY_FILE or repository.key_file): the restored server's restore_command cannot see HEIRLOOM_PASSPHRASE".into()
        )),
    }
    cmd.push(format!("wal-fetch --source {} %f %p", sh_quote(source)));
    Ok(cmd.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }
}
