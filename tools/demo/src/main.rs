//! `crowdledger-demo`: loads the SenseTour demo into a running service through its API and prints
//! what to call next; `scripts/run --demo` runs it once the service answers. It is a client of
//! the service, not a part of it; it reads the service's settings only for its defaults (the
//! address it serves on, its bootstrap operator key), as the service would find them.

mod story;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use crowdledger::config::Settings;
use secrecy::ExposeSecret;

/// Load the SenseTour demo (a sponsor, a 2,000 EUR cheque for a contest winner, two open rounds)
/// into a running service through its API, and print what to call next.
#[derive(Parser)]
#[command(name = "crowdledger-demo", version)]
struct Args {
    /// The service's address (default: http.bind).
    #[arg(long)]
    url: Option<String>,
    /// An operator key (default: auth.bootstrap_operator_key).
    #[arg(long, env = "CROWDLEDGER_API_KEY", hide_env_values = true)]
    key: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("crowdledger-demo: {err:#}");
            return ExitCode::from(2);
        }
    };
    match run(args, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("crowdledger-demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(Args { url, key }: Args, settings: Settings) -> anyhow::Result<()> {
    let base = url.unwrap_or_else(|| format!("http://{}", settings.http.bind));
    let key = key
        .or_else(|| {
            settings
                .auth
                .bootstrap_operator_key
                .as_ref()
                .map(|k| k.expose_secret().to_string())
        })
        .context("give an operator key with --key (or CROWDLEDGER_API_KEY)")?;
    let demo = story::load(&base, &key).await?;
    println!("{}", story::next_steps(&demo, &base, &key));
    Ok(())
}
