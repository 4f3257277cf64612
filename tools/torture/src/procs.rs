//! The processes the torture run crashes: `serve` processes it starts itself, and Postgres,
//! which `scripts/torture` starts and stops for it (`scripts/torture pg crash|start`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// What every `serve` process is started with.
pub struct ServeConfig {
    pub bin: PathBuf,
    pub database_url: String,
    pub operator_key: String,
    pub sandbox_secret: String,
    pub logs: PathBuf,
}

/// One `serve` process on its own port, restarted after each kill.
pub struct Serve {
    pub port: u16,
    child: Option<tokio::process::Child>,
    pub starts: u32,
}

impl Serve {
    pub fn new(port: u16) -> Self {
        Serve {
            port,
            child: None,
            starts: 0,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process (its log appended to `serve-<port>.log`) and waits until it is ready.
    pub async fn start(&mut self, config: &ServeConfig, http: &reqwest::Client) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.logs.join(format!("serve-{}.log", self.port)))?;
        let child = tokio::process::Command::new(&config.bin)
            .arg("serve")
            .env("DATABASE_URL", &config.database_url)
            .env("CROWDLEDGER__AUTH__BOOTSTRAP_OPERATOR_KEY", &config.operator_key)
            .env("CROWDLEDGER__PAYMENTS__SANDBOX__WEBHOOK_SECRET", &config.sandbox_secret)
            // Refunds (failed and pro-rata rounds) confirm themselves through the signed webhook.
            .env("CROWDLEDGER__PAYMENTS__SANDBOX__AUTO_CONFIRM", "true")
            // The run's own webhook receiver listens on 127.0.0.1.
            .env("CROWDLEDGER__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
            // The sandbox (its auto-confirmation, its webhook) exists only with a manual clock.
            // Never moved, it keeps the real time, so the three processes share one time.
            .env("CROWDLEDGER__CLOCK__MODE", "manual")
            .env("CROWDLEDGER__HTTP__BIND", format!("127.0.0.1:{}", self.port))
            .env(
                "CROWDLEDGER__HTTP__METRICS_BIND",
                format!("127.0.0.1:{}", self.port + 1),
            )
            .env("CROWDLEDGER__LOG__FILTER", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", config.bin.display()))?;
        self.child = Some(child);
        self.starts += 1;
        wait_ready(http, &self.base(), Duration::from_secs(60)).await
    }

    /// SIGKILL: no shutdown, no draining, whatever it was doing is cut.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }
}

/// Waits until `GET /ready` answers 200 (the database reachable).
pub async fn wait_ready(http: &reqwest::Client, base: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{base} not ready within {} s", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `scripts/torture` with `args` (its helper subcommands), failing on a non-zero exit.
pub async fn script(script: &PathBuf, args: &[&str]) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(script)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .await
        .with_context(|| format!("running {} {}", script.display(), args.join(" ")))?;
    if !status.success() {
        bail!("{} {} failed: {status}", script.display(), args.join(" "));
    }
    Ok(())
}
