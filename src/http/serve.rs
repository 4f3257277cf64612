//! Serving connections. `axum::serve` gives hyper no timer, so a client could take as long as it
//! liked to send a request's head (one was served after 45 s), each such connection holding its
//! task and socket. Here hyper's HTTP/1 connections run with a header-read timeout; each request
//! carries its connection's remote address (`ConnectInfo`, for the rate limit); on shutdown no
//! connection is accepted any more, idle ones close and requests in flight finish.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::Layer;

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the requests in
/// flight. A request's head must arrive within `header_read_timeout` of the connection starting
/// to wait for it (an idle keep-alive connection is closed after as long), else the connection
/// is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = Extension(ConnectInfo::<SocketAddr>(remote)).layer(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        tokio::spawn(async move {
            // A client that went away, or was too slow with its head: nothing to act on.
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %remote, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// As `axum::serve` does: a connection that failed before it was accepted concerns that client
/// only; anything else (out of file descriptors) is logged and retried after a pause, rather
/// than spinning.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(err.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
