//! The console in a real browser: Chromium headless, driven through its WebDriver
//! (`chromedriver`, Debian's `chromium-driver`, which `scripts/test` installs when missing).
//! Screenshots are kept under `target/console-screenshots/`.
//!
//! Without the browser the tests skip with the reason; under `CI=true` they fail instead.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use sqlx::PgPool;

use crate::common::fixtures;
use crate::common::{OPERATOR_KEY, TestApp};

/// A chromedriver process, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Result<PathBuf, String> {
    if let Ok(skip) = std::env::var("CONSOLE_BROWSER_SKIP") {
        return Err(skip);
    }
    if let Some(path) = std::env::var_os("CHROMEDRIVER") {
        return Ok(PathBuf::from(path));
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromedriver"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| "no chromedriver on PATH (scripts/test installs Debian's chromium-driver)".to_string())
}

/// The browser, or `None` after saying why the test skips (a failure under CI).
async fn browser() -> Option<(Driver, Client)> {
    let path = match chromedriver() {
        Ok(path) => path,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the console's browser tests must run in CI: {why}"
            );
            eprintln!("skipping the console's browser test: {why}");
            return None;
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let status = format!("{}/status", driver.url);
    for _ in 0..100 {
        if reqwest::get(&status).await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--window-size=1280,800", "--lang=en"]}),
    );
    // Two rustls crypto providers are in the build (reqwest's and fantoccini's): name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = ClientBuilder::rustls()
        .expect("rustls")
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    Some((driver, client))
}

async fn screenshot(client: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Waits for the page at `path` to be the current one: a click's navigation may still be on
/// its way when the click returns.
async fn arrive(client: &Client, path: &str) {
    for _ in 0..100 {
        if client.current_url().await.unwrap().path() == path {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never reached {path}: at {}", client.current_url().await.unwrap());
}

async fn text_of(client: &Client, css: &str) -> String {
    client.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

#[sqlx::test]
async fn an_operator_signs_in_finds_a_project_and_reads_its_round(db: PgPool) {
    let Some((_driver, client)) = browser().await else {
        return;
    };
    let app = TestApp::spawn(db).await;
    let world = fixtures::world(&app, 1).await;
    fixtures::funded_pledge(&app, &world.offer, &world.investors[0], 40).await;

    // Any console address without a session leads to the sign-in form.
    client.goto(&format!("{}/console/projects", app.base)).await.unwrap();
    assert!(client.current_url().await.unwrap().path().ends_with("/console/sign-in"));
    screenshot(&client, "sign-in").await;
    client
        .find(Locator::Id("key"))
        .await
        .unwrap()
        .send_keys(OPERATOR_KEY)
        .await
        .unwrap();
    client
        .find(Locator::Css("main form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, "/console/projects").await;
    assert!(!client.current_url().await.unwrap().as_str().contains(OPERATOR_KEY));
    assert_eq!(text_of(&client, ".role").await, "operator");
    // The session cookie is out of scripts' reach.
    let cookies = client.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(cookies, json!(""));
    screenshot(&client, "projects").await;

    // Filter by a theme the project does not have, then find it by its territory.
    client
        .goto(&format!("{}/console/projects?theme=energy", app.base))
        .await
        .unwrap();
    assert_eq!(text_of(&client, ".empty").await, "No project matches.");
    client.goto(&format!("{}/console/projects", app.base)).await.unwrap();
    client
        .find(Locator::LinkText("Crois/Sens"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, &format!("/console/projects/{}", world.project)).await;
    let progress = client.find(Locator::Css("progress")).await.unwrap();
    assert_eq!(progress.attr("value").await.unwrap().as_deref(), Some("40"));
    assert_eq!(progress.attr("max").await.unwrap().as_deref(), Some("100"));
    let row = text_of(&client, "tbody tr").await;
    assert!(row.contains("400.00 EUR") && row.contains("open"), "{row}");
    screenshot(&client, "project").await;

    // The round, then closing it early: the confirmation says what happens to the money first.
    client
        .find(Locator::Css(&format!("a[href='/console/offers/{}']", world.offer)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let round = format!("/console/offers/{}", world.offer);
    arrive(&client, &round).await;
    screenshot(&client, "round").await;
    client
        .find(Locator::LinkText("Close early…"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, &format!("{round}/close")).await;
    let told = text_of(&client, ".card").await;
    assert!(told.contains("With 40 of the minimum's 10 shares funded"), "{told}");
    screenshot(&client, "close-early").await;
    client
        .find(Locator::Css(".card button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, &round).await;
    assert_eq!(text_of(&client, "h1 .status").await, "succeeded");
    screenshot(&client, "round-succeeded").await;
    client
        .find(Locator::LinkText("Cap table"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, &format!("{round}/cap-table")).await;
    let download = client.find(Locator::LinkText("Download CSV")).await.unwrap();
    assert_eq!(
        download.attr("href").await.unwrap().as_deref(),
        Some(format!("{round}/cap-table.csv").as_str())
    );
    assert!(text_of(&client, "tfoot").await.contains("40"));
    screenshot(&client, "cap-table").await;

    // The books' invariants, each by name.
    client
        .find(Locator::LinkText("Verify the books"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, "/console/books/verify").await;
    assert!(text_of(&client, ".verdict").await.starts_with("Every invariant holds"));
    screenshot(&client, "verify").await;

    // Signing out ends the session: the next page is the sign-in form again.
    client
        .find(Locator::Css("header form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client.goto(&format!("{}/console/projects", app.base)).await.unwrap();
    assert!(client.current_url().await.unwrap().path().ends_with("/console/sign-in"));
    client.close().await.unwrap();
}
