//! `crowdledger-demo` against a real `crowdledger serve`: the story it loads is what the API then
//! shows, and the first next step it prints works as printed. Each test's fresh database gets the
//! service's migrations (`../../migrations`, the workspace root's).

use std::process::{Command, Output};

// The same harness as the service's tests/common: a real `crowdledger serve` on the test's database.
use crowdledger_testkit as common;
use sqlx::PgPool;

/// Runs `crowdledger-demo` with `args`, its settings from `db` and the defaults alone.
fn demo(db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crowdledger-demo"))
        .args(args)
        .env("DATABASE_URL", db)
        .env_remove("CROWDLEDGER_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[sqlx::test(migrations = "../../migrations")]
async fn demo_loads_the_sensetour_story_through_the_api(pool: PgPool) {
    let db = common::database_url(&pool);
    let key = "demo-test-operator-key-0123456789abcdef";
    let served = common::Served::start(&pool, key).await;
    let out = demo(&db, &["--url", &served.base, "--key", key]);
    let printed = text(&out.stdout);
    assert!(out.status.success(), "{}{printed}", text(&out.stderr));
    let field = |label: &str| {
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|rest| rest.split_whitespace().next().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {label} in {printed}"))
    };
    let (sponsor, investor, cheque) = (field("sponsor"), field("winner"), field("cheque"));
    let code = printed
        .split_whitespace()
        .find(|w| w.starts_with("CHQ-"))
        .expect("the code is printed")
        .to_string();
    let offer = field("offers");
    // Both offers' KIIS, which the printed pledges name.
    let kiis = field("kiis");
    assert!(
        printed.contains(&format!(r#""kiis_sha256":"{kiis}""#)),
        "the next steps name the KIIS: {printed}"
    );

    let client = reqwest::Client::new();
    let get = async |path: String| -> serde_json::Value {
        let r = client
            .get(format!("{}{path}", served.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    };
    let s = get(format!("/v1/sponsors/{sponsor}")).await;
    assert_eq!(s["budget"]["amount"], "8000.00", "{s:#}");
    let c = get(format!("/v1/cheques/{cheque}")).await;
    assert_eq!(
        (c["balance"].as_str(), c["status"].as_str()),
        (Some("2000.00"), Some("active"))
    );

    // The first next step, as printed: 1500.00 of the cheque into the first round.
    let pledge: serde_json::Value = client
        .post(format!("{}/v1/offers/{offer}/pledges", served.base))
        .bearer_auth(key)
        .header("idempotency-key", "demo-1")
        .json(
            &serde_json::json!({"investor_id": investor, "shares": 150, "risk_acknowledged": true,
            "kiis_sha256": kiis, "funding": [{"kind": "cheque", "cheque_code": code, "amount": "1500.00"}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pledge["status"], "funded", "{pledge:#}");
    let c = get(format!("/v1/cheques/{cheque}")).await;
    assert_eq!(c["balance"], "500.00");
    // The foundation's pool matched the demo's card pledge (400.00) and this one (500.00 at most).
    let pool = field("pool");
    let matches = get(format!("/v1/match-pools/{pool}/matches")).await;
    let mut amounts: Vec<&str> = matches["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["amount"].as_str().unwrap())
        .collect();
    amounts.sort();
    assert_eq!(amounts, ["400.00", "500.00"], "{matches:#}");
    let o = get(format!("/v1/offers/{offer}")).await;
    assert_eq!(
        (o["shares_matched"].as_i64(), o["amount_matched"].as_str()),
        (Some(90), Some("900.00"))
    );
    assert_eq!(get("/v1/ledger/verify".to_string()).await["ok"], true);
    served.terminate().await;
}
