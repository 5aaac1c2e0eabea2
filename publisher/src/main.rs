//! `skycast-publisher`: parses flags, sets up logging, and calls the library.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use skycast_publisher::trust::{Anchor, HistoryTrust};
use skycast_publisher::{audit, publish, DataDir, InitOptions, ServeConfig, TransportMode};
use skycast_schema::{PublicKey, TrustedKeys};

mod trust_commands;

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
        /// How many offline root keys the trust root has
        #[arg(long, default_value_t = 1)]
        root_keys: usize,
        /// How many root keys must sign a change of the trust root
        #[arg(long, default_value_t = 1)]
        root_threshold: usize,
        /// Where the root key files are written (default `<data>/root-keys`): move them off this machine
        #[arg(long)]
        root_key_dir: Option<PathBuf>,
    },
    /// The online signing key: rotate, revoke, generate key files
    Key {
        #[command(subcommand)]
        command: trust_commands::KeyCommand,
    },
    /// The trust root: rotate its keys, show it
    Root {
        #[command(subcommand)]
        command: trust_commands::RootCommand,
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
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Keep a verified, read-only copy of a primary's store on a second site and serve players from it (it never signs)
    Follow {
        /// This site's data directory (made on the first run from the flags below)
        #[arg(long)]
        data: PathBuf,
        /// The primary's store as a git URL (`git://host/store.git`, a path, `file://`), fetched with git
        #[arg(long)]
        from: String,
        /// The primary's public key (`ed25519:...`, its `keys/signing.pub`): needed on the first run
        #[arg(long)]
        key: Option<String>,
        /// Server certificate, key and CA from the primary's CA (`skycast-publisher tls issue` on the primary): needed on the first run
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// The key of --tls-cert (kept 0600 in this site's directory)
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// The CA players pin (the primary's `tls/ca.pem`)
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// The URL players use for this site [default: https://LISTEN]
        #[arg(long)]
        public_url: Option<String>,
        /// The first run's admin user of this site's web UI
        #[arg(long, default_value = "admin")]
        admin_user: String,
        /// Seconds between two fetches from the primary
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
        fetch_every_secs: u64,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// TLS material from the local CA
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
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
    /// Manage the webhooks alerts are posted to (signed with HMAC-SHA256)
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Copy every version to S3-compatible object storage (Garage, MinIO, S3) that players may fetch from
    Mirror {
        #[command(subcommand)]
        command: MirrorCommand,
    },
    /// Show every player: UP/KO, in sync, playing, now playing, last report, clock, disk, alerts (same as GET /api/fleet)
    Fleet {
        #[arg(long)]
        data: PathBuf,
        /// Print the JSON of `GET /api/fleet` instead of a table
        #[arg(long)]
        json: bool,
        /// Seconds without a report after which a player is KO [default: the last `serve`'s --offline-after, else 30]
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        offline_after: Option<u64>,
    },
    /// List the open alerts (`--all`: with the resolved ones), or acknowledge one (`alerts ack`)
    Alerts(AlertsArgs),
    /// Ask one player, or all enabled ones, to do an allow-listed command: sync_now, verify_media, restart_playback or send_status
    #[command(name = "command")]
    Ask {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        player: Option<String>,
        /// Every enabled player
        #[arg(long)]
        all: bool,
        /// sync_now, verify_media, restart_playback or send_status
        kind: String,
        /// Who is recorded as having asked
        #[arg(long, env = "USER", default_value = "publisher")]
        by: String,
    },
    /// Proof of play: export what the players played
    Plays {
        #[command(subcommand)]
        command: PlaysCommand,
    },
    /// Player events: export what the players did or suffered
    Events {
        #[command(subcommand)]
        command: EventsCommand,
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
    /// Sign the head's content again as a new version with a fresh expiry (serve
    /// does this by itself once half of the head's validity has passed)
    Resign {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, env = "USER", default_value = "publisher")]
        author: String,
    },
    /// Check every version's signature and every media hash in the whole history
    Verify {
        /// A publisher data directory, or a plain `git clone` of the store
        #[arg(long)]
        data: PathBuf,
        /// Trusted public key (`ed25519:...`); required for a clone without --root, read from the data directory otherwise
        #[arg(long)]
        key: Vec<String>,
        /// A trust root file you hold (`root/<N>.yaml`, e.g. the one a player was enrolled with): the clone's chain must contain it
        #[arg(long)]
        root: Option<PathBuf>,
    },
}

/// How `serve` (and `follow`) listen and what they keep.
#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: String,
    /// Serve plain HTTP instead of HTTPS (tests and trusted networks only)
    #[arg(long)]
    insecure_http: bool,
    /// Largest MP3 the web UI accepts in an upload, in MiB
    #[arg(long, default_value_t = 200)]
    max_upload_mb: u64,
    /// Connections open at once [default: 3/4 of the open-file limit, at most 4096]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Connections open at once from one IPv4 address or IPv6 /64 (players behind one NAT share it) [default: half of --max-connections]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections_per_ip: Option<u64>,
    /// Seconds a client has to send a complete request head
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_secs: u64,
    /// Seconds a connection may wait between requests (HTTP/1.1 ones close after the header timeout too)
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: u64,
    /// Seconds without a report after which a player is KO (and "unreachable" opens)
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    offline_after: u64,
    /// Days plays and player events are kept before the hourly purge removes them
    #[arg(long, default_value_t = 62, value_parser = clap::value_parser!(u64).range(1..))]
    retention_days: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP, no sign-in: keep ADDR on loopback or a private network) [default: off]
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// When to check whether the head is due for re-signing (half of its validity passed): cron with seconds first
    #[arg(long, value_name = "CRON", default_value = skycast_publisher::resign::DEFAULT_SCHEDULE)]
    resign_schedule: String,
    /// When to check whether the server certificate is due for renewal (cron with seconds)
    #[arg(long, value_name = "CRON", default_value = skycast_publisher::cert_renewal::DEFAULT_SCHEDULE)]
    tls_renew_schedule: String,
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Issue a server certificate from this data directory's CA, e.g. for a second site (`follow`): players pinning the CA trust it
    Issue {
        #[arg(long)]
        data: PathBuf,
        /// DNS names or IP addresses it is valid for, besides localhost, 127.0.0.1 and ::1
        #[arg(long = "name")]
        names: Vec<String>,
        /// Directory to write server.pem, server.key (0600) and ca.pem into
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a new server certificate from the CA (same names, valid 90 days); `serve` uses it from its next handshake
    Renew {
        #[arg(long)]
        data: PathBuf,
    },
    /// Make a new CA, listed by a new trust root beside the old one (players learn it at their next sync); `tls renew` then issues from it
    RotateCa {
        #[arg(long)]
        data: PathBuf,
        /// A root key file (repeatable): as many as the root's threshold
        #[arg(long = "root-key", required = true)]
        root_keys: Vec<PathBuf>,
        #[arg(long, env = "USER", default_value = "publisher")]
        author: String,
    },
}

#[derive(Subcommand)]
enum MirrorCommand {
    /// Add a mirror: `serve` copies every version to it (media, manifests, signatures, then the `v1/head` pointer)
    Add {
        #[arg(long)]
        data: PathBuf,
        /// The S3 API's URL, e.g. https://s3.example.com (plain http only to a loopback address)
        #[arg(long)]
        s3_endpoint: String,
        #[arg(long)]
        bucket: String,
        /// The S3 region the endpoint signs for (Garage: its `s3_region`)
        #[arg(long)]
        region: String,
        /// The mirror's name in status and alerts [default: the bucket's name]
        #[arg(long)]
        name: Option<String>,
        /// A TOML file (mode 0600) with `access_key_id` and `secret_access_key` [default: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment of `serve`]
        #[arg(long)]
        credentials: Option<PathBuf>,
        #[arg(long, env = "USER", default_value = "publisher")]
        by: String,
    },
    /// List the mirrors (never their secrets)
    List {
        #[arg(long)]
        data: PathBuf,
    },
    /// Forget a mirror and its queue (what it holds stays in the bucket)
    Remove {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Each mirror's last mirrored version, lag behind the head, queue, last error and last success
    Status {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Add a webhook; prints its id and its secret (shown once)
    Add {
        #[arg(long)]
        data: PathBuf,
        /// https://... (plain http only to a loopback address)
        #[arg(long)]
        url: String,
        #[arg(long, env = "USER", default_value = "publisher")]
        by: String,
    },
    /// List the webhooks and their delivery state (never their secrets)
    List {
        #[arg(long)]
        data: PathBuf,
    },
    /// Remove a webhook
    Remove {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        id: i64,
        #[arg(long, env = "USER", default_value = "publisher")]
        by: String,
    },
}

/// The rows an export covers and how it is written.
#[derive(clap::Args)]
struct ExportArgs {
    #[arg(long)]
    data: PathBuf,
    /// First day (YYYY-MM-DD, UTC) or instant (RFC 3339)
    #[arg(long)]
    from: String,
    /// Last day, included (YYYY-MM-DD, UTC), or instant (RFC 3339, excluded)
    #[arg(long)]
    to: String,
    #[arg(long)]
    shop: Option<String>,
    #[arg(long)]
    player: Option<String>,
    /// csv (with a header row) or txt (one line per row)
    #[arg(long)]
    format: skycast_publisher::fleet::export::ExportFormat,
}

#[derive(Subcommand)]
enum PlaysCommand {
    /// Write the plays of a date range to standard output, as CSV or text
    Export {
        #[command(flatten)]
        export: ExportArgs,
        /// Only this media (its blake3 id)
        #[arg(long)]
        media: Option<String>,
        /// Only this kind: music, ad, closing, play_now or urgent
        #[arg(long)]
        kind: Option<String>,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Write the player events of a date range to standard output, as CSV or text
    Export {
        #[command(flatten)]
        export: ExportArgs,
        /// Only this kind of event (swapped, network_lost, verify_failed...)
        #[arg(long)]
        kind: Option<String>,
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
    /// Unlock a user: forget their failed sign-ins from every address
    Unlock {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum PlayerCommand {
    /// Register a player and print its puller configuration (TOML)
    Add {
        #[command(flatten)]
        player: NewPlayer,
        #[command(flatten)]
        output: ConfigOutput,
    },
    /// Register a pending player and print a one-time code for `skycast-puller enroll` on its box
    Enroll {
        #[command(flatten)]
        player: NewPlayer,
        #[command(flatten)]
        target: ConfigTarget,
        /// Minutes the code stays valid (at most a day)
        #[arg(long, default_value_t = 60, conflicts_with = "valid_seconds")]
        valid_minutes: u64,
        /// Seconds the code stays valid, for tests (0 makes one already expired)
        #[arg(long, hide = true)]
        valid_seconds: Option<u64>,
        /// Who is recorded as having made the code
        #[arg(long, env = "USER", default_value = "publisher")]
        by: String,
    },
    /// Cancel a player's pending enrolment: its code is refused from then on
    CancelEnrollment(PlayerChange),
    /// List players: id, shop, state, registered, last change (who, how, when); then pending enrolments
    List {
        #[arg(long)]
        data: PathBuf,
        /// Print every recorded change instead (removed players too), newest first
        #[arg(long)]
        history: bool,
    },
    /// Refuse a player's token from its next request, a waiting long-poll included
    Disable(PlayerChange),
    /// Let a disabled player in again with its old token
    Enable(PlayerChange),
    /// Give a player a new token and print its new puller configuration (TOML); the old token is refused
    RotateToken {
        #[command(flatten)]
        change: PlayerChange,
        #[command(flatten)]
        output: ConfigOutput,
    },
    /// Forget a player: its token is refused from its next request; the record of changes stays
    Remove(PlayerChange),
}

/// A player to register: `player add` and `player enroll`.
#[derive(clap::Args)]
struct NewPlayer {
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    id: String,
    #[arg(long)]
    shop: String,
}

/// What goes into a puller configuration `player add`, `enroll` or `rotate-token` makes.
#[derive(clap::Args)]
struct ConfigTarget {
    /// Server URL written into the config (default: the URL given at init)
    #[arg(long)]
    server_url: Option<String>,
    /// The player's data directory written into the config (default: skycast-<id>)
    #[arg(long)]
    player_data: Option<String>,
}

/// A puller configuration's contents and where it goes (`player add`, `rotate-token`).
#[derive(clap::Args)]
struct ConfigOutput {
    #[command(flatten)]
    target: ConfigTarget,
    /// Write the config to this file (mode 0600, replacing it) instead of printing it
    #[arg(long)]
    out: Option<PathBuf>,
}

impl ConfigTarget {
    fn server_url(&self, dir: &DataDir) -> anyhow::Result<String> {
        Ok(match &self.server_url {
            Some(u) => u.clone(),
            None => dir.settings()?.public_url,
        })
    }
}

/// Which player a change is for, and who is recorded as having made it.
#[derive(clap::Args)]
struct PlayerChange {
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    id: String,
    /// Who is recorded as having made the change
    #[arg(long, env = "USER", default_value = "publisher")]
    by: String,
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
            root_keys,
            root_threshold,
            root_key_dir,
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
                    root: skycast_publisher::RootKeysSpec {
                        count: root_keys,
                        threshold: root_threshold,
                        dir: root_key_dir,
                    },
                },
                skycast_publisher::random_bytes(),
            )?;
            println!("initialised {}", data.display());
            println!("signing key: {}", report.public_key);
            println!("root key file(s), needed to rotate or revoke keys: move them off this machine now:");
            for file in &report.root_key_files {
                println!("  {}", file.display());
            }
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
        Command::Serve { data, serve: args } => serve(DataDir::open(&data)?, args, None)?,
        Command::Follow {
            data,
            from,
            key,
            tls_cert,
            tls_key,
            ca_cert,
            public_url,
            admin_user,
            fetch_every_secs,
            serve: args,
        } => {
            let dir = DataDir::new(&data);
            if !dir.settings_path().exists() {
                let (Some(key), Some(server_cert), Some(server_key), Some(ca_cert)) =
                    (key, tls_cert, tls_key, ca_cert)
                else {
                    bail!("`{}` is not a second site yet: pass --key, --tls-cert, --tls-key and --ca-cert on the first run", data.display());
                };
                let password = dir.init_follower(skycast_publisher::FollowerInit {
                    from: from.clone(),
                    public_url: public_url.unwrap_or_else(|| format!("https://{}", args.listen)),
                    trusted_key: key.parse()?,
                    server_cert,
                    server_key,
                    ca_cert,
                    admin_user: admin_user.clone(),
                })?;
                println!("second site made in {}, following {from}", data.display());
                println!("admin user `{admin_user}` password (shown once, store it now): {password}");
            }
            let dir = DataDir::open(&data)?;
            match dir.settings()?.follows {
                Some(primary) if primary == from => {}
                Some(primary) => bail!(
                    "`{}` follows {primary}, not {from}: use that URL or another directory",
                    data.display()
                ),
                None => bail!(
                    "`{}` is a primary's data directory: a second site needs its own directory",
                    data.display()
                ),
            }
            // The first copy before serving: players never see an empty second site
            // when the primary is reachable.
            match skycast_publisher::follow::pull_once(&dir, &from) {
                Ok(pulled) => println!("from the primary: {pulled}"),
                Err(e) => eprintln!("warning: {e}: serving what this copy has"),
            }
            serve(dir, args, Some(std::time::Duration::from_secs(fetch_every_secs)))?;
        }
        Command::Tls {
            command: TlsCommand::Issue { data, names, out },
        } => {
            DataDir::open(&data)?.issue_server_cert(&names, &out)?;
            println!("server.pem, server.key and ca.pem written to {}", out.display());
        }
        Command::Tls {
            command: TlsCommand::Renew { data },
        } => {
            let until = DataDir::open(&data)?.renew_server_cert(now)?;
            println!("server certificate renewed, valid until {}", until.to_rfc3339());
        }
        Command::Tls {
            command:
                TlsCommand::RotateCa {
                    data,
                    root_keys,
                    author,
                },
        } => trust_commands::rotate_ca(&DataDir::open(&data)?, &root_keys, &author, now)?,
        Command::Player { command } => player(command, now)?,
        Command::Key { command } => trust_commands::key(command, now)?,
        Command::Root { command } => trust_commands::root(command, now)?,
        Command::Webhook { command } => webhook(command, now)?,
        Command::Mirror { command } => mirror(command, now)?,
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
        Command::User {
            command: UserCommand::Unlock { data, name },
        } => {
            let db = DataDir::open(&data)?.db()?;
            let user = db.users()?.into_iter().find(|u| u.username == name);
            let Some(user) = user else {
                anyhow::bail!("user `{name}` does not exist: `skycast-publisher user list` shows the users");
            };
            let forgotten = skycast_publisher::web::auth::unlock(&db, &user.username)?;
            println!(
                "user `{}` unlocked: {forgotten} failed sign-ins forgotten",
                user.username
            );
        }
        Command::Fleet {
            data,
            json,
            offline_after,
        } => fleet_table(&data, json, offline_after, now)?,
        Command::Alerts(args) => alerts(args, now)?,
        Command::Ask {
            data,
            player,
            all: _,
            kind,
            by,
        } => {
            use skycast_publisher::fleet;
            let kind = fleet::parse_command_kind(&kind)?;
            let db = DataDir::open(&data)?.db()?;
            let queued = fleet::queue_command(&db, player.as_deref(), kind, &by, now)?;
            if queued.is_empty() {
                eprintln!("no enabled player: nothing was queued");
            }
            for (id, player) in queued {
                println!("{id}\t{player}\t{}", kind.as_str());
            }
        }
        Command::Plays {
            command: PlaysCommand::Export { export, media, kind },
        } => export_rows(export, media, kind, true)?,
        Command::Events {
            command: EventsCommand::Export { export, kind },
        } => export_rows(export, None, kind, false)?,
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
        Command::Resign { data, author } => {
            let dir = DataDir::open(&data)?;
            let done = publish::resign(&dir, &author, now)?;
            println!(
                "published version {} with the content of version {}, valid until {}",
                done.published.version,
                done.of_version,
                done.expires_at.to_rfc3339()
            );
        }
        Command::Verify { data, key, root } => {
            let (store, trust) = open_for_audit(&data, &key, root.as_deref())?;
            let report = audit::verify_store(&store, &trust)?;
            print!("{}", report.render());
            if !report.ok() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// The listener's caps and timers: the open-file limit raised to its hard
/// limit, the caps sized from it unless given.
/// Runs `serve` on `dir` until a signal, following a primary when `follow_every` is set.
fn serve(dir: DataDir, args: ServeArgs, follow_every: Option<std::time::Duration>) -> anyhow::Result<()> {
    let ServeArgs {
        listen,
        insecure_http,
        max_upload_mb,
        max_connections,
        max_connections_per_ip,
        header_timeout_secs,
        idle_timeout_secs,
        offline_after,
        retention_days,
        metrics_listen,
        resign_schedule,
        tls_renew_schedule,
    } = args;
    let limits = serve_limits(
        max_connections,
        max_connections_per_ip,
        header_timeout_secs,
        idle_timeout_secs,
    );
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
        config.limits = limits;
        config.offline_after = std::time::Duration::from_secs(offline_after);
        config.retention = std::time::Duration::from_secs(retention_days.saturating_mul(86_400));
        config.follow_every = follow_every;
        config.resign_schedule = resign_schedule;
        config.tls_renew_schedule = tls_renew_schedule;
        if let Some(addr) = &metrics_listen {
            let metrics = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen for metrics on {addr}: is another process using it"))?;
            config.metrics_listener = Some(metrics);
        }
        skycast_publisher::run(config, listener, shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

fn serve_limits(
    max_connections: Option<u64>,
    max_per_ip: Option<u64>,
    header_timeout_secs: u64,
    idle_timeout_secs: u64,
) -> skycast_publisher::net::ConnLimits {
    use skycast_publisher::net::{raise_fd_limit, ConnLimits};
    let mut limits = match raise_fd_limit() {
        Ok(nofile) => ConnLimits::for_fd_limit(nofile),
        Err(e) => {
            tracing::warn!("{e}");
            ConnLimits::for_current_fd_limit()
        }
    };
    let fits = limits.max_connections;
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    if let Some(n) = max_connections {
        limits.max_connections = count(n);
        limits.max_per_ip = limits.max_connections / 2;
        if limits.max_connections > fits {
            tracing::warn!(
                max_connections = n,
                fits,
                "--max-connections is above what the open-file limit leaves room for: raise `ulimit -n` or accepts may fail with too many open files"
            );
        }
    }
    if let Some(n) = max_per_ip {
        limits.max_per_ip = count(n);
    }
    limits.max_per_ip = limits.max_per_ip.clamp(1, limits.max_connections);
    limits.header_timeout = std::time::Duration::from_secs(header_timeout_secs);
    limits.idle_timeout = std::time::Duration::from_secs(idle_timeout_secs);
    limits
}

/// `player ...`: registration, listing, and the audited changes.
fn player(command: PlayerCommand, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
    use skycast_publisher::db::{Actor, EnrolmentState, PlayerEvent, Via};

    let actor = |name| Actor {
        name,
        via: Via::Cli,
        at: now,
    };
    let describe = |e: &PlayerEvent| {
        let action = e.action.as_str().replace('_', " ");
        format!("{action} by {} ({}) at {}", e.by, e.via.as_str(), e.at)
    };
    match command {
        PlayerCommand::Add {
            player: NewPlayer { data, id, shop },
            output,
        } => {
            let dir = DataDir::open(&data)?;
            let url = output.target.server_url(&dir)?;
            let config = skycast_publisher::enrol::add_player(
                &dir,
                &dir.db()?,
                &id,
                &shop,
                &url,
                output.target.player_data.as_deref(),
                output.out.as_deref(),
            )?;
            match &output.out {
                Some(path) => eprintln!(
                    "wrote the configuration of player `{id}` to {} (mode 0600)",
                    path.display()
                ),
                None => print!("{config}"),
            }
        }
        PlayerCommand::Enroll {
            player: NewPlayer { data, id, shop },
            target,
            valid_minutes,
            valid_seconds,
            by,
        } => {
            let dir = DataDir::open(&data)?;
            let url = target.server_url(&dir)?;
            let valid = match valid_seconds {
                Some(s) => chrono::Duration::seconds(i64::try_from(s)?),
                None => chrono::Duration::minutes(i64::try_from(valid_minutes)?),
            };
            let asked = skycast_publisher::enrol::CodeRequest {
                id: &id,
                shop: &shop,
                server_url: &url,
                player_data: target.player_data.as_deref(),
                valid,
            };
            let issued = skycast_publisher::enrol::enroll_player(&dir, &dir.db()?, asked, actor(&by))?;
            println!("player:      {id} (shop {shop})");
            println!("code:        {}", issued.code);
            println!("expires:     {}", issued.enrolment.expires_at);
            println!("fingerprint: {}", issued.fingerprint);
            println!("on the shop's box, run:");
            println!("  {}", issued.command);
            eprintln!("the code works once and is shown only now: give it to the person at the box; `player list` shows the enrolment pending until it is used");
        }
        PlayerCommand::CancelEnrollment(PlayerChange { data, id, by }) => {
            let db = DataDir::open(&data)?.db()?;
            db.cancel_enrolment(&id, &by, now)?;
            println!("the pending enrolment of player `{id}` is cancelled: its code is refused from now on");
        }
        PlayerCommand::List { data, history } => {
            let db = DataDir::open(&data)?.db()?;
            if history {
                for e in db.player_events(u32::MAX)? {
                    println!("{}\t{}", e.player_id, describe(&e));
                }
                return Ok(());
            }
            let players = db.players()?;
            let pending: Vec<_> = db
                .enrolments()?
                .into_iter()
                .filter(|e| e.state(now) == EnrolmentState::Pending)
                .collect();
            if players.is_empty() && pending.is_empty() {
                eprintln!("no player is registered yet: `skycast-publisher player enroll` (or `player add`) registers one");
            }
            for p in players {
                let state = if p.disabled { "disabled" } else { "enabled" };
                let last = p.last_change.as_ref().map_or_else(|| "-".to_string(), describe);
                println!("{}\t{}\t{state}\t{}\t{last}", p.id, p.shop, p.created_at);
            }
            for e in pending {
                println!(
                    "{}\t{}\tpending\t{}\tcode by {} ({}) valid until {}",
                    e.player_id,
                    e.shop,
                    e.created_at,
                    e.created_by,
                    e.via.as_str(),
                    e.expires_at
                );
            }
        }
        PlayerCommand::Disable(PlayerChange { data, id, by }) => {
            let db = DataDir::open(&data)?.db()?;
            if db.set_player_disabled(&id, true, actor(&by))? {
                println!("player `{id}` disabled: its token is refused from its next request; `player enable` lets it in again");
            } else {
                println!("player `{id}` was already disabled: nothing changed");
            }
        }
        PlayerCommand::Enable(PlayerChange { data, id, by }) => {
            let db = DataDir::open(&data)?.db()?;
            if db.set_player_disabled(&id, false, actor(&by))? {
                println!("player `{id}` enabled: its token works again");
            } else {
                println!("player `{id}` was already enabled: nothing changed");
            }
        }
        PlayerCommand::RotateToken {
            change: PlayerChange { data, id, by },
            output,
        } => {
            let dir = DataDir::open(&data)?;
            let url = output.target.server_url(&dir)?;
            let (player, config) = skycast_publisher::enrol::rotate_player_token(
                &dir,
                &dir.db()?,
                &id,
                actor(&by),
                &url,
                output.target.player_data.as_deref(),
            )?;
            match output.out {
                Some(path) => {
                    // The old token is already refused: if the file cannot be
                    // written, the new configuration must not be lost with it.
                    let saved =
                        skycast_publisher::enrol::stage_private(&path, &config).and_then(|f| f.commit());
                    if let Err(e) = saved {
                        print!("{config}");
                        anyhow::bail!("{e}: the new configuration is printed above; save it with mode 0600");
                    }
                    eprintln!(
                        "wrote the new configuration of player `{id}` to {} (mode 0600)",
                        path.display()
                    );
                }
                None => print!("{config}"),
            }
            eprintln!("player `{id}` has a new token: the old one is refused from its next request; install this configuration on the shop's box");
            if player.disabled {
                eprintln!("player `{id}` is still disabled: `skycast-publisher player enable` lets it in");
            }
        }
        PlayerCommand::Remove(PlayerChange { data, id, by }) => {
            let db = DataDir::open(&data)?.db()?;
            let player = db.remove_player(&id, actor(&by))?;
            println!(
                "player `{id}` (shop `{}`) removed: its token is refused from its next request",
                player.shop
            );
        }
    }
    Ok(())
}

fn webhook(command: WebhookCommand, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
    use skycast_publisher::notify;
    match command {
        WebhookCommand::Add { data, url, by } => {
            let db = DataDir::open(&data)?.db()?;
            let (hook, secret) = notify::add_webhook(&db, &url, &by, now)?;
            println!("webhook {} added for {}", hook.id, hook.url);
            println!("secret (shown once, store it now): {}", secret.expose());
            eprintln!(
                "each alert opened or resolved from now on is POSTed as JSON with header \
                 X-Skycast-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the secret>"
            );
        }
        WebhookCommand::List { data } => {
            let hooks = DataDir::open(&data)?.db()?.webhooks()?;
            if hooks.is_empty() {
                eprintln!("no webhook yet: `skycast-publisher webhook add` adds one");
            }
            for h in hooks {
                let state = match (&h.last_error, &h.next_attempt_at) {
                    (Some(e), Some(at)) => format!("failing ({} attempts, next at {at}): {e}", h.attempts),
                    _ => match &h.last_delivered_at {
                        Some(at) => format!("ok, last delivered at {at}"),
                        None => "ok, nothing delivered yet".to_string(),
                    },
                };
                println!(
                    "{}\t{}\tadded by {} at {}\tdelivered up to transition {}\t{state}",
                    h.id, h.url, h.created_by, h.created_at, h.cursor
                );
            }
        }
        WebhookCommand::Remove { data, id, by } => {
            let db = DataDir::open(&data)?.db()?;
            let hook = notify::remove_webhook(&db, id, &by)?;
            println!("webhook {id} ({}) removed: nothing more is sent to it", hook.url);
        }
    }
    Ok(())
}

/// `mirror ...`: add, list, remove, status.
fn mirror(command: MirrorCommand, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
    use skycast_publisher::mirror;
    match command {
        MirrorCommand::Add {
            data,
            s3_endpoint,
            bucket,
            region,
            name,
            credentials,
            by,
        } => {
            let db = DataDir::open(&data)?.db()?;
            let spec = mirror::MirrorSpec {
                name: name.unwrap_or_else(|| bucket.clone()),
                endpoint: s3_endpoint,
                bucket,
                region,
                credentials_file: credentials,
            };
            let row = mirror::add(&db, &spec, &by, now)?;
            println!(
                "mirror `{}` added: {}/{} (region {}); `serve` copies every version to it",
                row.name, row.endpoint, row.bucket, row.region
            );
            if row.credentials_file.is_none() {
                eprintln!("its credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment of `serve`");
            }
        }
        MirrorCommand::List { data } => {
            print!("{}", mirror::render_list(&DataDir::open(&data)?.db()?.mirrors()?));
        }
        MirrorCommand::Remove { data, name } => {
            mirror::remove(&DataDir::open(&data)?.db()?, &name)?;
            println!(
                "mirror `{name}` removed: nothing more is copied to it; what it holds stays in the bucket"
            );
        }
        MirrorCommand::Status { data, json } => {
            let status = mirror::status(&DataDir::open(&data)?, now)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", mirror::render(&status));
            }
        }
    }
    Ok(())
}

/// `alerts`: the open alerts, or every alert with `--all`; `alerts ack` records who saw one.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct AlertsArgs {
    #[command(subcommand)]
    command: Option<AlertsCommand>,
    /// The publisher's data directory
    #[arg(long, required = true)]
    data: Option<PathBuf>,
    /// Print JSON (both languages) instead of lines of text
    #[arg(long)]
    json: bool,
    /// Resolved alerts too, newest first, with their open and close times and who acknowledged them
    #[arg(long)]
    all: bool,
    /// With --all, at most this many alerts
    #[arg(long, default_value_t = 1000)]
    limit: usize,
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Record who acknowledged an alert; a missed ad (a past incident) is resolved with it
    Ack {
        /// The publisher's data directory
        #[arg(long)]
        data: PathBuf,
        /// The alert's number, as `alerts` lists it (`#N`)
        #[arg(long)]
        id: i64,
        /// Who acknowledges it
        #[arg(long, env = "USER", default_value = "publisher")]
        by: String,
    },
}

fn alerts(args: AlertsArgs, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
    use skycast_publisher::fleet::alerts;
    if let Some(AlertsCommand::Ack { data, id, by }) = args.command {
        let alert = alerts::acknowledge(&DataDir::open(&data)?.db()?, id, &by, now)?;
        print!("{}", alerts::render(std::slice::from_ref(&alert)));
        return Ok(());
    }
    let Some(data) = args.data else {
        bail!("give the data directory with --data DIR");
    };
    let listed = alerts::list(&DataDir::open(&data)?.db()?, args.all, args.limit)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
    } else {
        print!("{}", alerts::render(&listed));
    }
    Ok(())
}

/// `fleet`: the dashboard as a table or as the JSON of `GET /api/fleet`.
fn fleet_table(
    data: &std::path::Path,
    json: bool,
    offline_after: Option<u64>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let data = DataDir::open(data)?;
    let offline_after = match offline_after {
        Some(secs) => secs,
        None => data
            .db()?
            .serve_offline_after_secs()?
            .unwrap_or(skycast_publisher::fleet::DEFAULT_OFFLINE_AFTER.as_secs()),
    };
    let view = skycast_publisher::fleet::view_at(&data, now, std::time::Duration::from_secs(offline_after))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    if view.players.is_empty() {
        eprintln!("no player is registered yet: `skycast-publisher player add` registers one");
        return Ok(());
    }
    println!("head version {}", view.head_version);
    println!("PLAYER\tSHOP\tSTATE\tSYNC\tACTIVITY\tNOW PLAYING\tOUTPUT\tLAST REPORT\tCLOCK\tDISK\tALERTS");
    for p in &view.players {
        let state = match (p.disabled, p.up) {
            (true, _) => "disabled",
            (false, true) => "UP",
            (false, false) => "KO",
        };
        let sync = match (p.in_sync, p.active_version) {
            (true, _) => "in sync".to_string(),
            (false, Some(v)) => format!("v{v}, {} behind", p.behind_by),
            (false, None) => "no version".to_string(),
        };
        let activity = serde_json::to_value(p.activity)?;
        let now_playing = p
            .now_playing
            .as_ref()
            .map_or("-".to_string(), |n| n.title.clone());
        let last = p
            .last_report_age_secs
            .map_or("never".to_string(), |s| format!("{s} s ago"));
        let clock = p.clock_offset_ms.map_or("-".to_string(), |ms| format!("{ms} ms"));
        let disk = p
            .free_disk_bytes
            .map_or("-".to_string(), |b| format!("{} MiB", b / (1024 * 1024)));
        println!(
            "{}\t{}\t{state}\t{sync}\t{}\t{now_playing}\t{}\t{last}\t{clock}\t{disk}\t{}",
            p.id,
            p.shop,
            activity.as_str().unwrap_or("unknown"),
            p.output.as_str(),
            p.open_alerts.len()
        );
    }
    Ok(())
}

/// `plays export` and `events export`: the rows of a range to standard output.
fn export_rows(
    export: ExportArgs,
    media: Option<String>,
    kind: Option<String>,
    plays: bool,
) -> anyhow::Result<()> {
    use skycast_publisher::fleet::export;
    let mut filter = export::range_filter(&export.from, &export.to)?;
    filter.shop = export.shop;
    filter.player = export.player;
    filter.media = media;
    filter.kind = kind;
    let db = DataDir::open(&export.data)?.db()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let rows = if plays {
        export::export_plays(&db, &filter, export.format, &mut out)?
    } else {
        export::export_events(&db, &filter, export.format, &mut out)?
    };
    eprintln!("{rows} rows");
    Ok(())
}

/// A data directory's store and trust, or a clone of the store with its trust given by flag.
fn open_for_audit(
    path: &std::path::Path,
    keys: &[String],
    root: Option<&std::path::Path>,
) -> anyhow::Result<(skycast_publisher::store::Store, HistoryTrust)> {
    let keys: Vec<PublicKey> = keys.iter().map(|k| k.parse()).collect::<Result<_, _>>()?;
    let dir = DataDir::new(path);
    if dir.settings_path().exists() && keys.is_empty() && root.is_none() {
        return Ok((dir.store()?, HistoryTrust::of_data_dir(&dir)?));
    }
    let store_path = if dir.settings_path().exists() {
        dir.store_path()
    } else {
        path.to_path_buf()
    };
    let anchor = match (root, keys.first()) {
        (Some(file), _) => {
            let bytes = std::fs::read(file).with_context(|| format!("cannot read the root {}", file.display()))?;
            let version = skycast_schema::Root::parse(&bytes)?.version;
            Anchor::Roots([(version, bytes)].into())
        }
        (None, Some(key)) => Anchor::Key(*key),
        (None, None) => bail!(
            "`{}` is a store clone, not a data directory: pass the root you trust with --root FILE, or the publisher's key with --key ed25519:...",
            path.display()
        ),
    };
    Ok((
        skycast_publisher::store::Store::open(&store_path)?,
        HistoryTrust {
            anchor,
            pinned: TrustedKeys::new(keys),
        },
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
