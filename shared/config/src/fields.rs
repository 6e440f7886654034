//! The field names of a section, as serde's derive declares them: a
//! deserializer that only records the list `deserialize_struct` is given.
//! They decide which keys a section reads, so the struct is the one list.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

#[derive(Debug)]
struct Recorded;

impl fmt::Display for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Recorded {}

impl de::Error for Recorded {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Recorded
    }
}

struct Probe(&'static [&'static str]);

impl<'de> Deserializer<'de> for &mut Probe {
    type Error = Recorded;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Recorded> {
        Err(Recorded)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Recorded> {
        self.0 = fields;
        Err(Recorded)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The fields of `T` (none if it is not a struct).
pub(crate) fn of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut probe = Probe(&[]);
    let _ = T::deserialize(&mut probe);
    probe.0
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Two {
        first: u8,
        #[serde(rename = "second_one")]
        second: String,
    }

    #[test]
    fn a_structs_fields_under_their_serialized_names() {
        assert_eq!(super::of::<Two>(), ["first", "second_one"]);
        assert!(super::of::<u32>().is_empty());
    }
}
