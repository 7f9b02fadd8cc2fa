//! RFC 7591 dynamic client registration: the request metadata (§2, plus
//! OpenID Connect Dynamic Client Registration 1.0 §2) and the response (§3.2.1).
//!
//! The request is read field by field from a JSON object so that a value of
//! the wrong type is reported with the name of its field. Fields we do not
//! use (`contacts`, `software_id`, localised `client_name#fr`…) are ignored.

use serde::Serialize;
use serde_json::{Map, Value};

/// Client metadata as sent. Every field is optional on the wire; `null` is
/// treated as absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientRegistrationRequest {
    pub redirect_uris: Option<Vec<String>>,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub tos_uri: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    /// OpenID Connect Registration §2: `web` or `native`.
    pub application_type: Option<String>,
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    /// OpenID Connect Registration §2.
    pub id_token_signed_response_alg: Option<String>,
}

/// A metadata field has the wrong JSON type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTypeError {
    /// The field name; empty for the document itself.
    pub field: &'static str,
    pub expected: &'static str,
}

impl std::fmt::Display for FieldTypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "the request body must be {}", self.expected)
        } else {
            write!(f, "{}: must be {}", self.field, self.expected)
        }
    }
}

impl std::error::Error for FieldTypeError {}

fn string(obj: &Map<String, Value>, field: &'static str) -> Result<Option<String>, FieldTypeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldTypeError {
            field,
            expected: "a string",
        }),
    }
}

fn strings(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<Vec<String>>, FieldTypeError> {
    let err = FieldTypeError {
        field,
        expected: "an array of strings",
    };
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| err.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(err),
    }
}

impl ClientRegistrationRequest {
    /// Reads the metadata from a parsed JSON document.
    pub fn from_json(doc: &Value) -> Result<Self, FieldTypeError> {
        let Value::Object(obj) = doc else {
            return Err(FieldTypeError {
                field: "",
                expected: "a JSON object",
            });
        };
        let jwks = match obj.get("jwks") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => {
                return Err(FieldTypeError {
                    field: "jwks",
                    expected: "a JSON object",
                });
            }
        };
        Ok(Self {
            redirect_uris: strings(obj, "redirect_uris")?,
            client_name: string(obj, "client_name")?,
            client_uri: string(obj, "client_uri")?,
            logo_uri: string(obj, "logo_uri")?,
            policy_uri: string(obj, "policy_uri")?,
            tos_uri: string(obj, "tos_uri")?,
            grant_types: strings(obj, "grant_types")?,
            response_types: strings(obj, "response_types")?,
            token_endpoint_auth_method: string(obj, "token_endpoint_auth_method")?,
            application_type: string(obj, "application_type")?,
            jwks,
            jwks_uri: string(obj, "jwks_uri")?,
            id_token_signed_response_alg: string(obj, "id_token_signed_response_alg")?,
        })
    }
}

/// RFC 7591 §3.2.1 client information response: the identifier, the secret
/// (once, for confidential clients) and the registered metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientRegistrationResponse {
    pub client_id: String,
    /// Seconds since the epoch.
    pub client_id_issued_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// `0`: the secret does not expire. Present only with a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub application_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token_signed_response_alg: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_read_and_wrong_types_name_the_field() {
        let req = ClientRegistrationRequest::from_json(&json!({
            "client_name": "Element",
            "client_name#fr": "Élément",
            "client_uri": "https://element.io",
            "redirect_uris": ["io.element.app:/callback"],
            "contacts": ["a@b.c"],
            "tos_uri": null,
        }))
        .unwrap();
        assert_eq!(req.client_name.as_deref(), Some("Element"));
        assert_eq!(
            req.redirect_uris,
            Some(vec!["io.element.app:/callback".to_owned()])
        );
        assert_eq!(req.tos_uri, None);

        for (doc, field) in [
            (json!({"redirect_uris": "https://a.b/"}), "redirect_uris"),
            (json!({"redirect_uris": [1]}), "redirect_uris"),
            (json!({"client_name": 5}), "client_name"),
            (json!({"grant_types": [null]}), "grant_types"),
            (json!({"jwks": "x"}), "jwks"),
            (json!([1, 2]), ""),
        ] {
            assert_eq!(
                ClientRegistrationRequest::from_json(&doc)
                    .unwrap_err()
                    .field,
                field
            );
        }
    }
}
