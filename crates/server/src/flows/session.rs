//! Ending OAuth 2.0 sessions.

use vestibule_domain::{Clock, oauth2::Session};
use vestibule_storage::{BoxRepository, StorageError};

/// Ends a session: revokes all its access and refresh tokens and marks it
/// finished. Idempotent: an already finished session only has its tokens
/// revoked (again, a no-op).
///
/// Used on logout (RFC 7009 revocation of any of its tokens), on an
/// authorization code used twice (RFC 6749 §4.1.2) and on a refresh token
/// replay (RFC 9700 §4.14.2).
pub async fn end_oauth_session(
    repo: &mut BoxRepository,
    clock: &dyn Clock,
    session: Session,
) -> Result<(), StorageError> {
    repo.oauth2_access_tokens()
        .revoke_all_for_session(clock, &session)
        .await?;
    repo.oauth2_refresh_tokens()
        .revoke_all_for_session(clock, &session)
        .await?;
    if session.is_valid() {
        match repo.oauth2_sessions().finish(clock, session).await {
            // Finished concurrently by someone else: the goal is reached.
            Ok(_) | Err(StorageError::ConcurrentUpdate(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
