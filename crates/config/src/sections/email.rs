//! `email`: sending emails.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Secret;

/// Email transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmailTransportKind {
    /// Don't send emails (default).
    #[default]
    Blackhole,
    /// Send through an SMTP relay.
    Smtp,
    /// Call a local sendmail binary.
    Sendmail,
}

/// SMTP connection mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EmailSmtpMode {
    /// Plain text.
    Plain,
    /// STARTTLS.
    StartTls,
    /// Implicit TLS.
    Tls,
}

fn default_email() -> String {
    "\"Authentication Service\" <root@localhost>".to_owned()
}

/// Email settings (MAS `email`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `From` mailbox.
    pub from: String,
    /// `Reply-To` mailbox.
    pub reply_to: String,
    /// Transport.
    pub transport: EmailTransportKind,
    /// SMTP: connection mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<EmailSmtpMode>,
    /// SMTP: host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// SMTP: port (default 25, 465 for TLS, 587 for STARTTLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// SMTP: user name (set together with `password`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// SMTP: password (set together with `username`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Sendmail: command to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            from: default_email(),
            reply_to: default_email(),
            transport: EmailTransportKind::Blackhole,
            mode: None,
            hostname: None,
            port: None,
            username: None,
            password: None,
            command: None,
        }
    }
}
