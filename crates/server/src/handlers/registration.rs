//! RFC 7591 dynamic client registration with the MSC2966 rules
//! (`POST /oauth2/registration`).
//!
//! The rules themselves live in [`vestibule_domain::client_registration`];
//! this handler parses the body (size and nesting bounded), builds the
//! context from the config, stores the client and renders the RFC 7591 §3.2
//! response. Public clients (`token_endpoint_auth_method: none`) are
//! deduplicated by a digest of their normalised metadata, so a client that
//! registers on every start keeps one `client_id`; confidential clients always
//! get a new client and a secret shown once and stored encrypted.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use rand::distributions::{Alphanumeric, DistString as _};
use tower_http::cors::{Any, CorsLayer};
use vestibule_domain::{
    client_registration::{
        self, GRANT_AUTHORIZATION_CODE, RegistrationContext, RegistrationError, RegistrationPolicy,
        RegistrationRequest, ValidatedRegistration,
    },
    oauth2::{ApplicationType, Client},
};
use vestibule_proto::registration::{ClientRegistrationRequest, ClientRegistrationResponse};
use vestibule_storage::{StorageError, oauth2::ClientParams};

use crate::{
    AppState,
    error::{ErrorCode, OAuthError},
    routes::{Registration, Route},
};

/// Largest registration body accepted (a real one is well under 2 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Length of a generated client secret (alphanumeric, ~285 bits).
const CLIENT_SECRET_LEN: usize = 48;
/// Associated data binding an encrypted secret to its column.
pub const CLIENT_SECRET_AAD: &[u8] = b"client_secret";

/// Routes of this module (mounted with the `oauth` resource).
pub fn routes() -> Router<AppState> {
    // Element Web registers from its own origin. No cookies are involved, so
    // any origin may call, without credentials.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE]);
    Router::new()
        .route(Registration::PATH, post(register))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(cors)
}

fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

impl From<RegistrationError> for OAuthError {
    fn from(e: RegistrationError) -> Self {
        let code = match e {
            RegistrationError::InvalidRedirectUri { .. } => ErrorCode::InvalidRedirectUri,
            RegistrationError::InvalidClientMetadata { .. } => ErrorCode::InvalidClientMetadata,
        };
        Self::new(code, e.to_string())
    }
}

/// Reads the body as JSON: `application/json`, at most [`MAX_BODY_BYTES`],
/// nesting bounded by serde_json's recursion limit (128). The error carries
/// the HTTP status (400, or 413 for an oversized body).
fn parse_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<ClientRegistrationRequest, (StatusCode, OAuthError)> {
    let bad = |e: OAuthError| (StatusCode::BAD_REQUEST, e);
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(bad(metadata_error("expected an application/json body")));
    }
    let body = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            (
                status,
                metadata_error(format!("request body larger than {MAX_BODY_BYTES} bytes")),
            )
        } else {
            bad(metadata_error("could not read the request body"))
        }
    })?;
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| bad(metadata_error(format!("invalid JSON: {e}"))))?;
    ClientRegistrationRequest::from_json(&doc).map_err(|e| bad(metadata_error(e.to_string())))
}

fn context(state: &AppState) -> RegistrationContext {
    let config = &state.config;
    let mut first_party_names: Vec<String> = config
        .clients
        .iter()
        .filter_map(|c| c.client_name.clone())
        .collect();
    first_party_names.extend(config.branding.service_name.clone());
    RegistrationContext {
        policy: RegistrationPolicy::from_policy_data(&config.policy.data),
        homeserver: config.matrix.homeserver.clone(),
        first_party_names,
        id_token_algs: state
            .keystore
            .signing_algorithms()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }
}

fn domain_request(r: ClientRegistrationRequest) -> RegistrationRequest {
    RegistrationRequest {
        redirect_uris: r.redirect_uris,
        client_name: r.client_name,
        client_uri: r.client_uri,
        logo_uri: r.logo_uri,
        policy_uri: r.policy_uri,
        tos_uri: r.tos_uri,
        grant_types: r.grant_types,
        response_types: r.response_types,
        token_endpoint_auth_method: r.token_endpoint_auth_method,
        application_type: r.application_type,
        jwks: r.jwks,
        jwks_uri: r.jwks_uri,
        id_token_signed_response_alg: r.id_token_signed_response_alg,
    }
}

fn client_params(
    v: ValidatedRegistration,
    encrypted_client_secret: Option<String>,
    metadata_digest: Option<String>,
) -> ClientParams {
    ClientParams {
        client_name: v.client_name,
        client_uri: v.client_uri,
        logo_uri: v.logo_uri,
        policy_uri: v.policy_uri,
        tos_uri: v.tos_uri,
        redirect_uris: v.redirect_uris,
        grant_types: v.grant_types,
        application_type: Some(v.application_type),
        token_endpoint_auth_method: v.token_endpoint_auth_method,
        encrypted_client_secret,
        jwks: v.jwks,
        jwks_uri: v.jwks_uri,
        id_token_signed_response_alg: v.id_token_signed_response_alg,
        metadata_digest,
    }
}

fn response(client: &Client, client_secret: Option<String>) -> ClientRegistrationResponse {
    let url = |u: &Option<url::Url>| u.as_ref().map(ToString::to_string);
    let uses_code = client
        .grant_types
        .iter()
        .any(|g| g == GRANT_AUTHORIZATION_CODE);
    ClientRegistrationResponse {
        client_id: client.client_id.clone(),
        client_id_issued_at: i64::try_from(client.id.timestamp_ms() / 1000).unwrap_or(0),
        client_secret_expires_at: client_secret.as_ref().map(|_| 0),
        client_secret,
        client_name: client.client_name.clone(),
        client_uri: url(&client.client_uri),
        logo_uri: url(&client.logo_uri),
        policy_uri: url(&client.policy_uri),
        tos_uri: url(&client.tos_uri),
        redirect_uris: client
            .redirect_uris
            .iter()
            .map(ToString::to_string)
            .collect(),
        grant_types: client.grant_types.clone(),
        response_types: if uses_code {
            vec!["code".to_owned()]
        } else {
            Vec::new()
        },
        token_endpoint_auth_method: client.token_endpoint_auth_method.as_str().to_owned(),
        application_type: client
            .application_type
            .unwrap_or(ApplicationType::Web)
            .as_str()
            .to_owned(),
        jwks: client.jwks.clone(),
        jwks_uri: url(&client.jwks_uri),
        id_token_signed_response_alg: client.id_token_signed_response_alg.clone(),
    }
}

/// Stores the client, or finds the public client with the same metadata.
async fn store(
    state: &AppState,
    validated: ValidatedRegistration,
) -> Result<(Client, Option<String>), OAuthError> {
    let mut rng = state.rng.rng();
    if validated.is_public() {
        let digest = validated.metadata_digest();
        let mut repo = state.repos.write().await?;
        let existing = repo
            .oauth2_clients()
            .find_by_metadata_digest(&digest)
            .await?;
        if let Some(existing) = existing {
            repo.cancel().await?;
            tracing::info!(client_id = %existing.client_id, "reusing identical public client");
            return Ok((existing, None));
        }
        let params = client_params(validated, None, Some(digest.clone()));
        let added = repo
            .oauth2_clients()
            .add(&mut rng, state.clock.as_ref(), params)
            .await;
        let saved = match added {
            Ok(client) => repo.save().await.map(|()| client),
            Err(e) => {
                // Roll back now: the lookup below needs its own transaction.
                drop(repo);
                Err(e)
            }
        };
        return match saved {
            Ok(client) => {
                tracing::info!(client_id = %client.client_id, "registered public client");
                Ok((client, None))
            }
            // An identical registration committed between our lookup and our
            // insert: answer with that one.
            Err(StorageError::UniqueViolation(_)) => {
                let mut repo = state.repos.read().await?;
                let existing = repo
                    .oauth2_clients()
                    .find_by_metadata_digest(&digest)
                    .await?
                    .ok_or_else(|| {
                        OAuthError::internal(&StorageError::InvalidData(
                            "client digest conflict without a client".to_owned(),
                        ))
                    })?;
                repo.cancel().await?;
                Ok((existing, None))
            }
            Err(e) => Err(e.into()),
        };
    }

    let secret = validated
        .needs_secret()
        .then(|| Alphanumeric.sample_string(&mut rng, CLIENT_SECRET_LEN));
    let encrypted = secret
        .as_deref()
        .map(|s| {
            state
                .encrypter
                .encrypt_to_string(&mut rng, CLIENT_SECRET_AAD, s.as_bytes())
        })
        .transpose()
        .map_err(|e| OAuthError::internal(&e))?;
    let mut repo = state.repos.write().await?;
    let client = repo
        .oauth2_clients()
        .add(
            &mut rng,
            state.clock.as_ref(),
            client_params(validated, encrypted, None),
        )
        .await?;
    repo.save().await?;
    tracing::info!(client_id = %client.client_id, "registered confidential client");
    Ok((client, secret))
}

/// `POST /oauth2/registration` (RFC 7591 §3.1).
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = match parse_body(&headers, body) {
        Ok(r) => r,
        Err((status, e)) => {
            let mut res = e.into_response();
            *res.status_mut() = status;
            return res;
        }
    };
    let validated = match client_registration::validate(&domain_request(request), &context(&state))
    {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(error = %e, "client registration refused");
            return OAuthError::from(e).into_response();
        }
    };
    match store(&state, validated).await {
        Ok((client, secret)) => {
            let mut res = (StatusCode::CREATED, Json(response(&client, secret))).into_response();
            let h = res.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            res
        }
        Err(e) => e.into_response(),
    }
}
