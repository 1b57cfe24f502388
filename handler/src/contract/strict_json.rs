//! JSON as I-JSON (RFC 7493 §2.3): a text whose objects repeat a member name, at any depth, is refused (pure).
//!
//! RFC 8259 leaves duplicate names to the parser: serde_json keeps the last, others keep the first. A message that
//! names two vaults would then mean one thing to an upstream validator and another to us, so it is not a message.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `text` into a [`Value`], refusing duplicate member names; the error says which name and where.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Strict.deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// Builds a [`Value`] like serde_json's own, checking each object's names as it goes.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut array = Vec::new();
        while let Some(item) = items.next_element_seed(Strict)? {
            array.push(item);
        }
        Ok(Value::Array(array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(name) = members.next_key::<String>()? {
            if object.contains_key(&name) {
                return Err(de::Error::custom(format!("duplicate member name {name:?}")));
            }
            let value = members.next_value_seed(Strict)?;
            object.insert(name, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_serde_json_on_unique_names() {
        let text = r#"{"a":[1,-2,3.5,"x",true,null,{"b":{}}],"c":{"d":"\u00e9"},"e":18446744073709551615}"#;
        assert_eq!(parse(text).unwrap(), serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn refuses_a_repeated_name_at_any_depth() {
        for text in [r#"{"a":1,"a":1}"#, r#"{"k":{"v":"x","v":"y"}}"#, r#"[{"o":[{"z":0,"z":0}]}]"#] {
            let error = parse(text).unwrap_err();
            assert!(error.contains("duplicate member name"), "{text}: {error}");
        }
        // Names differing in case are different names.
        assert!(parse(r#"{"a":1,"A":2}"#).is_ok());
    }

    #[test]
    fn refuses_trailing_text_like_serde_json() {
        assert!(parse(r#"{"a":1} x"#).is_err());
        assert!(parse("").is_err());
    }
}
