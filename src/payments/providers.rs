//! Which payment providers exist here and how to reach them ([`Providers`]), built once from
//! the settings (`[payments]`, whose types live here) and the clock's mode.

use secrecy::SecretString;
use serde::Deserialize;

use super::calls::Remote;
use super::provider::{PaymentProvider, WebhookSecrets};
use super::{PaymentError, SANDBOX, mangopay, sandbox, stripe};
use crate::clock::ClockMode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsSettings {
    /// The provider that takes card pledges (and, for now, sponsors' deposits and projects'
    /// payouts). Unset: the sandbox under a manual clock, none under the system clock.
    pub card_provider: Option<CardProvider>,
    pub sandbox: SandboxSettings,
    pub stripe: StripeSettings,
    pub mangopay: MangopaySettings,
}

/// The providers that can take card payments here.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CardProvider {
    /// With `clock.mode = "manual"` only.
    Sandbox,
    /// Needs `payments.stripe.secret_key` and `webhook_secret`.
    Stripe,
    /// Needs `payments.mangopay.client_id`, `api_key` and `return_url`.
    Mangopay,
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
    /// Verifies `Stripe-Signature` on `POST /v1/webhooks/stripe`.
    pub webhook_secret: Option<SecretString>,
    /// The API's secret key (`sk_live_…`), for the calls that create payments, refunds and
    /// transfers.
    pub secret_key: Option<SecretString>,
    /// Stripe's API; tests point it at a local fake.
    pub api_base: String,
    /// How long one call may take before it counts as unanswered and is repeated later.
    pub timeout_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MangopaySettings {
    /// The `ClientId` in every path of the API and in the token request.
    pub client_id: Option<String>,
    /// The API key tokens are asked for with (docs/mangopay.md).
    pub api_key: Option<SecretString>,
    /// Mangopay's API; tests point it at a local fake.
    pub api_base: String,
    /// Where Mangopay's hosted card page sends the investor back (it adds `transactionId`).
    pub return_url: Option<String>,
    /// The hosted card page's language: an ISO 639-1 code Mangopay takes, in capitals.
    pub culture: String,
    /// How long one request may take before it counts as unanswered; a call of a few requests
    /// may take a few times as long.
    pub timeout_seconds: u64,
}

/// The languages of Mangopay's hosted card page (`Culture`).
pub const MANGOPAY_CULTURES: [&str; 16] = [
    "CS", "DA", "DE", "EL", "EN", "ES", "FI", "FR", "HU", "IT", "NL", "NO", "PL", "PT", "SK", "SV",
];

/// What the service needs to talk to payment providers: the providers that exist here, built
/// once from the settings and the clock's mode.
pub struct Providers {
    /// The sandbox, with a manual clock only. Under the system clock it does not exist: its
    /// webhook is an unknown path and it takes no payments (PRODUCT.md section 10).
    pub sandbox: Option<sandbox::SandboxSetup>,
    /// Where new card payments, deposits and payouts go (`payments.card_provider`).
    card: Option<&'static dyn PaymentProvider>,
    /// Stripe's outbound half, when its secret key is set.
    stripe_client: Option<stripe::client::StripeClient>,
    /// Mangopay's client, when its client id and API key are set: its calls, and the read-back
    /// of its notifications.
    mangopay_client: Option<mangopay::client::MangopayClient>,
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
        let stripe_client = settings.stripe.secret_key.clone().map(|key| {
            stripe::client::StripeClient::new(
                &settings.stripe.api_base,
                key,
                std::time::Duration::from_secs(settings.stripe.timeout_seconds),
            )
        });
        let mangopay = &settings.mangopay;
        let mangopay_client = match (&mangopay.client_id, &mangopay.api_key) {
            (Some(client_id), Some(api_key)) => Some(mangopay::client::MangopayClient::new(
                &mangopay.api_base,
                client_id,
                api_key.clone(),
                mangopay.return_url.clone(),
                &mangopay.culture,
                std::time::Duration::from_secs(mangopay.timeout_seconds),
            )),
            _ => None,
        };
        let card: Option<&'static dyn PaymentProvider> = match (clock, settings.card_provider) {
            // The settings refuse the sandbox under the system clock, and Stripe or Mangopay
            // without their keys.
            (_, Some(CardProvider::Stripe)) => Some(&stripe::Stripe),
            (_, Some(CardProvider::Mangopay)) => Some(&mangopay::Mangopay),
            (ClockMode::System, _) => None,
            (ClockMode::Manual, None | Some(CardProvider::Sandbox)) => Some(&sandbox::Sandbox),
        };
        Providers {
            sandbox,
            card,
            stripe_client,
            mangopay_client,
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
    pub(crate) fn adapter(&self, name: &str) -> Option<&'static dyn PaymentProvider> {
        match name {
            SANDBOX if self.sandbox.is_some() => Some(&sandbox::Sandbox),
            stripe::STRIPE => Some(&stripe::Stripe),
            _ => None,
        }
    }

    /// The provider new card payments go to, and sponsors' deposits and projects' payouts
    /// until each has a setting of its own: `payments.card_provider`, the sandbox by default
    /// under a manual clock. None under the system clock: [`PaymentError::Unavailable`].
    pub fn card_provider(&self) -> Result<&'static dyn PaymentProvider, PaymentError> {
        self.card.ok_or(PaymentError::Unavailable)
    }

    /// The outbound half of a networked provider named in a queued call: None for one that is
    /// not configured here (its calls wait until it is).
    pub fn remote(&self, name: &str) -> Option<&dyn Remote> {
        match name {
            stripe::STRIPE => self.stripe_client.as_ref().map(|c| c as &dyn Remote),
            mangopay::MANGOPAY => self.mangopay_client.as_ref().map(|c| c as &dyn Remote),
            _ => None,
        }
    }

    /// The networked providers this process can call.
    pub(crate) fn networked(&self) -> Vec<&'static str> {
        self.remotes().map(|(name, _)| name).collect()
    }

    /// The longest a call to any provider configured here may take: what a lease outlasts.
    pub fn longest_call(&self) -> std::time::Duration {
        self.remotes()
            .map(|(_, remote)| remote.timeout())
            .max()
            .unwrap_or(std::time::Duration::from_secs(10))
    }

    /// The networked providers configured here, by name.
    fn remotes(&self) -> impl Iterator<Item = (&'static str, &dyn Remote)> {
        let stripe = self.stripe_client.as_ref().map(|c| (stripe::STRIPE, c as &dyn Remote));
        let mangopay = self
            .mangopay_client
            .as_ref()
            .map(|c| (mangopay::MANGOPAY, c as &dyn Remote));
        stripe.into_iter().chain(mangopay)
    }

    /// The client that reads back the notifications of `GET /v1/webhooks/{name}`: Mangopay's,
    /// when it is configured here; None for every other name.
    pub(crate) fn notified(&self, name: &str) -> Option<&mangopay::client::MangopayClient> {
        self.mangopay_client.as_ref().filter(|_| name == mangopay::MANGOPAY)
    }

    /// The secrets inbound events are verified with.
    pub(crate) fn webhook_secrets(&self) -> WebhookSecrets<'_> {
        WebhookSecrets {
            sandbox: self.sandbox.as_ref().map(|s| &s.secret),
            stripe: self.stripe_secret.as_ref(),
        }
    }

    /// Whether the sandbox confirms refunds, payouts and deposits by itself.
    pub fn auto_confirm(&self) -> bool {
        self.sandbox.as_ref().is_some_and(|s| s.auto_confirm)
    }
}

/// Every adapter this code has, by name, whatever exists in this process: which providers
/// receive webhooks and take new payments is [`Providers`]'s to say.
fn known(name: &str) -> Option<&'static dyn PaymentProvider> {
    match name {
        super::SANDBOX => Some(&super::sandbox::Sandbox),
        super::stripe::STRIPE => Some(&super::stripe::Stripe),
        mangopay::MANGOPAY => Some(&mangopay::Mangopay),
        _ => None,
    }
}

/// The adapter of a provider named in one of our rows: refunds go back through the provider
/// of the payment they return.
pub(crate) fn of_row(name: &str) -> &'static dyn PaymentProvider {
    known(name).expect("rows only name registered providers")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ClockMode;
    use crate::money::Currency;
    use crate::money::Money;
    use crate::payments::provider::{Object, ProviderError};
    use uuid::Uuid;

    fn providers(clock: ClockMode) -> Providers {
        let settings = PaymentsSettings {
            card_provider: None,
            sandbox: SandboxSettings {
                webhook_secret: None,
                auto_confirm: false,
            },
            stripe: StripeSettings {
                webhook_secret: None,
                secret_key: None,
                api_base: "https://api.stripe.com".into(),
                timeout_seconds: 10,
            },
            mangopay: MangopaySettings {
                client_id: None,
                api_key: None,
                api_base: "https://api.mangopay.com".into(),
                return_url: None,
                culture: "FR".into(),
                timeout_seconds: 10,
            },
        };
        Providers::new(&settings, clock, false)
    }

    #[test]
    fn adapters_are_found_by_name_and_create_what_they_can() {
        let amount = Money::new("10.00".parse().unwrap(), Currency::EUR).unwrap();
        let id = Uuid::nil();
        let sandbox = of_row("sandbox");
        assert_eq!(sandbox.name(), "sandbox");
        assert_eq!(
            [
                sandbox.create_payment(id, amount).unwrap(),
                sandbox.create_refund(id, amount).unwrap(),
                sandbox.create_payout(id, amount).unwrap(),
                sandbox.create_deposit(id, amount).unwrap(),
            ],
            [
                "pay_00000000000000000000000000000000",
                "re_00000000000000000000000000000000",
                "po_00000000000000000000000000000000",
                "dep_00000000000000000000000000000000",
            ]
        );
        // Idempotent by our id.
        assert_eq!(
            sandbox.create_payment(id, amount).unwrap(),
            sandbox.create_payment(id, amount).unwrap()
        );
        let stripe = of_row("stripe");
        assert_eq!(stripe.name(), "stripe");
        assert!(matches!(
            stripe.create_payment(id, amount),
            Err(ProviderError::Unsupported {
                object: Object::Payment,
                ..
            })
        ));
        assert_eq!(of_row("mangopay").name(), "mangopay");
        assert!(of_row("mangopay").networked() && of_row("mangopay").needs_payee());
        assert!(known("paypal").is_none());
    }

    #[test]
    fn the_sandbox_exists_only_with_a_manual_clock() {
        let manual = providers(ClockMode::Manual);
        assert_eq!(manual.adapter("sandbox").map(|a| a.name()), Some("sandbox"));
        assert_eq!(manual.card_provider().unwrap().name(), "sandbox");
        let system = providers(ClockMode::System);
        assert!(system.sandbox.is_none() && system.adapter("sandbox").is_none());
        assert!(matches!(
            system.card_provider().map(|p| p.name()),
            Err(PaymentError::Unavailable)
        ));
        for p in [&manual, &system] {
            assert_eq!(p.adapter("stripe").map(|a| a.name()), Some("stripe"));
            assert!(p.adapter("paypal").is_none());
        }
    }
}
