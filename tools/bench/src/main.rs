//! `crowdledger-bench`: floods one hot `first_come` offer of a running service with pledges,
//! then checks that nothing was oversold or lost and that the books verify. It writes the
//! results as JSON and Markdown and draws them as an SVG chart. `scripts/bench` runs it beside
//! `pgbench` on the same Postgres; see docs/performance.md.
//!
//! Optionally (`--close-sizes`, `--pro-rata`) it closes big rounds through the API and times
//! that, and (`--preload`) runs the main flood again with a million pledges already stored.
//! Both seed their funded pledges in SQL (see `close.rs`): only the flood and the close are
//! measured. After the preload it also times the investors' portfolio reads (`portfolio.rs`).

mod chart;
mod close;
mod cpu;
mod load;
mod portfolio;
mod report;

// As the service does; glibc's malloc and free were a tenth of the generator's own time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use close::CloseRun;

use crowdledger_client::Api;
use load::{Pace, Target, Work};
use report::{Phase, Preload, Report};

#[derive(Parser)]
#[command(about = "Flood one hot offer with pledges and check that nothing was oversold or lost")]
struct Args {
    /// The service's address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An operator key.
    #[arg(long, env = "CROWDLEDGER_API_KEY", hide_env_values = true)]
    key: String,
    /// The service's database, for the checks that every acknowledged pledge exists.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Connections of the open-loop phase (requests due while all are busy wait for one).
    #[arg(long, default_value_t = 256)]
    open_connections: usize,
    /// Concurrent clients of the main flood.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds of the main flood; the other phases take fractions of it.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Verified investors taking turns on the offer.
    #[arg(long, default_value_t = 1000)]
    investors: usize,
    /// Non-sophisticated investors (with an appropriateness record, pledging with the risk
    /// warning acknowledged) instead of sophisticated ones: the ECSP gate's reads on the path.
    #[arg(long)]
    retail: bool,
    /// Client counts of the scaling sweep, comma-separated (empty: no sweep).
    #[arg(long, default_value = "")]
    sweep: String,
    /// Skip the open-loop and funded phases (a smoke run).
    #[arg(long)]
    quick: bool,
    /// The service's sandbox webhook secret (`whsec_…`): the funded phase then posts each
    /// signed `payment.succeeded` itself, as the provider would, instead of asking the
    /// sandbox's control endpoint to (which costs the service two more requests per pledge).
    #[arg(long, env = "CROWDLEDGER_BENCH_SANDBOX_SECRET", hide_env_values = true)]
    sandbox_secret: Option<String>,
    /// pgbench's TPS in the same run, for the ratio.
    #[arg(long)]
    pgbench_tps: Option<f64>,
    /// The service's process id, to read its peak resident memory.
    #[arg(long)]
    service_pid: Option<u32>,
    /// Pledges to seed in SQL on other offers after the main flood, which then runs again, to
    /// compare a hot offer's throughput in an empty database and in a loaded one (0: none).
    #[arg(long, default_value_t = 0)]
    preload: i64,
    /// Concurrent clients of the portfolio reads after the preload.
    #[arg(long, default_value_t = 8)]
    read_clients: usize,
    /// Seconds each portfolio route is read for (default: half of --duration, at least 2).
    #[arg(long)]
    read_seconds: Option<u64>,
    /// Sizes of sold-out `first_come` rounds to close and time, comma-separated (e.g.
    /// 1000,10000,36000,100000); their funded pledges are seeded in SQL.
    #[arg(long, default_value = "")]
    close_sizes: String,
    /// Sizes of twice oversubscribed `pro_rata` rounds to close and time, comma-separated.
    #[arg(long, default_value = "")]
    pro_rata: String,
    /// Unix time (seconds) at which to start the main flood, once set up: two services' floods
    /// then run in the same seconds of a machine whose speed drifts (scripts/bench-ab).
    #[arg(long)]
    start_at: Option<u64>,
    /// Where to write bench.json, bench.md and bench.svg.
    #[arg(long, default_value = "target/bench")]
    out: std::path::PathBuf,
}

/// A published project with one open `first_come` offer of 5,000,000 shares at 1.00 (the
/// ECSP cap), open for a month.
async fn hot_offer(api: &Api) -> anyhow::Result<String> {
    close::open_offer(api, "Mondo Bench", "first_come", 1000, 5_000_000).await
}

/// Numbers from a comma-separated list (`1,8,64`); empty: none.
fn numbers<T: std::str::FromStr>(list: &str, what: &str) -> anyhow::Result<Vec<T>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().replace('_', "").parse::<T>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("{what} takes numbers like 1,8,64, not {list:?}"))
}

/// Peak resident memory of a process (Linux `VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// The phases run so far and every pledge they saw accepted.
#[derive(Default)]
struct Runs {
    service_pid: Option<u32>,
    phases: Vec<Phase>,
    acknowledged: Vec<(String, i64)>,
}

impl Runs {
    async fn run(&mut self, target: &Arc<Target>, name: String, work: Work, pace: Pace, duration: Duration) {
        // Wall-clock time, to line phases up with the Postgres log; not business time.
        eprintln!(
            "{name}: {} s, from {}",
            duration.as_secs_f64(),
            chrono::Utc::now().format("%H:%M:%S%.3f")
        );
        let before = cpu::Sample::now(self.service_pid);
        let recorded = load::flood(target.clone(), work, pace, duration).await;
        let after = cpu::Sample::now(self.service_pid);
        let mut phase = Phase::new(name, work, pace, duration, &recorded);
        phase.cpu = cpu::PerRequest::between(before, after, phase.ok);
        phase.peak_rss_mib = self.service_pid.and_then(peak_rss_mib);
        eprintln!("  {}", phase.summary());
        self.acknowledged.extend(recorded.acknowledged);
        self.phases.push(phase);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let api = Arc::new(Api::new(
        reqwest::Client::builder().pool_max_idle_per_host(256).build()?,
        &args.url,
        &args.key,
    ));
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await
        .context("connecting to the service's database")?;

    eprintln!("setting up: one hot offer, {} verified investors", args.investors);
    let setup = Instant::now();
    let offer = hot_offer(&api).await?;
    let target = Arc::new(Target::new(
        api.base(),
        &args.key,
        &offer,
        // A platform onboards investors before the round, not in the same second as the flood.
        if args.retail {
            api.retail_investors(args.investors, "Bench").await?
        } else {
            api.verified_investors(args.investors, "Bench").await?
        },
        args.sandbox_secret
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--sandbox-secret: {e}"))?,
        // The KIIS `open_offer` gave the offer, if the service keeps documents.
        api.keeps_documents(&offer)
            .await?
            .then_some(crowdledger_client::KIIS_SHA256),
        args.retail,
    )?);
    eprintln!("set up in {:.1} s", setup.elapsed().as_secs_f64());
    if let Some(at) = args.start_at {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(at);
        match at.duration_since(std::time::SystemTime::now()) {
            Ok(wait) => tokio::time::sleep(wait).await,
            Err(_) => anyhow::bail!("set up after --start-at: start later"),
        }
    }

    let main_flood = Duration::from_secs(args.duration);
    let mut runs = Runs {
        service_pid: args.service_pid,
        ..Runs::default()
    };
    runs.run(
        &target,
        format!("closed loop, {} clients", args.clients),
        Work::Pledge,
        Pace::Closed { clients: args.clients },
        main_flood,
    )
    .await;
    let mut preload = None;
    let mut portfolio = None;
    if args.preload > 0 {
        eprintln!(
            "preload: seeding {} funded pledges in SQL on other offers",
            args.preload
        );
        let preloaded = close::preload(&api, &pool, args.preload).await?;
        let seeded = preloaded.seeded;
        eprintln!("  seeded in {:.1} s", seeded.seconds);
        runs.run(
            &target,
            format!(
                "closed loop, {} clients, {} pledges preloaded",
                args.clients, args.preload
            ),
            Work::Pledge,
            Pace::Closed { clients: args.clients },
            main_flood,
        )
        .await;
        preload = Some(Preload::new(seeded, &preloaded, &runs.phases[0], &runs.phases[1]));
        let read_for = Duration::from_secs(args.read_seconds.unwrap_or(args.duration / 2).max(2));
        portfolio = Some(
            portfolio::read(
                api.base(),
                &args.key,
                &pool,
                &preloaded.investors,
                args.read_clients,
                read_for,
                args.service_pid,
            )
            .await?,
        );
    }
    if !args.quick {
        // The peak of the database as the open loop finds it: after a preload, the closed loop
        // that ran over the million stored pledges.
        let peak = runs.phases.last().expect("the closed loop ran").throughput;
        runs.run(
            &target,
            format!("open loop at 80% of peak ({:.0}/s)", peak * 0.8),
            Work::Pledge,
            Pace::Open {
                rate: (peak * 0.8).max(1.0),
                connections: args.open_connections,
            },
            main_flood * 3 / 4,
        )
        .await;
        runs.run(
            &target,
            format!("funded end to end, {} clients", args.clients),
            Work::Funded,
            Pace::Closed { clients: args.clients },
            main_flood * 3 / 4,
        )
        .await;
    }
    let sweep: Vec<usize> = numbers(&args.sweep, "--sweep")?;
    let close_sizes: Vec<i64> = numbers(&args.close_sizes, "--close-sizes")?;
    let pro_rata_sizes: Vec<i64> = numbers(&args.pro_rata, "--pro-rata")?;
    for clients in sweep {
        runs.run(
            &target,
            format!("sweep, {clients} clients"),
            Work::Pledge,
            Pace::Closed { clients },
            (main_flood / 4).max(Duration::from_secs(2)),
        )
        .await;
    }
    let Runs {
        phases, acknowledged, ..
    } = runs;
    // The floods' peak, before the closes (which build big rounds in memory) run.
    let flood_rss_mib = args.service_pid.and_then(peak_rss_mib);

    let mut closes: Vec<CloseRun> = Vec::new();
    for (allocation, sizes) in [("first_come", &close_sizes), ("pro_rata", &pro_rata_sizes)] {
        for &n in sizes {
            closes.push(close::close_round(&api, &pool, allocation, n).await?);
        }
    }

    eprintln!("checking: cap, acknowledged pledges, the books");
    let offer_now = api.get(&format!("/v1/offers/{offer}")).await?;
    let verified = api.get("/v1/ledger/verify").await?;
    let checks = report::check(&offer_now, &pool, &offer, &acknowledged, &verified).await?;
    let report = Report {
        machine: report::Machine::here(),
        offer,
        investors: args.investors,
        phases,
        pgbench_tps: args.pgbench_tps,
        flood_rss_mib,
        peak_rss_mib: args.service_pid.and_then(peak_rss_mib),
        checks,
        preload,
        portfolio,
        closes,
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("bench.json"), serde_json::to_string_pretty(&report)?)?;
    let markdown = report.markdown();
    std::fs::write(args.out.join("bench.md"), &markdown)?;
    chart::draw(&report, &args.out.join("bench.svg"))?;
    println!("{markdown}");
    eprintln!("written to {}", args.out.display());
    if !report.checks.passed() {
        bail!("the benchmark's correctness checks FAILED: {:?}", report.checks);
    }
    if let Some(p) = report.portfolio.as_ref().filter(|p| p.failures > 0) {
        bail!(
            "{} portfolio reads FAILED (not 200, or a malformed page), first: {:?}",
            p.failures,
            p.first_failures
        );
    }
    if let Some(failed) = report.closes.iter().find(|c| !c.checks.passed()) {
        bail!(
            "the close of a {} round of {} pledges FAILED its checks: {:?}",
            failed.allocation,
            failed.pledges,
            failed.checks
        );
    }
    Ok(())
}
