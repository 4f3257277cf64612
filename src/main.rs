//! The `crowdledger` command: parses arguments and calls the library. Nothing else.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crowdledger::books::audit;
use crowdledger::clock::Clock;
use crowdledger::config::{LogFormat, Settings};
use crowdledger::keys::{self, Role};
use crowdledger::{App, db, launch, offers};
use secrecy::ExposeSecret;
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

// glibc's malloc keeps what a burst of requests freed (docs/performance.md); mimalloc gives it back.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "crowdledger",
    version,
    about = "Equity crowdfunding on a double-entry ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (and metrics on http.metrics_bind).
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check every invariant of the books; exits with 1 if one is violated.
    Verify,
    /// Close the offers whose time has come (what the background job does every second).
    CloseDue,
    /// Compare the payments, refunds and payouts made through a provider since a time with the
    /// provider's own (read only); exits with 1 if one differs.
    Reconcile {
        /// The provider, as configured under `payments.<provider>` (e.g. stripe).
        #[arg(long)]
        provider: String,
        /// RFC 3339, e.g. 2026-12-01T00:00:00Z.
        #[arg(long)]
        since: chrono::DateTime<chrono::Utc>,
        /// One JSON report instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Export data.
    Export {
        #[command(subcommand)]
        what: ExportCommand,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// The cap table of a succeeded offer: each investor's shares and amount.
    CapTable {
        #[arg(long)]
        offer: Uuid,
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (it is shown only this once).
    Create {
        #[arg(long, value_enum)]
        role: Role,
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id.
    Revoke { id: Uuid },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("crowdledger: {err:#}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&settings);
    match run(cli.command, settings).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("crowdledger: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            let app = App::build(&settings).await?;
            let listener = tokio::net::TcpListener::bind(settings.http.bind)
                .await
                .with_context(|| format!("binding http.bind {}", settings.http.bind))?;
            let metrics = match settings.http.metrics_bind {
                Some(addr) => Some(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("binding http.metrics_bind {addr}"))?,
                ),
                None => None,
            };
            tracing::info!(bind = %settings.http.bind, metrics = ?settings.http.metrics_bind, clock = ?settings.clock.mode, "serving");
            launch(app, listener, metrics, shutdown_signal()).await?;
            tracing::info!("stopped");
        }
        Command::Migrate => {
            let pool = db::connect_migrator(&settings).await?;
            db::migrate(&pool).await?;
            println!("migrations applied");
        }
        Command::Keys { command } => {
            let pool = db::connect(&settings).await?;
            db::ensure_migrated(&pool).await?;
            let mut conn = pool.acquire().await?;
            let now = Clock::system().now();
            match command {
                KeysCommand::Create { role, name } => {
                    let created = keys::create(&mut conn, &name, role, now).await?;
                    eprintln!(
                        "created {} key {} ({}); it is shown only once:",
                        role.as_str(),
                        created.id,
                        created.name
                    );
                    println!("{}", created.key.expose_secret());
                }
                KeysCommand::List => {
                    for k in keys::list(&mut conn).await? {
                        let state = k.revoked_at.map_or("active".to_string(), |t| format!("revoked {t}"));
                        println!(
                            "{}  {:<8}  {}…  {}  {}",
                            k.id,
                            k.role.as_str(),
                            k.key_prefix,
                            k.name,
                            state
                        );
                    }
                }
                KeysCommand::Revoke { id } => {
                    if !keys::revoke(&mut conn, id, now).await? {
                        anyhow::bail!("no active key {id}");
                    }
                    println!("revoked {id}");
                }
            }
        }
        Command::Verify => {
            let pool = db::connect(&settings).await?;
            db::ensure_migrated(&pool).await?;
            let checks = audit::verify(&pool, settings.database.read_statement_timeout())
                .await
                .context("verifying the books (each check may run database.read_statement_timeout_ms)")?;
            let mut ok = true;
            for c in &checks {
                ok &= c.ok;
                let verdict = if c.ok { "ok  " } else { "FAIL" };
                println!("{verdict}  {:<26} {}", c.name, c.description);
                if !c.ok {
                    println!("      {} violation(s), e.g. {}", c.violations, c.examples.join(", "));
                }
            }
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        Command::CloseDue => {
            let pool = db::connect(&settings).await?;
            db::ensure_migrated(&pool).await?;
            let bar = progress_bar("closing offers");
            let now = Clock::new(settings.clock.mode).now();
            let seed_key = offers::ballot::SeedKey::configured(settings.ballot.seed_key.as_ref(), settings.clock.mode);
            let ended = crowdledger::rounds::closing::close_due(&pool, seed_key.as_ref(), now, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await
            .map_err(problem)?;
            bar.finish_and_clear();
            println!("{ended} offer(s) closed");
        }
        Command::Reconcile { provider, since, json } => {
            let pool = db::connect(&settings).await?;
            db::ensure_migrated(&pool).await?;
            let providers = crowdledger::payments::providers::Providers::new(
                &settings.payments,
                settings.clock.mode,
                settings.webhooks.allow_private_targets,
            );
            let remote = providers
                .remote(&provider)
                .with_context(|| format!("no networked provider {provider} is configured (payments.{provider})"))?;
            let report = crowdledger::rounds::reconcile::reconcile(&pool, remote, &provider, since).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for d in &report.differences {
                    println!(
                        "{:<7} {}  {:<32} ours: {:<28} theirs: {:<28} {}",
                        d.object,
                        d.id,
                        d.provider_id.as_deref().unwrap_or("-"),
                        d.ours,
                        d.theirs.as_deref().unwrap_or("-"),
                        d.why
                    );
                }
                eprintln!(
                    "{} object(s) at {provider} since {since} compared, {} differ",
                    report.compared,
                    report.differences.len()
                );
            }
            return Ok(if report.differences.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Export {
            what: ExportCommand::CapTable { offer, format, output },
        } => {
            let pool = db::connect(&settings).await?;
            db::ensure_migrated(&pool).await?;
            let mut conn = pool.acquire().await?;
            let bar = progress_bar("reading the cap table");
            let table = offers::cap_table::build(&mut conn, offer).await.map_err(problem)?;
            bar.set_message("writing");
            bar.set_length(table.investor_count() as u64);
            let text = match format {
                ExportFormat::Csv => offers::cap_table::csv(&table),
                ExportFormat::Json => serde_json::to_string_pretty(&table)? + "\n",
            };
            bar.set_position(table.investor_count() as u64);
            match output {
                Some(path) => std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?,
                None => std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?,
            }
            bar.finish_and_clear();
            eprintln!("{} investors, {} shares", table.investor_count(), table.total_shares());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on standard error; it draws nothing when standard error is not a terminal.
fn progress_bar(message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

fn init_tracing(settings: &Settings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested; finishing requests in flight");
}

/// A domain's refusal as the CLI reports it: the stable code and the detail the API would send.
fn problem(err: impl Into<crowdledger::http::error::ApiError>) -> anyhow::Error {
    let err = err.into();
    anyhow::anyhow!("{}: {}", err.code(), err.detail())
}
