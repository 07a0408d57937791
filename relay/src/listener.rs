//! The accept loop: a cap on concurrent connections per client IP, a timeout for reading HTTP
//! request headers, `TCP_NODELAY`, and graceful shutdown of HTTP connections.
//!
//! This is `axum::serve` with two limits it does not offer: a client that opens connections
//! and sends half a request header held them (and ~14 KiB each) for as long as it liked.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// The limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections one client IP may hold open at once (HTTP and WebSocket alike);
    /// `None`: no cap (behind a trusted reverse proxy every peer is the proxy).
    pub per_ip: Option<usize>,
    /// A request's headers must arrive within this long, or the connection is closed.
    pub header_timeout: Duration,
}

/// Open connections per client IP. A connection holds an [`IpSlot`] until it is dropped.
#[derive(Debug, Default)]
struct IpSlots {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl IpSlots {
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<IpSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_default();
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(IpSlot { slots: self.clone(), ip })
    }
}

#[derive(Debug)]
struct IpSlot {
    slots: Arc<IpSlots>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A TCP stream that keeps its IP's slot for as long as it lives: after a WebSocket upgrade the
/// socket task owns it, so long-lived sockets count too.
struct CountedStream {
    inner: TcpStream,
    _slot: Option<IpSlot>,
}

impl AsyncRead for CountedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets HTTP requests in flight
/// finish (upgraded sockets are the caller's to close).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(IpSlots::default());
    let connections = TaskTracker::new();
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match limits.per_ip {
            None => None,
            Some(cap) => match slots.take(addr.ip(), cap) {
                Some(slot) => Some(slot),
                None => {
                    // Refused before any byte is read: the cheapest answer to a flood.
                    metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(ip = %addr.ip(), "per-IP connection cap reached");
                    continue;
                }
            },
        };
        // TCP_NODELAY on every connection: a socket's frames leave as soon as they are written.
        // With Nagle on, a small frame written while an earlier one is unacknowledged waits for
        // the peer's delayed ACK (up to 40 ms on Linux): a fan-out's p99 was that wait.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let io = TokioIo::new(CountedStream { inner: tcp, _slot: slot });
        let service = app.clone().map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
            request
        });
        let stop = stop.clone();
        connections.spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
            let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
}
