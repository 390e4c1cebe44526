//! Request bodies read strictly: an object that names a key twice is
//! refused. `serde_json::Value` keeps the last of them, so before this
//! `{"id": "a", "id": "b"}` created `b`; a request that says two things is
//! now refused instead of guessed at.

use std::fmt;

use serde::{
    de::{Error as _, MapAccess, SeqAccess, Visitor},
    Deserialize, Deserializer,
};
use serde_json::{Map, Number, Value};

/// A JSON value with no duplicate key in any of its objects.
#[derive(Debug, PartialEq)]
pub struct StrictJson(pub Value);

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictJson(v) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate field `{key}`")));
            }
            object.insert(key, v);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn read(s: &str) -> Result<Value, String> {
        serde_json::from_str::<StrictJson>(s)
            .map(|StrictJson(v)| v)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_what_value_reads() {
        for s in [
            r#"{"op": "create_vpc", "id": "v", "cidr": "10.0.0.0/16"}"#,
            r#"{"a": [1, -2, 3.5, true, null, "x", {"b": {}}], "c": 18446744073709551615}"#,
            "[]",
            "null",
            r#""é\u00e9""#,
        ] {
            let value: Value = serde_json::from_str(s).unwrap();
            assert_eq!(read(s), Ok(value), "{s}");
        }
    }

    #[test]
    fn a_key_named_twice_is_refused_at_any_depth() {
        for (s, key) in [
            (r#"{"id": "a", "cidr": "10.0.0.0/16", "id": "b"}"#, "id"),
            (r#"{"x": [{"k": 1, "k": 1}]}"#, "k"),
            (r#"{"m": {"n": {"o": 1, "o": 2}}}"#, "o"),
        ] {
            let err = read(s).unwrap_err();
            assert!(
                err.contains(&format!("duplicate field `{key}`")),
                "{s}: {err}"
            );
        }
        assert_eq!(
            read(r#"{"a": {"k": 1}, "b": {"k": 1}}"#).map(|_| ()),
            Ok(())
        );
        assert_eq!(read(r#"{"k": 1}"#), Ok(json!({"k": 1})));
    }
}
