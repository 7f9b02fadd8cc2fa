//! `rate_limiting`: limits on user actions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A token bucket: `burst` actions at once, refilled by `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimiterConfig {
    /// Actions allowed in one go (at least 1).
    pub burst: u32,
    /// Allowance regained per second (positive).
    pub per_second: f64,
}

const fn limiter(burst: u32, per_second: f64) -> RateLimiterConfig {
    RateLimiterConfig { burst, per_second }
}

/// Account recovery limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AccountRecoveryRateLimitingConfig {
    /// Per source IP address (default 3, 0.0008/s).
    pub per_ip: RateLimiterConfig,
    /// Per email address (default 3, 0.0002/s).
    pub per_address: RateLimiterConfig,
}

impl Default for AccountRecoveryRateLimitingConfig {
    fn default() -> Self {
        Self {
            per_ip: limiter(3, 0.0008),
            per_address: limiter(3, 0.0002),
        }
    }
}

/// Login limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoginRateLimitingConfig {
    /// Per source IP address (default 3, 0.05/s).
    pub per_ip: RateLimiterConfig,
    /// Per target account (default 1800, 0.5/s).
    pub per_account: RateLimiterConfig,
}

impl Default for LoginRateLimitingConfig {
    fn default() -> Self {
        Self {
            per_ip: limiter(3, 0.05),
            per_account: limiter(1800, 0.5),
        }
    }
}

/// Email authentication limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EmailAuthenticationRateLimitingConfig {
    /// Per source IP address (default 5, 0.016666/s).
    pub per_ip: RateLimiterConfig,
    /// Per email address (default 3, 0.000277/s).
    pub per_address: RateLimiterConfig,
    /// Emails sent per authentication session (default 2, 0.003333/s).
    pub emails_per_session: RateLimiterConfig,
    /// Code attempts per authentication session (default 10, 0.016666/s).
    pub attempt_per_session: RateLimiterConfig,
}

impl Default for EmailAuthenticationRateLimitingConfig {
    fn default() -> Self {
        Self {
            per_ip: limiter(5, 0.016_666),
            per_address: limiter(3, 0.000_277),
            emails_per_session: limiter(2, 0.003_333),
            attempt_per_session: limiter(10, 0.016_666),
        }
    }
}

/// Rate limiting settings (MAS `rate_limiting`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitingConfig {
    /// Account recovery attempts.
    pub account_recovery: AccountRecoveryRateLimitingConfig,
    /// Login attempts.
    pub login: LoginRateLimitingConfig,
    /// Registrations per source IP (default 3, 0.0008/s).
    pub registration: RateLimiterConfig,
    /// Email authentication.
    pub email_authentication: EmailAuthenticationRateLimitingConfig,
    /// User codes submitted on the device link page per IP (default 10,
    /// 0.016666/s).
    pub device_code_link: RateLimiterConfig,
}

impl Default for RateLimitingConfig {
    fn default() -> Self {
        Self {
            account_recovery: AccountRecoveryRateLimitingConfig::default(),
            login: LoginRateLimitingConfig::default(),
            registration: limiter(3, 0.0008),
            email_authentication: EmailAuthenticationRateLimitingConfig::default(),
            device_code_link: limiter(10, 0.016_666),
        }
    }
}

impl RateLimitingConfig {
    /// Every limiter with its key path relative to `rate_limiting`.
    pub fn limiters(&self) -> Vec<(&'static str, RateLimiterConfig)> {
        vec![
            ("account_recovery.per_ip", self.account_recovery.per_ip),
            (
                "account_recovery.per_address",
                self.account_recovery.per_address,
            ),
            ("login.per_ip", self.login.per_ip),
            ("login.per_account", self.login.per_account),
            ("registration", self.registration),
            (
                "email_authentication.per_ip",
                self.email_authentication.per_ip,
            ),
            (
                "email_authentication.per_address",
                self.email_authentication.per_address,
            ),
            (
                "email_authentication.emails_per_session",
                self.email_authentication.emails_per_session,
            ),
            (
                "email_authentication.attempt_per_session",
                self.email_authentication.attempt_per_session,
            ),
            ("device_code_link", self.device_code_link),
        ]
    }
}
