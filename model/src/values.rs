//! PostgreSQL text-format values to JSON and JSON parameters to text format.
//!
//! The mapping, by result type:
//! - `bool` → `true`/`false`; `int2`, `int4`, `int8`, `oid` → numbers (int8 exact
//!   in JSON; JavaScript clients beyond 2^53 should read it with a big-int parser);
//! - `float4`, `float8` → numbers, except `NaN` and `±Infinity` which stay strings;
//! - `numeric` → string, so no digit is lost;
//! - `json`, `jsonb` → the JSON value itself;
//! - one-dimensional and nested arrays of these → JSON arrays;
//! - everything else (text, bytea as `\x…` hex, timestamps in ISO form with
//!   zone, uuid, intervals, …) → the PostgreSQL text form as a string;
//!   extensions' types too, but for those [`extension_value`] shapes
//!   (pgvector's `vector` as an array of numbers, hstore as an object),
//!   which the engine applies knowing which extension a result type is.
//!
//! Parameters: `null` → SQL NULL, booleans and numbers → their literal, strings
//! as given, arrays → an array literal (`{…}`), objects → JSON text.

use serde_json::{Map, Number, Value};

pub mod oid {
    pub const BOOL: i32 = 16;
    pub const BYTEA: i32 = 17;
    pub const INT8: i32 = 20;
    pub const INT2: i32 = 21;
    pub const INT4: i32 = 23;
    pub const TEXT: i32 = 25;
    pub const OID: i32 = 26;
    pub const JSON: i32 = 114;
    pub const FLOAT4: i32 = 700;
    pub const FLOAT8: i32 = 701;
    pub const VARCHAR: i32 = 1043;
    pub const NUMERIC: i32 = 1700;
    pub const JSONB: i32 = 3802;
}

/// How the API gives a value of one PostgreSQL type (by the type's OID as
/// a result column carries it: a domain's is its base type's) in JSON —
/// what [`text_to_json`] makes of it, and so what `tidelake types` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Boolean,
    /// `int2`, `int4`, `int8`, `oid`: a JSON number (the OID says its width).
    Integer(i32),
    /// `float4`, `float8`: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
    Float,
    /// `json`, `jsonb`: the JSON value itself.
    Json,
    /// The PostgreSQL text form, as a string (`numeric`, text, dates and
    /// times, uuid, bytea as `\x…`, enums, arrays of other types, …).
    Text,
    /// An array of these (nested for more dimensions; elements may be null);
    /// one with explicit bounds (`[0:1]={…}`) stays text.
    Array(Box<Shape>),
}

impl Shape {
    /// The shape of values of the type `type_oid`.
    pub fn of(type_oid: i32) -> Shape {
        match type_oid {
            oid::BOOL => Shape::Boolean,
            oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => Shape::Integer(type_oid),
            oid::FLOAT4 | oid::FLOAT8 => Shape::Float,
            oid::JSON | oid::JSONB => Shape::Json,
            other => match array_element(other) {
                Some(element) => Shape::Array(Box::new(Shape::of(element))),
                None => Shape::Text,
            },
        }
    }
}

/// The element type of a PostgreSQL array type, for the array types we decode.
fn array_element(type_oid: i32) -> Option<i32> {
    Some(match type_oid {
        1000 => oid::BOOL,
        1001 => oid::BYTEA,
        1005 => oid::INT2,
        1007 => oid::INT4,
        1016 => oid::INT8,
        1028 => oid::OID,
        1021 => oid::FLOAT4,
        1022 => oid::FLOAT8,
        1231 => oid::NUMERIC,
        199 => oid::JSON,
        3807 => oid::JSONB,
        // text-like, date/time, uuid, inet …: elements stay strings.
        1009 | 1014 | 1015 | 1182 | 1183 | 1115 | 1185 | 1270 | 1187 | 2951 | 1041 | 651
        | 1040 => oid::TEXT,
        _ => return None,
    })
}

/// Convert one text-format value of type `type_oid` to JSON.
pub fn text_to_json(text: &str, type_oid: i32) -> Value {
    shaped(text, &Shape::of(type_oid))
}

fn shaped(text: &str, shape: &Shape) -> Value {
    match shape {
        Shape::Boolean => Value::Bool(text == "t"),
        Shape::Integer(_) => text
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.parse::<u64>().map(Value::from))
            .unwrap_or_else(|_| Value::String(text.to_owned())),
        Shape::Float => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(text.to_owned())),
        Shape::Json => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
        Shape::Array(element) if text.starts_with('{') => {
            parse_array(text, element).unwrap_or_else(|| Value::String(text.to_owned()))
        }
        Shape::Array(_) | Shape::Text => Value::String(text.to_owned()),
    }
}

/// A type's name without schema or modifier (`vector` for
/// `public.vector(3)`), as [`extension_value`] and [`extension_shape`] take it.
pub fn bare_type_name(type_name: &str) -> &str {
    let name = type_name.split('(').next().unwrap_or_default();
    name.rsplit('.').next().unwrap_or(name).trim_matches('"')
}

/// The shape [`extension_value`] gives values of an extension's type, None
/// where it leaves them text.
pub fn extension_shape(extension: &str, type_name: &str) -> Option<Shape> {
    match (extension, bare_type_name(type_name)) {
        ("vector", "vector" | "halfvec") => Some(Shape::Array(Box::new(Shape::Float))),
        ("hstore", "hstore") => Some(Shape::Json),
        _ => None,
    }
}

/// A value of an extension's type, by the extension and the type's name,
/// as JSON: pgvector's `vector` and `halfvec` as arrays of numbers, hstore
/// as an object of strings (a NULL value as null); None for every other
/// type, and for text that is not what the type writes (its text form
/// stands then).
pub fn extension_value(extension: &str, type_name: &str, text: &str) -> Option<Value> {
    match (extension, bare_type_name(type_name)) {
        ("vector", "vector" | "halfvec") => {
            let numbers: Vec<f64> = serde_json::from_str(text).ok()?;
            Some(Value::Array(numbers.into_iter().map(|n| Number::from_f64(n).map(Value::Number)).collect::<Option<_>>()?))
        }
        ("hstore", "hstore") => parse_hstore(text).map(Value::Object),
        _ => None,
    }
}

/// hstore's text form, `"k"=>"v", "n"=>NULL`, as a JSON object.
fn parse_hstore(text: &str) -> Option<Map<String, Value>> {
    fn quoted(rest: &mut &str) -> Option<String> {
        let mut chars = rest.strip_prefix('"')?.char_indices();
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    *rest = &rest[i + 2..];
                    return Some(out);
                }
                '\\' => out.push(chars.next()?.1),
                c => out.push(c),
            }
        }
        None
    }
    let mut map = Map::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let key = quoted(&mut rest)?;
        rest = rest.trim_start().strip_prefix("=>")?.trim_start();
        let value = match rest.strip_prefix("NULL") {
            Some(after) => {
                rest = after;
                Value::Null
            }
            None => Value::String(quoted(&mut rest)?),
        };
        map.insert(key, value);
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.is_empty() {
            return None;
        }
    }
    Some(map)
}

/// Parse an array literal such as `{1,2,NULL}` or `{{"a b",c},{d,e}}`.
fn parse_array(text: &str, element: &Shape) -> Option<Value> {
    let mut parser = ArrayParser {
        bytes: text.as_bytes(),
        pos: 0,
        element,
    };
    let value = parser.array()?;
    (parser.pos == parser.bytes.len()).then_some(value)
}

struct ArrayParser<'a> {
    bytes: &'a [u8],
    pos: usize,
    element: &'a Shape,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn array(&mut self) -> Option<Value> {
        if self.peek()? != b'{' {
            return None;
        }
        self.pos += 1;
        let mut items = Vec::new();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Value::Array(items));
        }
        loop {
            let item = match self.peek()? {
                b'{' => self.array()?,
                b'"' => {
                    let raw = self.quoted()?;
                    shaped(&raw, self.element)
                }
                _ => {
                    let start = self.pos;
                    while !matches!(self.peek()?, b',' | b'}') {
                        self.pos += 1;
                    }
                    let raw = std::str::from_utf8(&self.bytes[start..self.pos]).ok()?;
                    if raw.eq_ignore_ascii_case("NULL") {
                        Value::Null
                    } else {
                        shaped(raw, self.element)
                    }
                }
            };
            items.push(item);
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(Value::Array(items));
                }
                _ => return None,
            }
        }
    }

    fn quoted(&mut self) -> Option<String> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    out.push(*self.bytes.get(self.pos + 1)?);
                    self.pos += 2;
                }
                b => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }
}

/// Encode a JSON parameter in PostgreSQL text format; `None` is SQL NULL.
pub fn json_to_param(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(array_literal(items)),
        Value::Object(_) => Some(value.to_string()),
    }
}

fn array_literal(items: &[Value]) -> String {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => out.push_str("NULL"),
            Value::Array(inner) => out.push_str(&array_literal(inner)),
            Value::Bool(_) | Value::Number(_) => out.push_str(&item.to_string()),
            Value::String(s) => push_quoted(&mut out, s),
            Value::Object(_) => push_quoted(&mut out, &item.to_string()),
        }
    }
    out.push('}');
    out
}

fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Shape one row as an object (`{"name": value}`) or an array.
pub fn row_object(names: &[String], values: Vec<Value>) -> Value {
    let mut map = Map::with_capacity(names.len());
    for (name, value) in names.iter().zip(values) {
        map.insert(name.clone(), value);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extension_types_are_json_where_json_has_their_shape() {
        assert_eq!(extension_value("vector", "vector", "[1,2.5,-3e-05]"), Some(json!([1.0, 2.5, -3e-05])));
        assert_eq!(extension_value("vector", "halfvec", "[0.5]"), Some(json!([0.5])));
        assert_eq!(extension_value("vector", "sparsevec", "{1:1}/3"), None);
        assert_eq!(extension_value("vector", "vector", "not a vector"), None);
        assert_eq!(
            extension_value("hstore", "hstore", r#""a"=>"1", "b \"q\""=>NULL, "c"=>"x\\y""#),
            Some(json!({"a": "1", "b \"q\"": null, "c": "x\\y"}))
        );
        assert_eq!(extension_value("hstore", "hstore", ""), Some(json!({})));
        assert_eq!(extension_value("hstore", "hstore", r#""a"=>"1" junk"#), None);
        assert_eq!(extension_value("citext", "citext", "Foo"), None);
    }

    #[test]
    fn scalars_keep_their_json_types() {
        assert_eq!(text_to_json("t", oid::BOOL), json!(true));
        assert_eq!(text_to_json("f", oid::BOOL), json!(false));
        assert_eq!(text_to_json("-42", oid::INT4), json!(-42));
        assert_eq!(
            text_to_json("9223372036854775807", oid::INT8),
            json!(9223372036854775807i64)
        );
        assert_eq!(text_to_json("1.5", oid::FLOAT8), json!(1.5));
        assert_eq!(text_to_json("NaN", oid::FLOAT8), json!("NaN"));
        assert_eq!(
            text_to_json("12345678901234567890.000000001", oid::NUMERIC),
            json!("12345678901234567890.000000001")
        );
        assert_eq!(
            text_to_json(r#"{"a": [1, null]}"#, oid::JSONB),
            json!({"a": [1, null]})
        );
        assert_eq!(text_to_json("\\x00ff", oid::BYTEA), json!("\\x00ff"));
    }

    #[test]
    fn arrays_decode_with_quotes_nulls_and_nesting() {
        assert_eq!(text_to_json("{1,2,NULL}", 1007), json!([1, 2, null]));
        assert_eq!(
            text_to_json(r#"{"a b","c\"d",NULL,"NULL",e}"#, 1009),
            json!(["a b", "c\"d", null, "NULL", "e"])
        );
        assert_eq!(text_to_json("{{1,2},{3,4}}", 1005), json!([[1, 2], [3, 4]]));
        assert_eq!(text_to_json("{}", 1007), json!([]));
        // Explicit bounds are kept as text rather than guessed at.
        assert_eq!(text_to_json("[0:1]={1,2}", 1007), json!("[0:1]={1,2}"));
    }

    #[test]
    fn params_encode_to_text_format() {
        assert_eq!(json_to_param(&json!(null)), None);
        assert_eq!(json_to_param(&json!(true)).as_deref(), Some("true"));
        assert_eq!(json_to_param(&json!(2.5)).as_deref(), Some("2.5"));
        assert_eq!(json_to_param(&json!("x")).as_deref(), Some("x"));
        assert_eq!(
            json_to_param(&json!(["a\"b", null, 1, ["c"]])).as_deref(),
            Some(r#"{"a\"b",NULL,1,{"c"}}"#)
        );
        assert_eq!(
            json_to_param(&json!({"k": 1})).as_deref(),
            Some(r#"{"k":1}"#)
        );
    }

    #[test]
    fn array_params_round_trip_through_the_decoder() {
        let original = json!(["x,y", "q\"uote", "back\\slash", null, "{braces}"]);
        let text = json_to_param(&original).unwrap();
        assert_eq!(text_to_json(&text, 1009), original);
    }
}
