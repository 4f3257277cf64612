//! The `crowdledger` command: parses arguments and calls the library. Nothing else.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crowdledger::clock::Clock;
use crowdledger::config::{LogFormat, Settings};
use crowdledger::keys::{self, Role};
use crowdledger::{App, audit, db, launch};
use secrecy::ExposeSecret;
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

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
    /// Check every ledger invariant; exits with 1 if one is violated.
    Verify,
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
            let pool = db::connect(&settings).await?;
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
            let checks = audit::verify(&pool).await?;
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
    }
    Ok(ExitCode::SUCCESS)
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
