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
    /// Load an export into the data dir of a stopped gateway (normally a fresh one), or, with
    /// --registry-backend etcd, its registry (orchestrators with their ids, runtime policies)
    /// into a fleet's etcd (learned scores stay with each replica's data dir).
    Import {
        /// The export file.
        file: PathBuf,
        /// Data dir to load it into (sled).
        #[arg(long, env = "BYOC_GATEWAY_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Where the registry goes: sled (the data dir) or etcd.
        #[arg(long, env = "BYOC_GATEWAY_REGISTRY_BACKEND", default_value = "sled", value_name = "sled|etcd")]
        registry_backend: String,
        /// etcd endpoints, comma separated (http://host:port).
        #[arg(long, env = "BYOC_GATEWAY_ETCD_ENDPOINTS", value_delimiter = ',', value_name = "URL[,URL...]")]
        etcd_endpoints: Vec<String>,
        /// The fleet's key prefix in etcd.
        #[arg(long, env = "BYOC_GATEWAY_REGISTRY_PREFIX", default_value = "/byoc-gateway/")]
        registry_prefix: String,
        /// CA certificate(s) (PEM) of etcd's server certificates.
        #[arg(long, env = "BYOC_GATEWAY_ETCD_CA_FILE", value_name = "FILE")]
        etcd_ca_file: Option<PathBuf>,
        /// Client certificate (PEM) for etcd.
        #[arg(long, env = "BYOC_GATEWAY_ETCD_CERT_FILE", value_name = "FILE")]
        etcd_cert_file: Option<PathBuf>,
        /// Client key (PEM) for etcd.
        #[arg(long, env = "BYOC_GATEWAY_ETCD_KEY_FILE", value_name = "FILE")]
        etcd_key_file: Option<PathBuf>,
        /// etcd user (with --etcd-password-file).
        #[arg(long, env = "BYOC_GATEWAY_ETCD_USERNAME", hide_env_values = true)]
        etcd_username: Option<String>,
        /// File holding the etcd user's password.
        #[arg(long, env = "BYOC_GATEWAY_ETCD_PASSWORD_FILE", value_name = "FILE")]
        etcd_password_file: Option<PathBuf>,
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
        StoreCommand::Import {
            file,
            data_dir,
            registry_backend,
            etcd_endpoints,
            registry_prefix,
            etcd_ca_file,
            etcd_cert_file,
            etcd_key_file,
            etcd_username,
            etcd_password_file,
        } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let export: StoreExport = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a byoc-gateway store export", file.display()))?;
            if registry_backend.trim() == "etcd" {
                let registry = crate::config::RegistryConfig {
                    backend: byoc_actors::registry::Backend::Etcd,
                    etcd_endpoints,
                    prefix: registry_prefix,
                    replica_id: Some("store-import".into()),
                    etcd_ca_file,
                    etcd_cert_file,
                    etcd_key_file,
                    etcd_username,
                    etcd_password_file,
                    ..Default::default()
                };
                return import_etcd(&registry, &export, &file).await;
            }
            if registry_backend.trim() != "sled" {
                anyhow::bail!("--registry-backend must be sled or etcd, not '{registry_backend}'");
            }
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

/// Loads an export's registry into a fleet's etcd (migration from a single gateway).
async fn import_etcd(
    registry: &crate::config::RegistryConfig,
    export: &StoreExport,
    file: &Path,
) -> anyhow::Result<()> {
    let settings = registry.etcd_settings().map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = byoc_actors::registry::RegistryStatus::new(
        byoc_actors::registry::Backend::Etcd,
        byoc_actors::registry::Staleness::fresh(0, None),
    );
    let etcd = byoc_actors::registry::etcd::EtcdRegistry::start(settings.clone(), None, status)?;
    let res = etcd.import(export).await;
    etcd.shutdown().await;
    let imported = res.map_err(|e| anyhow::anyhow!("import into etcd refused: {e}"))?;
    println!(
        "imported {} orchestrators and {} policies from {} into etcd {} (prefix {}) at revision {}; learned scores \
         stay in the gateway's data dir (start it as a replica with that data dir to keep them)",
        imported.orchestrators,
        imported.policies,
        file.display(),
        settings.endpoints.join(","),
        settings.prefix,
        imported.revision
    );
    Ok(())
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
