//! `skycast-puller`: command-line entry point (sync, run, status, enroll) over the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use skycast_puller::audio::OutputSpec;
use skycast_puller::{Config, Overrides, PlayEvent, TransportPolicy};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "skycast-puller",
    version,
    about = "Skycast shop daemon: pull, verify, swap atomically"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull once: swap to the server's head version if it is newer and valid.
    Sync(Common),
    /// Run as a daemon: long-poll the server and sync whenever it publishes.
    Run(Common),
    /// Print the local state as JSON.
    Status(Common),
    /// Enrol this box with the one-time code an admin made (`player enroll` or
    /// "Register a player"): checks the server's CA against --fingerprint, then
    /// writes the configuration it answers (mode 0600).
    Enroll(EnrollArgs),
}

#[derive(Args)]
struct EnrollArgs {
    /// The publisher's base URL, as shown with the code (https).
    #[arg(long, value_name = "URL")]
    server: String,
    /// The one-time code (case and dashes do not matter).
    #[arg(long, value_name = "CODE")]
    code: String,
    /// The CA fingerprint shown with the code: sha256:<hex> or colon-separated hex.
    #[arg(long, value_name = "SHA256")]
    fingerprint: String,
    /// Where to write the configuration (the Debian package's unit reads the default).
    #[arg(long, value_name = "FILE", default_value = skycast_puller::enroll::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Data directory written into the configuration instead of the publisher's choice.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Replace an existing configuration file.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct Common {
    /// Puller configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Server base URL, replacing `server` or `servers` in the config (mirrors stay).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Data directory, overriding `data` in the config.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Accept a plain http:// server URL (test benches only).
    #[arg(long)]
    allow_insecure_http: bool,
    /// Where the sound goes: speaker, null (clocked, discarded) or wav:PATH (a recording
    /// of exactly what the shop hears). Overrides `output` in the config.
    #[arg(long, value_name = "OUTPUT")]
    output: Option<OutputSpec>,
    /// Start the player's clock at this instant (RFC 3339) instead of the system clock;
    /// it then runs in real time (tests, demos).
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    clock_start: Option<DateTime<Utc>>,
    /// Seconds of audio played per second of wall time (default 1; tests and demos
    /// use more to cover hours in minutes; outputs null and wav only).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    clock_rate: Option<f64>,
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 instant like 2026-12-01T09:00:00+01:00 ({e})"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.01..=1000.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a clock rate between 0.01 and 1000")),
    }
}

impl Common {
    fn load(&self) -> anyhow::Result<Config> {
        let overrides = Overrides {
            server: self.server.clone(),
            data: self.data.clone(),
            transport: self
                .allow_insecure_http
                .then_some(TransportPolicy::AllowInsecureHttp),
            output: self.output.clone(),
            clock_start: self.clock_start,
            clock_rate: self.clock_rate,
        };
        Ok(Config::load_with(&self.config, &overrides)?)
    }
}

/// Exit status when the configuration cannot be used (clap uses 2 for bad flags).
const EXIT_CONFIG: u8 = 2;
const EXIT_FAILED: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run(_) => "info",
        // One line of result on stdout, one line of reason on stderr: keep logs quiet.
        Command::Sync(_) | Command::Status(_) | Command::Enroll(_) => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let (common, command) = match &cli.command {
        Command::Sync(c) => (c, "sync"),
        Command::Run(c) => (c, "run"),
        Command::Status(c) => (c, "status"),
        Command::Enroll(args) => return enroll(args),
    };
    let config = match common.load() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    if command == "status" {
        return match skycast_puller::status(&config) {
            Ok(status) => match serde_json::to_string_pretty(&status) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EXIT_FAILED, &e.into()),
            },
            Err(e) => fail(EXIT_FAILED, &e.into()),
        };
    }
    let runtime = match runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        if command == "sync" {
            match skycast_puller::sync_once(&config, Utc::now).await {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EXIT_FAILED, &e.into()),
            }
        } else {
            // The readable run lines: one per thing that starts playing.
            let print_event = |event: &PlayEvent| println!("{event}");
            match skycast_puller::run(config, print_event, shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(EXIT_FAILED, &e.into()),
            }
        }
    })
}

/// The async runtime `builder` makes, or the exit after saying why there is none.
fn runtime(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        fail(
            EXIT_FAILED,
            &anyhow::Error::new(e).context("cannot start the async runtime"),
        )
    })
}

/// `enroll`: one line of result on stdout, or the reason on stderr.
fn enroll(args: &EnrollArgs) -> ExitCode {
    let opts = skycast_puller::enroll::EnrollOptions {
        server: args.server.clone(),
        code: args.code.clone(),
        fingerprint: args.fingerprint.clone(),
        config: args.config.clone(),
        data: args.data.clone(),
        force: args.force,
    };
    let runtime = match runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(skycast_puller::enroll::enroll(&opts)) {
        Ok(done) => {
            println!(
                "enrolled as player `{}`{}: configuration written to {} (mode 0600), data in {}",
                done.player_id,
                done.shop.map(|s| format!(" (shop `{s}`)")).unwrap_or_default(),
                done.config_path.display(),
                done.data.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, &e.into()),
    }
}

/// Prints the reason on one line of stderr, without a trailing period.
fn fail(code: u8, err: &anyhow::Error) -> ExitCode {
    let text = skycast_puller::client::one_line(err.as_ref());
    eprintln!("error: {}", text.trim_end_matches('.'));
    ExitCode::from(code)
}

/// Completes on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("stop requested");
}
