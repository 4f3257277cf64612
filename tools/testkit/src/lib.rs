//! What the tools' tests share: the service's `crowdledger serve` as a child process on a test's
//! fresh database, as a user runs it beside a tool.
//!
//! The service's own tests (tests/common) name its binary by `CARGO_BIN_EXE_crowdledger`, which
//! Cargo sets only in the package that owns the binary; a tool's tests find it with
//! [`service_binary`] instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::PgPool;

/// The login the service uses (scripts/lib/pg.sh creates it in the test cluster): a member of
/// `crowdledger_app`, owner of nothing, no superuser (docs/database-roles.md).
pub const SERVICE_ROLE: &str = "crowdledger_service";

/// The `crowdledger` binary: `CROWDLEDGER_BIN` if set; otherwise built once per test process
/// (a no-op when it is up to date), with the profile and into the target folder this test was
/// built with, so a tool's test never runs a stale service.
pub fn service_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("CROWDLEDGER_BIN") {
            return bin.into();
        }
        let exe = std::env::current_exe().expect("the test's own path");
        // A test runs from <target>/<profile folder>/deps/.
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("a test binary in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("a profile folder in the target folder");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(name) => name,
        };
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--locked",
                "-p",
                "crowdledger",
                "--bin",
                "crowdledger",
            ])
            .args(["--profile", profile])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("running cargo to build crowdledger");
        assert!(status.success(), "building crowdledger failed ({status})");
        profile_dir.join(format!("crowdledger{}", std::env::consts::EXE_SUFFIX))
    })
}

/// The URL of the database behind `pool`, as its owner, for running a binary against it.
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by scripts/test");
    let db = pool
        .connect_options()
        .get_database()
        .expect("test pools name their database")
        .to_string();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{db}")
}

/// Like [`database_url`], logged in as [`SERVICE_ROLE`]: what `crowdledger serve` should use.
pub fn service_url(pool: &PgPool) -> String {
    let mut url = reqwest::Url::parse(&database_url(pool)).unwrap();
    url.set_username(SERVICE_ROLE).unwrap();
    url.set_password(None).unwrap();
    url.to_string()
}

/// A TCP port that was free a moment ago, for a child process to bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `crowdledger serve` child process; killed when dropped, so a failed test leaves none behind.
pub struct Served {
    child: Option<std::process::Child>,
    pub base: String,
    pub metrics_base: String,
}

impl Served {
    /// Starts `crowdledger serve` on `pool`'s database, logged in as [`SERVICE_ROLE`], with the
    /// bootstrap key `key`, and waits until ready.
    pub async fn start(pool: &PgPool, key: &str) -> Served {
        Served::start_with(pool, key, &[]).await
    }

    /// Like `start`, with extra environment variables (settings).
    pub async fn start_with(pool: &PgPool, key: &str, env: &[(&str, &str)]) -> Served {
        Served::start_binary(service_binary(), pool, key, env).await
    }

    /// Like `start_with`, running the `crowdledger` binary at `bin` (the service's own tests name
    /// the one Cargo built for them).
    pub async fn start_binary(bin: &Path, pool: &PgPool, key: &str, env: &[(&str, &str)]) -> Served {
        let db = service_url(pool);
        let (port, metrics_port) = (free_port(), free_port());
        let child = Command::new(bin)
            // Tests drive the sandbox's controls, which only a manual clock serves; `env` may say otherwise.
            .env("CROWDLEDGER__CLOCK__MODE", "manual")
            .envs(env.iter().copied())
            .arg("serve")
            .env("DATABASE_URL", &db)
            .env("CROWDLEDGER__HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("CROWDLEDGER__HTTP__METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
            .env("CROWDLEDGER__AUTH__BOOTSTRAP_OPERATOR_KEY", key)
            .env("CROWDLEDGER__DATABASE__MAX_CONNECTIONS", "20")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let served = Served {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            metrics_base: format!("http://127.0.0.1:{metrics_port}"),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{}/ready", served.base))
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(std::time::Instant::now() < deadline, "serve did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        served
    }

    /// Sends SIGTERM and waits for the process to exit; returns its output.
    pub async fn terminate(mut self) -> std::process::Output {
        let child = self.child.take().unwrap();
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn crash(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
