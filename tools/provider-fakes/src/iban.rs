//! IBANs the fakes hand out as their providers' collection accounts, and the check of the ones
//! they are sent (by the `iban_validate` crate the service uses too).

/// A well-formed IBAN for `country`: the country's BBAN length, `bank` (four letters) where the
/// country's format starts with a bank code, digits elsewhere, mod-97 check digits. National
/// check digits inside the BBAN (FR, BE, ES) are not computed.
pub(crate) fn generate(country: &str, bank: &str, serial: u64) -> String {
    let bban = match country {
        "NL" => format!("{bank}{serial:010}"),
        "IE" => format!("{bank}{serial:014}"),
        "DE" => format!("{serial:018}"),
        "BE" => format!("{serial:012}"),
        "ES" => format!("{serial:020}"),
        _ => format!("{serial:023}"),
    };
    let rearranged = format!("{bban}{country}00");
    let remainder = rearranged.chars().fold(0u32, |acc, c| {
        let value = c.to_digit(36).expect("IBAN characters are alphanumeric");
        if value < 10 {
            (acc * 10 + value) % 97
        } else {
            (acc * 100 + value) % 97
        }
    });
    format!("{country}{:02}{bban}", 98 - remainder)
}

/// Whether `text` is an IBAN: its country's format and its mod-97 check digits, spaces allowed
/// as printed.
pub(crate) fn is_valid(text: &str) -> bool {
    text.parse::<::iban::Iban>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ibans_pass_a_validators_checks() {
        for country in ["BE", "DE", "ES", "FR", "IE", "NL"] {
            let iban = generate(country, "FAKE", 1_000_042);
            assert!(is_valid(&iban), "{iban}");
        }
    }

    #[test]
    fn a_wrong_check_digit_or_format_is_refused() {
        assert!(is_valid("FR76 3000 6000 0112 3456 7890 189"));
        assert!(!is_valid("FR77 3000 6000 0112 3456 7890 189"));
        assert!(!is_valid("FR763000600001"));
        assert!(!is_valid("not an iban"));
    }
}
