//! Comparing a presented secret (an API key, a bearer token) with the expected one without telling, through the
//! time the comparison takes, how much of it matched or how long the expected secret is.
//!
//! The work is proportional to the length of the *presented* value only, which the client already knows: every
//! byte is compared (against zero past the end of the expected secret) and the length difference is folded into
//! the result instead of returning early. Hashing both sides first would hide the lengths as well, but would make
//! the server's work grow with the expected secret; this needs no dependency and has no early exit to remove.

use std::hint::black_box;

/// Whether `presented` equals `expected`, in time that depends on `presented.len()` alone.
///
/// The order of the arguments matters for the timing guarantee: `expected` is the server's secret, `presented`
/// what the client sent.
pub fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    // Any difference in length is a mismatch; keeping it in the accumulator avoids a branch on the secret's length.
    let mut diff = u64::from(expected.len() != presented.len());
    for (i, byte) in presented.iter().enumerate() {
        let wanted = expected.get(i).copied().unwrap_or(0);
        diff |= u64::from(black_box(wanted ^ byte));
    }
    black_box(diff) == 0
}

/// Whether `presented` equals any of `expected`. Every candidate is compared, so the timing does not say which one
/// matched.
pub fn matches_any<'a>(expected: impl IntoIterator<Item = &'a [u8]>, presented: &[u8]) -> bool {
    expected.into_iter().fold(false, |found, candidate| found | constant_time_eq(candidate, presented))
}

/// The credentials of an `Authorization: Bearer <token>` header value (the scheme is case-insensitive, as
/// RFC 7235 says), or `None` for another scheme. The one parser of bearer tokens for every server here.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether an `Authorization` header value (if any) carries `expected` as its bearer token, compared in constant
/// time.
pub fn bearer_matches(expected: &str, authorization: Option<&str>) -> bool {
    authorization.and_then(bearer_token).is_some_and(|sent| constant_time_eq(expected.as_bytes(), sent.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_parsed_once_for_everyone() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert!(bearer_matches("abc", Some("Bearer abc")));
        assert!(!bearer_matches("abc", Some("Bearer abd")));
        assert!(!bearer_matches("abc", None));
    }

    #[test]
    fn equal_values_match() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn any_difference_is_a_mismatch() {
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"Secret"));
        assert!(!constant_time_eq(b"secret", b"secret2"), "a longer value with the secret as prefix");
        assert!(!constant_time_eq(b"secret", b"secre"), "a prefix of the secret");
        assert!(!constant_time_eq(b"secret", b""));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn zero_bytes_past_the_end_do_not_match() {
        // Past the expected secret's end the presented bytes are compared with zero: the length check must still
        // refuse trailing NULs.
        assert!(!constant_time_eq(b"key", b"key\0"));
        assert!(!constant_time_eq(b"key\0", b"key"));
    }

    #[test]
    fn any_of_several_keys() {
        let keys: [&[u8]; 3] = [b"alpha", b"beta", b"gamma"];
        assert!(matches_any(keys, b"beta"));
        assert!(matches_any(keys, b"gamma"));
        assert!(!matches_any(keys, b"delta"));
        assert!(!matches_any(keys, b"bet"));
        assert!(!matches_any(std::iter::empty::<&[u8]>(), b""));
    }
}
