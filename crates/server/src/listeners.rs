//! Binding and serving `http.listeners`, with graceful shutdown.

use std::{net::SocketAddr, path::PathBuf};

use axum::Router;
use tokio::{net::TcpListener, sync::watch};
use vestibule_config::{BindConfig, ListenerConfig};

use crate::{AppState, Resources, router, with_prefix};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("{path}: cannot bind {address}: {source}")]
    Bind {
        path: String,
        address: String,
        #[source]
        source: std::io::Error,
    },
}

enum Socket {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener, PathBuf),
}

/// A listener whose sockets are bound but not yet serving.
pub struct BoundListener {
    pub name: String,
    app: Router,
    sockets: Vec<Socket>,
}

impl BoundListener {
    /// Where it listens, for the startup message (`http://addr` or a socket path).
    pub fn addresses(&self) -> Vec<String> {
        self.sockets
            .iter()
            .map(|s| match s {
                Socket::Tcp(l) => l
                    .local_addr()
                    .map(|a| format!("http://{a}"))
                    .unwrap_or_default(),
                #[cfg(unix)]
                Socket::Unix(_, p) => format!("unix:{}", p.display()),
            })
            .collect()
    }

    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| match s {
                Socket::Tcp(l) => l.local_addr().ok(),
                #[cfg(unix)]
                Socket::Unix(..) => None,
            })
            .collect()
    }
}

async fn bind_tcp(path: &str, address: &str) -> Result<Vec<Socket>, ListenError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|source| ListenError::Bind {
            path: path.to_owned(),
            address: address.to_owned(),
            source,
        })?
        .collect();
    let mut out = Vec::new();
    for addr in addrs {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind {
                path: path.to_owned(),
                address: addr.to_string(),
                source,
            })?;
        out.push(Socket::Tcp(l));
        // `localhost` may resolve to both families; one socket per address.
    }
    Ok(out)
}

/// Refuses listener settings the config format accepts (MAS has them) but
/// Vestibule cannot honour yet. Part of [`crate::bootstrap::validate`], so
/// `config check` reports them and the server fails before touching the
/// database.
pub fn check_supported(listeners: &[ListenerConfig]) -> Result<(), ListenError> {
    for (i, l) in listeners.iter().enumerate() {
        let path = format!("http.listeners[{i}]");
        if l.tls.is_some() {
            return Err(ListenError::Config {
                path: format!("{path}.tls"),
                message: "TLS termination is not supported by Vestibule yet; terminate TLS in the reverse proxy".to_owned(),
            });
        }
        if l.proxy_protocol {
            return Err(ListenError::Config {
                path: format!("{path}.proxy_protocol"),
                message: "the PROXY protocol is not supported by Vestibule yet".to_owned(),
            });
        }
        for (j, b) in l.binds.iter().enumerate() {
            if matches!(b, BindConfig::FileDescriptor { .. }) {
                return Err(ListenError::Config {
                    path: format!("{path}.binds[{j}]"),
                    message: "file descriptor (socket activation) binds are not supported yet"
                        .to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Binds every listener of the config. Binding happens before serving so
/// the caller knows the addresses (and tests can use port 0) with no race.
pub async fn bind(
    state: &AppState,
    listeners: &[ListenerConfig],
) -> Result<Vec<BoundListener>, ListenError> {
    check_supported(listeners)?;
    let mut out = Vec::new();
    for (i, l) in listeners.iter().enumerate() {
        let path = format!("http.listeners[{i}]");
        let app = with_prefix(
            router(state.clone(), &Resources::from_config(&l.resources)),
            l.prefix.as_deref(),
        );
        let mut sockets = Vec::new();
        for (j, b) in l.binds.iter().enumerate() {
            let bpath = format!("{path}.binds[{j}]");
            match b {
                BindConfig::Address { address } => sockets.extend(bind_tcp(&bpath, address).await?),
                BindConfig::Listen { host, port } => {
                    let host = host.as_deref().unwrap_or("::");
                    let address = if host.contains(':') && !host.starts_with('[') {
                        format!("[{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    };
                    sockets.extend(bind_tcp(&bpath, &address).await?);
                }
                #[cfg(unix)]
                BindConfig::Unix { socket, .. } => {
                    let _ = std::fs::remove_file(socket);
                    let l = tokio::net::UnixListener::bind(socket).map_err(|source| {
                        ListenError::Bind {
                            path: bpath.clone(),
                            address: socket.display().to_string(),
                            source,
                        }
                    })?;
                    sockets.push(Socket::Unix(l, socket.clone()));
                }
                #[cfg(not(unix))]
                BindConfig::Unix { .. } => {
                    return Err(ListenError::Config {
                        path: bpath,
                        message: "unix sockets need a unix system".to_owned(),
                    });
                }
                BindConfig::FileDescriptor { .. } => {
                    return Err(ListenError::Config {
                        path: bpath,
                        message: "file descriptor (socket activation) binds are not supported yet"
                            .to_owned(),
                    });
                }
            }
        }
        out.push(BoundListener {
            name: l.name.clone().unwrap_or_else(|| format!("listener{i}")),
            app,
            sockets,
        });
    }
    Ok(out)
}

/// Serves until `shutdown` flips to true, then lets in-flight requests finish.
pub async fn serve(
    listeners: Vec<BoundListener>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        for socket in l.sockets {
            let app = l.app.clone();
            let mut rx = shutdown.clone();
            let signal = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            match socket {
                Socket::Tcp(listener) => {
                    tasks.spawn(async move {
                        axum::serve(
                            listener,
                            app.into_make_service_with_connect_info::<SocketAddr>(),
                        )
                        .with_graceful_shutdown(signal)
                        .await
                    });
                }
                #[cfg(unix)]
                Socket::Unix(listener, _) => {
                    // Only local processes reach a UNIX socket: the reverse
                    // proxy, whose `X-Forwarded-For` is believed.
                    let app = app.layer(axum::Extension(crate::requester::UnixPeer));
                    tasks.spawn(async move {
                        axum::serve(listener, app)
                            .with_graceful_shutdown(signal)
                            .await
                    });
                }
            }
        }
    }
    while let Some(res) = tasks.join_next().await {
        res.map_err(std::io::Error::other)??;
    }
    Ok(())
}

/// A watch channel that flips on SIGTERM or Ctrl-C. The handlers are
/// registered before this returns, so a signal sent as soon as the caller
/// reports readiness stops the server cleanly instead of killing it (the
/// default action) before a spawned task got to register them.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let recv = async |s: &mut Option<tokio::signal::unix::Signal>| match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            };
            tokio::select! {
                () = recv(&mut term) => {},
                () = recv(&mut int) => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = tx.send(true);
    });
    rx
}
