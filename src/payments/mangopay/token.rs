//! Mangopay's OAuth tokens (docs/providers/mangopay-api.md section 2): asked for with the client
//! id and API key, one per process, cached behind a mutex so that concurrent calls wait for one
//! request rather than each asking ("overuse of the OAuth token endpoint … may result in rate
//! limiting or blocking"), renewed before `expires_in` runs out, and once more when Mangopay
//! answers 401 to a token it no longer takes.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::payments::calls::CallError;
use crate::payments::wire::without_url;

/// Renewed this long before it expires, as Mangopay's SDK does; half its life for a short one.
const RENEW_AHEAD: Duration = Duration::from_secs(60);

/// A bearer token, and which of the process's tokens it is.
#[derive(Clone)]
pub(super) struct Token {
    pub access: SecretString,
    serial: u64,
}

struct Cached {
    token: Token,
    renew_at: Instant,
}

pub(super) struct Tokens {
    http: reqwest::Client,
    url: String,
    client_id: String,
    api_key: SecretString,
    cached: Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct Granted {
    access_token: String,
    expires_in: u64,
}

impl Tokens {
    pub fn new(http: reqwest::Client, api_base: &str, client_id: &str, api_key: SecretString) -> Tokens {
        Tokens {
            http,
            url: format!("{api_base}/v2.01/oauth/token"),
            client_id: client_id.to_owned(),
            api_key,
            cached: Mutex::new(None),
        }
    }

    /// The cached token, or a new one when there is none or it is due for renewal.
    pub async fn get(&self) -> Result<Token, CallError> {
        let mut cached = self.cached.lock().await;
        match cached.as_ref() {
            Some(c) if Instant::now() < c.renew_at => Ok(c.token.clone()),
            _ => self.ask(&mut cached).await,
        }
    }

    /// A new token in place of `stale`, which Mangopay refused; unless another call renewed it
    /// meanwhile, whose token is then taken.
    pub async fn renew(&self, stale: &Token) -> Result<Token, CallError> {
        let mut cached = self.cached.lock().await;
        match cached.as_ref() {
            Some(c) if c.token.serial != stale.serial => Ok(c.token.clone()),
            _ => self.ask(&mut cached).await,
        }
    }

    async fn ask(&self, cached: &mut Option<Cached>) -> Result<Token, CallError> {
        let sent = self
            .http
            .post(&self.url)
            .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await;
        // Asking for a token creates nothing: whatever went wrong, asking again is safe.
        let retry = |status: Option<u16>, why: String| CallError::Retry {
            status,
            after: None,
            new_key: false,
            why,
        };
        let response = sent.map_err(|e| retry(None, format!("Mangopay's token endpoint: {}", without_url(&e))))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST {
            return Err(CallError::Permanent {
                status: Some(status.as_u16()),
                why: "Mangopay refused our client id and API key for a token".into(),
            });
        }
        if !status.is_success() {
            return Err(retry(
                Some(status.as_u16()),
                format!("Mangopay's token endpoint answered {status}"),
            ));
        }
        let granted: Granted = response
            .json()
            .await
            .map_err(|e| retry(None, format!("Mangopay's token: {}", without_url(&e))))?;
        let lifetime = Duration::from_secs(granted.expires_in);
        let serial = cached.as_ref().map_or(0, |c| c.token.serial + 1);
        let token = Token {
            access: SecretString::from(granted.access_token),
            serial,
        };
        *cached = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime - RENEW_AHEAD.min(lifetime / 2),
        });
        Ok(token)
    }
}
