//! The portfolio reads after the preload: what a platform's "my investments" page asks for,
//! `GET /v1/investors/{id}/pledges` (first pages, and some second pages through `next_cursor`)
//! and `GET /v1/investors/{id}/holdings`, timed through the HTTP API over the preload's million
//! pledges (issue 22: p95 of the pledges ≤ 20 ms). Every answer is checked: a status other than
//! 200 or a malformed page fails the run.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cpu::{self, PerRequest};

/// The default page size of the lists, which the first pages use.
const LIMIT: usize = 100;

/// Of every `HEAVY_EVERY` reads, one is of a heavy investor.
const HEAVY_EVERY: u64 = 10;

/// The heaviest investors of the preload, read one time in `HEAVY_EVERY`.
const HEAVY: usize = 10;

/// Investors drawn evenly from the pool (most own tens of pledges) for the other reads.
const SAMPLE: usize = 1000;

/// The target for the pledges' p95.
pub const TARGET_P95_MS: f64 = 20.0;

/// One route, read for a fixed time.
#[derive(Serialize)]
pub struct RouteReads {
    pub route: String,
    pub clients: usize,
    pub seconds: f64,
    pub requests: u64,
    pub per_second: f64,
    /// Items per page, on average.
    pub items_per_page: f64,
    /// Of the requests, second pages (read through the first page's `next_cursor`).
    pub second_pages: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU per read, by process: on a shared machine latency says little alone.
    pub cpu: Option<PerRequest>,
}

/// How many preloaded pledges the investors own.
#[derive(Serialize, sqlx::FromRow)]
pub struct Spread {
    pub investors: i64,
    pub median: i64,
    pub p90: i64,
    pub p99: i64,
    pub max: i64,
    /// The lightest of the heavy investors read.
    pub heavy_min: i64,
}

#[derive(Serialize)]
pub struct Portfolio {
    pub pledges_per_investor: Spread,
    /// One read in `heavy_every` is of one of the `heavy` heaviest investors; the others of
    /// `sample` investors drawn evenly.
    pub heavy: usize,
    pub heavy_every: u64,
    pub sample: usize,
    pub routes: Vec<RouteReads>,
    /// Answers that were not 200 or not a well-formed page (the run fails if any).
    pub failures: u64,
    pub first_failures: Vec<String>,
}

impl Portfolio {
    pub fn pledges_p95_met(&self) -> Option<bool> {
        self.routes
            .iter()
            .find(|r| r.route.ends_with("/pledges"))
            .map(|r| r.p95_ms <= TARGET_P95_MS)
    }
}

/// A page as the generator reads it: only the fields it checks, the rest skipped unparsed (a
/// `serde_json::Value` of every field took 460 µs of CPU a pledge page, this 140 µs, on the
/// two cores the service and Postgres share with the generator).
#[derive(Deserialize)]
struct PageOf {
    items: Vec<Item>,
    next_cursor: Option<String>,
}

/// A pledge (`id`, `investor_id`, `created_at`) or a holding (`offer_id`, `shares`).
#[derive(Deserialize)]
struct Item {
    id: Option<Uuid>,
    investor_id: Option<Uuid>,
    created_at: Option<DateTime<Utc>>,
    offer_id: Option<Uuid>,
    shares: Option<i64>,
}

type Checked = (Vec<Item>, Option<String>);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Pledges,
    Holdings,
}

struct Shared {
    base: String,
    authorization: HeaderValue,
    heavy: Vec<Uuid>,
    sample: Vec<Uuid>,
    seq: AtomicU64,
    state: Mutex<Tally>,
}

struct Tally {
    latency: Histogram<u64>,
    items: u64,
    pages: u64,
    second_pages: u64,
    failures: u64,
    first_failures: Vec<String>,
}

impl Shared {
    fn investor(&self, seq: u64) -> Uuid {
        if seq.is_multiple_of(HEAVY_EVERY) {
            self.heavy[(seq / HEAVY_EVERY) as usize % self.heavy.len()]
        } else {
            // A stride prime to the sample's size walks all of it.
            self.sample[(seq.wrapping_mul(7919) % self.sample.len() as u64) as usize]
        }
    }

    fn fail(&self, what: String) {
        let mut t = self.state.lock().expect("tally poisoned");
        t.failures += 1;
        if t.first_failures.len() < 5 {
            t.first_failures.push(what);
        }
    }

    /// One GET, timed and checked; the page's items on success.
    async fn read(
        &self,
        client: &reqwest::Client,
        route: Route,
        investor: Uuid,
        cursor: Option<&str>,
    ) -> Option<Checked> {
        let path = match route {
            Route::Pledges => "pledges",
            Route::Holdings => "holdings",
        };
        let url = format!("{}/v1/investors/{investor}/{path}", self.base);
        let mut request = client.get(&url).header(AUTHORIZATION, self.authorization.clone());
        if let Some(cursor) = cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let started = Instant::now();
        let answer = match request.send().await {
            Ok(r) => {
                let status = r.status();
                r.bytes().await.map(|b| (status, b))
            }
            Err(e) => Err(e),
        };
        let micros = started.elapsed().as_micros().clamp(1, 120_000_000) as u64;
        let (status, bytes) = match answer {
            Ok(a) => a,
            Err(e) => {
                self.fail(format!("GET {url}: {e}"));
                return None;
            }
        };
        if status != 200 {
            self.fail(format!(
                "GET {url}: {status} {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ));
            return None;
        }
        let page = match serde_json::from_slice::<PageOf>(&bytes) {
            Ok(v) => v,
            Err(e) => {
                self.fail(format!("GET {url}: not a page ({e})"));
                return None;
            }
        };
        let checked = match route {
            Route::Pledges => pledge_page(page, investor),
            Route::Holdings => holding_page(page),
        };
        match checked {
            Ok(page) => {
                let mut t = self.state.lock().expect("tally poisoned");
                t.latency.saturating_record(micros);
                t.items += page.0.len() as u64;
                t.pages += 1;
                if cursor.is_some() {
                    t.second_pages += 1;
                }
                Some(page)
            }
            Err(why) => {
                self.fail(format!("GET {url}: malformed page: {why}"));
                None
            }
        }
    }
}

impl Shared {
    /// Reads the page after `first` and checks it continues it: no item repeated, none newer.
    async fn second_page(&self, client: &reqwest::Client, investor: Uuid, first: &[Item], cursor: &str) {
        let Some((second, _)) = self.read(client, Route::Pledges, investor, Some(cursor)).await else {
            return;
        };
        let seen: HashSet<Uuid> = first.iter().filter_map(|p| p.id).collect();
        let newer = second.first().and_then(|p| p.created_at) > first.last().and_then(|p| p.created_at);
        if newer || second.iter().any(|p| p.id.is_some_and(|id| seen.contains(&id))) {
            self.fail(format!(
                "investor {investor}: the second page repeats or precedes the first"
            ));
        }
    }
}

/// `{items, next_cursor}`: at most `LIMIT` items, a non-empty cursor only after a full page.
fn page_shape(page: PageOf) -> Result<Checked, String> {
    if page.next_cursor.as_deref() == Some("") {
        return Err("an empty next_cursor".into());
    }
    if page.items.len() > LIMIT {
        return Err(format!("{} items, limit {LIMIT}", page.items.len()));
    }
    if page.next_cursor.is_some() && page.items.len() < LIMIT {
        return Err(format!("next_cursor after {} items of {LIMIT}", page.items.len()));
    }
    Ok((page.items, page.next_cursor))
}

/// The investor's own pledges, newest first.
fn pledge_page(page: PageOf, investor: Uuid) -> Result<Checked, String> {
    let (items, next) = page_shape(page)?;
    let mut last: Option<DateTime<Utc>> = None;
    for item in &items {
        if item.investor_id != Some(investor) || item.id.is_none() {
            return Err(format!("an item not the investor's: {:?}", item.id));
        }
        let at = item.created_at.ok_or("a pledge without created_at")?;
        if last.is_some_and(|l| at > l) {
            return Err("not newest first".into());
        }
        last = Some(at);
    }
    Ok((items, next))
}

/// Holdings: an offer and a positive number of shares each.
fn holding_page(page: PageOf) -> Result<Checked, String> {
    let (items, next) = page_shape(page)?;
    if let Some(bad) = items
        .iter()
        .find(|h| h.offer_id.is_none() || h.shares.is_none_or(|s| s <= 0))
    {
        return Err(format!(
            "a holding without offer or shares: {:?} {:?}",
            bad.offer_id, bad.shares
        ));
    }
    Ok((items, next))
}

fn ms(micros: u64) -> f64 {
    (micros as f64 / 10.0).round() / 100.0
}

/// Reads one route from `clients` concurrent clients for `duration`.
async fn run_route(
    shared: &Arc<Shared>,
    route: Route,
    clients: usize,
    duration: Duration,
    service_pid: Option<u32>,
) -> RouteReads {
    *shared.state.lock().expect("tally poisoned") = Tally {
        latency: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
        items: 0,
        pages: 0,
        second_pages: 0,
        failures: 0,
        first_failures: Vec::new(),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a plain HTTP client builds");
    // Connect first: the phase measures requests, not TCP handshakes.
    futures::future::join_all((0..clients).map(|_| client.get(format!("{}/health", shared.base)).send())).await;
    let before = cpu::Sample::now(service_pid);
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, shared) = (client.clone(), shared.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
                    let investor = shared.investor(seq);
                    let Some((first, next)) = shared.read(&client, route, investor, None).await else {
                        continue;
                    };
                    // One first page in four goes on to the second, as a reader scrolling on
                    // (`seq / 3`: the heavy investors' reads are every tenth `seq`, so even).
                    if let (Route::Pledges, Some(cursor), 0) = (route, next, (seq / 3) % 4) {
                        shared.second_page(&client, investor, &first, &cursor).await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a reader task panicked");
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = cpu::Sample::now(service_pid);
    let t = shared.state.lock().expect("tally poisoned");
    let requests = t.latency.len();
    RouteReads {
        route: match route {
            Route::Pledges => "GET /v1/investors/{id}/pledges".into(),
            Route::Holdings => "GET /v1/investors/{id}/holdings".into(),
        },
        clients,
        seconds,
        requests,
        per_second: requests as f64 / seconds,
        items_per_page: if t.pages > 0 {
            t.items as f64 / t.pages as f64
        } else {
            0.0
        },
        second_pages: t.second_pages,
        p50_ms: ms(t.latency.value_at_quantile(0.5)),
        p95_ms: ms(t.latency.value_at_quantile(0.95)),
        p99_ms: ms(t.latency.value_at_quantile(0.99)),
        max_ms: ms(t.latency.max()),
        cpu: PerRequest::between(before, after, requests),
    }
}

/// Reads the preloaded investors' pledges, then their holdings, `duration` each.
pub async fn read(
    base: &str,
    key: &str,
    pool: &sqlx::PgPool,
    investors: &[Uuid],
    clients: usize,
    duration: Duration,
    service_pid: Option<u32>,
) -> anyhow::Result<Portfolio> {
    anyhow::ensure!(!investors.is_empty(), "no preloaded investors to read");
    let heavy: Vec<Uuid> = investors.iter().take(HEAVY).copied().collect();
    let step = (investors.len() / SAMPLE).max(1);
    let sample: Vec<Uuid> = investors.iter().step_by(step).take(SAMPLE).copied().collect();
    let spread: Spread = sqlx::query_as(
        "with c as (select investor_id, count(*) as n from pledges where investor_id = any($1) group by investor_id)
         select count(*) as investors,
                coalesce(percentile_disc(0.5) within group (order by n), 0)::bigint as median,
                coalesce(percentile_disc(0.9) within group (order by n), 0)::bigint as p90,
                coalesce(percentile_disc(0.99) within group (order by n), 0)::bigint as p99,
                coalesce(max(n), 0)::bigint as max,
                coalesce((select min(n) from c where investor_id = any($2)), 0)::bigint as heavy_min
           from c",
    )
    .bind(investors)
    .bind(&heavy)
    .fetch_one(pool)
    .await?;
    eprintln!(
        "portfolio reads: {} investors own median {}, p90 {}, p99 {}, max {} pledges; {} clients, {} s a route",
        spread.investors,
        spread.median,
        spread.p90,
        spread.p99,
        spread.max,
        clients,
        duration.as_secs_f64()
    );
    let shared = Arc::new(Shared {
        base: base.to_string(),
        authorization: HeaderValue::try_from(format!("Bearer {key}"))?,
        heavy: heavy.clone(),
        sample: sample.clone(),
        seq: AtomicU64::new(0),
        state: Mutex::new(Tally {
            latency: Histogram::new(3)?,
            items: 0,
            pages: 0,
            second_pages: 0,
            failures: 0,
            first_failures: Vec::new(),
        }),
    });
    let mut routes = Vec::new();
    let (mut failures, mut first_failures) = (0, Vec::new());
    for route in [Route::Pledges, Route::Holdings] {
        let reads = run_route(&shared, route, clients, duration, service_pid).await;
        eprintln!(
            "  {}: {:.0}/s, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.1} items a page, CPU µs a read: {}",
            reads.route,
            reads.per_second,
            reads.p50_ms,
            reads.p95_ms,
            reads.p99_ms,
            reads.max_ms,
            reads.items_per_page,
            reads.cpu.map_or("?".into(), |c| format!(
                "service {:.0}, Postgres {:.0}, generator {:.0}",
                c.service_us, c.postgres_us, c.generator_us
            ))
        );
        let t = shared.state.lock().expect("tally poisoned");
        failures += t.failures;
        first_failures.extend(t.first_failures.iter().cloned());
        routes.push(reads);
    }
    let portfolio = Portfolio {
        pledges_per_investor: spread,
        heavy: heavy.len(),
        heavy_every: HEAVY_EVERY,
        sample: sample.len(),
        routes,
        failures,
        first_failures,
    };
    if let Some(met) = portfolio.pledges_p95_met() {
        eprintln!(
            "  target p95 of the pledges ≤ {TARGET_P95_MS} ms: {}",
            if met { "met" } else { "not met" }
        );
    }
    Ok(portfolio)
}
