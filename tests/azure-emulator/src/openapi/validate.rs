//! A Swagger 2.0 schema walk: `$ref` across the embedded files, `allOf`, `properties`, `required`, `readOnly`,
//! `additionalProperties`, closed enums (`x-ms-enum.modelAsString: true` enums are open strings), JSON types and
//! the formats the specs use (`date-time`, `uuid`, `arm-id`, `uri`, `base64url`, `int32`). Requests are read as the
//! services' Json.NET reads them: member names and closed-enum values match case-insensitively and come back in the
//! spec's spelling; responses must match exactly.

use std::fmt;

use serde_json::{Map, Value};

use super::document;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// One way a body differs from its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// Json.NET-style path: `properties.encryption.keySource`, `tags['a']`, `items[0]` (empty at the root).
    pub path: String,
    /// The spec's name for the type the value should have (a definition or `x-ms-enum` name), or a JSON type.
    pub type_name: String,
    pub kind: ViolationKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ViolationKind {
    /// A member the object's schema does not have.
    UnknownMember(String),
    /// A `readOnly` member in a request.
    ReadOnly(String),
    MissingRequired(String),
    /// The JSON type is not the schema's (`expected` is a JSON type name).
    WrongType {
        expected: &'static str,
        value: Value,
    },
    /// A closed enum's value outside its list.
    NotInEnum {
        value: String,
        allowed: Vec<String>,
    },
    BadFormat {
        format: String,
        value: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.path.is_empty() { "$".to_owned() } else { format!("$.{}", self.path) };
        match &self.kind {
            ViolationKind::UnknownMember(name) => {
                write!(f, "{at}: '{name}' is not in the schema of {}", self.type_name)
            }
            ViolationKind::ReadOnly(name) => write!(f, "{at}: '{name}' is read-only"),
            ViolationKind::MissingRequired(name) => write!(f, "{at}: missing required '{name}'"),
            ViolationKind::WrongType { expected, value } => write!(f, "{at}: expected {expected}, got {value}"),
            ViolationKind::NotInEnum { value, allowed } => {
                write!(f, "{at}: '{value}' is not one of {allowed:?} ({})", self.type_name)
            }
            ViolationKind::BadFormat { format, value } => write!(f, "{at}: '{value}' is not a {format}"),
        }
    }
}

/// Members, required names and the `additionalProperties` rule of an object schema, through `allOf`.
#[derive(Default)]
struct ObjectShape {
    properties: Vec<(String, &'static str, &'static Value)>,
    required: Vec<String>,
    additional: Option<(&'static str, &'static Value)>,
}

pub struct Walker {
    direction: Direction,
    pub violations: Vec<Violation>,
}

impl Walker {
    pub fn new(direction: Direction) -> Self {
        Self { direction, violations: Vec::new() }
    }

    fn push(&mut self, path: &str, type_name: &str, kind: ViolationKind) {
        self.violations.push(Violation { path: path.to_owned(), type_name: type_name.to_owned(), kind });
    }

    /// Checks `value` against `schema` (found in `file`) and returns it with member names and closed-enum values
    /// in the spec's spelling.
    pub fn check(
        &mut self,
        file: &'static str,
        schema: &'static Value,
        type_name: &str,
        value: &Value,
        path: &str,
    ) -> Value {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let (target_file, target, name) = resolve(file, reference);
            return self.check(target_file, target, name.as_deref().unwrap_or(type_name), value, path);
        }
        // Json.NET treats null as "not given" for the optional members the specs describe.
        if value.is_null() {
            return Value::Null;
        }
        let declared = schema.get("type").and_then(Value::as_str);
        let is_object = declared == Some("object")
            || schema.get("properties").is_some()
            || schema.get("allOf").is_some()
            || schema.get("additionalProperties").is_some();
        if is_object {
            return self.check_object(file, schema, type_name, value, path);
        }
        match declared {
            Some("string") => self.check_string(schema, type_name, value, path),
            Some("boolean") if !value.is_boolean() => self.wrong_type(path, type_name, "a boolean", value),
            Some("integer") => self.check_integer(schema, type_name, value, path),
            Some("number") if !value.is_number() => self.wrong_type(path, type_name, "a number", value),
            Some("array") => {
                let Some(items) = value.as_array() else {
                    return self.wrong_type(path, type_name, "an array", value);
                };
                let Some(item_schema) = schema.get("items") else { return value.clone() };
                let checked = items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| self.check(file, item_schema, type_name, item, &format!("{path}[{index}]")))
                    .collect();
                Value::Array(checked)
            }
            _ => value.clone(),
        }
    }

    fn wrong_type(&mut self, path: &str, type_name: &str, expected: &'static str, value: &Value) -> Value {
        self.push(path, type_name, ViolationKind::WrongType { expected, value: value.clone() });
        value.clone()
    }

    fn check_object(
        &mut self,
        file: &'static str,
        schema: &'static Value,
        type_name: &str,
        value: &Value,
        path: &str,
    ) -> Value {
        let Some(object) = value.as_object() else {
            return self.wrong_type(path, type_name, "an object", value);
        };
        let mut shape = ObjectShape::default();
        object_shape(file, schema, &mut shape);
        if shape.properties.is_empty() && shape.additional.is_none() {
            // `{"type": "object"}` alone is free-form.
            return value.clone();
        }
        let request = self.direction == Direction::Request;
        let matches = |spec_name: &str, key: &str| {
            if request { spec_name.eq_ignore_ascii_case(key) } else { spec_name == key }
        };
        for name in &shape.required {
            if !object.keys().any(|key| matches(name, key)) {
                self.push(path, type_name, ViolationKind::MissingRequired(name.clone()));
            }
        }
        let mut checked = Map::new();
        for (key, member) in object {
            let child = join(path, key);
            let property = shape
                .properties
                .iter()
                .find(|(name, _, _)| name == key)
                .or_else(|| shape.properties.iter().find(|(name, _, _)| matches(name, key)));
            match property {
                Some((name, property_file, property)) => {
                    if request && property.get("readOnly") == Some(&Value::Bool(true)) {
                        self.push(&child, type_name, ViolationKind::ReadOnly(name.clone()));
                    }
                    let member_type = format!("{type_name}.{name}");
                    let checked_member = self.check(property_file, property, &member_type, member, &child);
                    checked.insert(name.clone(), checked_member);
                }
                None => match shape.additional {
                    Some((_, Value::Bool(true))) => {
                        checked.insert(key.clone(), member.clone());
                    }
                    Some((additional_file, additional @ Value::Object(_))) => {
                        let entry = format!("{path}['{key}']");
                        let checked_member = self.check(additional_file, additional, type_name, member, &entry);
                        checked.insert(key.clone(), checked_member);
                    }
                    _ => {
                        self.push(&child, type_name, ViolationKind::UnknownMember(key.clone()));
                        checked.insert(key.clone(), member.clone());
                    }
                },
            }
        }
        Value::Object(checked)
    }

    fn check_string(&mut self, schema: &Value, type_name: &str, value: &Value, path: &str) -> Value {
        let Some(text) = value.as_str() else {
            return self.wrong_type(path, type_name, "a string", value);
        };
        let enum_name = schema
            .pointer("/x-ms-enum/name")
            .and_then(Value::as_str)
            .map_or_else(|| type_name.to_owned(), str::to_owned);
        let open = schema.pointer("/x-ms-enum/modelAsString") == Some(&Value::Bool(true));
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array).filter(|_| !open) {
            let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
            let found = names.iter().find(|n| **n == text).or_else(|| {
                (self.direction == Direction::Request).then(|| names.iter().find(|n| n.eq_ignore_ascii_case(text)))?
            });
            return match found {
                Some(canonical) => Value::String((*canonical).to_owned()),
                None => {
                    let allowed = names.iter().map(|n| (*n).to_owned()).collect();
                    self.push(path, &enum_name, ViolationKind::NotInEnum { value: text.to_owned(), allowed });
                    value.clone()
                }
            };
        }
        if let Some(format) = schema.get("format").and_then(Value::as_str)
            && !format_holds(format, text)
        {
            self.push(path, type_name, ViolationKind::BadFormat { format: format.to_owned(), value: text.to_owned() });
        }
        value.clone()
    }

    fn check_integer(&mut self, schema: &Value, type_name: &str, value: &Value, path: &str) -> Value {
        let Some(number) = value.as_i64().or_else(|| value.as_u64().map(|n| n as i64)) else {
            return self.wrong_type(path, type_name, "an integer", value);
        };
        if schema.get("format").and_then(Value::as_str) == Some("int32") && i32::try_from(number).is_err() {
            let kind = ViolationKind::BadFormat { format: "int32".into(), value: number.to_string() };
            self.push(path, type_name, kind);
        }
        value.clone()
    }
}

/// Follows `other.json#/definitions/X` or `#/definitions/X` from `from`; the name is `X` for definitions.
fn resolve(from: &'static str, reference: &str) -> (&'static str, &'static Value, Option<String>) {
    let (file_part, pointer) = reference.split_once('#').unwrap_or((reference, ""));
    let file = if file_part.is_empty() { from } else { super::relative(from, file_part) };
    let document = document(file);
    let target = document.pointer(pointer).unwrap_or_else(|| panic!("{reference} not found from {from}"));
    let name = pointer.strip_prefix("/definitions/").filter(|n| !n.contains('/')).map(str::to_owned);
    (file, target, name)
}

fn object_shape(file: &'static str, schema: &'static Value, shape: &mut ObjectShape) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let (target_file, target, _) = resolve(file, reference);
        return object_shape(target_file, target, shape);
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            shape.properties.push((name.clone(), file, property));
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        shape.required.extend(required.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    if let Some(additional) = schema.get("additionalProperties") {
        shape.additional = Some((file, additional));
    }
    for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        object_shape(file, part, shape);
    }
}

/// Whether `text` has the spec's `format`. Formats the walk does not know are not checked.
fn format_holds(format: &str, text: &str) -> bool {
    match format {
        "date-time" => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok(),
        "uuid" => text.len() == 36 && uuid::Uuid::parse_str(text).is_ok(),
        "arm-id" => {
            let lower = text.to_ascii_lowercase();
            lower.starts_with("/subscriptions/") || lower.starts_with("/providers/")
        }
        "uri" => url::Url::parse(text).is_ok(),
        "base64url" => {
            let data = text.trim_end_matches('=');
            text.len() - data.len() <= 2 && data.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }
        _ => true,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(format_holds("date-time", "2019-12-13T20:36:23.7023290Z"));
        assert!(!format_holds("date-time", "yesterday"));
        assert!(format_holds("uuid", "f0000000-0000-0000-0000-000000000001"));
        assert!(!format_holds("uuid", "f0000000000000000000000000000001"));
        assert!(format_holds("arm-id", "/subscriptions/x/resourceGroups/y"));
        assert!(!format_holds("arm-id", "subscriptions/x"));
        assert!(format_holds("base64url", "AQAB"));
        assert!(format_holds("base64url", "a-b_c"));
        assert!(!format_holds("base64url", "a+b/c"));
        assert!(format_holds("uri", "https://example.com/x"));
        assert!(!format_holds("uri", "not a uri"));
    }
}
