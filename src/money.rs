//! Money: a `Decimal` amount with an explicit ISO 4217 currency, never a float.
//!
//! Amounts cross the JSON boundary as strings (`"2000.00"`). [`Amount`] refuses JSON numbers and
//! any notation other than plain decimal digits; [`Money::new`] refuses more decimals than the
//! currency has, so nothing is ever rounded silently.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use utoipa::ToSchema;

/// Largest amount accepted anywhere: far above any round, far below `Decimal`'s limits, so sums
/// of many amounts cannot overflow.
const MAX_AMOUNT_DIGITS: usize = 15;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("'{0}' is not an ISO 4217 currency code with minor units")]
    UnknownCurrency(String),
    #[error("'{0}' is not a decimal amount (digits, an optional '.' and decimals, as a string)")]
    Malformed(String),
    #[error("amount {amount} has more decimals than {currency} allows ({allowed})")]
    TooManyDecimals {
        amount: String,
        currency: Currency,
        allowed: u32,
    },
    #[error("amount {0} is too large (at most {MAX_AMOUNT_DIGITS} digits before the point)")]
    TooLarge(String),
    #[error("amount must be greater than zero")]
    NotPositive,
}

/// An ISO 4217 currency with a fixed number of minor units (EUR: 2, JPY: 0).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    pub const EUR: Currency = Currency(iso_currency::Currency::EUR);

    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let unknown = || MoneyError::UnknownCurrency(code.chars().take(8).collect());
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(unknown());
        }
        let currency = iso_currency::Currency::from_code(code).ok_or_else(unknown)?;
        // Funds and metals (XAU, XDR…) have no minor unit; they are not money we hold.
        currency.exponent().ok_or_else(unknown)?;
        Ok(Currency(currency))
    }

    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// Number of decimals the currency has.
    pub fn minor_units(self) -> u32 {
        u32::from(self.0.exponent().unwrap_or(0))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

/// Lets a `text` column decode straight into a currency (`#[sqlx(try_from = "String")]`).
impl TryFrom<String> for Currency {
    type Error = MoneyError;

    fn try_from(code: String) -> Result<Self, MoneyError> {
        Currency::parse(&code)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::parse(&code).map_err(de::Error::custom)
    }
}

/// In the document only: a currency code [`Currency::parse`] accepts (an ISO 4217 code with
/// minor units), EUR first as the service's default. A route may still refuse one that differs
/// from its object's own currency (`currency_mismatch`).
#[allow(dead_code)] // never built: the schema is all it is for
pub struct CurrencyCode;

impl utoipa::PartialSchema for CurrencyCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let letters = || b'A'..=b'Z';
        let mut codes = vec![Currency::EUR.code().to_string()];
        for a in letters() {
            for b in letters() {
                for c in letters() {
                    let code = String::from_utf8(vec![a, b, c]).expect("ASCII");
                    if Currency::parse(&code).is_ok() && code != Currency::EUR.code() {
                        codes.push(code);
                    }
                }
            }
        }
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(codes))
            .examples([serde_json::json!("EUR")])
            .into()
    }
}

impl ToSchema for CurrencyCode {}

/// A decimal amount as it arrives in JSON: a string of plain decimal digits. Its currency is not
/// known yet, so it becomes [`Money`] only with [`Money::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ToSchema)]
#[schema(value_type = String, example = "2000.00", pattern = r"^-?0*[0-9]{1,15}(\.[0-9]{1,18})?$")]
pub struct Amount(Decimal);

/// In the document only: an [`Amount`] of money above zero (a price, a target, a ticket, a
/// deposit, a face value, a posting), with at most 4 decimals (no currency has more; the
/// currency's own count is checked with it), which the service refuses otherwise.
#[derive(ToSchema)]
#[schema(
    value_type = String,
    example = "2000.00",
    pattern = r"^(0*[1-9][0-9]{0,14}(\.[0-9]{1,4})?|0+\.([1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9]))$"
)]
#[allow(dead_code)] // never built: the schema is all it is for
pub struct PositiveAmount(Decimal);

impl Amount {
    pub fn value(self) -> Decimal {
        self.0
    }
}

impl FromStr for Amount {
    type Err = MoneyError;

    /// Accepts `123`, `123.4`, `-5.00`; refuses exponents, signs other than a leading '-',
    /// spaces, separators and a bare or trailing '.'.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || MoneyError::Malformed(s.chars().take(40).collect());
        let digits = s.strip_prefix('-').unwrap_or(s);
        let (whole, frac) = match digits.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (digits, None),
        };
        let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole) || frac.is_some_and(|f| !all_digits(f)) {
            return Err(malformed());
        }
        if whole.trim_start_matches('0').len() > MAX_AMOUNT_DIGITS {
            return Err(MoneyError::TooLarge(s.chars().take(40).collect()));
        }
        if frac.is_some_and(|f| f.len() > 18) {
            return Err(malformed());
        }
        Decimal::from_str_exact(s).map(Amount).map_err(|_| malformed())
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AmountVisitor;
        impl de::Visitor<'_> for AmountVisitor {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an amount as a decimal string, e.g. \"2000.00\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(AmountVisitor)
    }
}

/// An amount in a currency, with no more decimals than the currency has.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let allowed = currency.minor_units();
        let normalized = amount.normalize();
        if normalized.scale() > allowed {
            return Err(MoneyError::TooManyDecimals {
                amount: amount.to_string(),
                currency,
                allowed,
            });
        }
        let mut amount = normalized;
        amount.rescale(allowed);
        Ok(Money { amount, currency })
    }

    /// An amount as a client wrote it: refused with more decimals than the currency has, trailing
    /// zeros included (`"20.000"` in EUR), where [`Money::new`] takes what computation produced.
    pub fn exact(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let allowed = currency.minor_units();
        if amount.scale() > allowed {
            return Err(MoneyError::TooManyDecimals {
                amount: amount.to_string(),
                currency,
                allowed,
            });
        }
        Money::new(amount, currency)
    }

    /// Like [`Money::exact`], and refuses zero and negative amounts.
    pub fn exact_positive(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        Money::exact(amount, currency)
    }

    /// Like [`Money::new`], and refuses zero and negative amounts.
    pub fn positive(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        Money::new(amount, currency)
    }

    pub fn zero(currency: Currency) -> Self {
        Money::new(Decimal::ZERO, currency).expect("zero fits every currency")
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount as JSON carries it: a string with exactly the currency's decimals.
    pub fn amount_string(&self) -> String {
        self.amount.to_string()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One format in every message: the currency's decimals ("1500.00 EUR").
        write!(f, "{} {}", format_amount(self.amount, self.currency), self.currency)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Formats a stored amount for JSON with its currency's decimals.
pub(crate) fn format_amount(amount: Decimal, currency: Currency) -> String {
    let mut d = amount.round_dp_with_strategy(
        currency.minor_units(),
        rust_decimal::RoundingStrategy::MidpointNearestEven,
    );
    d.rescale(currency.minor_units());
    d.to_string()
}

/// Money as JSON: `{"amount": "2000.00", "currency": "EUR"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct MoneyView {
    #[schema(example = "2000.00")]
    pub amount: String,
    #[schema(example = "EUR")]
    pub currency: String,
}

impl From<Money> for MoneyView {
    fn from(m: Money) -> Self {
        MoneyView {
            amount: m.amount_string(),
            currency: m.currency().code().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(s: &str) -> Result<Decimal, MoneyError> {
        s.parse::<Amount>().map(Amount::value)
    }

    #[test]
    fn parses_plain_decimals_only() {
        assert_eq!(amount("2000.00").unwrap(), Decimal::new(200000, 2));
        assert_eq!(amount("7").unwrap(), Decimal::new(7, 0));
        assert_eq!(amount("-1.5").unwrap(), Decimal::new(-15, 1));
        for bad in [
            "", ".", "1.", ".5", "1e3", "+1", " 1", "1 ", "1,00", "0x10", "NaN", "1.2.3", "--1", "١٢",
        ] {
            assert!(matches!(amount(bad), Err(MoneyError::Malformed(_))), "{bad:?} accepted");
        }
        assert!(matches!(amount("1234567890123456"), Err(MoneyError::TooLarge(_))));
        assert!(amount("000000000000000000001.00").is_ok());
    }

    #[test]
    fn json_numbers_are_refused() {
        assert!(serde_json::from_str::<Amount>("10").is_err());
        assert!(serde_json::from_str::<Amount>("10.5").is_err());
        assert_eq!(
            serde_json::from_str::<Amount>("\"10.50\"").unwrap().value(),
            Decimal::new(1050, 2)
        );
    }

    #[test]
    fn money_refuses_extra_decimals_instead_of_rounding() {
        let eur = Currency::EUR;
        assert_eq!(Money::new(Decimal::new(12, 1), eur).unwrap().amount_string(), "1.20");
        assert_eq!(Money::new(Decimal::new(12000, 4), eur).unwrap().amount_string(), "1.20");
        assert!(matches!(
            Money::new(Decimal::new(1201, 3), eur),
            Err(MoneyError::TooManyDecimals { allowed: 2, .. })
        ));
        let jpy = Currency::parse("JPY").unwrap();
        assert!(Money::new(Decimal::new(15, 1), jpy).is_err());
        assert_eq!(Money::new(Decimal::new(15, 0), jpy).unwrap().amount_string(), "15");
        assert_eq!(Money::positive(Decimal::ZERO, eur), Err(MoneyError::NotPositive));
    }

    #[test]
    fn currencies_are_iso_codes_with_minor_units() {
        assert_eq!(Currency::parse("EUR").unwrap().minor_units(), 2);
        assert_eq!(Currency::parse("BHD").unwrap().minor_units(), 3);
        for bad in ["eur", "EU", "EURO", "XAU", "ZZZ", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
