//! `telemetry`: traces, metrics, Sentry.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::Secret;

/// Trace context propagation format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Propagator {
    /// W3C Trace Context.
    TraceContext,
    /// W3C Baggage.
    Baggage,
    /// Jaeger.
    Jaeger,
}

/// Trace exporter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TracingExporterKind {
    /// Don't export (default).
    #[default]
    None,
    /// Standard output.
    Stdout,
    /// OTLP over HTTP.
    Otlp,
}

/// Metrics exporter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricsExporterKind {
    /// Don't export (default).
    #[default]
    None,
    /// Standard output.
    Stdout,
    /// OTLP over HTTP.
    Otlp,
    /// Prometheus, via a listener with the `prometheus` resource.
    Prometheus,
}

/// Tracing settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Exporter.
    pub exporter: TracingExporterKind,
    /// OTLP endpoint (default `https://localhost:4318`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub endpoint: Option<Url>,
    /// Propagation formats.
    pub propagators: Vec<Propagator>,
    /// Sample rate, 0.0 to 1.0 (default 1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
}

/// Metrics settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Exporter.
    pub exporter: MetricsExporterKind,
    /// OTLP endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub endpoint: Option<Url>,
}

/// Sentry settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SentryConfig {
    /// Sentry DSN (it embeds a key, so it is a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dsn: Option<Secret>,
    /// Environment (default `production`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Event sample rate, 0.0 to 1.0 (default 1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f32>,
    /// Transaction sample rate, 0.0 to 1.0 (default 0.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traces_sample_rate: Option<f32>,
}

/// Telemetry settings (MAS `telemetry`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Traces.
    pub tracing: TracingConfig,
    /// Metrics.
    pub metrics: MetricsConfig,
    /// Sentry.
    pub sentry: SentryConfig,
}
