//! Small field types and text rules every domain parses its input with (parse, don't validate): a
//! country code, an e-mail address, and the two shapes of free text (a single line, a long text).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

/// A field that breaks a rule; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldError(pub String);

/// A single line of text (a name, a legal form, a territory): surrounding whitespace trimmed,
/// then 1 to `max` characters, no control characters, and shown as it is stored (see
/// [`deceptive`]).
pub fn line(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    let value = value.trim();
    let count = value.chars().count();
    if count == 0 || count > max {
        return Err(FieldError(format!("{field} has 1 to {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError(format!(
            "{field} is a single line without control characters"
        )));
    }
    if let Some(why) = deceptive(value) {
        return Err(FieldError(format!("{field} {why}")));
    }
    Ok(value.to_string())
}

/// Marks that reorder the text around them when it is shown (bidirectional embeddings,
/// overrides, isolates and marks): a name holding one can display as another name.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// Zero-width characters with no use in a single line: zero-width space, word joiner and the
/// invisible operators, byte-order mark.
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200b}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// The joiners (ZWNJ, ZWJ) shape the letters on either side: Persian and Indic words and emoji
/// sequences need them. Anywhere else they only hide a difference.
fn is_joiner(c: char) -> bool {
    matches!(c, '\u{200c}' | '\u{200d}')
}

/// Characters that show nothing by themselves: a line of only these looks empty.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || is_joiner(c)
        || matches!(c, '\u{00ad}' | '\u{034f}' | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}'
            | '\u{180b}'..='\u{180f}' | '\u{fe00}'..='\u{fe0f}' | '\u{e0000}'..='\u{e0fff}')
}

/// Whether `c` changes how text shows without showing itself, other than an ordinary space.
pub(crate) fn is_hidden(c: char) -> bool {
    is_bidi_control(c) || is_zero_width(c) || (is_invisible(c) && !c.is_whitespace())
}

/// A single line naming something by its characters alone (a URL): as [`line`], and with no
/// hidden character at all, joiners included.
pub fn address(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    let value = line(field, value, max)?;
    if value.chars().any(is_hidden) {
        return Err(FieldError(format!("{field} holds an invisible character")));
    }
    Ok(value)
}

/// Why a line would not show as what it holds, if it would not: the tricks of spoofed names.
pub(crate) fn deceptive(value: &str) -> Option<&'static str> {
    let chars: Vec<char> = value.chars().collect();
    if chars.iter().any(|&c| is_bidi_control(c)) {
        return Some("holds a bidirectional control character");
    }
    if chars.iter().any(|&c| is_zero_width(c)) {
        return Some("holds a zero-width character");
    }
    let stray_joiner = chars.iter().enumerate().any(|(i, &c)| {
        let shown = |n: Option<&char>| n.is_some_and(|&n| !is_invisible(n));
        is_joiner(c) && !(i > 0 && shown(chars.get(i - 1)) && shown(chars.get(i + 1)))
    });
    if stray_joiner {
        return Some("holds a joiner that does not join two characters");
    }
    if chars.iter().all(|&c| is_invisible(c)) {
        return Some("shows nothing");
    }
    None
}

/// A long text (a description): at most `max` characters, possibly empty; line breaks allowed,
/// NUL not (Postgres text cannot hold it).
pub fn text(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(FieldError(format!("{field} has at most {max} characters")));
    }
    if value.contains('\0') {
        return Err(FieldError(format!("{field} contains a NUL character")));
    }
    Ok(value.to_string())
}

/// The ISO 3166-1 alpha-2 codes assigned today, plus `XK` (Kosovo), which the code leaves
/// user-assigned but the EU and banks use.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ \
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER \
    ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM \
    IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF \
    MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK \
    PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD \
    TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";

/// An ISO 3166-1 alpha-2 country code in capitals: `FR`, `BE`. Not `fr`, not `FRA`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

/// In the document, the codes [`Country::parse`] takes, so that a client (or a fuzzer) knows
/// that `ZZ` is refused though it has the shape of one.
impl PartialSchema for Country {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .description(Some("An ISO 3166-1 alpha-2 country code in capitals"))
            .enum_values(Some(COUNTRIES.split_ascii_whitespace()))
            .examples(["FR"])
            .into()
    }
}

impl ToSchema for Country {}

impl Country {
    pub fn parse(code: &str) -> Result<Self, FieldError> {
        let refused = || {
            FieldError(format!(
                "'{}' is not an ISO 3166-1 alpha-2 country code in capitals, e.g. FR",
                code.chars().take(8).collect::<String>()
            ))
        };
        let bytes: [u8; 2] = code.as_bytes().try_into().map_err(|_| refused())?;
        let known = bytes.iter().all(u8::is_ascii_uppercase) && COUNTRIES.split_ascii_whitespace().any(|c| c == code);
        if known { Ok(Country(bytes)) } else { Err(refused()) }
    }

    pub fn as_str(&self) -> &str {
        // Built only from two ASCII capitals.
        std::str::from_utf8(&self.0).expect("a country code is ASCII")
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Country {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Country {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Country::parse(&code).map_err(de::Error::custom)
    }
}

/// A text field of an RFC 4180 CSV export: a field a spreadsheet would run as a formula (`=`,
/// `+`, `-`, `@` first) gets a leading `'`, and one with a comma, quote or line break is quoted.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Counts {
        #[serde(deserialize_with = "whole")]
        shares: i64,
        #[serde(default, deserialize_with = "whole_opt")]
        window: Option<i32>,
    }

    #[test]
    fn whole_numbers_are_taken_with_or_without_a_zero_fraction() {
        let c: Counts = serde_json::from_str(r#"{"shares": 208.0, "window": 60.0}"#).unwrap();
        assert_eq!((c.shares, c.window), (208, Some(60)));
        let c: Counts = serde_json::from_str(r#"{"shares": 3}"#).unwrap();
        assert_eq!((c.shares, c.window), (3, None));
        let c: Counts = serde_json::from_str(r#"{"shares": 3, "window": null}"#).unwrap();
        assert_eq!(c.window, None);
        for bad in [
            r#"{"shares": 2.5}"#,
            r#"{"shares": "3"}"#,
            r#"{"shares": 1e300}"#,
            r#"{"shares": 1, "window": 3000000000}"#,
        ] {
            assert!(serde_json::from_str::<Counts>(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn countries_are_assigned_alpha_2_codes_in_capitals() {
        for good in ["FR", "BE", "DE", "GB", "XK", "AD", "ZW"] {
            assert_eq!(Country::parse(good).unwrap().as_str(), good);
        }
        for bad in ["fr", "Fr", "FRA", "F", "", "ZZ", "UK", "EU", "F1", "ÉS"] {
            assert!(Country::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(COUNTRIES.split_ascii_whitespace().count(), 250);
    }

    #[test]
    fn ibans_hold_their_country_format_and_check_digits() {
        let iban = Iban::parse("iban", " FR76 3000 6000 0112 3456 7890 189 ").unwrap();
        assert_eq!(iban.as_str(), "FR7630006000011234567890189");
        assert_eq!(iban.masked(), "FR76•••••••••••••••••••0189");
        assert_eq!(
            Iban::parse("iban", "DE44500105175407324931").unwrap().masked(),
            "DE44••••••••••••••4931"
        );
        for bad in [
            "FR7630006000011234567890188", // a check digit off
            "FR763000600001123456789018",  // a character short for France
            "DE44500105175407324932",      // one changed digit
            "XX44500105175407324931",      // no such country
            "fr7630006000011234567890189", // lower case
            "",
            "FR76",
        ] {
            assert!(Iban::parse("iban", bad).is_err(), "{bad:?} accepted");
        }
        let err = Iban::parse("bank_account.iban", "FR7630006000011234567890188").unwrap_err();
        assert!(err.0.starts_with("bank_account.iban is not an IBAN"), "{err}");
    }

    #[test]
    fn bics_have_a_bank_a_country_and_a_place() {
        for good in ["AGRIFRPP", "AGRIFRPP882", "DEUTDEFF", "BNPAFRPPXXX"] {
            assert_eq!(Bic::parse("bic", good).unwrap().as_str(), good);
        }
        for bad in [
            "agrifrpp",
            "AGRIZZPP",
            "AGRIFRP",
            "AGRIFRPP88",
            "AGR1FRPP",
            "AGRIFRPP-XX",
            "",
            "AGRI€PP",
            "AGRIFRÉP",
        ] {
            assert!(Bic::parse("bic", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lines_are_trimmed_and_bounded() {
        assert_eq!(line("name", "  Crois/Sens ", 200).unwrap(), "Crois/Sens");
        assert!(line("name", "   ", 200).is_err());
        assert!(line("name", "a\nb", 200).is_err());
        assert!(line("name", &"é".repeat(201), 200).is_err());
        assert!(line("name", &"é".repeat(200), 200).is_ok());
        assert_eq!(text("description", "", 10).unwrap(), "");
        assert_eq!(text("description", "a\nb", 10).unwrap(), "a\nb");
        assert!(text("description", "a\0", 10).is_err());
        assert!(text("description", &"x".repeat(11), 10).is_err());
    }

    #[test]
    fn lines_show_what_they_hold() {
        for spoofed in [
            "Crois\u{202e}Sens",
            "Crois\u{2066}Sens\u{2069}",
            "Crois\u{200f}Sens",
            "Crois\u{200b}Sens",
            "\u{feff}Crois",
            "\u{200d}",
            "\u{200d}Crois",
            "Crois\u{200c}",
            "Crois\u{200d}\u{200d}Sens",
            "Crois \u{200d} Sens",
            "\u{3164}",
            "\u{fe0f}\u{ad}",
        ] {
            assert!(line("name", spoofed, 200).is_err(), "{spoofed:?} accepted");
        }
        for real in [
            "مریم\u{200c}ها",
            "क्\u{200d}ष",
            "👩\u{200d}🌾 Ferme",
            "❤\u{fe0f}",
            "Zoë",
            "東京",
        ] {
            assert_eq!(line("name", real, 200).as_deref(), Ok(real));
        }
    }
}

/// An e-mail address of the usual shape, `local@domain.tld`, at most 254 bytes. Mirrors the
/// `investors_email_format` check; whether mail reaches it is for the platform to find out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Email(String);

impl Email {
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let value = value.trim();
        let refused = || FieldError("email is not an address of the shape name@domain.tld".into());
        if value.is_empty() || value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(refused());
        }
        let (local, domain) = value.split_once('@').ok_or_else(refused)?;
        // A dot with something on each side, somewhere in the domain.
        let dotted = domain
            .char_indices()
            .any(|(i, c)| c == '.' && i > 0 && i + 1 < domain.len());
        if local.is_empty() || domain.contains('@') || !dotted || value.chars().any(is_hidden) {
            return Err(refused());
        }
        Ok(Email(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An IBAN whose country's format and mod-97 check digits hold (the `iban_validate` crate), kept
/// in its electronic form (`FR7630006000011234567890189`); given as on paper, in groups of four,
/// it is taken too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iban(String);

impl Iban {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        use iban::IbanLike;
        let iban: iban::Iban = value.trim().parse().map_err(|_| {
            FieldError(format!(
                "{field} is not an IBAN: its country's format and its check digits must hold"
            ))
        })?;
        Ok(Iban(iban.electronic_str().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// As shown: the country and check digits, then only the last four characters
    /// (`FR76•••••••••••••••••••0189`), enough to tell accounts apart, not to pay into one.
    pub fn masked(&self) -> String {
        let s = &self.0;
        // Every IBAN has at least 15 ASCII characters (Norway's).
        format!("{}{}{}", &s[..4], "•".repeat(s.len() - 8), &s[s.len() - 4..])
    }
}

/// A BIC (ISO 9362): four letters for the bank, a country code, two letters or digits for the
/// place, and optionally three for the branch; capitals, as banks write them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bic(String);

impl Bic {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let value = value.trim();
        let b = value.as_bytes();
        let alnum = |c: &u8| c.is_ascii_uppercase() || c.is_ascii_digit();
        let shaped = value.is_ascii()
            && matches!(b.len(), 8 | 11)
            && b[..4].iter().all(u8::is_ascii_uppercase)
            && Country::parse(&value[4..6]).is_ok()
            && b[6..].iter().all(alnum);
        if !shaped {
            return Err(FieldError(format!(
                "{field} is not a BIC: 8 or 11 capitals and digits, the 5th and 6th a country code (e.g. AGRIFRPP)"
            )));
        }
        Ok(Bic(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `#[serde(deserialize_with = "crate::fields::whole")]` on a body's integer field: the JSON
/// number as an integer, also when written with a zero fraction (`5.0`), which JSON Schema (and
/// so the OpenAPI document's `type: integer`) counts as an integer; a fraction or a value out of
/// the field's range is refused. Money is never a JSON number, so nothing is rounded here.
pub fn whole<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    struct Whole;
    impl de::Visitor<'_> for Whole {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &"an integer in range"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            // Exact for every integral float below 2^53, far beyond any count this API takes.
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(v as i64)
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
    }
    let int = d.deserialize_any(Whole)?;
    T::try_from(int).map_err(|_| de::Error::invalid_value(de::Unexpected::Signed(int), &"an integer in range"))
}

/// [`whole`] for an optional field (absent or null is `None`); needs `#[serde(default)]`.
pub fn whole_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    #[derive(Deserialize)]
    struct Whole<T: TryFrom<i64>>(#[serde(deserialize_with = "whole")] T);
    Ok(Option::<Whole<T>>::deserialize(d)?.map(|w| w.0))
}
