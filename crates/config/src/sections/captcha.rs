//! `captcha`: CAPTCHA protection.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Secret;

/// CAPTCHA service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaptchaServiceKind {
    /// Google reCAPTCHA v2.
    RecaptchaV2,
    /// Cloudflare Turnstile.
    CloudflareTurnstile,
    /// hCaptcha.
    Hcaptcha,
}

/// CAPTCHA settings (MAS `captcha`); disabled when `service` is unset.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CaptchaConfig {
    /// Which service to use; `~` disables CAPTCHA.
    pub service: Option<CaptchaServiceKind>,
    /// Public site key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_key: Option<String>,
    /// Secret key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
}
