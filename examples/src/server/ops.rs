//! The ops listener (`--ops-listen`): `/metrics` and the detailed
//! `/healthz` on an address of their own, for Prometheus and operators, so
//! the public port need not expose them.
//!
//! Plain HTTP/1.1, one request per connection (`Connection: close`), parsed
//! and answered by the runtime's own HTTP layer
//! ([`userlane_smol::serve_http_request`]: the request-head limit, strict
//! framing, no body). Bounded both ways: at most [`MAX_OPS_CONNECTIONS`]
//! connections at once (more are closed at once) and [`OPS_TIMEOUT`] for
//! the whole exchange.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smol::Async;
use userlane_smol::ServerHandle;

use super::api::Api;

/// Most ops connections served at once.
pub const MAX_OPS_CONNECTIONS: usize = 16;
/// Longest one ops exchange (read the request, answer) may take.
pub const OPS_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the operational endpoints are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsListen {
    /// On an address of their own.
    Addr(SocketAddr),
    /// On the main port, next to everything else.
    Public,
    /// Nowhere: `/metrics` and the detailed `/healthz` are off.
    Off,
}

impl std::str::FromStr for OpsListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "public" => Ok(OpsListen::Public),
            "off" | "none" => Ok(OpsListen::Off),
            _ => s.parse().map(OpsListen::Addr).map_err(|_| {
                "expected an address such as 127.0.0.1:9601, \"public\" or \"off\"".to_owned()
            }),
        }
    }
}

/// Binds the ops listener.
pub fn bind(addr: SocketAddr) -> Result<Async<TcpListener>, String> {
    Async::<TcpListener>::bind(addr).map_err(|e| format!("cannot listen on {addr} (ops): {e}"))
}

/// Serves `api` (an [`Api`] of surface `Ops`) on `listener` until the
/// process ends.
pub async fn serve(listener: Async<TcpListener>, api: Arc<Api>, server: ServerHandle) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (socket, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                log::warn!("ops listener: accept failed: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_OPS_CONNECTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            drop(socket);
            continue;
        }
        let (api, server, open) = (api.clone(), server.clone(), open.clone());
        smol::spawn(async move {
            let mut socket = socket;
            // The runtime's own request parsing and answer encoding; the
            // ops endpoints take no body.
            let exchange =
                userlane_smol::serve_http_request(&mut socket, remote, 0, &*api, &server);
            let _ = smol::future::or(async { Some(exchange.await) }, async {
                smol::Timer::after(OPS_TIMEOUT).await;
                None
            })
            .await;
            open.fetch_sub(1, Ordering::AcqRel);
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_listen_values() {
        assert_eq!("public".parse(), Ok(OpsListen::Public));
        assert_eq!("off".parse(), Ok(OpsListen::Off));
        assert_eq!(
            "127.0.0.1:9601".parse(),
            Ok(OpsListen::Addr("127.0.0.1:9601".parse().unwrap()))
        );
        assert!("nowhere".parse::<OpsListen>().is_err());
    }
}
