//! `guest_invites`: inviting guests to rooms by email (MAS admin API).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Guest invite settings (MAS `guest_invites`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GuestInvitesConfig {
    /// Whether `POST /api/admin/v1/invite-guests` is enabled (default `false`).
    pub enabled: bool,
    /// Client URL with a `{room_id}` placeholder; required when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_room_url: Option<String>,
    /// Invite link lifetime in seconds (default 604800, 7 days).
    pub invite_lifetime: u64,
}

impl Default for GuestInvitesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            client_room_url: None,
            invite_lifetime: 604_800,
        }
    }
}
