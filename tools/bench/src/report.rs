//! What a run measured and whether it stayed correct, as JSON and as a Markdown table.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::close::{CloseRun, Preloaded, Seeded};
use crate::cpu::PerRequest;
use crate::load::{Pace, Recorded, Work};
use crate::portfolio::{Portfolio, TARGET_P95_MS};

#[derive(Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: Option<f64>,
    /// When the kernel starts writing dirty pages back (`vm.dirty_background_*`): it decides
    /// whether a flood's new relation pages go to disk steadily or in one burst that commits
    /// wait behind (docs/performance.md).
    pub dirty_background: Option<String>,
}

impl Machine {
    pub fn here() -> Self {
        let memory_gib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            let kib: f64 = m
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some((kib / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        });
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            dirty_background: dirty_background(),
        }
    }
}

fn dirty_background() -> Option<String> {
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/sys/vm/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    match read("dirty_background_bytes")? {
        0 => Some(format!("{}% of memory", read("dirty_background_ratio")?)),
        bytes => Some(format!("{} MiB", bytes / (1024 * 1024))),
    }
}

/// One second of a phase.
#[derive(Serialize)]
pub struct Second {
    pub t: u64,
    pub ok: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Serialize)]
pub struct Phase {
    pub name: String,
    pub work: &'static str,
    pub clients: Option<usize>,
    pub rate: Option<f64>,
    pub seconds: f64,
    /// Accepted (or, for funded work, funded) per second.
    pub throughput: f64,
    pub ok: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU per request served, by process (None: nothing served).
    pub cpu: Option<PerRequest>,
    /// The service's peak resident memory so far, read as the phase ends.
    pub peak_rss_mib: Option<f64>,
    pub series: Vec<Second>,
}

fn ms(micros: u64) -> f64 {
    (micros as f64 / 10.0).round() / 100.0
}

impl Phase {
    pub fn new(name: String, work: Work, pace: Pace, duration: Duration, r: &Recorded) -> Self {
        let ok = r.all.len();
        let seconds = duration.as_secs_f64();
        let (clients, rate) = match pace {
            Pace::Closed { clients } => (Some(clients), None),
            Pace::Open { rate, connections } => (Some(connections), Some(rate)),
        };
        Phase {
            name,
            work: match work {
                Work::Pledge => "pledge",
                Work::Funded => "pledge, then its payment.succeeded: the sandbox's signed webhook",
            },
            clients,
            rate,
            seconds,
            throughput: ok as f64 / seconds,
            ok,
            outcomes: r.outcomes.clone(),
            p50_ms: ms(r.all.value_at_quantile(0.5)),
            p90_ms: ms(r.all.value_at_quantile(0.9)),
            p99_ms: ms(r.all.value_at_quantile(0.99)),
            max_ms: ms(r.all.max()),
            cpu: None,
            peak_rss_mib: None,
            series: r
                .seconds
                .iter()
                .map(|(t, h)| Second {
                    t: *t,
                    ok: h.len(),
                    p50_ms: ms(h.value_at_quantile(0.5)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                })
                .collect(),
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{:.0}/s, p50 {:.1} ms, p99 {:.1} ms, outcomes {:?}",
            self.throughput, self.p50_ms, self.p99_ms, self.outcomes
        )
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Checks {
    pub cap_shares: i64,
    pub reserved_shares: i64,
    pub acknowledged_pledges: usize,
    pub acknowledged_found: i64,
    pub acknowledged_shares: i64,
    pub ledger_verified: bool,
}

impl Checks {
    pub fn passed(&self) -> bool {
        self.reserved_shares <= self.cap_shares
            && self.acknowledged_found == self.acknowledged_pledges as i64
            && self.reserved_shares >= self.acknowledged_shares
            && self.ledger_verified
    }
}

/// The cap held, every pledge a client saw accepted exists, and the books verify.
pub async fn check(
    offer: &Value,
    pool: &sqlx::PgPool,
    offer_id: &str,
    acknowledged: &[(String, i64)],
    verify: &Value,
) -> anyhow::Result<Checks> {
    let ids: Vec<uuid::Uuid> = acknowledged.iter().filter_map(|(id, _)| id.parse().ok()).collect();
    let found: i64 = sqlx::query_scalar("select count(*) from pledges where offer_id = $1::uuid and id = any($2)")
        .bind(offer_id)
        .bind(&ids)
        .fetch_one(pool)
        .await?;
    let cap: i64 = sqlx::query_scalar("select max_shares from offers where id = $1::uuid")
        .bind(offer_id)
        .fetch_one(pool)
        .await?;
    Ok(Checks {
        cap_shares: cap,
        reserved_shares: offer["shares_reserved"].as_i64().unwrap_or(i64::MAX),
        acknowledged_pledges: acknowledged.len(),
        acknowledged_found: found,
        acknowledged_shares: acknowledged.iter().map(|(_, s)| s).sum(),
        ledger_verified: verify["ok"] == true,
    })
}

/// The main flood in a near-empty database and again after a preload.
#[derive(Serialize)]
pub struct Preload {
    /// Funded pledges seeded in SQL on other offers between the two floods.
    pub pledges: i64,
    /// The investors who own them, and the rounds they are on.
    pub investors: usize,
    pub rounds: usize,
    /// Rounds closed through the API as part of the preload (so investors hold shares).
    pub closed_rounds: usize,
    pub seed_seconds: f64,
    pub throughput_before: f64,
    pub throughput_after: f64,
    /// after / before.
    pub ratio: f64,
}

impl Preload {
    pub fn new(seeded: Seeded, preloaded: &Preloaded, before: &Phase, after: &Phase) -> Self {
        Preload {
            pledges: seeded.pledges,
            investors: preloaded.investors.len(),
            rounds: preloaded.rounds,
            closed_rounds: preloaded.closed,
            seed_seconds: seeded.seconds,
            throughput_before: before.throughput,
            throughput_after: after.throughput,
            ratio: if before.throughput > 0.0 {
                after.throughput / before.throughput
            } else {
                0.0
            },
        }
    }
}

#[derive(Serialize)]
pub struct Report {
    pub machine: Machine,
    pub offer: String,
    pub investors: usize,
    pub phases: Vec<Phase>,
    pub pgbench_tps: Option<f64>,
    /// The service's peak resident memory after the floods, before any close.
    pub flood_rss_mib: Option<f64>,
    /// Its peak over the whole run, closes included.
    pub peak_rss_mib: Option<f64>,
    pub checks: Checks,
    pub preload: Option<Preload>,
    /// The investors' portfolio reads after the preload.
    pub portfolio: Option<Portfolio>,
    /// Rounds closed through the API, their funded pledges seeded in SQL.
    pub closes: Vec<CloseRun>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let mib = |m: Option<f64>| m.map_or("not measured".into(), |m| format!("{m:.0} MiB"));
        let mut md = format!(
            "Machine: {} cores, {} GiB, background writeback from {} dirty. Service peak RSS during the floods: {}; over the whole run: {}.\n\n",
            self.machine.cores,
            self.machine.memory_gib.map_or("?".into(), |g| g.to_string()),
            self.machine.dirty_background.as_deref().unwrap_or("?"),
            mib(self.flood_rss_mib),
            mib(self.peak_rss_mib),
        );
        md.push_str("| phase | work | per second | p50 ms | p90 ms | p99 ms | max ms | ok | refused or failed |\n");
        md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---|\n");
        for p in &self.phases {
            let other: Vec<String> = p
                .outcomes
                .iter()
                .filter(|(k, _)| !k.starts_with("201 accepted") && !k.starts_with("200 funded"))
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            md.push_str(&format!(
                "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |\n",
                p.name,
                p.work,
                p.throughput,
                p.p50_ms,
                p.p90_ms,
                p.p99_ms,
                p.max_ms,
                p.ok,
                if other.is_empty() {
                    "none".into()
                } else {
                    other.join(", ")
                }
            ));
        }
        md.push_str(
            "\nCPU per request served, µs, and the service's peak RSS so far as each phase ends:\n\n\
             | phase | service | Postgres | generator | peak RSS MiB |\n|---|---:|---:|---:|---:|\n",
        );
        for p in &self.phases {
            if let Some(c) = p.cpu {
                md.push_str(&format!(
                    "| {} | {:.0} | {:.0} | {:.0} | {} |\n",
                    p.name,
                    c.service_us,
                    c.postgres_us,
                    c.generator_us,
                    p.peak_rss_mib.map_or("?".into(), |m| format!("{m:.0}"))
                ));
            }
        }
        if let (Some(tps), Some(main)) = (self.pgbench_tps, self.phases.first()) {
            md.push_str(&format!(
                "\npgbench tpcb-like, scale 1, same clients and duration: {tps:.0} TPS. \
                 Accepted pledges / pgbench TPS: **{:.2}**\n",
                main.throughput / tps
            ));
        }
        let c = &self.checks;
        md.push_str(&format!(
            "\nChecks: reserved {} ≤ cap {} shares; {} of {} acknowledged pledges found ({} shares); \
             ledger verified: {}. **{}**\n",
            c.reserved_shares,
            c.cap_shares,
            c.acknowledged_found,
            c.acknowledged_pledges,
            c.acknowledged_shares,
            c.ledger_verified,
            if c.passed() { "PASSED" } else { "FAILED" }
        ));
        if let Some(p) = &self.preload {
            md.push_str(&format!(
                "\nPreload: {} funded pledges of {} investors seeded in SQL on {} other rounds, {} of \
                 them then closed through the API ({:.1} s, not timed), then vacuum analyze and a \
                 checkpoint. Closed loop before: {:.0}/s; after: {:.0}/s; after / before: **{:.0}%**\n",
                p.pledges,
                p.investors,
                p.rounds,
                p.closed_rounds,
                p.seed_seconds,
                p.throughput_before,
                p.throughput_after,
                p.ratio * 100.0
            ));
        }
        if let Some(p) = &self.portfolio {
            let s = &p.pledges_per_investor;
            md.push_str(&format!(
                "\nPortfolio reads after the preload, through the HTTP API: {} of the {} investors \
                 evenly drawn, and one read in {} of the {} heaviest. Preloaded pledges per investor: \
                 median {}, p90 {}, p99 {}, max {} (the heavy ones read: at least {}).\n\n\
                 | route | clients | per second | p50 ms | p95 ms | p99 ms | max ms | requests | second pages | items a page | CPU µs a read: service, Postgres |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
                p.sample, s.investors, p.heavy_every, p.heavy, s.median, s.p90, s.p99, s.max, s.heavy_min
            ));
            for r in &p.routes {
                md.push_str(&format!(
                    "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} | {} |\n",
                    r.route,
                    r.clients,
                    r.per_second,
                    r.p50_ms,
                    r.p95_ms,
                    r.p99_ms,
                    r.max_ms,
                    r.requests,
                    r.second_pages,
                    r.items_per_page,
                    r.cpu
                        .map_or("?".into(), |c| format!("{:.0}, {:.0}", c.service_us, c.postgres_us))
                ));
            }
            md.push_str(&format!(
                "\nTarget p95 of `GET /v1/investors/{{id}}/pledges` ≤ {TARGET_P95_MS} ms: **{}**. \
                 Failed reads (not 200, or a malformed page): {}.\n",
                match p.pledges_p95_met() {
                    Some(true) => "met",
                    Some(false) => "not met",
                    None => "not measured",
                },
                p.failures
            ));
        }
        if !self.closes.is_empty() {
            md.push_str(
                "\nClosing rounds. The funded pledges are SEEDED IN SQL (not timed); the close \
                 (`POST /v1/offers/{id}/close` until `succeeded`) and the cap-table read are timed \
                 through the HTTP API.\n\n",
            );
            md.push_str(
                "| allocation | pledges | funded shares | cap | seeded s | close s | cap table s | \
                 cap-table investors | refunds | checks |\n",
            );
            md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
            for c in &self.closes {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {:.1} | {:.2} | {:.2} | {} | {} | {} |\n",
                    c.allocation,
                    c.pledges,
                    c.funded_shares,
                    c.cap_shares,
                    c.seed_seconds,
                    c.close_seconds,
                    c.cap_table_seconds,
                    c.cap_table_investors,
                    c.refunds,
                    if c.checks.passed() {
                        "PASSED".to_string()
                    } else {
                        format!("FAILED {:?}", c.checks)
                    }
                ));
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::Checks;

    #[test]
    fn any_broken_check_fails_the_run() {
        let good = Checks {
            cap_shares: 100,
            reserved_shares: 60,
            acknowledged_pledges: 30,
            acknowledged_found: 30,
            acknowledged_shares: 60,
            ledger_verified: true,
        };
        assert!(good.passed());
        let oversold = Checks {
            reserved_shares: 101,
            ..good
        };
        let lost = Checks {
            acknowledged_found: 29,
            ..good
        };
        let unaccounted = Checks {
            reserved_shares: 59,
            ..good
        };
        let unverified = Checks {
            ledger_verified: false,
            ..good
        };
        for broken in [oversold, lost, unaccounted, unverified] {
            assert!(!broken.passed(), "{broken:?}");
        }
    }
}
