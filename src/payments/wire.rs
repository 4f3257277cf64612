//! What the clients of networked providers (Stripe, Mangopay) share on the wire: amounts as
//! integers in the currency's minor unit, both ways, and transport errors told in words without
//! the URL they were about.

use rust_decimal::Decimal;

use super::calls::CallError;
use crate::money::{Currency, Money};

/// An amount in the currency's minor unit, as providers take it (EUR 120.50 → 12050). An amount
/// with more decimals than its currency has is a bug of ours, which no repeat cures.
pub(crate) fn to_minor(amount: Decimal, currency: &str) -> Result<i64, CallError> {
    let units = Currency::parse(currency).map_or(2, Currency::minor_units);
    let scaled = amount * Decimal::from(10_i64.pow(units));
    let permanent = |why: String| CallError::Permanent { status: None, why };
    if scaled.fract() != Decimal::ZERO {
        return Err(permanent(format!(
            "{amount} {currency} has more decimals than the currency"
        )));
    }
    i64::try_from(scaled.trunc()).map_err(|_| permanent(format!("{amount} {currency} is too large")))
}

/// Money from a provider's integer in the minor unit of `currency` (an ISO code, any case).
pub(crate) fn from_minor(minor: i64, currency: &str) -> Result<Money, String> {
    let currency = Currency::parse(&currency.to_ascii_uppercase()).map_err(|e| e.to_string())?;
    Money::new(Decimal::new(minor, currency.minor_units()), currency).map_err(|e| e.to_string())
}

/// A request error's words without its URL, which names no secret but is noise in our records.
pub(crate) fn without_url(err: &reqwest::Error) -> String {
    let words = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "the answer could not be read"
    } else {
        "the request failed"
    };
    words.to_owned()
}

/// A request that never left: nothing can have been done, so the same request may be repeated.
pub(crate) fn not_sent(provider: &str, err: &reqwest::Error) -> CallError {
    CallError::Retry {
        status: None,
        after: None,
        new_key: false,
        why: format!("{provider} could not be reached: {}", without_url(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_go_in_minor_units_and_come_back() {
        assert_eq!(to_minor("120.50".parse().unwrap(), "EUR").unwrap(), 12050);
        assert_eq!(to_minor("7".parse().unwrap(), "JPY").unwrap(), 7);
        assert!(matches!(
            to_minor("1.005".parse().unwrap(), "EUR"),
            Err(CallError::Permanent { .. })
        ));
        assert_eq!(from_minor(12050, "eur").unwrap().amount_string(), "120.50");
        assert_eq!(from_minor(500, "JPY").unwrap().amount(), Decimal::from(500));
        assert!(from_minor(1, "XXX").is_err());
    }
}
