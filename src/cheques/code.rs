//! Cheque codes: `CHQ-XXXX-XXXX-XXXX-XXXX`, 16 Crockford base32 characters = 80 bits from the
//! operating system's random source. Only their SHA-256 is stored; 80 bits keep even that hash
//! out of reach of an offline search, and online guessing is slowed down besides (`attempts.rs`).

use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// Crockford's base32: no I, L, O or U, so a code read aloud or copied by hand survives.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const LENGTH: usize = 16;

/// A fresh code, as shown to the winner.
pub fn generate() -> String {
    let mut bytes = [0u8; LENGTH * 5 / 8];
    OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source failed");
    let mut bits = 0u32;
    let mut held = 0;
    let mut chars = Vec::with_capacity(LENGTH);
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        held += 8;
        while held >= 5 {
            held -= 5;
            chars.push(ALPHABET[((bits >> held) & 31) as usize] as char);
        }
    }
    let groups: Vec<String> = chars.chunks(4).map(|c| c.iter().collect()).collect();
    format!("CHQ-{}", groups.join("-"))
}

/// The code's canonical characters: case, spaces, dashes and the `CHQ` prefix do not matter,
/// and the look-alikes I, L (→ 1) and O (→ 0) are read as Crockford reads them. `None` when it
/// cannot be a code at all.
pub(crate) fn normalise(code: &str) -> Option<String> {
    let mut chars: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if chars.len() == LENGTH + 3 && chars.starts_with("CHQ") {
        chars.drain(..3);
    }
    let canonical: String = chars
        .chars()
        .map(|c| match c {
            'I' | 'L' => '1',
            'O' => '0',
            other => other,
        })
        .collect();
    (canonical.len() == LENGTH && canonical.bytes().all(|b| ALPHABET.contains(&b))).then_some(canonical)
}

/// What is stored and looked up: SHA-256 of the canonical characters.
pub fn hash(canonical: &str) -> Vec<u8> {
    Sha256::digest(canonical.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_fresh_well_formed_and_survive_sloppy_typing() {
        let code = generate();
        assert_eq!(code.len(), "CHQ-XXXX-XXXX-XXXX-XXXX".len());
        assert!(code.starts_with("CHQ-"));
        assert_ne!(code, generate());
        let canonical = normalise(&code).unwrap();
        assert_eq!(canonical, code[4..].replace('-', ""));
        let sloppy = format!("  chq {} ", code[4..].to_lowercase().replace('-', " "));
        assert_eq!(normalise(&sloppy).as_deref(), Some(canonical.as_str()));
        assert_eq!(normalise("CHQ-ABCD-EFGH-JKMN-PQRS"), normalise("abcdefghjkmnpqrs"));
        assert_eq!(normalise("OOOO-IIII-LLLL-0000"), normalise("0000111111110000"));
        for bad in [
            "",
            "CHQ-",
            "CHQ-ABCD-EFGH-JKMN-PQR",
            "CHQ-ABCD-EFGH-JKMN-PQRSU",
            "ABCDEFGHJKMNPQRU",
            "ÄBCDEFGHJKMNPQRS",
        ] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
        assert_eq!(hash(&canonical).len(), 32);
        assert_ne!(hash(&canonical), hash("0000000000000000"));
    }
}
