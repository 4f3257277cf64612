//! A small run of the load generator (the full benchmark is scripts/bench): a few hundred
//! pledges against a real `serve`, checked and reported.

mod common;

use std::process::Command;

use sqlx::PgPool;

#[sqlx::test]
async fn the_load_generator_floods_checks_and_reports(pool: PgPool) {
    let db = common::database_url(&pool);
    let key = "bench-smoke-operator-key-0123456789abcdef";
    let served = common::Served::start(&db, key).await;
    let out = std::env::temp_dir().join(format!("crowdledger-bench-{}", uuid::Uuid::new_v4().simple()));
    let run = Command::new(env!("CARGO_BIN_EXE_crowdledger-bench"))
        .args(["--url", &served.base, "--key", key, "--database-url", &db])
        .args([
            "--clients",
            "8",
            "--duration",
            "2",
            "--investors",
            "20",
            "--sweep",
            "1,4",
            "--quick",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
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
