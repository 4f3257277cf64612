//! A small run of the load generator (the full benchmark is scripts/bench): a few hundred
//! pledges against a real `serve`, checked and reported. Each test's fresh database gets the
//! service's migrations (`../../migrations`, the workspace root's).

use std::path::PathBuf;
use std::process::Command;

// The same harness as the service's tests/common: a real `crowdledger serve` on the test's database.
use crowdledger_testkit as common;
use serde_json::Value;
use sqlx::PgPool;

const KEY: &str = "bench-smoke-operator-key-0123456789abcdef";

/// Runs the generator with `args` (and `env`) against a real `serve` on this test's database,
/// asserting that it succeeded. Returns the service, still running, the folder it wrote to, and
/// its JSON report.
async fn run_bench(pool: &PgPool, args: &[&str], env: &[(&str, &str)]) -> (common::Served, PathBuf, Value) {
    let db = common::database_url(pool);
    let served = common::Served::start(pool, KEY).await;
    let out = std::env::temp_dir().join(format!("crowdledger-bench-{}", uuid::Uuid::new_v4().simple()));
    let run = Command::new(env!("CARGO_BIN_EXE_crowdledger-bench"))
        .args(["--url", &served.base, "--key", KEY, "--database-url", &db])
        .args(args)
        .envs(env.iter().copied())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let report = serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    (served, out, report)
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_load_generator_floods_checks_and_reports(pool: PgPool) {
    let args = [
        "--clients",
        "8",
        "--duration",
        "2",
        "--investors",
        "20",
        "--sweep",
        "1,4",
        "--quick",
    ];
    let (served, out, report) = run_bench(&pool, &args, &[]).await;
    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["closed loop, 8 clients", "sweep, 1 clients", "sweep, 4 clients"]
    );
    let checks = &report["checks"];
    let acknowledged = checks["acknowledged_pledges"].as_i64().unwrap();
    assert!(acknowledged >= 100, "only {acknowledged} pledges in 3 s: {report:#}");
    assert_eq!(checks["acknowledged_found"], acknowledged);
    assert_eq!(checks["ledger_verified"], true);
    // Nothing but these pledges went into the offer.
    assert_eq!(checks["reserved_shares"], checks["acknowledged_shares"]);
    let total_ok: i64 = phases.iter().map(|p| p["ok"].as_i64().unwrap()).sum();
    assert_eq!(total_ok, acknowledged);
    assert!(phases[0]["throughput"].as_f64().unwrap() > 0.0);
    assert!(phases[0]["p99_ms"].as_f64().unwrap() >= phases[0]["p50_ms"].as_f64().unwrap());
    let pledges: i64 = sqlx::query_scalar("select count(*) from pledges")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pledges, acknowledged);

    let markdown = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(markdown.contains("| closed loop, 8 clients |"), "{markdown}");
    assert!(markdown.contains("PASSED"), "{markdown}");
    let svg = std::fs::read_to_string(out.join("bench.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("closed loop, 8 clients"),
        "{svg}"
    );
    std::fs::remove_dir_all(&out).ok();
    // The batches show on the metrics port.
    let metrics = reqwest::get(format!("{}/metrics", served.metrics_base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("batch_size{lane=\"pledges\""), "{metrics}");
    served.terminate().await;
}

/// The close scenario and the preload, small: rounds seeded in SQL, closed through the API,
/// timed and checked; the main flood run again after the preload, then the portfolio reads.
#[sqlx::test(migrations = "../../migrations")]
async fn the_load_generator_closes_seeded_rounds_and_preloads(pool: PgPool) {
    let args = [
        "--clients",
        "4",
        "--duration",
        "1",
        "--investors",
        "10",
        "--quick",
        "--preload",
        "500",
        "--close-sizes",
        "200",
        "--pro-rata",
        "300",
    ];
    let (served, out, report) = run_bench(&pool, &args, &[]).await;
    let names: Vec<&str> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "closed loop, 4 clients",
            "closed loop, 4 clients, 500 pledges preloaded"
        ]
    );
    let preload = &report["preload"];
    assert_eq!(preload["pledges"], 500);
    // One investor for fifty pledges; one round, closed through the API.
    assert_eq!(preload["investors"], 10);
    assert_eq!(
        (preload["rounds"].as_i64(), preload["closed_rounds"].as_i64()),
        (Some(1), Some(1))
    );
    assert!(preload["ratio"].as_f64().unwrap() > 0.0, "{preload}");
    // The portfolio reads after it: both routes read, every page well formed.
    let portfolio = &report["portfolio"];
    assert_eq!(portfolio["failures"], 0, "{portfolio:#}");
    assert_eq!(portfolio["pledges_per_investor"]["investors"], 10, "{portfolio:#}");
    let routes = portfolio["routes"].as_array().unwrap();
    let names: Vec<&str> = routes.iter().map(|r| r["route"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["GET /v1/investors/{id}/pledges", "GET /v1/investors/{id}/holdings"]
    );
    for route in routes {
        assert!(route["requests"].as_i64().unwrap() > 0, "{route}");
        assert!(route["per_second"].as_f64().unwrap() > 0.0, "{route}");
        assert!(
            route["p95_ms"].as_f64().unwrap() >= route["p50_ms"].as_f64().unwrap(),
            "{route}"
        );
        // Every investor owns pledges on the one closed round, so holds shares in it.
        assert!(route["items_per_page"].as_f64().unwrap() >= 1.0, "{route}");
    }
    // 50 pledges a head on average, more than a page for the heavy ones: some second pages.
    assert!(routes[0]["second_pages"].as_i64().unwrap() > 0, "{portfolio:#}");

    let closes = report["closes"].as_array().unwrap();
    assert_eq!(closes.len(), 2, "{report:#}");
    let (first_come, pro_rata) = (&closes[0], &closes[1]);
    assert_eq!(first_come["allocation"], "first_come");
    assert_eq!(first_come["pledges"], 200);
    // 200 pledges of 1 to 5 shares, sold out: everything allocated, nothing refunded.
    assert_eq!(first_come["funded_shares"], 600);
    assert_eq!(first_come["allocated_shares"], 600);
    assert_eq!(first_come["refunds"], 0);
    assert_eq!(pro_rata["allocation"], "pro_rata");
    assert_eq!(pro_rata["pledges"], 300);
    // Twice oversubscribed: half allocated, the other half refunded to the cards.
    assert_eq!(pro_rata["funded_shares"], 900);
    assert_eq!(pro_rata["allocated_shares"], 450);
    assert_eq!(pro_rata["refunded"], "450.00");
    assert!(pro_rata["refunds"].as_i64().unwrap() > 100, "{pro_rata}");
    for close in closes {
        assert_eq!(close["close_answer"], "200 succeeded", "{close}");
        assert!(close["close_seconds"].as_f64().unwrap() > 0.0);
        assert!(close["cap_table_seconds"].as_f64().unwrap() > 0.0);
        assert_eq!(close["cap_table_shares"], close["allocated_shares"]);
        assert!(close["cap_table_investors"].as_i64().unwrap() > 0);
        for check in [
            "succeeded",
            "allocated_as_expected",
            "cap_table_matches",
            "refunds_match",
            "ledger_verified",
        ] {
            assert_eq!(close["checks"][check], true, "{check}: {close:#}");
        }
    }
    // The seeded pledges are what the real path leaves: funded, paid, in the books.
    let (pledges, payments): (i64, i64) = sqlx::query_as(
        "select (select count(*) from pledges where offer_id <> $1::uuid),
                (select count(*) from payments y join pledges p on p.id = y.pledge_id
                  where p.offer_id <> $1::uuid and y.status = 'succeeded')",
    )
    .bind(report["offer"].as_str().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((pledges, payments), (1000, 1000));

    let markdown = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(markdown.contains("SEEDED IN SQL"), "{markdown}");
    assert!(markdown.contains("| pro_rata | 300 |"), "{markdown}");
    assert!(
        markdown.contains("500 funded pledges of 10 investors seeded in SQL"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| GET /v1/investors/{id}/pledges | 8 |"),
        "{markdown}"
    );
    std::fs::remove_dir_all(&out).ok();
    served.terminate().await;
}

/// The funded phase plays the payment provider: each pledge it saw funded was confirmed by one
/// signed `payment.succeeded` it posted itself, applied once.
#[sqlx::test(migrations = "../../migrations")]
async fn the_funded_phase_posts_the_providers_signed_webhooks(pool: PgPool) {
    let args = [
        "--clients",
        "4",
        "--duration",
        "2",
        "--investors",
        "10",
        "--open-connections",
        "8",
    ];
    // The secret the service runs with (config/default.toml's development one).
    let secret = (
        "CROWDLEDGER_BENCH_SANDBOX_SECRET",
        "whsec_c2FuZGJveC1kZXZlbG9wbWVudC1zZWNyZXQtY2hhbmdlLW1l",
    );
    let (served, out, report) = run_bench(&pool, &args, &[secret]).await;
    let funded = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "funded end to end, 4 clients")
        .unwrap_or_else(|| panic!("no funded phase: {report:#}"));
    let ok = funded["ok"].as_i64().unwrap();
    assert!(ok > 0, "{funded:#}");
    assert_eq!(funded["outcomes"]["200 funded"], ok, "{funded:#}");
    assert_eq!(report["checks"]["ledger_verified"], true);
    let (pledges, events): (i64, i64) = sqlx::query_as(
        "select (select count(*) from pledges where status = 'funded'),
                (select count(*) from inbound_events where status = 'applied' and event_id like 'evt_bench_%')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((pledges, events), (ok, ok));
    std::fs::remove_dir_all(&out).ok();
    served.terminate().await;
}
