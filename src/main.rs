//! `hotline` command line: `serve` runs the hotline, `check-config` validates a config file.

use clap::{Parser, Subcommand};
use hotline::app::Hotline;
use hotline::config::{Config, ConfigError, Overrides};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

const DEFAULT_CONFIG: &str = "sip-config/hotline.toml";

#[derive(Parser)]
#[command(
    name = "hotline",
    version,
    about = "Bank customer hotline: SIP call centre backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hotline (SIP on UDP+TCP, HTTP API).
    Serve {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// SIP listen address (UDP and TCP), overrides sip.listen.
        #[arg(long)]
        sip_listen: Option<SocketAddr>,
        /// HTTP listen address, overrides http.listen.
        #[arg(long)]
        http_listen: Option<SocketAddr>,
        /// Database URL (sqlite://… or postgres://…), overrides storage.database_url.
        #[arg(long)]
        database_url: Option<String>,
        /// Data directory for recordings and the embedded database, overrides storage.data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Validate a configuration file and print what it sets up.
    CheckConfig {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

/// Exit code for a configuration the hotline refuses to run with.
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config, &Overrides::default()) {
            Ok(c) => {
                println!("{}: OK", config.display());
                println!(
                    "  SIP {} (UDP+TCP), domain {}, numbers {}",
                    c.sip.listen,
                    c.sip.domain,
                    c.sip.hotline_numbers.join(", ")
                );
                println!("  HTTP {}", c.http.listen);
                println!("  database {}", c.storage.effective_database_url());
                println!("  {} operator(s)", c.operators.len());
                for w in c.warnings() {
                    println!("  warning: {w}");
                }
                // The prompts are part of the set-up: a bad file must show before a restart.
                match hotline::media::prompt::Prompts::load(&c.media.prompts_dir) {
                    Ok(p) => {
                        println!("  {} prompts in {}", p.len(), c.media.prompts_dir.display());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("hotline: prompts: {e}");
                        ExitCode::from(EXIT_BAD_CONFIG)
                    }
                }
            }
            Err(e) => config_error(&config, e),
        },
        Command::Serve {
            config,
            sip_listen,
            http_listen,
            database_url,
            data_dir,
        } => {
            let overrides = Overrides {
                sip_listen,
                http_listen,
                database_url,
                data_dir,
            };
            let c = match Config::load(&config, &overrides) {
                Ok(c) => c,
                Err(e) => return config_error(&config, e),
            };
            init_tracing();
            for w in c.warnings() {
                tracing::warn!("{w}");
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("hotline: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(c)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hotline: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn config_error(path: &std::path::Path, e: ConfigError) -> ExitCode {
    eprintln!("hotline: bad configuration in {}: {e}", path.display());
    ExitCode::from(EXIT_BAD_CONFIG)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let hotline = Hotline::start(config).await?;
    tracing::info!(sip = %hotline.sip_addr, http = %hotline.http_addr, "hotline running");
    shutdown_signal().await;
    tracing::info!("shutting down");
    hotline.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
