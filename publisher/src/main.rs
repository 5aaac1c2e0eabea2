//! `skycast-publisher`: parses flags, sets up logging, and calls the library.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use skycast_publisher::{audit, publish, DataDir, InitOptions, ServeConfig, TransportMode};
use skycast_schema::{PublicKey, TrustedKeys};

#[derive(Parser)]
#[command(
    name = "skycast-publisher",
    version,
    about = "Publish signed audio plannings to Skycast shop players"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory: git store, signing key, TLS certificates, database, first admin
    Init {
        #[arg(long)]
        data: PathBuf,
        /// URL players will use to reach `serve`
        #[arg(long, default_value = "https://127.0.0.1:8443")]
        url: String,
        #[arg(long, default_value = "admin")]
        admin_user: String,
        /// Use this certificate (PEM) instead of generating a local CA
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Extra host name or IP address for the generated certificate (repeatable)
        #[arg(long = "san")]
        extra_names: Vec<String>,
    },
    /// Publish a planning as a new signed version
    Publish {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        planning: PathBuf,
        #[arg(long, env = "USER", default_value = "publisher")]
        author: String,
        #[arg(long)]
        message: Option<String>,
    },
    /// Serve the pull protocol to players and the web UI to people
    Serve {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
        /// Serve plain HTTP instead of HTTPS (tests and trusted networks only)
        #[arg(long)]
        insecure_http: bool,
        /// Largest MP3 the web UI accepts in an upload, in MiB
        #[arg(long, default_value_t = 200)]
        max_upload_mb: u64,
    },
    /// Manage the people who use the web UI
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage players
    Player {
        #[command(subcommand)]
        command: PlayerCommand,
    },
    /// List the published versions, newest first
    History {
        #[arg(long)]
        data: PathBuf,
    },
    /// Show what changed between two versions
    Diff {
        #[arg(long)]
        data: PathBuf,
        a: u64,
        b: u64,
    },
    /// Publish a new version with the content of an older one
    Rollback {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        to: u64,
        #[arg(long, env = "USER", default_value = "publisher")]
        author: String,
    },
    /// Check every version's signature and every media hash in the whole history
    Verify {
        /// A publisher data directory, or a plain `git clone` of the store
        #[arg(long)]
        data: PathBuf,
        /// Trusted public key (`ed25519:...`); required for a clone, read from the data directory otherwise
        #[arg(long)]
        key: Vec<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password comes from SKYCAST_USER_PASSWORD or is generated and printed once
    Add {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        name: String,
        /// admin, marketing, commercial or auditor
        #[arg(long)]
        role: String,
    },
    /// List users with their roles
    List {
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum PlayerCommand {
    /// Register a player and print its puller configuration (TOML)
    Add {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        shop: String,
        /// Server URL written into the config (default: the URL given at init)
        #[arg(long)]
        server_url: Option<String>,
        /// The player's data directory written into the config
        #[arg(long)]
        player_data: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let now = chrono::Utc::now();
    match cli.command {
        Command::Init {
            data,
            url,
            admin_user,
            tls_cert,
            tls_key,
            extra_names,
        } => {
            let password = std::env::var("SKYCAST_ADMIN_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty());
            let report = DataDir::new(&data).init(
                InitOptions {
                    public_url: url,
                    admin_user: admin_user.clone(),
                    admin_password: password,
                    tls_cert_and_key: tls_cert.zip(tls_key),
                    extra_names,
                },
                skycast_publisher::random_bytes(),
            )?;
            println!("initialised {}", data.display());
            println!("signing key: {}", report.public_key);
            match report.generated_admin_password {
                Some(p) => println!("admin user `{admin_user}` password (shown once, store it now): {p}"),
                None => println!("admin user `{admin_user}` password taken from SKYCAST_ADMIN_PASSWORD"),
            }
        }
        Command::Publish {
            data,
            planning,
            author,
            message,
        } => {
            let dir = DataDir::open(&data)?;
            let done = publish::publish_planning(&dir, &planning, &author, message.as_deref(), now)?;
            println!(
                "published version {} ({} media, {} new) as commit {}",
                done.version, done.media_count, done.new_media, done.commit
            );
        }
        Command::Serve {
            data,
            listen,
            insecure_http,
            max_upload_mb,
        } => {
            let dir = DataDir::open(&data)?;
            let transport = if insecure_http {
                TransportMode::InsecureHttp
            } else {
                TransportMode::Https
            };
            let rt = tokio::runtime::Runtime::new().context("start the async runtime")?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("listen on {listen}: is another process using it"))?;
                let mut config = ServeConfig::new(dir, transport);
                config.max_upload_bytes = max_upload_mb.saturating_mul(1024 * 1024);
                skycast_publisher::run(config, listener, shutdown_signal()).await?;
                anyhow::Ok(())
            })?;
        }
        Command::Player {
            command:
                PlayerCommand::Add {
                    data,
                    id,
                    shop,
                    server_url,
                    player_data,
                },
        } => {
            let dir = DataDir::open(&data)?;
            skycast_publisher::check_plain_name("player id", &id)?;
            skycast_publisher::check_shop_name(&shop)?;
            let token = format!("skp_{}", skycast_publisher::random_token());
            let url = match server_url {
                Some(u) => u,
                None => dir.settings()?.public_url,
            };
            let config = skycast_publisher::player_config_toml(
                &dir,
                &id,
                &shop,
                &token,
                &url,
                player_data.as_deref().unwrap_or(&format!("skycast-{id}")),
            )?;
            dir.db()?.add_player(&id, &shop, &token)?;
            print!("{config}");
        }
        Command::User {
            command: UserCommand::Add { data, name, role },
        } => {
            let db = DataDir::open(&data)?.db()?;
            let role = skycast_publisher::db::Role::parse(&role)?;
            let (password, generated) = match std::env::var("SKYCAST_USER_PASSWORD") {
                Ok(p) if !p.is_empty() => (p, false),
                _ => (skycast_publisher::random_token(), true),
            };
            db.create_user(&name, &password, role)?;
            if generated {
                println!(
                    "user `{name}` ({}) password (shown once, store it now): {password}",
                    role.as_str()
                );
            } else {
                println!(
                    "user `{name}` ({}) password taken from SKYCAST_USER_PASSWORD",
                    role.as_str()
                );
            }
        }
        Command::User {
            command: UserCommand::List { data },
        } => {
            for u in DataDir::open(&data)?.db()?.users()? {
                let state = if u.disabled { "disabled" } else { "enabled" };
                println!("{}\t{}\t{state}\t{}", u.username, u.role.as_str(), u.created_at);
            }
        }
        Command::History { data } => {
            let dir = DataDir::open(&data)?;
            print!("{}", audit::render_history(&dir.store()?)?);
        }
        Command::Diff { data, a, b } => {
            let store = DataDir::open(&data)?.store()?;
            print!(
                "{}",
                skycast_publisher::describe::render_diff(
                    &audit::manifest_of(&store, a)?,
                    &audit::manifest_of(&store, b)?
                )
            );
        }
        Command::Rollback { data, to, author } => {
            let dir = DataDir::open(&data)?;
            let done = publish::rollback(&dir, to, &author, now)?;
            println!(
                "published version {} with the content of version {to}",
                done.version
            );
        }
        Command::Verify { data, key } => {
            let (store, keys) = open_for_audit(&data, &key)?;
            let report = audit::verify_store(&store, &keys)?;
            print!("{}", report.render());
            if !report.ok() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// A data directory's store and key, or a clone of the store with keys given by flag.
fn open_for_audit(
    path: &std::path::Path,
    keys: &[String],
) -> anyhow::Result<(skycast_publisher::store::Store, TrustedKeys)> {
    let mut trusted: Vec<PublicKey> = keys.iter().map(|k| k.parse()).collect::<Result<_, _>>()?;
    let dir = DataDir::new(path);
    let store_path = if dir.settings_path().exists() {
        if trusted.is_empty() {
            trusted.push(dir.public_key()?);
        }
        dir.store_path()
    } else {
        if trusted.is_empty() {
            bail!("`{}` is a store clone, not a data directory: pass the publisher's key with --key ed25519:...", path.display());
        }
        path.to_path_buf()
    };
    Ok((
        skycast_publisher::store::Store::open(&store_path)?,
        TrustedKeys::new(trusted),
    ))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
