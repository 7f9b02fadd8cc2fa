//! `http`: listeners, trusted proxies, public base URL.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::Secret;

fn default_public_base() -> Url {
    Url::parse("http://[::]:8080/").unwrap_or_else(|_| unreachable!("static URL"))
}

fn default_trusted_proxies() -> Vec<String> {
    [
        "192.168.0.0/16",
        "172.16.0.0/12",
        "10.0.0.0/8",
        "127.0.0.0/8",
        "fd00::/8",
        "::1/128",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Configuration of the web server (MAS `http`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// List of listeners to run. Defaults to a `web` listener on `[::]:8080`
    /// and an `internal` (health) listener on `localhost:8081`.
    pub listeners: Vec<ListenerConfig>,

    /// Reverse proxies (IP addresses or CIDR ranges) allowed to set
    /// `X-Forwarded-For`. Defaults to the private ranges.
    pub trusted_proxies: Vec<String>,

    /// Public URL base from where the service is reachable.
    #[schemars(with = "String", url)]
    pub public_base: Url,

    /// OIDC issuer URL. Defaults to `public_base`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", url)]
    pub issuer: Option<Url>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listeners: vec![
                ListenerConfig {
                    name: Some("web".to_owned()),
                    resources: vec![
                        Resource::Discovery,
                        Resource::Human,
                        Resource::OAuth,
                        Resource::Compat,
                        Resource::GraphQL {
                            playground: false,
                            introspection: GraphQLIntrospection::Public,
                            undocumented_oauth2_access: false,
                        },
                        Resource::Assets { path: None },
                    ],
                    prefix: None,
                    binds: vec![BindConfig::Address {
                        address: "[::]:8080".to_owned(),
                    }],
                    proxy_protocol: false,
                    tls: None,
                },
                ListenerConfig {
                    name: Some("internal".to_owned()),
                    resources: vec![Resource::Health],
                    prefix: None,
                    binds: vec![BindConfig::Listen {
                        host: Some("localhost".to_owned()),
                        port: 8081,
                    }],
                    proxy_protocol: false,
                    tls: None,
                },
            ],
            trusted_proxies: default_trusted_proxies(),
            public_base: default_public_base(),
            issuer: None,
        }
    }
}

impl HttpConfig {
    /// The OIDC issuer: `issuer` if set, `public_base` otherwise.
    pub fn issuer(&self) -> Url {
        self.issuer
            .clone()
            .unwrap_or_else(|| self.public_base.clone())
    }
}

/// One HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Unique name shown in traces and metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,

    /// Resources to mount.
    pub resources: Vec<Resource>,

    /// HTTP path prefix to mount the resources on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,

    /// Sockets to bind.
    pub binds: Vec<BindConfig>,

    /// Accept HAProxy's PROXY protocol v1.
    #[serde(default)]
    pub proxy_protocol: bool,

    /// Serve TLS with this certificate and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// Who may introspect the GraphQL schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GraphQLIntrospection {
    /// Anyone.
    #[default]
    Public,
    /// Authenticated requests only.
    AuthenticatedOnly,
}

/// An HTTP resource to mount on a listener (MAS spellings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "name", rename_all = "lowercase", deny_unknown_fields)]
pub enum Resource {
    /// `/health`.
    Health,
    /// `/metrics` (Prometheus).
    Prometheus,
    /// `/.well-known/*` discovery documents.
    Discovery,
    /// Pages for humans (login, account...).
    Human,
    /// The GraphQL API.
    #[serde(rename = "graphql")]
    GraphQL {
        /// Enable the GraphQL playground.
        #[serde(default)]
        playground: bool,
        /// Who may introspect the schema.
        #[serde(default)]
        introspection: GraphQLIntrospection,
        /// Allow OAuth 2.0 clients (undocumented MAS option).
        #[serde(default)]
        undocumented_oauth2_access: bool,
    },
    /// OAuth 2.0 / OIDC endpoints (`oauth`; `oauth2` is accepted with a
    /// warning).
    #[serde(rename = "oauth")]
    OAuth,
    /// Matrix client-server compatibility endpoints.
    Compat,
    /// Static assets under `/assets/`.
    Assets {
        /// Directory to serve; the embedded assets when unset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
    },
    /// Admin API under `/api/admin/v1`.
    #[serde(rename = "adminapi")]
    AdminApi,
    /// `/connection-info` debugging handler.
    #[serde(rename = "connection-info")]
    ConnectionInfo,
}

/// Kind of socket passed as a file descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnixOrTcp {
    /// UNIX domain socket.
    Unix,
    /// TCP socket.
    #[default]
    Tcp,
}

/// A socket to listen on (untagged, like MAS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum BindConfig {
    /// `host` (all addresses when unset) and `port`.
    Listen {
        /// Host to listen on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// Port to listen on.
        port: u16,
    },
    /// `address: "[::]:8080"`.
    Address {
        /// Host and port.
        address: String,
    },
    /// A UNIX domain socket.
    Unix {
        /// Path of the socket.
        socket: PathBuf,
        /// Permissions of the socket (octal string such as `"600"`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<String>,
    },
    /// A file descriptor passed by the parent process (systemd), offset by 3.
    FileDescriptor {
        /// Index of the file descriptor (`0` is fd 3).
        #[serde(default)]
        fd: usize,
        /// Socket kind, `tcp` by default.
        #[serde(default)]
        kind: UnixOrTcp,
    },
}

/// TLS settings of a listener. `*_file` variants are read at load time, so
/// `certificate`, `key` and `password` hold the content afterwards.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM-encoded certificate chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// File holding the PEM certificate chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_file: Option<PathBuf>,
    /// PEM-encoded private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// File holding the private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Password of an encrypted private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// File holding the password of the private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}
