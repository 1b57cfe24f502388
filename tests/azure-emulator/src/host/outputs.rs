//! Turns one `Outputs[binding]` value into the message bodies a `serviceBus` output binding sends (reference §2.2):
//! the base64 guess, array splitting, JSON-string parsing and .NET `ToString` (indented JSON, `True`/`False`,
//! `System.Byte[]`).

use super::json::Json;

/// Message bodies (UTF-8 text) in send order. `binary` is the output binding's `dataType: "binary"`.
pub fn message_bodies(value: &Json, binary: bool) -> Vec<String> {
    if let (Json::String(text), false) = (value, binary)
        && is_dotnet_base64(text)
    {
        // `Convert.FromBase64String` succeeded: the collector receives a byte[] and calls ToString() on it.
        return vec!["System.Byte[]".to_owned()];
    }
    read_as_enumerable(value).iter().filter_map(to_dotnet_string).collect()
}

/// `FunctionBinding.ReadAsEnumerable`.
fn read_as_enumerable(value: &Json) -> Vec<Json> {
    match value {
        Json::Null => Vec::new(),
        Json::Array(items) => items.clone(),
        Json::String(text) => {
            let trimmed = text.trim();
            let looks_like_json = (trimmed.starts_with('{') && trimmed.ends_with('}'))
                || (trimmed.starts_with('[') && trimmed.ends_with(']'));
            match (looks_like_json, Json::parse(trimmed)) {
                (true, Ok(Json::Array(items))) => items,
                (true, Ok(parsed)) => vec![parsed],
                _ => vec![value.clone()],
            }
        }
        other => vec![other.clone()],
    }
}

/// `object.ToString()` of each element as the string collector sees it.
fn to_dotnet_string(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(text) => Some(text.clone()),
        Json::Bool(b) => Some(if *b { "True" } else { "False" }.to_owned()),
        Json::Number(n) => Some(n.to_string()),
        Json::Array(_) | Json::Object(_) => Some(value.indented()),
    }
}

/// What `Convert.FromBase64String` accepts: base64 alphabet, whitespace ignored, length a multiple of 4, at most two
/// trailing `=`. The empty string decodes to an empty array.
fn is_dotnet_base64(text: &str) -> bool {
    let chars: Vec<u8> = text.bytes().filter(|b| !b" \t\r\n".contains(b)).collect();
    if !chars.len().is_multiple_of(4) {
        return false;
    }
    let padding = chars.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return false;
    }
    chars[..chars.len() - padding].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(json: &str, binary: bool) -> Vec<String> {
        message_bodies(&Json::parse(json).unwrap(), binary)
    }

    #[test]
    fn objects_are_reindented() {
        let derived = std::fs::read_to_string(format!(
            "{}/../../specs/functions/derived/servicebus-trigger.handler-response.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let response = Json::parse(&derived).unwrap();
        let value = response.get("Outputs").unwrap().get("completionEvent").unwrap();
        assert_eq!(
            message_bodies(value, false),
            vec![
                "{\n  \"onboardingId\": \"obd-7f3c\",\n  \"status\": \"Completed\",\n  \"completedAtUtc\": \"2024-10-24T14:32:20Z\"\n}"
            ]
        );
    }

    #[test]
    fn base64_looking_strings_become_system_byte_array() {
        assert_eq!(bodies(r#""done""#, false), vec!["System.Byte[]"]);
        assert_eq!(bodies(r#""abcd1234""#, false), vec!["System.Byte[]"]);
        assert_eq!(bodies(r#""done""#, true), vec!["done"]);
        assert_eq!(bodies(r#""not base64!""#, false), vec!["not base64!"]);
    }

    #[test]
    fn arrays_and_array_strings_split() {
        assert_eq!(bodies(r#"["a b","c d"]"#, false), vec!["a b", "c d"]);
        assert_eq!(bodies(r#""[{\"a\":1}, 2]""#, false), vec!["{\n  \"a\": 1\n}", "2"]);
        assert_eq!(bodies(r#""{\"a\":1}""#, false), vec!["{\n  \"a\": 1\n}"]);
    }

    #[test]
    fn scalars_use_dotnet_to_string() {
        assert_eq!(bodies("true", false), vec!["True"]);
        assert_eq!(bodies("42", false), vec!["42"]);
        assert!(bodies("null", false).is_empty());
    }
}
