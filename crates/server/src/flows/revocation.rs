//! RFC 7009 token revocation. Revoking any token of a session ends the whole
//! session (a Matrix client's logout revokes only its access token, and the
//! device must go with it).

use rand::RngCore;
use vestibule_domain::{Clock, oauth2::Client, token_format::TokenFormat};
use vestibule_storage::{BoxRepository, StorageError};

use super::{
    provisioning::EndedDevice,
    session::end_oauth_session,
    tokens::{FoundToken, find_token},
};

/// Why a revocation request failed.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// RFC 7009 §2.1: the server "first validates the client credentials
    /// … and then verifies whether the token was issued to the client making
    /// the revocation request"; a token of another client is refused with
    /// RFC 6749 §5.2 `unauthorized_client` and left alone.
    #[error("the token was issued to another client")]
    OtherClient,
    /// The database failed: never report success (503 when unavailable).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Revokes `token` for `client`. Unknown, malformed or already-dead tokens
/// are a success (RFC 7009 §2.2). Returns the ended session's Matrix device,
/// for the caller to delete on the homeserver once this is committed (a
/// `sync_devices` job is scheduled in the transaction as the fallback).
pub async fn revoke(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    rng: &mut (dyn RngCore + Send),
    format: &TokenFormat,
    client: &Client,
    token: &str,
) -> Result<Option<EndedDevice>, RevocationError> {
    let Some(found) = find_token(repo, format, token).await? else {
        return Ok(None);
    };
    let session_id = match &found {
        FoundToken::Access(t) => t.session_id,
        FoundToken::Refresh(t) => t.session_id,
    };
    let Some(session) = repo.oauth2_sessions().lookup(session_id).await? else {
        return Ok(None);
    };
    if session.client_id != client.id {
        return Err(RevocationError::OtherClient);
    }
    Ok(end_oauth_session(repo, clock, rng, session).await?)
}
