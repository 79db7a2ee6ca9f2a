//! `byoc-gateway store export|import`: move the store between machines and take backups.
//!
//! A running gateway holds the data dir's lock, so `export` either opens the data dir (gateway
//! stopped) or asks the running gateway for a consistent snapshot through its admin API
//! (`--admin-url`). `import` loads an export into a stopped gateway's data dir (normally a
//! fresh one); it refuses, changing nothing, on a format mismatch or a clash.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use byoc_actors::store::{self, StoreExport};

/// `byoc-gateway store` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum StoreCommand {
    /// Write everything persisted (registry, learned scores, policies) to a JSON file.
    Export {
        /// Output file (written atomically).
        file: PathBuf,
        /// Data dir of a stopped gateway.
        #[arg(long, env = "BYOC_GATEWAY_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Admin URL of a running gateway (for example http://127.0.0.1:5935): export through it.
        #[arg(long)]
        admin_url: Option<String>,
        /// Admin token of that gateway.
        #[arg(long, env = "BYOC_GATEWAY_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
    /// Load an export into the data dir of a stopped gateway (normally a fresh one).
    Import {
        /// The export file.
        file: PathBuf,
        /// Data dir to load it into.
        #[arg(long, env = "BYOC_GATEWAY_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

/// Runs a `store` subcommand (inside an actix system, for the admin API client).
pub async fn run(cmd: StoreCommand) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Export { file, data_dir, admin_url, admin_token } => {
            let export = match admin_url {
                Some(url) => export_online(&url, admin_token.as_deref()).await?,
                None => export_offline(&data_dir)?,
            };
            write_atomically(&file, &export)?;
            println!(
                "exported {} orchestrators, {} pair records, {} policies to {}",
                export.orchestrators.len(),
                export.pairs.len(),
                export.policies.len(),
                file.display()
            );
            Ok(())
        }
        StoreCommand::Import { file, data_dir } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let export: StoreExport = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a byoc-gateway store export", file.display()))?;
            let db = open_offline(&data_dir)?;
            let summary = db.import(&export).map_err(|e| match e {
                byoc_actors::store::ImportError::Store(e) => anyhow::anyhow!(
                    "import failed part way ({e}); the data dir may hold part of the export: move it aside and import into an empty one"
                ),
                refused => anyhow::anyhow!("import refused, nothing was changed: {refused}"),
            })?;
            println!(
                "imported {} orchestrators, {} pair records, {} policies into {}",
                summary.orchestrators,
                summary.pairs,
                summary.policies,
                data_dir.display()
            );
            Ok(())
        }
    }
}

fn open_offline(data_dir: &Path) -> anyhow::Result<store::Db> {
    store::open(data_dir).map_err(|e| {
        let hint = if e.to_string().contains("locked") {
            "\nA gateway is running on this data dir: export through it with --admin-url http://ADMIN_ADDR \
             (and --admin-token), or stop it first."
        } else {
            ""
        };
        anyhow::anyhow!("cannot open the store in {}: {e}{hint}", data_dir.display())
    })
}

fn export_offline(data_dir: &Path) -> anyhow::Result<StoreExport> {
    if !data_dir.join(store::DB_DIR).exists() {
        anyhow::bail!("{} holds no byoc-gateway store ({} is missing)", data_dir.display(), store::DB_DIR);
    }
    Ok(open_offline(data_dir)?.export()?)
}

async fn export_online(url: &str, token: Option<&str>) -> anyhow::Result<StoreExport> {
    let client = awc::Client::builder().timeout(std::time::Duration::from_secs(60)).finish();
    let mut req = client.get(format!("{}/admin/store/export", url.trim_end_matches('/')));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send().await.map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    let body = resp.body().limit(1 << 30).await.map_err(|e| anyhow::anyhow!("reading the export: {e}"))?;
    if !resp.status().is_success() {
        anyhow::bail!("{url} answered {}: {}", resp.status(), String::from_utf8_lossy(&body));
    }
    serde_json::from_slice(&body).context("the gateway's answer is not a store export")
}

/// Writes next to the target (`FILE.tmp`), syncs it to disk, then renames it into place, so a
/// crash leaves either the old file or the complete new one.
fn write_atomically(file: &Path, export: &StoreExport) -> anyhow::Result<()> {
    use std::io::Write as _;
    let json = serde_json::to_vec_pretty(export)?;
    let mut tmp_name = file.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&json).and_then(|()| f.sync_all()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot move {} to {}", tmp.display(), file.display()))?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable (best effort: not every filesystem allows it).
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}
