//! Properties of the parsers bad input meets first: amounts and money, the inbound signature
//! headers, and the JSON request bodies. Arbitrary input never panics, is accepted exactly when
//! PRODUCT.md says so, and an altered signature never verifies. 10,000 cases per property by
//! default; `PROPTEST_CASES` sets another number.

use std::str::FromStr;

use axum::http::StatusCode;
use chrono::{TimeZone, Utc};
use crowdledger::http::error::ApiError;
use crowdledger::money::{Amount, Currency, Money};
use crowdledger::webhooks::signature::{self, WebhookSecret};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::common::fixtures::KIIS_SHA256;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}

/// PRODUCT.md section 2, written out on its own: an optional '-', digits, and optionally a '.'
/// followed by digits; no exponent, sign '+', space or separator. money.rs also bounds the size:
/// at most 15 digits before the point once leading zeros are dropped, at most 18 after, and all
/// of them within a `Decimal`'s 96 bits, so nothing is rounded on the way in.
fn is_plain_decimal(s: &str) -> bool {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (whole, frac) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    let digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    if !digits(whole) {
        return false;
    }
    let whole = whole.trim_start_matches('0');
    let fits = || {
        format!("0{whole}{frac}")
            .parse::<u128>()
            .is_ok_and(|m| m <= Decimal::MAX.mantissa() as u128)
    };
    digits(frac) && whole.len() <= 15 && frac.len() <= 18 && fits()
}

/// Strings that look like amounts, near misses, and anything at all.
fn amount_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{1,17}(\\.[0-9]{0,20})?",
        "-?0{0,30}[0-9]{1,16}\\.[0-9]{1,4}",
        "[-+ 0-9.eE_,xX]{0,24}",
        "(NaN|inf|Infinity|-0|-0\\.00|0\\.|\\.0|1e400|١٢|１０)",
        any::<String>(),
    ]
}

fn currency() -> impl Strategy<Value = Currency> {
    select(vec!["EUR", "JPY", "BHD", "USD", "CLF", "KWD"]).prop_map(|c| Currency::parse(c).unwrap())
}

/// Any JSON: leaves that look like what the request types hold, and containers of them keyed
/// by their field names or by anything.
fn json_value() -> impl Strategy<Value = Value> {
    let words = vec![
        KIIS_SHA256,
        "kiis",
        "passed",
        "failed",
        "EUR",
        "FR",
        "natural",
        "legal",
        "card",
        "cheque",
        "first_come",
        "ballot",
        "pro_rata",
        "verified",
        "employment",
        "sophisticated",
        "pledge.funded",
        "asset",
        "debit",
        "2026-05-01T12:00:00Z",
        "0190a7c4-6a5e-7c3b-9a1e-2b7d4f0c1e55",
        "https://127.0.0.1:9/hooks",
        "lou@example.org",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        amount_like().prop_map(Value::from),
        select(words).prop_map(Value::from),
        "[\\u{0}\\u{200b}\\u{200d}\\u{202e}\\u{feff}a-z]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 10, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..12)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    let names = vec![
        "name",
        "legal_name",
        "legal_form",
        "country",
        "territory",
        "themes",
        "description",
        "impact_indicators",
        "unit",
        "baseline",
        "target",
        "kind",
        "email",
        "classification",
        "net_worth",
        "amount",
        "currency",
        "share_price",
        "min_target",
        "max_target",
        "min_ticket",
        "max_ticket",
        "opens_at",
        "closes_at",
        "success_fee_rate",
        "allocation",
        "payment_window_seconds",
        "oversubscription_limit",
        "investor_id",
        "shares",
        "funding",
        "cheque_code",
        "risk_acknowledged",
        "risk_warning_version",
        "kiis_sha256",
        "knowledge_test",
        "loss_capacity",
        "answers_ref",
        "language",
        "sha256",
        "sponsor_id",
        "beneficiary_name",
        "beneficiary_email",
        "face_value",
        "expires_at",
        "eligible_themes",
        "eligible_project_ids",
        "memo",
        "url",
        "events",
        "status",
        "advance_seconds",
        "now",
        "code",
        "reference",
        "postings",
        "account_id",
        "side",
    ];
    prop_oneof![9 => select(names).prop_map(str::to_string), 1 => any::<String>()]
}

/// A valid body of each route that reads one, to alter a field at a time.
fn valid_bodies() -> Vec<Value> {
    vec![
        json!({"name": "Crois/Sens", "legal_name": "Crois/Sens SAS", "legal_form": "SAS", "country": "FR",
               "territory": "Pays de Brest", "themes": ["employment"], "description": "d",
               "impact_indicators": [{"name": "jobs", "unit": "people", "baseline": "3", "target": "12"}]}),
        json!({"kind": "natural", "name": "Lou", "email": "lou@example.org", "country": "BE",
               "classification": "sophisticated", "net_worth": {"amount": "250000.00", "currency": "EUR"}}),
        json!({"currency": "EUR", "share_price": "10.00", "min_target": "100.00", "max_target": "1000.00",
               "min_ticket": "10.00", "max_ticket": "500.00", "opens_at": "2026-05-01T12:00:00Z",
               "closes_at": "2026-05-10T12:00:00Z", "success_fee_rate": "0.05", "allocation": "pro_rata",
               "payment_window_seconds": 1800, "oversubscription_limit": "5"}),
        json!({"investor_id": "0190a7c4-6a5e-7c3b-9a1e-2b7d4f0c1e55", "shares": 2, "risk_acknowledged": true,
               "funding": [{"kind": "card", "amount": "10.00"}, {"kind": "cheque", "amount": "10.00", "cheque_code": "X"}],
               "risk_warning_version": "1", "kiis_sha256": KIIS_SHA256}),
        json!({"knowledge_test": "passed", "loss_capacity": "5000.00", "currency": "EUR", "answers_ref": "quiz/test"}),
        json!({"kind": "kiis", "language": "fr", "url": "https://platform.example/kiis-fr.pdf", "sha256": KIIS_SHA256}),
        json!({"classification": "sophisticated"}),
        json!({"kiis_sha256": KIIS_SHA256}),
        json!({"name": "Ashoka", "email": "prizes@example.org", "currency": "EUR"}),
        json!({"amount": "100.00", "currency": "EUR"}),
        json!({"sponsor_id": "0190a7c4-6a5e-7c3b-9a1e-2b7d4f0c1e55", "beneficiary_name": "Lou",
               "beneficiary_email": "lou@example.org", "face_value": "100.00", "currency": "EUR",
               "expires_at": "2026-06-01T00:00:00Z", "eligible_themes": ["health"], "memo": "contest"}),
        json!({"url": "https://127.0.0.1:9/hooks", "events": ["pledge.funded"]}),
        json!({"status": "verified"}),
        json!({"advance_seconds": 60}),
    ]
}

/// A valid body with one field, at any depth, replaced by anything.
fn altered_body() -> impl Strategy<Value = Value> {
    (select(valid_bodies()), any::<Index>(), json_value()).prop_map(|(mut body, at, value)| {
        let mut pointers = Vec::new();
        collect_pointers(&body, String::new(), &mut pointers);
        let pointer = at.get(&pointers).clone();
        *body.pointer_mut(&pointer).unwrap() = value;
        body
    })
}

fn collect_pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| collect_pointers(v, format!("{at}/{k}"), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| collect_pointers(v, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

/// Reads `bytes` as the handlers do (`AppJson`): a refusal must be a 400 or 422 problem.
fn read_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, TestCaseError> {
    match axum::Json::<T>::from_bytes(bytes) {
        Ok(axum::Json(value)) => Ok(Some(value)),
        Err(rejection) => {
            let status = ApiError::from(rejection).status();
            prop_assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
                "refused with {status}"
            );
            Ok(None)
        }
    }
}

/// Every request body type, read from `bytes`, then checked by the domain where a check needs
/// no database: nothing panics, refusals are 4xx.
fn read_every_body(bytes: &[u8]) -> Result<(), TestCaseError> {
    use crowdledger::{cheques, investors, ledger, offers, pledges, projects, sandbox, sponsors, webhooks};
    let now = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
    if let Some(p) = read_body::<projects::ProjectInput>(bytes)? {
        let _ = projects::NewProject::parse(p);
    }
    if let Some(i) = read_body::<investors::InvestorInput>(bytes)? {
        let _ = investors::NewInvestor::parse(i);
    }
    if let Some(o) = read_body::<offers::http::CreateOffer>(bytes)? {
        let _ = o.terms();
    }
    if let Some(p) = read_body::<pledges::rules::PledgeRequest>(bytes)? {
        let _ = p.card_only();
    }
    if let Some(a) = read_body::<investors::appropriateness::AppropriatenessInput>(bytes)? {
        let _ = investors::appropriateness::NewAppropriateness::parse(a);
    }
    if let Some(d) = read_body::<offers::documents::DocumentInput>(bytes)? {
        let _ = offers::documents::NewDocument::parse(d);
    }
    read_body::<investors::http::ClassificationDecision>(bytes)?;
    read_body::<pledges::http::Reconfirmation>(bytes)?;
    if let Some(s) = read_body::<sponsors::SponsorInput>(bytes)? {
        let _ = sponsors::NewSponsor::parse(s);
    }
    if let Some(c) = read_body::<cheques::ChequeInput>(bytes)?
        && let Err(e) = cheques::NewCheque::parse(c, now)
    {
        prop_assert_eq!(ApiError::from(e).status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    read_body::<sponsors::http::DepositInput>(bytes)?;
    read_body::<webhooks::http::CreateEndpoint>(bytes)?;
    read_body::<investors::http::KycDecision>(bytes)?;
    read_body::<sandbox::http::MoveClock>(bytes)?;
    read_body::<ledger::http::CreateAccount>(bytes)?;
    read_body::<ledger::http::PostEntry>(bytes)?;
    read_body::<ledger::http::ReverseEntry>(bytes)?;
    Ok(())
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STRIPE_SECRET: &[u8] = b"whsec_test_secret";
const NOW: i64 = 1_614_265_330;

/// `s` (not empty) with its character at `at` replaced by `by`, or by another if it is `by`.
fn replace_char(s: &str, at: Index, by: char) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let i = at.index(chars.len());
    chars[i] = if chars[i] == by {
        if by == 'x' { 'y' } else { 'x' }
    } else {
        by
    };
    chars.into_iter().collect()
}

/// Any character, weighted towards the ones that mean something in the headers.
fn header_char() -> impl Strategy<Value = char> {
    prop_oneof![
        select(vec![
            '0', '1', '9', 'a', 'f', 'A', 'F', '+', '/', '=', ',', ' ', 't', 'v', '-', '.'
        ]),
        any::<char>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn amounts_parse_exactly_when_they_are_plain_decimals(s in amount_like()) {
        let parsed = Amount::from_str(&s);
        prop_assert_eq!(parsed.is_ok(), is_plain_decimal(&s), "{:?} -> {:?}", s, parsed);
        if let Ok(amount) = parsed {
            // The value is the one written, digit for digit, and reads back the same.
            let again = Amount::from_str(&amount.value().to_string()).unwrap();
            prop_assert_eq!(again.value(), amount.value());
            let unsigned = s.trim_start_matches('-');
            let digits: String = unsigned.chars().filter(char::is_ascii_digit).collect();
            let scale = unsigned.split_once('.').map_or(0, |(_, f)| f.len() as u32);
            prop_assert_eq!(amount.value().abs().mantissa(), digits.parse::<i128>().unwrap());
            prop_assert_eq!(amount.value().scale(), scale);
            // As money, zero is never shown negative.
            if let Ok(money) = Money::new(amount.value(), Currency::EUR) {
                prop_assert!(!(money.amount().is_zero() && money.amount_string().starts_with('-')));
            }
        }
    }

    #[test]
    fn amounts_are_read_from_json_strings_only(v in json_value()) {
        let read = serde_json::from_value::<Amount>(v.clone());
        let expected = v.as_str().is_some_and(is_plain_decimal);
        prop_assert_eq!(read.is_ok(), expected, "{} -> {:?}", v, read);
    }

    #[test]
    fn money_keeps_every_cent_or_refuses(
        mantissa in -999_999_999_999_999i64..=999_999_999_999_999,
        scale in 0u32..8,
        currency in currency(),
    ) {
        let amount = Decimal::new(mantissa, scale);
        let money = Money::new(amount, currency);
        let fits = amount.normalize().scale() <= currency.minor_units();
        prop_assert_eq!(money.is_ok(), fits, "{} {:?}", amount, currency);
        if let Ok(money) = money {
            // Never rounded: the same value, with exactly the currency's decimals.
            prop_assert_eq!(money.amount(), amount);
            let shown = money.amount_string();
            let decimals = shown.split_once('.').map_or(0, |(_, f)| f.len() as u32);
            prop_assert_eq!(decimals, currency.minor_units(), "{}", shown);
            prop_assert!(!(amount.is_zero() && shown.starts_with('-')), "negative zero shown: {}", shown);
            let back = Money::new(Amount::from_str(&shown).unwrap().value(), currency).unwrap();
            prop_assert_eq!(back, money);
            prop_assert_eq!(Money::positive(amount, currency).is_ok(), amount > Decimal::ZERO);
        }
    }

    #[test]
    fn arbitrary_json_never_breaks_a_request_body(v in json_value()) {
        read_every_body(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn a_valid_body_with_one_field_altered_never_breaks_it(v in altered_body()) {
        read_every_body(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn arbitrary_bytes_never_break_a_request_body(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            "[\\[\\]{}\":,0-9a-z\\\\ ]{0,256}".prop_map(String::into_bytes),
            (1usize..20_000).prop_map(|n| "[".repeat(n).into_bytes()),
        ],
    ) {
        read_every_body(&bytes)?;
    }

    #[test]
    fn arbitrary_signature_headers_never_verify(
        id in any::<String>(),
        timestamp in prop_oneof![any::<String>(), (NOW - 400..NOW + 400).prop_map(|t| t.to_string())],
        header in prop_oneof![any::<String>(), "(v1,[A-Za-z0-9+/=]{0,48} ?){0,4}", "t=16142653[0-9]{2},(v1=[0-9a-f]{64},?){1,3}"],
        body in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let secret: WebhookSecret = SECRET.parse().unwrap();
        prop_assert!(signature::verify(&[&secret], &id, &timestamp, &header, &body, NOW).is_err());
        prop_assert!(signature::stripe_verify(STRIPE_SECRET, &header, &body, NOW).is_err());
    }

    #[test]
    fn a_standard_signature_altered_anywhere_never_verifies(
        id in "[A-Za-z0-9_]{1,32}",
        skew in -300i64..=300,
        body in prop::collection::vec(any::<u8>(), 1..256),
        part in 0..4u8,
        at in any::<Index>(),
        by in header_char(),
        flip in 1u8..=255,
    ) {
        let secret: WebhookSecret = SECRET.parse().unwrap();
        let ts = NOW + skew;
        let header = signature::sign(&secret, &id, ts, &body);
        let timestamp = ts.to_string();
        prop_assert_eq!(signature::verify(&[&secret], &id, &timestamp, &header, &body, NOW), Ok(()));
        let (mut id, mut timestamp, mut header, mut body) = (id, timestamp, header, body);
        match part {
            0 => id = replace_char(&id, at, by),
            1 => timestamp = replace_char(&timestamp, at, by),
            2 => header = replace_char(&header, at, by),
            _ => {
                let i = at.index(body.len());
                body[i] ^= flip;
            }
        }
        prop_assert!(signature::verify(&[&secret], &id, &timestamp, &header, &body, NOW).is_err());
    }

    #[test]
    fn a_stripe_signature_altered_anywhere_never_verifies(
        skew in -300i64..=300,
        body in prop::collection::vec(any::<u8>(), 1..256),
        in_header in any::<bool>(),
        at in any::<Index>(),
        by in header_char(),
        flip in 1u8..=255,
    ) {
        let header = signature::stripe_sign(STRIPE_SECRET, NOW + skew, &body);
        prop_assert_eq!(signature::stripe_verify(STRIPE_SECRET, &header, &body, NOW), Ok(()));
        let (mut header, mut body) = (header, body);
        if in_header {
            header = replace_char(&header, at, by);
        } else {
            let i = at.index(body.len());
            body[i] ^= flip;
        }
        prop_assert!(signature::stripe_verify(STRIPE_SECRET, &header, &body, NOW).is_err());
    }
}
