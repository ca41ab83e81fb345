//! `hotline` command line: `serve` runs the hotline, `check-config` validates a config file,
//! `migrate` brings the database up to date, `token` makes and revokes API tokens,
//! `retention` lists or purges records past retention, `transcribe` prints what whisper
//! hears in a recording (to check a model), `openapi` prints the API's description.

use clap::{Parser, Subcommand};
use hotline::app::Hotline;
use hotline::calendar::Calendar;
use hotline::config::{Config, ConfigError, Overrides};
use hotline::desk::accounts::Accounts;
use hotline::desk::Records;
use hotline::records::account::NewUser;
use hotline::records::role::Role;
use hotline::store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const DEFAULT_CONFIG: &str = "sip-config/hotline.toml";

/// `--config` when not given: `$HOTLINE_CONFIG`, else the sample's place in the repository.
/// Paths inside a config (prompts, calendar, data) are relative to the working directory,
/// so a deployment passes an absolute `--config` whose paths are absolute too.
fn default_config() -> PathBuf {
    std::env::var_os("HOTLINE_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

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
        #[arg(long, default_value_os_t = default_config())]
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
        /// This node's name in a cluster, overrides cluster.node_id.
        #[arg(long)]
        node_id: Option<String>,
    },
    /// Validate a configuration file and print what it sets up.
    CheckConfig {
        #[arg(long, default_value_os_t = default_config())]
        config: PathBuf,
    },
    /// Apply the database migrations of schemas/ (serve does it too, at start).
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// The console's users: people who log in (tokens are for machines).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Records past retention (records.retention_years after their last document).
    Retention {
        #[command(flatten)]
        db: DbArgs,
        /// Delete them; without it, only list what would be deleted.
        #[arg(long)]
        purge: bool,
    },
    /// Transcribe a WAV file with the configured whisper model and print the text (and the
    /// classifier's suggestion): the way to check a model before the hotline uses it.
    Transcribe {
        /// A 16-bit PCM WAV (a voicemail recording, any sample rate).
        file: PathBuf,
        #[arg(long, default_value_os_t = default_config())]
        config: PathBuf,
        /// A ggml whisper model, overrides transcription.model.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Spoken language, overrides transcription.language.
        #[arg(long)]
        language: Option<String>,
        /// CPU threads, overrides transcription.threads.
        #[arg(long)]
        threads: Option<u32>,
    },
    /// Print the OpenAPI description of /api/v1 (committed as schemas/openapi.json).
    Openapi,
    /// Certificates for SIP over TLS and HTTPS.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// A lab's CA and a certificate it signs: writes ca.pem (for phones and browsers to
    /// trust), cert.pem (the chain) and key.pem (mode 0600) into DIR. For production, use the
    /// bank's CA or an ACME client (README, "TLS").
    SelfSigned {
        #[arg(long)]
        out: PathBuf,
        /// Host names and addresses the certificate is for (repeat it); default localhost,
        /// 127.0.0.1 and ::1.
        #[arg(long = "name")]
        names: Vec<String>,
        /// Days it is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

/// Where the records are: the config file, with the database and data directory
/// overridable.
#[derive(clap::Args)]
struct DbArgs {
    #[arg(long, default_value_os_t = default_config())]
    config: PathBuf,
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Make a user. The password is read from standard input when it is not a terminal
    /// (one line), and asked for otherwise. For a role that needs a second factor, prints the
    /// `otpauth://` URI to enrol an authenticator app with.
    Create {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        login: String,
        /// The name shown in the console and recorded as the actor of their changes.
        #[arg(long)]
        name: String,
        /// operator, supervisor, card_department, security or admin.
        #[arg(long)]
        role: String,
        /// The operator's extension (operators only).
        #[arg(long)]
        operator: Option<String>,
    },
    /// Set a new password (read as for create); the user's sessions end.
    Passwd {
        #[command(flatten)]
        db: DbArgs,
        login: String,
    },
    /// Disable a user; their sessions end.
    Disable {
        #[command(flatten)]
        db: DbArgs,
        login: String,
    },
    /// List users.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// A new TOTP secret (a lost phone): prints the `otpauth://` URI to enrol from.
    Totp {
        #[command(flatten)]
        db: DbArgs,
        login: String,
    },
}

/// A password from standard input: one line when it is a pipe, else asked twice without echo.
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let first = rpassword::prompt_password("Пароль: ")?;
    let again = rpassword::prompt_password("Пароль ещё раз: ")?;
    anyhow::ensure!(first == again, "the passwords differ");
    Ok(first)
}

/// A role named on the command line, or `None` after saying which roles there are.
fn parse_role(role: &str) -> Option<Role> {
    let r = Role::parse(role);
    if r.is_none() {
        eprintln!(
            "hotline: unknown role {role:?} (operator, supervisor, card_department, security, admin)"
        );
    }
    r
}

/// The accounts façade over the records of a CLI command.
fn accounts(c: &Config, records: Records) -> Accounts {
    Accounts::new(records, hotline::app::account_settings(c))
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print it (once: only its hash is stored).
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// The holder's name, recorded as the actor of their changes.
        #[arg(long)]
        name: String,
        /// operator, supervisor, card_department, security or admin.
        #[arg(long)]
        role: String,
        /// The operator's extension (operator tokens only).
        #[arg(long)]
        operator: Option<String>,
    },
    /// List tokens (without secrets).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token by id.
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        id: i64,
    },
}

/// Exit code for a configuration the hotline refuses to run with.
const EXIT_BAD_CONFIG: u8 = 2;

/// Buffers of 256 KiB and more (a wallboard for a thousand operators is a megabyte) are
/// mapped and unmapped on their own. glibc otherwise raises this threshold each time such
/// a buffer is freed, after which they come from the heap arenas of the threads that made
/// them and the arenas keep the high-water mark: 50 wallboards beside 1,000 calls left the
/// hotline 100 MB larger (benches/RESULTS.md, "50 supervisors").
fn keep_large_buffers_out_of_the_heap() {
    // SAFETY: mallopt only sets an allocator parameter; called before other threads start.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024) };
}

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
                // The calendar and the prompts are part of the set-up: a bad file must show
                // before a restart.
                match Calendar::load(&c.calendar) {
                    Ok(cal) => {
                        println!(
                            "  calendar {} ({}), years {:?}",
                            c.calendar.dir.display(),
                            c.calendar.time_zone,
                            cal.years()
                        );
                        println!("  hotline {}", cal.describe(chrono::Utc::now()));
                        if let Some(w) = cal.coverage_warning(chrono::Utc::now()) {
                            println!("  warning: {w}");
                        }
                    }
                    Err(e) => {
                        eprintln!("hotline: calendar: {e}");
                        return ExitCode::from(EXIT_BAD_CONFIG);
                    }
                }
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
        Command::Migrate { db } => with_records(db, |c, _| async move {
            println!(
                "database {} is up to date",
                hotline::store::redact(&c.storage.effective_database_url())
            );
            Ok(())
        }),
        Command::User { command } => match command {
            UserCommand::Create {
                db,
                login,
                name,
                role,
                operator,
            } => {
                let Some(role) = parse_role(&role) else {
                    return ExitCode::from(EXIT_BAD_CONFIG);
                };
                with_records(db, move |c, records| async move {
                    let password = read_password()?;
                    let new = NewUser {
                        login,
                        name,
                        role,
                        operator,
                    };
                    let (user, uri) = accounts(&c, records)
                        .create_user(&new, &password, "cli")
                        .await?;
                    eprintln!("user {} ({}) created", user.login, user.role.as_str());
                    if let Some(uri) = uri {
                        eprintln!("enrol an authenticator app with this URI (or by the QR code at the first login):");
                        println!("{uri}");
                    }
                    Ok(())
                })
            }
            UserCommand::Passwd { db, login } => with_records(db, |c, records| async move {
                let password = read_password()?;
                accounts(&c, records)
                    .set_password(&login, &password, "cli")
                    .await?;
                eprintln!("password of {login} set; their sessions have ended");
                Ok(())
            }),
            UserCommand::Disable { db, login } => with_records(db, |c, records| async move {
                accounts(&c, records).disable(&login, "cli").await?;
                eprintln!("{login} disabled; their sessions have ended");
                Ok(())
            }),
            UserCommand::Totp { db, login } => with_records(db, |c, records| async move {
                let uri = accounts(&c, records).reset_totp(&login, "cli").await?;
                eprintln!("new TOTP secret for {login}; the old one and its recovery codes no longer work:");
                println!("{uri}");
                Ok(())
            }),
            UserCommand::List { db } => with_records(db, |c, records| async move {
                for u in accounts(&c, records).users().await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        u.login,
                        u.role.as_str(),
                        u.name,
                        u.operator.unwrap_or_default(),
                        if u.totp_enrolled { "totp" } else { "-" },
                        if u.disabled { "disabled" } else { "active" }
                    );
                }
                Ok(())
            }),
        },
        Command::Token { command } => match command {
            TokenCommand::Create {
                db,
                name,
                role,
                operator,
            } => {
                let Some(role) = parse_role(&role) else {
                    return ExitCode::from(EXIT_BAD_CONFIG);
                };
                with_records(db, move |c, records| async move {
                    if role == Role::Operator
                        && !c
                            .operators
                            .iter()
                            .any(|o| Some(&o.extension) == operator.as_ref())
                    {
                        anyhow::bail!(
                            "an operator token needs --operator with a configured extension"
                        );
                    }
                    let (id, token) = records
                        .create_token(&name, role, operator.as_deref())
                        .await?;
                    eprintln!(
                        "token {id} for {name} ({}); it is shown only now:",
                        role.as_str()
                    );
                    println!("{token}");
                    Ok(())
                })
            }
            TokenCommand::List { db } => with_records(db, |_, records| async move {
                for t in records.tokens().await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        t.id,
                        t.role.as_str(),
                        t.name,
                        t.operator.unwrap_or_default(),
                        if t.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                    );
                }
                Ok(())
            }),
            TokenCommand::Revoke { db, id } => with_records(db, move |_, records| async move {
                records.revoke_token(id).await?;
                println!("token {id} revoked");
                Ok(())
            }),
        },
        Command::Retention { db, purge } => with_records(db, move |c, records| async move {
            let report = records
                .purge(&c.storage.data_dir, !purge, "hotline retention")
                .await?;
            let verb = if purge { "purged" } else { "would purge" };
            println!(
                "{verb} {} journal entries with their last document before {}",
                report.entries.len(),
                report.cutoff.to_rfc3339()
            );
            for e in &report.entries {
                println!(
                    "  #{} (№ {}/{}), last document {}, files: {}",
                    e.journal_id,
                    e.seq,
                    e.year,
                    e.last_activity_at.to_rfc3339(),
                    e.files.join(", ")
                );
            }
            println!(
                "{verb} {} callback forms without a journal entry",
                report.standalone_callbacks
            );
            for f in &report.files_failed {
                println!("  could not delete {f}");
            }
            Ok(())
        }),
        Command::Transcribe {
            file,
            config,
            model,
            language,
            threads,
        } => {
            let c = match Config::load(&config, &Overrides::default()) {
                Ok(c) => c,
                Err(e) => return config_error(&config, e),
            };
            let t = &c.transcription;
            let Some(model) = model.or_else(|| t.model.clone()) else {
                eprintln!(
                    "hotline: no whisper model: set [transcription] model in {} or pass --model",
                    config.display()
                );
                return ExitCode::from(EXIT_BAD_CONFIG);
            };
            let language = language.unwrap_or_else(|| t.language.clone());
            transcribe(&file, &model, &language, threads.unwrap_or(t.threads))
        }
        Command::Cert {
            command: CertCommand::SelfSigned { out, names, days },
        } => {
            let names = if names.is_empty() {
                vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
            } else {
                names
            };
            match hotline::tls::self_signed(&out, &names, days) {
                Ok(made) => {
                    println!("CA (to trust):   {}", made.ca.display());
                    println!("certificate:     {}", made.cert.display());
                    println!("key (0600):      {}", made.key.display());
                    println!("for {} — valid {days} days", names.join(", "));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hotline: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Openapi => match hotline::api::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hotline: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve {
            config,
            sip_listen,
            http_listen,
            database_url,
            data_dir,
            node_id,
        } => {
            let overrides = Overrides {
                sip_listen,
                http_listen,
                database_url,
                data_dir,
                node_id,
            };
            let c = match Config::load(&config, &overrides) {
                Ok(c) => c,
                Err(e) => return config_error(&config, e),
            };
            init_tracing();
            for w in c.warnings() {
                tracing::warn!("{w}");
            }
            keep_large_buffers_out_of_the_heap();
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

/// `hotline transcribe`: the transcript on stdout, the figures on stderr.
fn transcribe(
    file: &std::path::Path,
    model: &std::path::Path,
    language: &str,
    threads: u32,
) -> ExitCode {
    use hotline::transcribe::{classify, engine};
    let engine = match engine::WhisperTranscriber::load(model, language, threads.max(1)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("hotline: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match engine::transcribe_wav(&engine, file) {
        Ok(t) => {
            println!("{}", t.text);
            let s = classify::classify(&t.text);
            eprintln!(
                "{:.1} s of audio in {:.2} s (real-time factor {:.3}); suggestion: {}{}",
                t.audio_seconds,
                t.elapsed.as_secs_f64(),
                t.elapsed.as_secs_f64() / t.audio_seconds.max(1e-9),
                s.kind.as_str(),
                s.category
                    .map(|c| format!(" / {}", c.code()))
                    .unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hotline: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an offline command against the records of `db`'s configuration.
fn with_records<F, Fut>(db: DbArgs, f: F) -> ExitCode
where
    F: FnOnce(Config, Records) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let overrides = Overrides {
        database_url: db.database_url,
        data_dir: db.data_dir,
        ..Overrides::default()
    };
    let c = match Config::load(&db.config, &overrides) {
        Ok(c) => c,
        Err(e) => return config_error(&db.config, e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hotline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = async move {
        let calendar = Arc::new(Calendar::load(&c.calendar)?);
        let store = Store::connect(&c.storage.effective_database_url()).await?;
        store.migrate().await?;
        let records = Records::new(store.clone(), calendar, c.records.settings());
        let result = f(c, records).await;
        store.close().await;
        result
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hotline: {e:#}");
            ExitCode::FAILURE
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
    // Colours only on a terminal: a log file or journald gets plain text.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let on_sigterm = config.cluster.sigterm();
    let drain_limit = std::time::Duration::from_secs(config.cluster.drain_limit_s);
    let node = config.cluster.node_id.clone();
    let hotline = Hotline::start(config).await?;
    tracing::info!(sip = %hotline.sip_addr, http = %hotline.http_addr, ?node, "hotline running");
    let mut signals = Signals::new()?;
    match signals.next().await {
        Signal::Terminate if on_sigterm == hotline::config::OnSigterm::Drain => {
            tracing::info!(
                limit_s = drain_limit.as_secs(),
                "SIGTERM: draining (a second signal stops at once)"
            );
            hotline.drain(drain_limit, signals.next()).await;
        }
        _ => {
            tracing::info!("shutting down");
            hotline.shutdown().await;
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    Interrupt,
    Terminate,
}

/// SIGINT and SIGTERM, as they come.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Interrupt,
                _ = self.term.recv() => Signal::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Interrupt
        }
    }
}
