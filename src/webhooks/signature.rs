//! Webhook signatures: Standard Webhooks (the sandbox's inbound events and our outbound ones) and
//! Stripe's `Stripe-Signature`. Pure functions over the raw body; the caller passes the time.
//!
//! Standard Webhooks: <https://www.standardwebhooks.com/>. Stripe:
//! <https://docs.stripe.com/webhooks#verify-manually>.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::TryRngCore;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a signed timestamp may be from now, either way, before the message counts as stale.
pub(crate) const TOLERANCE_SECONDS: u64 = 300;

/// Longest signature header we read; real ones are a few hundred bytes.
pub(crate) const MAX_HEADER_BYTES: usize = 4096;

/// Items of a signature header we look at; rotation needs two, Stripe sends three or so.
pub(crate) const MAX_HEADER_ITEMS: usize = 16;

const SECRET_PREFIX: &str = "whsec_";

/// Shorter keys are a misconfiguration, not a secret (the official libraries generate 24 bytes).
const MIN_SECRET_BYTES: usize = 16;

type HmacSha256 = Hmac<Sha256>;
type Mac32 = [u8; 32];

/// Why a webhook's signature was refused. The caller answers all of them with 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the message id is empty")]
    EmptyId,
    #[error("the timestamp is missing, repeated or not an integer")]
    BadTimestamp,
    #[error("the timestamp is more than {TOLERANCE_SECONDS} s from now")]
    Stale,
    #[error("the signature header is longer than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLong,
    #[error("the signature header holds no usable signature")]
    NoSignature,
    #[error("no signature matches")]
    Mismatch,
}

/// Why a `whsec_…` string is not a webhook secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with `whsec_`")]
    MissingPrefix,
    #[error("a webhook secret is `whsec_` and standard base64")]
    BadBase64,
    #[error("a webhook secret holds at least {MIN_SECRET_BYTES} bytes")]
    TooShort,
}

/// A Standard Webhooks signing key: the base64-decoded part of `whsec_<base64>`.
#[derive(Clone)]
pub struct WebhookSecret(SecretSlice<u8>);

impl WebhookSecret {
    /// A new random secret: 32 bytes from the operating system's CSPRNG.
    pub fn generate() -> WebhookSecret {
        let mut bytes = vec![0u8; 32];
        OsRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random source failed");
        WebhookSecret(bytes.into())
    }

    /// The secret as `whsec_<base64>`, to show once or to store for signing.
    pub fn expose_string(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(self.key()))
    }

    fn key(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl FromStr for WebhookSecret {
    type Err = SecretError;

    /// Accepts only `whsec_` followed by canonical standard base64 (padding where due).
    fn from_str(s: &str) -> Result<WebhookSecret, SecretError> {
        let encoded = s.strip_prefix(SECRET_PREFIX).ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::BadBase64)?;
        if key.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort);
        }
        Ok(WebhookSecret(key.into()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

fn standard_mac(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> Mac32 {
    let mut mac = HmacSha256::new_from_slice(secret.key()).expect("HMAC takes keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(format!(".{timestamp}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The Standard Webhooks signature `v1,<base64 of HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")>`.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(standard_mac(secret, msg_id, timestamp, body)))
}

/// The `webhook-signature` header: one signature per secret, space-separated, so receivers
/// holding either the old or the new secret accept the message while a secret rotates.
pub fn signature_header(secrets: &[&WebhookSecret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| sign(secret, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a Standard Webhooks message (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
/// against the raw body: the timestamp within [`TOLERANCE_SECONDS`] of `now`, and any `v1`
/// signature made with any of `secrets`. Other versions and malformed items are skipped.
pub fn verify(
    secrets: &[&WebhookSecret],
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    if msg_id.is_empty() {
        return Err(SignatureError::EmptyId);
    }
    let timestamp = timestamp_header.parse().map_err(|_| SignatureError::BadTimestamp)?;
    check_fresh(timestamp, now)?;
    if signature_header.len() > MAX_HEADER_BYTES {
        return Err(SignatureError::HeaderTooLong);
    }
    let candidates: Vec<Mac32> = signature_header
        .split(' ')
        .take(MAX_HEADER_ITEMS)
        .filter_map(|item| match item.split_once(',') {
            Some(("v1", encoded)) => STANDARD.decode(encoded).ok()?.try_into().ok(),
            _ => None,
        })
        .collect();
    let expected: Vec<Mac32> = secrets
        .iter()
        .map(|secret| standard_mac(secret, msg_id, timestamp, body))
        .collect();
    any_matches(&expected, &candidates)
}

fn stripe_mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Mac32 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// A `Stripe-Signature` header `t=…,v1=…` as Stripe would send it, for tests and the sandbox.
pub fn stripe_sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(stripe_mac(secret, timestamp, body)))
}

/// Checks a `Stripe-Signature` header against the raw body. `secret` is the endpoint's signing
/// secret as Stripe shows it (`whsec_…`), used as-is: Stripe keys the HMAC with the string's
/// bytes, not with a decoding of it. Exactly one `t`, within [`TOLERANCE_SECONDS`] of `now`; any
/// `v1` may match; `v0` (test-mode legacy) and unknown keys are ignored.
pub fn stripe_verify(secret: &[u8], header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(SignatureError::HeaderTooLong);
    }
    let mut timestamp = None;
    let mut candidates: Vec<Mac32> = Vec::new();
    for (key, value) in header
        .split(',')
        .take(MAX_HEADER_ITEMS)
        .filter_map(|item| item.split_once('='))
    {
        match key {
            // A second `t` would leave it to us which one was signed; refuse rather than guess.
            "t" if timestamp.is_some() => return Err(SignatureError::BadTimestamp),
            "t" => timestamp = Some(value.parse::<i64>().map_err(|_| SignatureError::BadTimestamp)?),
            // Stripe writes lowercase hex; one spelling per signature, so that no altered
            // header verifies.
            "v1" if value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
                let mut mac = [0u8; 32];
                if hex::decode_to_slice(value, &mut mac).is_ok() {
                    candidates.push(mac);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::BadTimestamp)?;
    check_fresh(timestamp, now)?;
    // An empty key would let anyone sign.
    if secret.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    any_matches(&[stripe_mac(secret, timestamp, body)], &candidates)
}

fn check_fresh(timestamp: i64, now: i64) -> Result<(), SignatureError> {
    // abs_diff cannot overflow, whatever a hostile header holds.
    if timestamp.abs_diff(now) > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Each comparison runs in constant time; stopping at the first match tells an attacker only
/// which of their candidates was already valid.
fn any_matches(expected: &[Mac32], candidates: &[Mac32]) -> Result<(), SignatureError> {
    if candidates.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    let found = candidates
        .iter()
        .any(|candidate| expected.iter().any(|mac| bool::from(mac.ct_eq(candidate))));
    if found { Ok(()) } else { Err(SignatureError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TS: i64 = 1614265330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn vector_secret() -> WebhookSecret {
        VECTOR_SECRET.parse().unwrap()
    }

    fn verify_vector(header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
        verify(
            &[&vector_secret()],
            VECTOR_ID,
            &VECTOR_TS.to_string(),
            header,
            body,
            now,
        )
    }

    #[test]
    fn signs_the_official_test_vector() {
        assert_eq!(sign(&vector_secret(), VECTOR_ID, VECTOR_TS, VECTOR_BODY), VECTOR_SIG);
    }

    #[test]
    fn accepts_the_official_test_vector_within_tolerance() {
        for now in [VECTOR_TS, VECTOR_TS - 300, VECTOR_TS + 300] {
            assert_eq!(verify_vector(VECTOR_SIG, VECTOR_BODY, now), Ok(()), "now = {now}");
        }
    }

    #[test]
    fn refuses_stale_timestamps_either_way() {
        for now in [VECTOR_TS - 301, VECTOR_TS + 301] {
            assert_eq!(verify_vector(VECTOR_SIG, VECTOR_BODY, now), Err(SignatureError::Stale));
        }
    }

    #[test]
    fn refuses_a_tampered_body() {
        let body = br#"{"test": 2432232315}"#;
        assert_eq!(
            verify_vector(VECTOR_SIG, body, VECTOR_TS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_a_wrong_secret() {
        let other = WebhookSecret::generate();
        let result = verify(
            &[&other],
            VECTOR_ID,
            &VECTOR_TS.to_string(),
            VECTOR_SIG,
            VECTOR_BODY,
            VECTOR_TS,
        );
        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn refuses_a_signature_bound_to_another_id_or_timestamp() {
        let secret = vector_secret();
        let result = verify(
            &[&secret],
            "msg_other",
            &VECTOR_TS.to_string(),
            VECTOR_SIG,
            VECTOR_BODY,
            VECTOR_TS,
        );
        assert_eq!(result, Err(SignatureError::Mismatch));
        let later = (VECTOR_TS + 1).to_string();
        let result = verify(&[&secret], VECTOR_ID, &later, VECTOR_SIG, VECTOR_BODY, VECTOR_TS);
        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn refuses_headers_without_a_usable_v1_signature() {
        let v2 = VECTOR_SIG.replacen("v1,", "v2,", 1);
        let truncated = &VECTOR_SIG[..VECTOR_SIG.len() - 4];
        for header in ["", " ", "v1,", "v1", "v1,!!!!", v2.as_str(), truncated] {
            assert_eq!(
                verify_vector(header, VECTOR_BODY, VECTOR_TS),
                Err(SignatureError::NoSignature),
                "header = {header:?}"
            );
        }
    }

    #[test]
    fn finds_the_valid_signature_after_garbage() {
        for header in [
            format!("garbage {VECTOR_SIG}"),
            format!("v1,AAAA v2,xyz {VECTOR_SIG}"),
            format!("v1,{} {VECTOR_SIG}", STANDARD.encode([0u8; 32])),
        ] {
            assert_eq!(
                verify_vector(&header, VECTOR_BODY, VECTOR_TS),
                Ok(()),
                "header = {header:?}"
            );
        }
    }

    #[test]
    fn accepts_when_only_the_second_secret_matches() {
        let (old, new) = (WebhookSecret::generate(), vector_secret());
        let result = verify(
            &[&old, &new],
            VECTOR_ID,
            &VECTOR_TS.to_string(),
            VECTOR_SIG,
            VECTOR_BODY,
            VECTOR_TS,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn rotation_header_verifies_with_either_secret() {
        let (old, new) = (WebhookSecret::generate(), WebhookSecret::generate());
        let header = signature_header(&[&old, &new], VECTOR_ID, VECTOR_TS, VECTOR_BODY);
        assert_eq!(header.split(' ').count(), 2);
        for secret in [&old, &new] {
            let result = verify(
                &[secret],
                VECTOR_ID,
                &VECTOR_TS.to_string(),
                &header,
                VECTOR_BODY,
                VECTOR_TS,
            );
            assert_eq!(result, Ok(()));
        }
    }

    #[test]
    fn refuses_an_empty_id_and_bad_timestamps() {
        let secret = vector_secret();
        let ts = VECTOR_TS.to_string();
        assert_eq!(
            verify(&[&secret], "", &ts, VECTOR_SIG, VECTOR_BODY, VECTOR_TS),
            Err(SignatureError::EmptyId)
        );
        for bad in ["", "soon", "1614265330.0", " 1614265330", "99999999999999999999"] {
            assert_eq!(
                verify(&[&secret], VECTOR_ID, bad, VECTOR_SIG, VECTOR_BODY, VECTOR_TS),
                Err(SignatureError::BadTimestamp),
                "timestamp = {bad:?}"
            );
        }
        let extreme = i64::MIN.to_string();
        assert_eq!(
            verify(&[&secret], VECTOR_ID, &extreme, VECTOR_SIG, VECTOR_BODY, i64::MAX),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn caps_hostile_headers() {
        let long = format!("{} {VECTOR_SIG}", "x".repeat(MAX_HEADER_BYTES));
        assert_eq!(
            verify_vector(&long, VECTOR_BODY, VECTOR_TS),
            Err(SignatureError::HeaderTooLong)
        );
        // Items past the cap are not read, even a valid one.
        let many = format!("{}{VECTOR_SIG}", "v1,AAAA ".repeat(MAX_HEADER_ITEMS));
        assert_eq!(
            verify_vector(&many, VECTOR_BODY, VECTOR_TS),
            Err(SignatureError::NoSignature)
        );
    }

    #[test]
    fn secrets_parse_only_from_whsec_base64() {
        assert_eq!(vector_secret().expose_string(), VECTOR_SECRET);
        assert_eq!(
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse::<WebhookSecret>().unwrap_err(),
            SecretError::MissingPrefix
        );
        for bad in [
            "whsec_not base64!",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
            "whsec_dGVzdA",
        ] {
            assert_eq!(
                bad.parse::<WebhookSecret>().unwrap_err(),
                SecretError::BadBase64,
                "{bad}"
            );
        }
        for short in ["whsec_", "whsec_dGVzdA=="] {
            assert_eq!(
                short.parse::<WebhookSecret>().unwrap_err(),
                SecretError::TooShort,
                "{short}"
            );
        }
    }

    #[test]
    fn generated_secrets_round_trip_and_stay_out_of_debug() {
        let secret = WebhookSecret::generate();
        let shown = secret.expose_string();
        assert!(shown.starts_with("whsec_"));
        let parsed: WebhookSecret = shown.parse().unwrap();
        assert_eq!(parsed.expose_string(), shown);
        assert_eq!(format!("{secret:?}"), "WebhookSecret(..)");
        assert_ne!(shown, WebhookSecret::generate().expose_string());
    }

    const STRIPE_SECRET: &[u8] = b"whsec_test_secret";
    const STRIPE_TS: i64 = 1492774577;
    const STRIPE_BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    fn stripe_v1(secret: &[u8], body: &[u8]) -> String {
        hex::encode(stripe_mac(secret, STRIPE_TS, body))
    }

    #[test]
    fn stripe_round_trips() {
        let header = stripe_sign(STRIPE_SECRET, STRIPE_TS, STRIPE_BODY);
        assert!(header.starts_with("t=1492774577,v1="));
        for now in [STRIPE_TS - 300, STRIPE_TS, STRIPE_TS + 300] {
            assert_eq!(stripe_verify(STRIPE_SECRET, &header, STRIPE_BODY, now), Ok(()));
        }
    }

    #[test]
    fn stripe_refuses_tampering_wrong_secrets_and_stale_times() {
        let header = stripe_sign(STRIPE_SECRET, STRIPE_TS, STRIPE_BODY);
        let tampered = br#"{"id":"evt_2","type":"payment_intent.succeeded"}"#;
        assert_eq!(
            stripe_verify(STRIPE_SECRET, &header, tampered, STRIPE_TS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            stripe_verify(b"whsec_other", &header, STRIPE_BODY, STRIPE_TS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            stripe_verify(b"", &header, STRIPE_BODY, STRIPE_TS),
            Err(SignatureError::Mismatch)
        );
        for now in [STRIPE_TS - 301, STRIPE_TS + 301] {
            assert_eq!(
                stripe_verify(STRIPE_SECRET, &header, STRIPE_BODY, now),
                Err(SignatureError::Stale)
            );
        }
    }

    #[test]
    fn stripe_accepts_any_matching_v1_and_ignores_the_rest() {
        let wrong = stripe_v1(b"whsec_rolled", STRIPE_BODY);
        let right = stripe_v1(STRIPE_SECRET, STRIPE_BODY);
        let header = format!("t={STRIPE_TS},v1=not-hex,v1={wrong},v1={right},v0={wrong},extra=1,junk");
        assert_eq!(stripe_verify(STRIPE_SECRET, &header, STRIPE_BODY, STRIPE_TS), Ok(()));
        // The legacy v0 scheme is never trusted.
        let header = format!("t={STRIPE_TS},v0={right}");
        assert_eq!(
            stripe_verify(STRIPE_SECRET, &header, STRIPE_BODY, STRIPE_TS),
            Err(SignatureError::NoSignature)
        );
        let header = format!("t={STRIPE_TS},v1=zz{}", &right[2..]);
        assert_eq!(
            stripe_verify(STRIPE_SECRET, &header, STRIPE_BODY, STRIPE_TS),
            Err(SignatureError::NoSignature)
        );
    }

    #[test]
    fn stripe_needs_exactly_one_integer_t() {
        let right = stripe_v1(STRIPE_SECRET, STRIPE_BODY);
        for header in [
            format!("v1={right}"),
            format!("t={STRIPE_TS},t={STRIPE_TS},v1={right}"),
            format!("t=,v1={right}"),
            format!("t=soon,v1={right}"),
        ] {
            assert_eq!(
                stripe_verify(STRIPE_SECRET, &header, STRIPE_BODY, STRIPE_TS),
                Err(SignatureError::BadTimestamp),
                "header = {header:?}"
            );
        }
        let long = format!("t={STRIPE_TS},v1={right},{}", "x".repeat(MAX_HEADER_BYTES));
        assert_eq!(
            stripe_verify(STRIPE_SECRET, &long, STRIPE_BODY, STRIPE_TS),
            Err(SignatureError::HeaderTooLong)
        );
    }

    /// Headers that look roughly right, so the parser is exercised past its first refusal.
    fn standard_header() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "((v1|v2|v|x),[A-Za-z0-9+/=]{0,48}[ ,]?){0,20}",
            "(v1,[A-Za-z0-9+/]{43}= ?){1,4}",
        ]
    }

    fn stripe_header() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "((t=-?[0-9]{0,12}|v1=[0-9a-fA-F]{0,66}|v0=[0-9a-f]{0,64}|[a-z]{0,3}=?.{0,4}),?){0,20}",
            "t=1614265[0-9]{3},(v1=[0-9a-f]{64},?){1,4}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_standard_headers_never_verify(
            header in standard_header(),
            timestamp in prop_oneof![any::<String>(), Just(VECTOR_TS.to_string()), "-?[0-9]{1,20}"],
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let secret = vector_secret();
            prop_assert!(verify(&[&secret], VECTOR_ID, &timestamp, &header, &body, VECTOR_TS).is_err());
        }

        #[test]
        fn arbitrary_stripe_headers_never_verify(
            header in stripe_header(),
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            prop_assert!(stripe_verify(STRIPE_SECRET, &header, &body, VECTOR_TS).is_err());
        }

        #[test]
        fn one_flipped_body_byte_breaks_both_signatures(
            body in proptest::collection::vec(any::<u8>(), 1..512),
            index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let secret = vector_secret();
            let ts = VECTOR_TS.to_string();
            let header = sign(&secret, VECTOR_ID, VECTOR_TS, &body);
            let stripe = stripe_sign(STRIPE_SECRET, VECTOR_TS, &body);
            prop_assert_eq!(verify(&[&secret], VECTOR_ID, &ts, &header, &body, VECTOR_TS), Ok(()));
            prop_assert_eq!(stripe_verify(STRIPE_SECRET, &stripe, &body, VECTOR_TS), Ok(()));

            let mut tampered = body.clone();
            tampered[index.index(body.len())] ^= flip;
            prop_assert_eq!(
                verify(&[&secret], VECTOR_ID, &ts, &header, &tampered, VECTOR_TS),
                Err(SignatureError::Mismatch)
            );
            prop_assert_eq!(
                stripe_verify(STRIPE_SECRET, &stripe, &tampered, VECTOR_TS),
                Err(SignatureError::Mismatch)
            );
        }
    }
}
