//! [`Num`]: a plan value where a number belongs, whatever was written, so that the range
//! checks can say what they got (`runs = "x"` reads as `got a string`, not serde's words).

use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A plan value where a number belongs, whatever was written, so that range checks can say what
/// they got.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Num {
    Int(i128),
    Float(f64),
    /// Not a number: what it is ("a string").
    Other(&'static str),
}

impl Num {
    pub(super) fn as_f64(self) -> Option<f64> {
        match self {
            // Only compared with small bounds: precision above 2^53 does not matter.
            Self::Int(i) => Some(i as f64),
            Self::Float(f) if f.is_finite() => Some(f),
            Self::Float(_) | Self::Other(_) => None,
        }
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            // Debug, not Display: `1e-300`, not three hundred zeros.
            Self::Float(x) => write!(f, "{x:?}"),
            Self::Other(what) => f.write_str(what),
        }
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(Num::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Num, E> {
                Ok(Num::Int(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Num, E> {
                Ok(Num::Int(i128::try_from(v).unwrap_or(i128::MAX)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num::Float(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Num, E> {
                Ok(Num::Other("a boolean"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Num, E> {
                Ok(Num::Other("a string"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Num, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Num::Other("an array"))
            }
            // toml hands date-times over as maps too.
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Num, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Num::Other("a table or date-time"))
            }
        }
        d.deserialize_any(V)
    }
}
