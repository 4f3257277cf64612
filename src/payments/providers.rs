//! Which payment providers exist here and how to reach them ([`Providers`]), built once from
//! the settings (`[payments]`, whose types live here) and the clock's mode.

use secrecy::SecretString;
use serde::Deserialize;

use super::provider::{self, PaymentProvider};
use super::{SANDBOX, sandbox, stripe};
use crate::clock::ClockMode;
use crate::http::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsSettings {
    /// The provider that takes card pledges (and, for now, sponsors' deposits and projects'
    /// payouts). Unset: the sandbox under a manual clock, none under the system clock.
    pub card_provider: Option<CardProvider>,
    pub sandbox: SandboxSettings,
    pub stripe: StripeSettings,
}

/// The providers that can take card payments here (a real one comes with its adapter's API).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CardProvider {
    /// With `clock.mode = "manual"` only.
    Sandbox,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    /// Unset: [`crate::payments::sandbox::DEVELOPMENT_SECRET`], with a manual clock only.
    pub webhook_secret: Option<SecretString>,
    pub auto_confirm: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSettings {
    pub webhook_secret: Option<SecretString>,
}

/// What the service needs to talk to payment providers: the providers that exist here, built
/// once from the settings and the clock's mode.
pub struct Providers {
    /// The sandbox, with a manual clock only. Under the system clock it does not exist: its
    /// webhook is an unknown path and it takes no payments (PRODUCT.md section 10).
    pub sandbox: Option<sandbox::SandboxSetup>,
    /// Where new card payments, deposits and payouts go (`payments.card_provider`).
    card: Option<&'static dyn PaymentProvider>,
    /// Verifies `Stripe-Signature`; without it the stripe endpoint answers 404.
    pub stripe_secret: Option<secrecy::SecretString>,
    /// Where the sandbox posts its webhooks: this service's own address, known once it listens.
    pub self_url: std::sync::OnceLock<String>,
    /// Delivers outbound webhooks, only where they may go (`webhooks/guard.rs`; private and
    /// loopback addresses too with `webhooks.allow_private_targets`).
    pub webhooks: crate::webhooks::guard::GuardedClient,
    pub client: reqwest::Client,
}

impl Providers {
    pub fn new(settings: &PaymentsSettings, clock: ClockMode, allow_private_targets: bool) -> Self {
        use secrecy::ExposeSecret;
        let sandbox = (clock == ClockMode::Manual).then(|| sandbox::SandboxSetup {
            secret: settings
                .sandbox
                .webhook_secret
                .as_ref()
                .map_or(sandbox::DEVELOPMENT_SECRET, |s| s.expose_secret())
                .parse()
                .expect("validated when the settings were loaded"),
            auto_confirm: settings.sandbox.auto_confirm,
        });
        let card: Option<&'static dyn PaymentProvider> = match (clock, settings.card_provider) {
            // No adapter here creates real payments yet; the settings refuse the sandbox.
            (ClockMode::System, _) => None,
            (ClockMode::Manual, None | Some(CardProvider::Sandbox)) => Some(&sandbox::Sandbox),
        };
        Providers {
            sandbox,
            card,
            stripe_secret: settings.stripe.webhook_secret.clone(),
            self_url: std::sync::OnceLock::new(),
            webhooks: crate::webhooks::guard::GuardedClient::new(
                allow_private_targets,
                crate::webhooks::outbound::REQUEST_TIMEOUT,
            ),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(15))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    /// The adapter of `POST /v1/webhooks/{name}`: the sandbox only where it exists; stripe
    /// always (its endpoint answers 404 until its secret is set).
    pub fn adapter(&self, name: &str) -> Option<&'static dyn PaymentProvider> {
        match name {
            SANDBOX if self.sandbox.is_some() => Some(&sandbox::Sandbox),
            stripe::STRIPE => Some(&stripe::Stripe),
            _ => None,
        }
    }

    /// The provider new card payments go to, and sponsors' deposits and projects' payouts
    /// until each has a setting of its own: `payments.card_provider`, the sandbox by default
    /// under a manual clock. None under the system clock: 422 `payment_provider_unavailable`.
    pub fn card_provider(&self) -> Result<&'static dyn PaymentProvider, ApiError> {
        self.card.ok_or_else(provider::unavailable)
    }

    /// Whether the sandbox confirms refunds, payouts and deposits by itself.
    pub fn auto_confirm(&self) -> bool {
        self.sandbox.as_ref().is_some_and(|s| s.auto_confirm)
    }
}
