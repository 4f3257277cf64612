//! Where a ballot's seed comes from (docs/ballot.md). The seed must stay secret until the close,
//! from database readers too (a backup, a replica, a dump): otherwise whoever reads it computes
//! the draw and can pledge, or withdraw, to win it. So it is not stored while the offer is open:
//! it is derived from a server secret, `ballot.seed_key`, and a random nonce stored with the
//! offer: `seed = HMAC-SHA256(seed_key, "crowdledger/ballot-seed/v1" ‖ offer id ‖ nonce)`. The
//! commitment `sha256(seed)` is published at open as before, and the seed itself is stored (and
//! revealed) when the draw is made.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::TryRngCore;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;
use uuid::Uuid;

use super::{Offer, allocation};
use crate::clock::ClockMode;

/// A shorter key would be easier to guess than the seed it protects.
pub(crate) const MIN_KEY_BYTES: usize = 32;

/// The key used with the manual clock when none is configured: sandboxes and tests need no
/// setting, and nothing of value rides on their draws. Never used with the system clock.
const DEVELOPMENT_KEY: &[u8] = b"crowdledger development ballot seed key: manual clock only";

const DOMAIN: &[u8] = b"crowdledger/ballot-seed/v1";

/// The server secret ballot seeds are derived from (`ballot.seed_key`). Its `Debug` shows
/// nothing of it.
/// Shared, not copied: the app's state (which holds it) is cloned for every request, and a
/// copied secret would be allocated and wiped each time.
#[derive(Clone)]
pub struct SeedKey(Arc<SecretSlice<u8>>);

impl std::fmt::Debug for SeedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeedKey([REDACTED])")
    }
}

/// Why a configured `ballot.seed_key` is refused (the message never holds the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ballot.seed_key must be standard base64 of at least {MIN_KEY_BYTES} bytes")]
pub struct BadSeedKey;

impl SeedKey {
    /// A key from its configured form: standard base64 of at least [`MIN_KEY_BYTES`] bytes.
    pub fn parse(base64: &str) -> Result<SeedKey, BadSeedKey> {
        let bytes = STANDARD.decode(base64.trim()).map_err(|_| BadSeedKey)?;
        if bytes.len() < MIN_KEY_BYTES {
            return Err(BadSeedKey);
        }
        Ok(SeedKey(Arc::new(bytes.into())))
    }

    /// The configured key; without one, the development key under the manual clock, and none
    /// under the system clock (ballot offers then cannot open).
    pub fn configured(key: Option<&SecretString>, clock: ClockMode) -> Option<SeedKey> {
        match key {
            Some(key) => Some(SeedKey::parse(key.expose_secret()).expect("validated when the settings were loaded")),
            None if clock == ClockMode::Manual => Some(SeedKey(Arc::new(DEVELOPMENT_KEY.to_vec().into()))),
            None => None,
        }
    }

    /// The seed of `offer`'s draw for this nonce.
    pub fn seed(&self, offer: Uuid, nonce: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret()).expect("HMAC takes keys of any length");
        mac.update(DOMAIN);
        mac.update(offer.as_bytes());
        mac.update(nonce);
        mac.finalize().into_bytes().to_vec()
    }
}

/// Why a ballot cannot be committed to or drawn.
#[derive(Debug, thiserror::Error)]
pub enum BallotError {
    /// No `ballot.seed_key` under the system clock: ballot offers cannot open (409).
    #[error("ballot offers need ballot.seed_key to be configured")]
    KeyMissing,
    #[error("random source: {0}")]
    Random(rand::rand_core::OsError),
    /// The key was changed since the offer opened: the draw could not be checked against its
    /// commitment.
    #[error("the ballot seed of offer {0} does not match its commitment: ballot.seed_key changed since it opened")]
    SeedMismatch(Uuid),
}

/// At open: a new nonce, and the commitment to the seed it gives. Neither lets anyone without
/// the key compute the seed.
pub fn commit(key: Option<&SeedKey>, offer: Uuid) -> Result<([u8; 32], String), BallotError> {
    let key = key.ok_or(BallotError::KeyMissing)?;
    let mut nonce = [0u8; 32];
    OsRng.try_fill_bytes(&mut nonce).map_err(BallotError::Random)?;
    Ok((nonce, allocation::commitment(&key.seed(offer, &nonce))))
}

/// At the draw: the seed committed to at open. An offer opened before seeds were derived
/// (migration 0023) holds its seed. A derived seed that does not match the commitment (the key
/// was changed since the open) is refused: the draw could not be checked against it.
pub(crate) fn seed_for_draw(key: Option<&SeedKey>, offer: &Offer) -> Result<Vec<u8>, BallotError> {
    let Some(nonce) = &offer.ballot_nonce else {
        return Ok(offer
            .ballot_seed
            .clone()
            .expect("ballot offers opened before migration 0023 hold their seed"));
    };
    let seed = key.ok_or(BallotError::KeyMissing)?.seed(offer.id, nonce);
    if offer.ballot_commitment.as_deref() != Some(allocation::commitment(&seed).as_str()) {
        return Err(BallotError::SeedMismatch(offer.id));
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SeedKey {
        SeedKey::parse(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn keys_are_base64_of_32_bytes_or_more_and_never_printed() {
        assert_eq!(SeedKey::parse("not base64!").unwrap_err(), BadSeedKey);
        assert_eq!(SeedKey::parse(&STANDARD.encode([1u8; 31])).unwrap_err(), BadSeedKey);
        let encoded = STANDARD.encode([0xabu8; 48]);
        let k = SeedKey::parse(&encoded).unwrap();
        let printed = format!("{k:?} {k:#?}");
        assert!(!printed.contains(&encoded) && !printed.contains("abab"), "{printed}");
    }

    #[test]
    fn the_seed_depends_on_the_key_the_offer_and_the_nonce() {
        let (offer, nonce) = (Uuid::now_v7(), [9u8; 32]);
        let seed = key(1).seed(offer, &nonce);
        assert_eq!(seed.len(), 32);
        assert_eq!(seed, key(1).seed(offer, &nonce));
        assert_ne!(seed, key(2).seed(offer, &nonce));
        assert_ne!(seed, key(1).seed(Uuid::now_v7(), &nonce));
        assert_ne!(seed, key(1).seed(offer, &[8u8; 32]));
        assert_ne!(seed.as_slice(), nonce.as_slice());
    }

    #[test]
    fn opening_needs_a_key() {
        let err = commit(None, Uuid::now_v7()).unwrap_err();
        assert!(matches!(err, BallotError::KeyMissing), "{err}");
        let (nonce, commitment) = commit(Some(&key(1)), Uuid::nil()).unwrap();
        assert_eq!(commitment, allocation::commitment(&key(1).seed(Uuid::nil(), &nonce)));
    }
}
