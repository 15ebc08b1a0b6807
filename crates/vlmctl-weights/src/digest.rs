//! The sha256 digest type of the lock, the verifier and the errors: a plain value at the bottom
//! of the crate (it imports nothing of the crate), so that the error type can name it without a
//! circle through the lock.

use std::fmt;
use std::str::FromStr;

/// A sha256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

impl FromStr for Sha256Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 64 {
            return Err(format!(
                "expected 64 hex digits, found {} characters",
                s.len()
            ));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| {
            let bad = s.chars().find(|c| !c.is_ascii_hexdigit()).unwrap_or('?');
            format!("not hexadecimal (found {bad:?})")
        })?;
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("write hex digits in lowercase".to_owned());
        }
        Ok(Self(out))
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
