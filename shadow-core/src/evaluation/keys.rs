//! What the evaluation needs to know about a request besides its answers: its id (to join the
//! ground truth that arrives later) and the segments it belongs to (its path, and the value of
//! one configured input field).

use crate::http::HttpRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest segment value kept; longer values are cut (on a character boundary).
pub const MAX_SEGMENT_VALUE_BYTES: usize = 64;

/// Where a request's id and segment field are read from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRules {
    /// Header holding the request id (compared case-insensitively), e.g. `x-request-id`.
    pub id_header: Option<String>,
    /// JSON pointer into the request body holding the id (used when the header is absent).
    pub id_pointer: Option<String>,
    /// JSON pointer into the request body whose value names the request's segment.
    pub segment_pointer: Option<String>,
}

/// A request's id and segments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestKeys {
    /// The request id, if it has one.
    pub id: Option<String>,
    /// The request path (the target without its query).
    pub path: String,
    /// The segment field's value, if configured and present.
    pub field: Option<String>,
}

impl KeyRules {
    /// Whether a body must be parsed to find the keys.
    fn reads_body(&self) -> bool {
        self.id_pointer.is_some() || self.segment_pointer.is_some()
    }

    /// The keys of `request`. The body is parsed as JSON at most once, and only when a pointer
    /// is configured; a body that is not JSON has no id or field there.
    pub fn keys(&self, request: &HttpRequest) -> RequestKeys {
        let path = request
            .target
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned();
        let header_id = self.id_header.as_deref().and_then(|name| {
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(&h.value).ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        });
        let body: Option<Value> = if self.reads_body() {
            serde_json::from_slice(&request.body).ok()
        } else {
            None
        };
        let at = |pointer: &Option<String>| {
            let (pointer, body) = (pointer.as_deref()?, body.as_ref()?);
            scalar_text(body.pointer(pointer)?)
        };
        RequestKeys {
            id: header_id.or_else(|| at(&self.id_pointer)),
            path,
            field: at(&self.segment_pointer).map(|v| cut(v, MAX_SEGMENT_VALUE_BYTES)),
        }
    }
}

/// Strings as they are, numbers and booleans as JSON spells them; not objects, arrays or null.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;

    fn request(target: &str, headers: &[(&str, &str)], body: &str) -> HttpRequest {
        HttpRequest {
            trailers: Vec::new(),
            method: "POST".into(),
            target: target.into(),
            version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: (*n).into(),
                    value: bytes::Bytes::copy_from_slice(v.as_bytes()),
                })
                .collect(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn id_from_header_then_body_and_segment_field() {
        let rules = KeyRules {
            id_header: Some("x-request-id".into()),
            id_pointer: Some("/id".into()),
            segment_pointer: Some("/parameters/region".into()),
        };
        let r = request(
            "/v2/models/m/infer?verbose=1",
            &[("X-Request-Id", " abc ")],
            r#"{"id": "body-id", "parameters": {"region": "eu"}}"#,
        );
        let k = rules.keys(&r);
        assert_eq!(k.id.as_deref(), Some("abc"), "the header wins");
        assert_eq!(k.path, "/v2/models/m/infer");
        assert_eq!(k.field.as_deref(), Some("eu"));
        let r = request("/p", &[], r#"{"id": 42, "parameters": {"region": [1]}}"#);
        let k = rules.keys(&r);
        assert_eq!(k.id.as_deref(), Some("42"), "falls back to the body");
        assert_eq!(k.field, None, "arrays name no segment");
        let k = rules.keys(&request("/p", &[], "not json"));
        assert_eq!((k.id, k.field), (None, None));
    }

    #[test]
    fn no_rules_no_body_parse_and_long_values_are_cut() {
        let k = KeyRules::default().keys(&request("/x", &[("x-request-id", "a")], "{"));
        assert_eq!(k.id, None);
        let rules = KeyRules {
            segment_pointer: Some("/s".into()),
            ..KeyRules::default()
        };
        let long = "é".repeat(40);
        let k = rules.keys(&request("/x", &[], &format!(r#"{{"s": "{long}"}}"#)));
        let f = k.field.unwrap();
        assert!(f.len() <= MAX_SEGMENT_VALUE_BYTES && f.len() >= MAX_SEGMENT_VALUE_BYTES - 1);
    }
}
