//! Who gets how many shares when a round succeeds. Pure functions over the funded pledges in
//! arrival order, so anyone holding the pledge list (and, for a ballot, the revealed seed) can
//! recompute the result. See docs/ballot.md.

use std::cmp::Reverse;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A funded pledge's claim: its id, its arrival number and the shares it asked for.
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    pub id: Uuid,
    pub seq: i64,
    pub shares: i64,
}

/// First come, first served: in arrival order until the cap. Reservations already keep
/// first_come rounds within the cap, so every claim is met in full there.
pub fn first_come(cap: i64, claims: &[Claim]) -> Vec<i64> {
    let order: Vec<usize> = (0..claims.len()).collect();
    fill_in_order(cap, claims, &order)
}

/// Scales every claim down to the cap in whole shares by the largest-remainder method: each gets
/// the whole part of its exact share `shares × cap / total`; the shares left over go one each to
/// the largest fractional parts, ties to the earlier pledge.
pub fn pro_rata(cap: i64, claims: &[Claim]) -> Vec<i64> {
    let total: i128 = claims.iter().map(|c| i128::from(c.shares)).sum();
    if total <= i128::from(cap) {
        return claims.iter().map(|c| c.shares).collect();
    }
    let exact: Vec<(i128, i128)> = claims
        .iter()
        .map(|c| {
            let numerator = i128::from(c.shares) * i128::from(cap);
            (numerator / total, numerator % total)
        })
        .collect();
    let mut allocated: Vec<i64> = exact.iter().map(|(whole, _)| *whole as i64).collect();
    let left = cap - allocated.iter().sum::<i64>();
    let mut by_remainder: Vec<usize> = (0..claims.len()).collect();
    by_remainder.sort_by_key(|&i| (Reverse(exact[i].1), claims[i].seq));
    for &i in by_remainder.iter().take(left as usize) {
        allocated[i] += 1;
    }
    allocated
}

/// `sha256(seed)`, hex: published when a ballot round opens.
pub fn commitment(seed: &[u8]) -> String {
    hex::encode(Sha256::digest(seed))
}

/// A pledge's place in the draw: `HMAC-SHA256(key = seed, message = pledge id as lowercase
/// hyphenated text)`, hex. Pledges are drawn in increasing order of this key.
pub(crate) fn draw_key(seed: &[u8], pledge: Uuid) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(seed).expect("HMAC takes keys of any length");
    mac.update(pledge.hyphenated().to_string().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The ballot: pledges in draw order, each met in full while shares remain; the pledge that
/// crosses the cap gets what is left; those after it get nothing.
pub fn ballot(cap: i64, claims: &[Claim], seed: &[u8]) -> Vec<i64> {
    let mut order: Vec<usize> = (0..claims.len()).collect();
    let keys: Vec<String> = claims.iter().map(|c| draw_key(seed, c.id)).collect();
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    fill_in_order(cap, claims, &order)
}

fn fill_in_order(cap: i64, claims: &[Claim], order: &[usize]) -> Vec<i64> {
    let mut allocated = vec![0; claims.len()];
    let mut left = cap;
    for &i in order {
        let take = claims[i].shares.min(left);
        allocated[i] = take;
        left -= take;
    }
    allocated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(shares: &[i64]) -> Vec<Claim> {
        shares
            .iter()
            .enumerate()
            .map(|(i, &s)| Claim {
                id: Uuid::from_u128(i as u128 + 1),
                seq: i as i64 + 1,
                shares: s,
            })
            .collect()
    }

    #[test]
    fn pro_rata_uses_largest_remainders_and_earlier_pledges_break_ties() {
        // 3 pledges of 10 for a cap of 10: 3.33 each; one share left goes to the earliest.
        assert_eq!(pro_rata(10, &claims(&[10, 10, 10])), [4, 3, 3]);
        // Exact quotas 6.0, 2.4, 1.6 → 6, 2, 1 and the left-over share to the .6 remainder.
        assert_eq!(pro_rata(10, &claims(&[30, 12, 8])), [6, 2, 2]);
        // Undersubscribed: everyone in full.
        assert_eq!(pro_rata(100, &claims(&[30, 12, 8])), [30, 12, 8]);
        let big = claims(&[7; 1000]);
        let a = pro_rata(999, &big);
        assert_eq!(a.iter().sum::<i64>(), 999);
        assert!(a.iter().all(|&x| x == 0 || x == 1));
    }

    #[test]
    fn ballot_fills_the_cap_in_draw_order() {
        let seed = b"0123456789abcdef0123456789abcdef";
        let c = claims(&[5, 5, 5, 5]);
        let a = ballot(12, &c, seed);
        assert_eq!(a.iter().sum::<i64>(), 12);
        assert_eq!(a.iter().filter(|&&x| x == 5).count(), 2);
        assert_eq!(a.iter().filter(|&&x| x == 2).count(), 1);
        // Deterministic: the same seed gives the same draw.
        assert_eq!(a, ballot(12, &c, seed));
        let mut order: Vec<usize> = (0..4).collect();
        order.sort_by_key(|&i| draw_key(seed, c[i].id));
        assert_eq!(a[order[0]], 5);
        assert_eq!(a[order[3]], 0);
    }

    /// The worked example of docs/ballot.md.
    #[test]
    fn the_documented_example() {
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").unwrap();
        assert_eq!(
            commitment(&seed),
            "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"
        );
        let id = |n: u128| Uuid::parse_str(&format!("0194a1b2-0000-7000-8000-{n:012}")).unwrap();
        let claims: Vec<Claim> = [40, 30, 50, 20]
            .iter()
            .enumerate()
            .map(|(i, &shares)| Claim {
                id: id(i as u128 + 1),
                seq: i as i64 + 1,
                shares,
            })
            .collect();
        assert!(draw_key(&seed, claims[0].id).starts_with("b5f27f194cc16e6c"));
        assert_eq!(ballot(100, &claims, &seed), [30, 0, 50, 20]);
    }

    #[test]
    fn commitment_is_sha256_of_the_seed() {
        assert_eq!(
            commitment(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
