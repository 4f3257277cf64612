//! Settings: `config/default.toml` (built into the binary), then the file named by
//! `CROWDLEDGER_CONFIG`, then `DATABASE_URL`, then `CROWDLEDGER__SECTION__KEY` variables.
//! Validated once at start; a bad or unknown key is named in the error.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use subtle::ConstantTimeEq;

use crate::clock::ClockMode;
use crate::http::rate_limit::RateLimitSettings;
use crate::jobs::retention::RetentionSettings;
use crate::payments::providers::{CardProvider, PaymentsSettings};
use crate::payments::sandbox::DEVELOPMENT_SECRET;
use crate::webhooks::signature::WebhookSecret;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub clock: ClockSettings,
    pub payments: PaymentsSettings,
    pub webhooks: WebhooksSettings,
    pub log: LogSettings,
    pub rate_limit: RateLimitSettings,
    #[serde(default)]
    pub ballot: BallotSettings,
    pub retention: RetentionSettings,
    #[serde(default)]
    pub investor_protection: InvestorProtectionSettings,
    #[serde(default)]
    pub cheques: ChequeSettings,
}

/// Prize cheques (docs/cheques.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChequeSettings {
    /// `cheque.expiring` is sent this many days before a cheque with money left expires.
    pub expiring_notice_days: u32,
}

impl Default for ChequeSettings {
    fn default() -> Self {
        ChequeSettings {
            expiring_notice_days: 14,
        }
    }
}

/// The ECSP gate (docs/investor-protection.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InvestorProtectionSettings {
    /// The version of the risk-warning text the platform shows (ECSP art. 21(7)): recorded on a
    /// pledge that acknowledges the warning without naming a version of its own.
    pub risk_warning_version: String,
}

impl Default for InvestorProtectionSettings {
    fn default() -> Self {
        InvestorProtectionSettings {
            risk_warning_version: "1".to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub bind: SocketAddr,
    pub metrics_bind: Option<SocketAddr>,
    pub request_timeout_seconds: u64,
    pub body_limit_bytes: usize,
    pub max_in_flight: usize,
    /// A request's head must arrive within this, or its connection is closed (slow clients).
    pub header_read_timeout_seconds: u64,
    /// A body on a route that takes no API key must arrive within this (slow clients).
    pub unauthenticated_body_timeout_seconds: u64,
}

impl HttpSettings {
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// What the service logs in as: the least-privileged app role (docs/database-roles.md).
    pub url: Option<SecretString>,
    /// What `crowdledger migrate` logs in as: the tables' owner. Defaults to `url`.
    pub migrate_url: Option<SecretString>,
    pub max_connections: u32,
    pub acquire_timeout_seconds: u64,
    /// Verify and the trial balance read the whole books: each of their statements is cancelled
    /// after this long (503 `statement_timeout`).
    pub read_statement_timeout_ms: u64,
}

impl DatabaseSettings {
    pub fn read_statement_timeout(&self) -> Duration {
        Duration::from_millis(self.read_statement_timeout_ms)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub bootstrap_operator_key: Option<SecretString>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSettings {
    pub mode: ClockMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSettings {
    pub allow_private_targets: bool,
}

/// The ballot's server secret (docs/ballot.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BallotSettings {
    /// Ballot seeds are derived from it: standard base64 of at least 32 random bytes. Without
    /// it, ballot offers cannot open under the system clock (409 `ballot_key_missing`); the
    /// manual clock falls back to a development key.
    pub seed_key: Option<SecretString>,
}

/// At most a century: any longer is "never", and would overflow a date.
const MAX_RETENTION_DAYS: u32 = 36_500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Minimum length of the bootstrap operator key: it must be as hard to guess as a generated key.
const MIN_BOOTSTRAP_KEY_LEN: usize = 32;

impl Settings {
    /// Loads from the process environment.
    pub fn load() -> anyhow::Result<Settings> {
        Settings::load_from(|name| std::env::var(name).ok(), std::env::vars())
    }

    /// Loads with an explicit environment, so tests need not touch the process's.
    pub fn load_from(
        var: impl Fn(&str) -> Option<String>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Settings> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = var("CROWDLEDGER_CONFIG") {
            builder = builder.add_source(File::with_name(&path).format(FileFormat::Toml).required(true));
        }
        let prefixed: config::Map<String, String> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("CROWDLEDGER__"))
            .collect();
        if let Some(url) = var("DATABASE_URL").filter(|_| !prefixed.contains_key("CROWDLEDGER__DATABASE__URL")) {
            builder = builder.set_override("database.url", url)?;
        }
        builder = builder.add_source(
            Environment::with_prefix("CROWDLEDGER")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(prefixed)),
        );
        let settings: Settings = builder
            .build()
            .context("reading configuration")?
            .try_deserialize()
            .context("invalid configuration")?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(key) = &self.auth.bootstrap_operator_key
            && key.expose_secret().len() < MIN_BOOTSTRAP_KEY_LEN
        {
            bail!(
                "invalid configuration: auth.bootstrap_operator_key must be at least {MIN_BOOTSTRAP_KEY_LEN} characters"
            );
        }
        if self.http.request_timeout_seconds == 0 {
            bail!("invalid configuration: http.request_timeout_seconds must be at least 1");
        }
        if self.cheques.expiring_notice_days == 0 || self.cheques.expiring_notice_days > 3650 {
            bail!("invalid configuration: cheques.expiring_notice_days must be 1 to 3650");
        }
        let version = &self.investor_protection.risk_warning_version;
        if version.is_empty() || version.chars().count() > 64 || version.chars().any(char::is_control) {
            bail!(
                "invalid configuration: investor_protection.risk_warning_version must be 1 to 64 characters with no control characters"
            );
        }
        if self.http.max_in_flight == 0 {
            bail!("invalid configuration: http.max_in_flight must be at least 1");
        }
        if self.http.body_limit_bytes < 1024 {
            bail!("invalid configuration: http.body_limit_bytes must be at least 1024");
        }
        for (key, seconds) in [
            (
                "http.header_read_timeout_seconds",
                self.http.header_read_timeout_seconds,
            ),
            (
                "http.unauthenticated_body_timeout_seconds",
                self.http.unauthenticated_body_timeout_seconds,
            ),
        ] {
            if seconds == 0 {
                bail!("invalid configuration: {key} must be at least 1");
            }
        }
        let limits = &self.rate_limit;
        for (scope, rate, burst) in [
            ("key", limits.key_per_second, limits.key_burst),
            ("address", limits.address_per_second, limits.address_burst),
        ] {
            // A thousandth a second at least (one request in 1,000 s); a billion at most.
            if rate != 0.0 && !(0.001..=1e9).contains(&rate) {
                bail!(
                    "invalid configuration: rate_limit.{scope}_per_second must be 0 (off) or between 0.001 and 1000000000"
                );
            }
            if rate > 0.0 && burst == 0 {
                bail!("invalid configuration: rate_limit.{scope}_burst must be at least 1");
            }
        }
        if let Some(secret) = &self.payments.sandbox.webhook_secret
            && secret.expose_secret().parse::<WebhookSecret>().is_err()
        {
            bail!(
                "invalid configuration: payments.sandbox.webhook_secret must be whsec_ and base64 of at least 16 bytes"
            );
        }
        self.validate_sandbox()?;
        if self
            .payments
            .stripe
            .webhook_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().is_empty())
        {
            bail!("invalid configuration: payments.stripe.webhook_secret must not be empty");
        }
        self.validate_stripe()?;
        self.validate_mangopay()?;
        if let Some(key) = &self.ballot.seed_key
            && let Err(err) = crate::offers::ballot::SeedKey::parse(key.expose_secret())
        {
            bail!("invalid configuration: {err}");
        }
        if self.database.max_connections == 0 {
            bail!("invalid configuration: database.max_connections must be at least 1");
        }
        // Postgres reads 0 as "no limit", and takes at most i32::MAX milliseconds.
        if !(1..=i32::MAX as u64).contains(&self.database.read_statement_timeout_ms) {
            bail!("invalid configuration: database.read_statement_timeout_ms must be between 1 and 2147483647");
        }
        if self.http.metrics_bind.is_some_and(|m| m == self.http.bind) {
            bail!("invalid configuration: http.metrics_bind must differ from http.bind");
        }
        for (key, days) in [
            ("retention.idempotency_keys_days", self.retention.idempotency_keys_days),
            ("retention.inbound_events_days", self.retention.inbound_events_days),
            ("retention.webhook_attempts_days", self.retention.webhook_attempts_days),
        ]
        .into_iter()
        .chain(self.retention.audit_log_days.map(|d| ("retention.audit_log_days", d)))
        {
            if !(1..=MAX_RETENTION_DAYS).contains(&days) {
                bail!("invalid configuration: {key} must be between 1 and {MAX_RETENTION_DAYS}");
            }
        }
        for (key, url) in [
            ("database.url", &self.database.url),
            ("database.migrate_url", &self.database.migrate_url),
        ] {
            if let Some(url) = url
                && !url.expose_secret().starts_with("postgres://")
                && !url.expose_secret().starts_with("postgresql://")
            {
                bail!("invalid configuration: {key} must be a postgres:// URL");
            }
        }
        Ok(())
    }

    /// Stripe as the card provider needs its secret key to create payments and its webhook
    /// secret to hear of them; a key, when set, is not empty.
    fn validate_stripe(&self) -> anyhow::Result<()> {
        let stripe = &self.payments.stripe;
        if stripe.secret_key.as_ref().is_some_and(|s| s.expose_secret().is_empty()) {
            bail!("invalid configuration: payments.stripe.secret_key must not be empty");
        }
        if !(1..=120).contains(&stripe.timeout_seconds) {
            bail!("invalid configuration: payments.stripe.timeout_seconds must be between 1 and 120");
        }
        if !stripe.api_base.starts_with("https://") && !stripe.api_base.starts_with("http://") {
            bail!("invalid configuration: payments.stripe.api_base must be an http(s) URL");
        }
        if self.payments.card_provider == Some(CardProvider::Stripe) {
            for (key, set) in [
                ("payments.stripe.secret_key", stripe.secret_key.is_some()),
                ("payments.stripe.webhook_secret", stripe.webhook_secret.is_some()),
            ] {
                if !set {
                    bail!("invalid configuration: payments.card_provider = \"stripe\" needs {key}");
                }
            }
        }
        Ok(())
    }

    /// Mangopay as the card provider needs its client id and API key to call it and the URL its
    /// hosted card page sends investors back to; what is set is checked.
    fn validate_mangopay(&self) -> anyhow::Result<()> {
        let mangopay = &self.payments.mangopay;
        if mangopay
            .client_id
            .as_deref()
            .is_some_and(|id| id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            bail!("invalid configuration: payments.mangopay.client_id must be letters, digits, dashes or underscores");
        }
        if mangopay.api_key.as_ref().is_some_and(|k| k.expose_secret().is_empty()) {
            bail!("invalid configuration: payments.mangopay.api_key must not be empty");
        }
        if !(1..=120).contains(&mangopay.timeout_seconds) {
            bail!("invalid configuration: payments.mangopay.timeout_seconds must be between 1 and 120");
        }
        let http = |url: &str| url.starts_with("https://") || url.starts_with("http://");
        if !http(&mangopay.api_base) {
            bail!("invalid configuration: payments.mangopay.api_base must be an http(s) URL");
        }
        // Mangopay takes a ReturnURL of at most 220 characters.
        if mangopay
            .return_url
            .as_deref()
            .is_some_and(|url| !http(url) || url.len() > 220 || url.chars().any(char::is_whitespace))
        {
            bail!(
                "invalid configuration: payments.mangopay.return_url must be an http(s) URL of at most 220 characters"
            );
        }
        if !crate::payments::providers::MANGOPAY_CULTURES.contains(&mangopay.culture.as_str()) {
            bail!(
                "invalid configuration: payments.mangopay.culture must be one of {}",
                crate::payments::providers::MANGOPAY_CULTURES.join(", ")
            );
        }
        if self.payments.card_provider == Some(CardProvider::Mangopay) {
            for (key, set) in [
                ("payments.mangopay.client_id", mangopay.client_id.is_some()),
                ("payments.mangopay.api_key", mangopay.api_key.is_some()),
                ("payments.mangopay.return_url", mangopay.return_url.is_some()),
            ] {
                if !set {
                    bail!("invalid configuration: payments.card_provider = \"mangopay\" needs {key}");
                }
            }
        }
        Ok(())
    }

    /// The sandbox is for tests: under the system clock it does not exist (PRODUCT.md section
    /// 10), so a setting that would bring it, or its public secret, into production is refused.
    fn validate_sandbox(&self) -> anyhow::Result<()> {
        if self.clock.mode != ClockMode::System {
            return Ok(());
        }
        let sandbox = &self.payments.sandbox;
        if sandbox.auto_confirm {
            bail!(
                "invalid configuration: payments.sandbox.auto_confirm = true needs clock.mode = \"manual\"; \
                 the sandbox does not exist under the system clock"
            );
        }
        if self.payments.card_provider == Some(CardProvider::Sandbox) {
            bail!(
                "invalid configuration: payments.card_provider = \"sandbox\" needs clock.mode = \"manual\"; \
                 the sandbox takes no payments under the system clock"
            );
        }
        // Canonical base64 (checked above): one spelling per key, so comparing strings suffices.
        if let Some(secret) = &sandbox.webhook_secret
            && bool::from(secret.expose_secret().as_bytes().ct_eq(DEVELOPMENT_SECRET.as_bytes()))
        {
            bail!(
                "invalid configuration: payments.sandbox.webhook_secret is the public development secret, \
                 refused with clock.mode = \"system\" (leave it unset: the sandbox does not exist there)"
            );
        }
        Ok(())
    }

    pub fn database_url(&self) -> anyhow::Result<&str> {
        self.database
            .url
            .as_ref()
            .map(|u| u.expose_secret())
            .context("no database configured: set DATABASE_URL or database.url")
    }

    /// The owner's URL for migrations: `database.migrate_url`, else `database.url` (a single-role
    /// setup, as in development).
    pub(crate) fn migrate_url(&self) -> anyhow::Result<&str> {
        match &self.database.migrate_url {
            Some(url) => Ok(url.expose_secret()),
            None => self.database_url(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = env.clone();
        Settings::load_from(
            move |n| lookup.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()),
            env,
        )
    }

    fn message(err: anyhow::Error) -> String {
        format!("{err:#}")
    }

    #[test]
    fn defaults_load() {
        let s = load(&[]).unwrap();
        assert_eq!(s.http.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.clock.mode, ClockMode::System);
        assert!(s.database.url.is_none());
    }

    #[test]
    fn environment_overrides_with_the_right_precedence() {
        let s = load(&[
            ("CROWDLEDGER__HTTP__BIND", "0.0.0.0:9000"),
            ("CROWDLEDGER__CLOCK__MODE", "manual"),
            ("CROWDLEDGER__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
            ("DATABASE_URL", "postgres://a@localhost/x"),
        ])
        .unwrap();
        assert_eq!(s.http.bind.port(), 9000);
        assert_eq!(s.clock.mode, ClockMode::Manual);
        assert!(s.webhooks.allow_private_targets);
        assert_eq!(s.database_url().unwrap(), "postgres://a@localhost/x");

        let s = load(&[
            ("DATABASE_URL", "postgres://a@h/x"),
            ("CROWDLEDGER__DATABASE__URL", "postgres://b@h/y"),
        ])
        .unwrap();
        assert_eq!(s.database_url().unwrap(), "postgres://b@h/y");
    }

    #[test]
    fn migrations_use_their_own_url_or_fall_back_to_the_service_url() {
        let s = load(&[("DATABASE_URL", "postgres://service@h/x")]).unwrap();
        assert_eq!(s.migrate_url().unwrap(), "postgres://service@h/x");
        let s = load(&[
            ("DATABASE_URL", "postgres://service@h/x"),
            ("CROWDLEDGER__DATABASE__MIGRATE_URL", "postgres://owner@h/x"),
        ])
        .unwrap();
        assert_eq!(s.database_url().unwrap(), "postgres://service@h/x");
        assert_eq!(s.migrate_url().unwrap(), "postgres://owner@h/x");
        assert!(load(&[]).unwrap().migrate_url().is_err());
        let err = message(load(&[("CROWDLEDGER__DATABASE__MIGRATE_URL", "mysql://owner@h/x")]).unwrap_err());
        assert!(err.contains("database.migrate_url"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = message(load(&[("CROWDLEDGER__HTTP__BIND", "not-an-address")]).unwrap_err());
        assert!(err.contains("http.bind"), "{err}");
        let err = message(load(&[("CROWDLEDGER__CLOCK__MODE", "sideways")]).unwrap_err());
        assert!(err.contains("clock.mode"), "{err}");
        let err = message(load(&[("CROWDLEDGER__HTTP__BINDD", "1")]).unwrap_err());
        assert!(err.contains("bindd"), "{err}");
        let err = message(load(&[("CROWDLEDGER__AUTH__BOOTSTRAP_OPERATOR_KEY", "short")]).unwrap_err());
        assert!(err.contains("auth.bootstrap_operator_key"), "{err}");
        let err = message(load(&[("CROWDLEDGER__HTTP__HEADER_READ_TIMEOUT_SECONDS", "0")]).unwrap_err());
        assert!(err.contains("http.header_read_timeout_seconds"), "{err}");
        let err = message(load(&[("CROWDLEDGER__HTTP__UNAUTHENTICATED_BODY_TIMEOUT_SECONDS", "0")]).unwrap_err());
        assert!(err.contains("http.unauthenticated_body_timeout_seconds"), "{err}");
        let err = message(load(&[("CROWDLEDGER__RATE_LIMIT__KEY_PER_SECOND", "-1")]).unwrap_err());
        assert!(err.contains("rate_limit.key_per_second"), "{err}");
        let err = message(load(&[("CROWDLEDGER__RATE_LIMIT__ADDRESS_BURST", "0")]).unwrap_err());
        assert!(err.contains("rate_limit.address_burst"), "{err}");
        let s = load(&[
            ("CROWDLEDGER__RATE_LIMIT__KEY_PER_SECOND", "0.001"),
            ("CROWDLEDGER__RATE_LIMIT__ADDRESS_PER_SECOND", "0"),
            ("CROWDLEDGER__RATE_LIMIT__ADDRESS_BURST", "0"),
        ])
        .unwrap();
        assert_eq!(
            (s.rate_limit.key_per_second, s.rate_limit.address_per_second),
            (0.001, 0.0)
        );
        let err = message(load(&[("CROWDLEDGER__PAYMENTS__SANDBOX__WEBHOOK_SECRET", "hunter2")]).unwrap_err());
        assert!(
            err.contains("payments.sandbox.webhook_secret") && !err.contains("hunter2"),
            "{err}"
        );
        let err = message(load(&[("CROWDLEDGER__BALLOT__SEED_KEY", "aHVudGVyMg==")]).unwrap_err());
        assert!(err.contains("ballot.seed_key") && !err.contains("aHVudGVyMg"), "{err}");
    }

    const SYSTEM: (&str, &str) = ("CROWDLEDGER__CLOCK__MODE", "system");
    const MANUAL: (&str, &str) = ("CROWDLEDGER__CLOCK__MODE", "manual");

    /// Refused under the system clock, naming `key`; the sandbox's own with a manual clock.
    fn refused_under_the_system_clock(setting: (&str, &str), key: &str) {
        let err = message(load(&[SYSTEM, setting]).unwrap_err());
        assert!(err.contains(key) && err.contains("clock.mode"), "{err}");
        assert!(!err.contains(DEVELOPMENT_SECRET), "{err}");
        load(&[MANUAL, setting]).unwrap();
    }

    #[test]
    fn the_shipped_defaults_hold_no_sandbox_setting_and_start_under_the_system_clock() {
        let s = load(&[SYSTEM]).unwrap();
        assert!(s.payments.sandbox.webhook_secret.is_none());
        assert!(!s.payments.sandbox.auto_confirm);
        assert_eq!(s.payments.card_provider, None);
        // A secret of one's own is no public one; unused there, it is no reason to refuse.
        let own = WebhookSecret::generate().expose_string();
        load(&[SYSTEM, ("CROWDLEDGER__PAYMENTS__SANDBOX__WEBHOOK_SECRET", &own)]).unwrap();
    }

    #[test]
    fn sandbox_auto_confirm_is_refused_under_the_system_clock() {
        refused_under_the_system_clock(
            ("CROWDLEDGER__PAYMENTS__SANDBOX__AUTO_CONFIRM", "true"),
            "payments.sandbox.auto_confirm",
        );
    }

    #[test]
    fn the_development_secret_is_refused_under_the_system_clock() {
        refused_under_the_system_clock(
            ("CROWDLEDGER__PAYMENTS__SANDBOX__WEBHOOK_SECRET", DEVELOPMENT_SECRET),
            "payments.sandbox.webhook_secret",
        );
    }

    #[test]
    fn the_sandbox_as_card_provider_is_refused_under_the_system_clock() {
        refused_under_the_system_clock(
            ("CROWDLEDGER__PAYMENTS__CARD_PROVIDER", "sandbox"),
            "payments.card_provider",
        );
        let s = load(&[MANUAL, ("CROWDLEDGER__PAYMENTS__CARD_PROVIDER", "sandbox")]).unwrap();
        assert_eq!(s.payments.card_provider, Some(CardProvider::Sandbox));
        // Stripe needs both its secrets, named when missing.
        let err = message(load(&[MANUAL, ("CROWDLEDGER__PAYMENTS__CARD_PROVIDER", "stripe")]).unwrap_err());
        assert!(err.contains("payments.stripe.secret_key"), "{err}");
        let err = message(
            load(&[
                MANUAL,
                ("CROWDLEDGER__PAYMENTS__CARD_PROVIDER", "stripe"),
                ("CROWDLEDGER__PAYMENTS__STRIPE__SECRET_KEY", "sk_test_x"),
            ])
            .unwrap_err(),
        );
        assert!(err.contains("payments.stripe.webhook_secret"), "{err}");
        let s = load(&[
            ("CROWDLEDGER__PAYMENTS__CARD_PROVIDER", "stripe"),
            ("CROWDLEDGER__PAYMENTS__STRIPE__SECRET_KEY", "sk_test_x"),
            ("CROWDLEDGER__PAYMENTS__STRIPE__WEBHOOK_SECRET", "whsec_x"),
        ])
        .unwrap();
        assert_eq!(s.payments.card_provider, Some(CardProvider::Stripe));
    }

    #[test]
    fn mangopay_as_card_provider_needs_its_keys_and_return_url_named_when_missing() {
        const CARD: (&str, &str) = ("CROWDLEDGER__PAYMENTS__CARD_PROVIDER", "mangopay");
        const CLIENT: (&str, &str) = ("CROWDLEDGER__PAYMENTS__MANGOPAY__CLIENT_ID", "crowdledger-prod");
        const KEY: (&str, &str) = (
            "CROWDLEDGER__PAYMENTS__MANGOPAY__API_KEY",
            "mangopay-api-key-for-this-test",
        );
        const RETURN: (&str, &str) = (
            "CROWDLEDGER__PAYMENTS__MANGOPAY__RETURN_URL",
            "https://platform.example/returned",
        );
        for (given, missing) in [
            (vec![CARD], "payments.mangopay.client_id"),
            (vec![CARD, CLIENT], "payments.mangopay.api_key"),
            (vec![CARD, CLIENT, KEY], "payments.mangopay.return_url"),
        ] {
            let err = message(load(&given).unwrap_err());
            assert!(err.contains(missing), "{err}");
        }
        let s = load(&[CARD, CLIENT, KEY, RETURN]).unwrap();
        assert_eq!(s.payments.card_provider, Some(CardProvider::Mangopay));
        assert_eq!(
            (
                s.payments.mangopay.api_base.as_str(),
                s.payments.mangopay.culture.as_str()
            ),
            ("https://api.mangopay.com", "FR")
        );
        assert_eq!(s.payments.mangopay.timeout_seconds, 10);
        for (setting, key) in [
            (
                ("CROWDLEDGER__PAYMENTS__MANGOPAY__CULTURE", "fr"),
                "payments.mangopay.culture",
            ),
            (
                ("CROWDLEDGER__PAYMENTS__MANGOPAY__RETURN_URL", "platform.example/back"),
                "payments.mangopay.return_url",
            ),
            (
                ("CROWDLEDGER__PAYMENTS__MANGOPAY__TIMEOUT_SECONDS", "0"),
                "payments.mangopay.timeout_seconds",
            ),
            (
                ("CROWDLEDGER__PAYMENTS__MANGOPAY__CLIENT_ID", "a/b"),
                "payments.mangopay.client_id",
            ),
        ] {
            let err = message(load(&[setting]).unwrap_err());
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn read_timeout_and_retention_have_defaults_and_name_their_keys() {
        let s = load(&[]).unwrap();
        assert_eq!(s.database.read_statement_timeout(), Duration::from_secs(60));
        assert_eq!(
            (
                s.retention.idempotency_keys_days,
                s.retention.inbound_events_days,
                s.retention.webhook_attempts_days
            ),
            (30, 180, 30)
        );
        for (key, value) in [
            ("CROWDLEDGER__DATABASE__READ_STATEMENT_TIMEOUT_MS", "0"),
            ("CROWDLEDGER__RETENTION__IDEMPOTENCY_KEYS_DAYS", "0"),
            ("CROWDLEDGER__RETENTION__INBOUND_EVENTS_DAYS", "36501"),
            ("CROWDLEDGER__RETENTION__WEBHOOK_ATTEMPTS_DAYS", "0"),
            ("CROWDLEDGER__RETENTION__AUDIT_LOG_DAYS", "0"),
        ] {
            let err = message(load(&[(key, value)]).unwrap_err());
            let name = key
                .trim_start_matches("CROWDLEDGER__")
                .replace("__", ".")
                .to_lowercase();
            assert!(err.contains(&name), "{key}={value}: {err}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let key = "k".repeat(40);
        let sandbox = WebhookSecret::generate().expose_string();
        let stripe = "whsec_stripe-secret-for-this-test";
        let ballot = "YmFsbG90LXNlZWQta2V5LWZvci10aGlzLXRlc3QtMDEyMzQ1Njc4OQ==";
        let stripe_key = "sk_live_stripe-key-for-this-test";
        let mangopay = "mangopay-api-key-for-this-test";
        let s = load(&[
            ("CROWDLEDGER__BALLOT__SEED_KEY", ballot),
            ("CROWDLEDGER__AUTH__BOOTSTRAP_OPERATOR_KEY", &key),
            ("DATABASE_URL", "postgres://u:hunter2@h/x"),
            ("CROWDLEDGER__PAYMENTS__SANDBOX__WEBHOOK_SECRET", &sandbox),
            ("CROWDLEDGER__PAYMENTS__STRIPE__WEBHOOK_SECRET", stripe),
            ("CROWDLEDGER__DATABASE__MIGRATE_URL", "postgres://o:swordfish@h/x"),
            ("CROWDLEDGER__PAYMENTS__STRIPE__SECRET_KEY", stripe_key),
            ("CROWDLEDGER__PAYMENTS__MANGOPAY__API_KEY", mangopay),
        ])
        .unwrap();
        let printed = format!("{s:?} {s:#?}");
        for secret in [
            key.as_str(),
            "hunter2",
            "swordfish",
            &sandbox,
            stripe,
            ballot,
            stripe_key,
            mangopay,
        ] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn a_config_file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("crowdledger-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("test.toml");
        std::fs::write(
            &path,
            "[http]\nbind = \"127.0.0.1:7000\"\nrequest_timeout_seconds = 5\n",
        )
        .unwrap();
        let path = path.to_str().unwrap();
        let s = load(&[("CROWDLEDGER_CONFIG", path)]).unwrap();
        assert_eq!((s.http.bind.port(), s.http.request_timeout_seconds), (7000, 5));
        let s = load(&[
            ("CROWDLEDGER_CONFIG", path),
            ("CROWDLEDGER__HTTP__BIND", "127.0.0.1:7001"),
        ])
        .unwrap();
        assert_eq!(s.http.bind.port(), 7001);
        assert!(load(&[("CROWDLEDGER_CONFIG", "/nonexistent/crowdledger.toml")]).is_err());
    }
}
