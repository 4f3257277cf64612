//! `crowdledger-torture`: crashes the service while it works, then proves nothing was lost.
//!
//! It starts several `serve` processes on one database and floods them with card pledges
//! (funded by the provider's signed webhook), cheque pledges racing for the same cheques, and
//! rounds closing by themselves or by an operator on every process at once. Meanwhile it
//! SIGKILLs a random `serve` process, or stops Postgres with `pg_ctl stop -m immediate`, and
//! starts it again, over and over; midway it takes a `pg_dump` of the busy database. Then it
//! checks every acknowledged operation, the caps, the cheques, that each due job ran once, that
//! every outbox event reached its endpoint, and the books (`crowdledger verify`); and it restores
//! the dump into a fresh database, verifies it and resumes the service on it. `scripts/torture`
//! runs it; see docs/reliability.md.

mod check;
mod procs;
mod receiver;
mod work;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;
use serde_json::json;

use crowdledger::webhooks::signature::WebhookSecret;
use crowdledger_client::{Api, id};
use procs::{Serve, ServeConfig};
use work::{Acks, World};

#[derive(Parser)]
#[command(about = "Crash the service and Postgres under load, then check that nothing was lost")]
struct Args {
    /// The `crowdledger` binary.
    #[arg(long)]
    bin: PathBuf,
    /// `scripts/torture`, whose `pg crash|start` and `dump|restore` this run calls.
    #[arg(long)]
    script: PathBuf,
    /// The database of the run (owner access: the checks read every table).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// The database the dump is restored into (created by `scripts/torture restore`).
    #[arg(long)]
    restored_database_url: String,
    /// How the `serve` processes log in: the service's least-privileged role
    /// (docs/database-roles.md), on the run's database and on the restored one.
    #[arg(long)]
    serve_url: String,
    #[arg(long)]
    restored_serve_url: String,
    /// `serve` processes on the one database.
    #[arg(long, default_value_t = 3)]
    processes: usize,
    /// SIGKILLs of a random `serve` process.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Immediate stops of Postgres.
    #[arg(long, default_value_t = 10)]
    pg_crashes: usize,
    /// Concurrent clients of the flood.
    #[arg(long, default_value_t = 24)]
    clients: usize,
    /// First port of the `serve` processes (each takes two: API and metrics).
    #[arg(long, default_value_t = 24100)]
    port: u16,
    /// Where to write torture.json, torture.md and the processes' logs.
    #[arg(long, default_value = "target/torture")]
    out: PathBuf,
}

/// What the rounds of the run are.
struct Rounds {
    /// Closing by themselves during the crashes.
    timed: Vec<String>,
    /// Open for a day; closed at the end by an operator on every process at once.
    long: String,
}

/// An open round of its own project, at 1.00 a share, closing `closes_in` from now (the
/// processes run on a manual clock that is never moved: the real time).
async fn offer(
    api: &Api,
    name: &str,
    allocation: &str,
    min: i64,
    max: i64,
    closes_in: Duration,
) -> anyhow::Result<String> {
    let now = chrono::Utc::now();
    api.open_offer(name, allocation, (min, max), (now, now + closes_in))
        .await
}

async fn rounds(api: &Api) -> anyhow::Result<Rounds> {
    let mut timed = Vec::new();
    for k in 0..6u64 {
        let name = format!("Torture first come {k}");
        timed.push(offer(api, &name, "first_come", 50, 300, Duration::from_secs(30 + 15 * k)).await?);
    }
    for k in 0..2u64 {
        let name = format!("Torture pro rata {k}");
        timed.push(offer(api, &name, "pro_rata", 50, 200, Duration::from_secs(50 + 30 * k)).await?);
    }
    // Fails: its minimum is out of the flood's reach, so every pledge is refunded.
    timed.push(
        offer(
            api,
            "Torture failing",
            "first_come",
            100_000,
            100_000,
            Duration::from_secs(70),
        )
        .await?,
    );
    let long = offer(
        api,
        "Torture long",
        "first_come",
        10,
        1_000_000,
        Duration::from_secs(86_400),
    )
    .await?;
    Ok(Rounds { timed, long })
}

/// A sponsor's budget (a deposit the sandbox confirms by itself), then cheques: most valid for a
/// day, a few expiring during the run.
async fn cheques(api: &Api) -> anyhow::Result<Vec<String>> {
    let sponsor = id(&api.post("/v1/sponsors", json!({"name": "Torture Sponsor"})).await?)?;
    api.post(
        &format!("/v1/sponsors/{sponsor}/deposits"),
        json!({"amount": "2000.00", "currency": "EUR"}),
    )
    .await?;
    let mut codes = Vec::new();
    for k in 0..25u64 {
        let expires = chrono::Utc::now()
            + if k < 5 {
                Duration::from_secs(45 + 5 * k)
            } else {
                Duration::from_secs(86_400)
            };
        let body = json!({"sponsor_id": sponsor, "beneficiary_name": format!("Winner {k}"),
                          "beneficiary_email": format!("winner{k}@torture.example"), "face_value": "40.00",
                          "currency": "EUR", "expires_at": expires.to_rfc3339(), "memo": "Torture contest"});
        // The deposit is confirmed by the sandbox's webhook, a moment after it is made.
        let deadline = Instant::now() + Duration::from_secs(30);
        let cheque = loop {
            match api.post("/v1/cheques", body.clone()).await {
                Ok(cheque) => break cheque,
                Err(e) if Instant::now() < deadline && e.to_string().contains("budget") => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        };
        codes.push(
            cheque["code"]
                .as_str()
                .context("a cheque without its code")?
                .to_string(),
        );
    }
    Ok(codes)
}

#[derive(Clone, Copy, Debug)]
enum Crash {
    Kill,
    Postgres,
    Dump,
}

/// The run's figures, as written to torture.json.
#[derive(Serialize)]
struct Report {
    processes: usize,
    clients: usize,
    seconds: f64,
    kills: usize,
    pg_crashes: usize,
    dump_taken_during_flood: bool,
    outcomes: BTreeMap<String, u64>,
    acknowledged_pledges: usize,
    acknowledged_funded: usize,
    /// The answers to one round's close asked of every process at once.
    operator_closes: Vec<String>,
    checks: Vec<check::Check>,
    received: check::Received,
    verify_exit_ok: bool,
    restored_verify_exit_ok: bool,
    restored_resumed: bool,
}

impl Report {
    fn violations(&self) -> usize {
        self.checks.iter().map(|c| c.violations.len()).sum::<usize>()
            + usize::from(!self.verify_exit_ok)
            + usize::from(!self.restored_verify_exit_ok)
            + usize::from(!self.restored_resumed)
            + self
                .outcomes
                .iter()
                .filter(|(k, _)| k.starts_with("VIOLATION"))
                .map(|(_, n)| *n as usize)
                .sum::<usize>()
    }

    fn markdown(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "**no**" };
        let mut md = String::from("| figure | value |\n|---|---|\n");
        md += &format!("| `serve` processes on one database | {} |\n", self.processes);
        md += &format!("| concurrent clients | {} |\n", self.clients);
        md += &format!("| flood and crashes, seconds | {:.0} |\n", self.seconds);
        md += &format!("| SIGKILLs of a `serve` process survived | {} |\n", self.kills);
        md += &format!("| `pg_ctl stop -m immediate` survived | {} |\n", self.pg_crashes);
        md += &format!("| pledges acknowledged and checked | {} |\n", self.acknowledged_pledges);
        md += &format!("| of which acknowledged as funded | {} |\n", self.acknowledged_funded);
        md += &format!(
            "| one round's close asked of every process at once: answers | {} |\n",
            self.operator_closes.join("; ")
        );
        for check in &self.checks {
            md += &format!(
                "| {}: items checked / violations | {} / {}{} |\n",
                check.name,
                check.checked,
                check.violations.len(),
                if check.noted > 0 {
                    format!(
                        " ({} paid after the round closed: cancelled, refunded in full)",
                        check.noted
                    )
                } else {
                    String::new()
                }
            );
        }
        md += &format!(
            "| outbound deliveries received (distinct events, repeats) | {} ({}, {}) |\n",
            self.received.deliveries,
            self.received.distinct_events,
            self.received.deliveries - self.received.distinct_events
        );
        md += &format!(
            "| outbound deliveries with a bad signature | {} |\n",
            self.received.bad_signatures
        );
        md += &format!("| `crowdledger verify` passes | {} |\n", yes(self.verify_exit_ok));
        md += &format!(
            "| `pg_dump` taken during the flood, restored: verify passes | {} |\n",
            yes(self.restored_verify_exit_ok)
        );
        md += &format!(
            "| service resumed on the restored database (pledge, funding, books) | {} |\n",
            yes(self.restored_resumed)
        );
        md += &format!("| **violations** | **{}** |\n", self.violations());
        md += "\nOutcomes the clients saw:\n\n| outcome | count |\n|---|---|\n";
        for (outcome, n) in &self.outcomes {
            md += &format!("| {outcome} | {n} |\n");
        }
        md
    }
}

/// `crowdledger verify` against `database_url`: whether it exits 0.
async fn verify(bin: &PathBuf, database_url: &str) -> anyhow::Result<bool> {
    let out = tokio::process::Command::new(bin)
        .arg("verify")
        .env("DATABASE_URL", database_url)
        .output()
        .await?;
    if !out.status.success() {
        eprintln!("verify: {}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(out.status.success())
}

/// Starts a `serve` on the restored database, pledges on the round that was open when the dump
/// was taken, funds it through the signed webhook and reads the books' verdict.
async fn resume_on_restored(
    config: &ServeConfig,
    http: &reqwest::Client,
    port: u16,
    world: &World,
    long: &str,
) -> anyhow::Result<bool> {
    let mut serve = Serve::new(port);
    serve.start(config, http).await?;
    let restored = World {
        bases: vec![serve.base()],
        key: world.key.clone(),
        sandbox_secret: world.sandbox_secret.clone(),
        investors: world.investors.clone(),
        offers: vec![long.to_string()],
        cheque_codes: Vec::new(),
        run: format!("{}-restored", world.run),
    };
    let acks = Acks::default();
    work::card_pledge_once(http, &restored, &acks).await;
    let funded = acks.pledges.lock().unwrap().iter().any(|p| p.funded);
    let api = Api::new(http.clone(), &serve.base(), &world.key);
    let books = api.get("/v1/ledger/verify").await?;
    serve.kill().await?;
    if !funded {
        eprintln!(
            "restored: the pledge was not funded: {:?}",
            acks.outcomes.lock().unwrap()
        );
    }
    Ok(funded && books["ok"] == true)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(64)
        .build()?;
    let operator_key = format!("clk_torture_{}", uuid::Uuid::new_v4().simple());
    let sandbox_secret = WebhookSecret::generate();
    let config = ServeConfig {
        bin: args.bin.clone(),
        database_url: args.serve_url.clone(),
        operator_key: operator_key.clone(),
        sandbox_secret: sandbox_secret.expose_string(),
        logs: args.out.clone(),
    };
    let mut serves: Vec<Serve> = (0..args.processes)
        .map(|i| Serve::new(args.port + 2 * i as u16))
        .collect();
    // All start at once: their bootstrap and job workers race from the first second.
    futures::future::try_join_all(serves.iter_mut().map(|s| s.start(&config, &http))).await?;
    let api = Api::new(http.clone(), &serves[0].base(), &operator_key);

    let receiver = receiver::Receiver::start().await?;
    let endpoint = api
        .post(
            "/v1/webhook-endpoints",
            json!({"url": receiver.url(), "events": crowdledger::outbox::EventType::ALL.map(crowdledger::outbox::EventType::as_str)}),
        )
        .await?;
    receiver.set_secret(
        endpoint["secret"]
            .as_str()
            .context("an endpoint without its secret")?
            .parse()?,
    );
    let endpoint_id: uuid::Uuid = id(&endpoint)?.parse()?;

    eprintln!("setting up: rounds, investors, cheques");
    let rounds = rounds(&api).await?;
    let world = Arc::new(World {
        bases: serves.iter().map(Serve::base).collect(),
        key: operator_key.clone(),
        sandbox_secret,
        investors: api.verified_investors(100, "Torture").await?,
        offers: rounds.timed.iter().chain([&rounds.long]).cloned().collect(),
        cheque_codes: cheques(&api).await?,
        run: uuid::Uuid::new_v4().simple().to_string(),
    });

    let acks = Arc::new(Acks::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..args.clients)
        .map(|_| {
            let (http, world, acks, stop) = (http.clone(), world.clone(), acks.clone(), stop.clone());
            tokio::spawn(async move { work::client(http, &world, &acks, &stop).await })
        })
        .collect();

    let mut crashes: Vec<Crash> = std::iter::repeat_n(Crash::Kill, args.kills)
        .chain(std::iter::repeat_n(Crash::Postgres, args.pg_crashes))
        .collect();
    crashes.shuffle(&mut rand::rng());
    crashes.insert(crashes.len() / 2, Crash::Dump);
    let dump = std::fs::canonicalize(&args.out)?.join("busy.dump");
    let started = Instant::now();
    for (n, crash) in crashes.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(2000..5000))).await;
        eprintln!(
            "{:>5.1} s  {:>2}/{}  {crash:?}  ({} pledges acknowledged)",
            started.elapsed().as_secs_f64(),
            n + 1,
            crashes.len(),
            acks.pledges.lock().unwrap().len()
        );
        match crash {
            Crash::Kill => {
                let victim = rand::rng().random_range(0..serves.len());
                serves[victim].kill().await?;
                tokio::time::sleep(Duration::from_millis(rand::rng().random_range(300..1500))).await;
                serves[victim].start(&config, &http).await?;
            }
            Crash::Postgres => {
                procs::script(&args.script, &["pg", "crash"]).await?;
                tokio::time::sleep(Duration::from_millis(rand::rng().random_range(500..2000))).await;
                procs::script(&args.script, &["pg", "start"]).await?;
                for serve in &serves {
                    procs::wait_ready(&http, &serve.base(), Duration::from_secs(60)).await?;
                }
            }
            Crash::Dump => procs::script(&args.script, &["dump", &dump.to_string_lossy()]).await?,
        }
    }
    // The flood goes on a little after the last crash, then stops; the clients finish (or give
    // up on) what they had started.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    futures::future::join_all(clients).await;
    let seconds = started.elapsed().as_secs_f64();

    // One close, asked of every process at once: it must happen once.
    let closes = futures::future::join_all(serves.iter().map(|s| {
        let api = Api::new(http.clone(), &s.base(), &operator_key);
        let long = rounds.long.clone();
        async move { api.post(&format!("/v1/offers/{long}/close"), json!({})).await }
    }))
    .await;
    let operator_closes: Vec<String> = closes
        .into_iter()
        .map(|c| c.map_or_else(|e| e.to_string(), |_| "200".to_string()))
        .collect();

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await
        .context("connecting to the run's database")?;
    let offers: Vec<uuid::Uuid> = world.offers.iter().map(|o| o.parse()).collect::<Result<_, _>>()?;
    eprintln!("waiting for the rounds to close and the outbox to drain");
    settle(&pool, &offers, endpoint_id).await?;

    let acked = acks.pledges.lock().unwrap().clone();
    let received = receiver.seen();
    let checks = vec![
        check::acknowledged_pledges(&pool, &acked).await?,
        check::offers_within_cap(&pool, &offers).await?,
        check::cheques_not_overspent(&pool).await?,
        check::jobs_once(&pool).await?,
        check::outbox_delivered(&pool, endpoint_id, &received).await?,
    ];
    let verify_exit_ok = verify(&args.bin, &args.database_url).await?;
    for serve in &mut serves {
        serve.kill().await?;
    }

    eprintln!("restoring the dump taken during the flood");
    procs::script(&args.script, &["restore", &dump.to_string_lossy()]).await?;
    let restored_verify_exit_ok = verify(&args.bin, &args.restored_database_url).await?;
    let restored_config = ServeConfig {
        database_url: args.restored_serve_url.clone(),
        ..config
    };
    let restored_resumed = resume_on_restored(
        &restored_config,
        &http,
        args.port + 2 * args.processes as u16,
        &world,
        &rounds.long,
    )
    .await?;

    let report = Report {
        processes: args.processes,
        clients: args.clients,
        seconds,
        kills: args.kills,
        pg_crashes: args.pg_crashes,
        dump_taken_during_flood: true,
        outcomes: acks.outcomes.lock().unwrap().clone(),
        acknowledged_pledges: acked.len(),
        acknowledged_funded: acked.iter().filter(|p| p.funded).count(),
        operator_closes,
        checks,
        received: receiver.counts(),
        verify_exit_ok,
        restored_verify_exit_ok,
        restored_resumed,
    };
    for check in &report.checks {
        for violation in check.violations.iter().take(20) {
            eprintln!("VIOLATION ({}): {violation}", check.name);
        }
    }
    let md = report.markdown();
    std::fs::write(args.out.join("torture.json"), serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(args.out.join("torture.md"), &md)?;
    println!("{md}");
    if report.violations() > 0 {
        bail!("{} violations", report.violations());
    }
    Ok(())
}

/// Waits until every round has closed and every delivery to the run's endpoint is done (the
/// last rounds close about two minutes after set-up; deliveries retry after 5 s).
async fn settle(pool: &sqlx::PgPool, offers: &[uuid::Uuid], endpoint: uuid::Uuid) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (open, pending): (i64, i64) = sqlx::query_as(
            "select (select count(*) from offers where id = any($1) and status not in ('succeeded', 'failed')),
                    (select count(*) from webhook_deliveries where endpoint_id = $2 and status = 'pending')
                  + (select count(*) from outbox_events e, outbox_cursor c where (e.created_xact, e.seq) > (c.xact, c.seq))",
        )
        .bind(offers)
        .bind(endpoint)
        .fetch_one(pool)
        .await?;
        if open == 0 && pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!("not settled: {open} rounds not closed, {pending} events not delivered");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
