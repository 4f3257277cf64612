//! What every fake does the same way around its own routes: serve them on `127.0.0.1:0` in a task
//! of the test's runtime, stop when its handle goes, and send its provider's notifications with a
//! plain HTTP client.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A router served on a free local port. Dropping it stops the server.
pub(crate) struct LocalServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LocalServer {
    /// Binds `127.0.0.1:0` and serves `app` until stopped; `name` says which fake in a panic.
    pub(crate) async fn start(app: Router, name: &str) -> LocalServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the {name} fake to a free local port: {e}"));
        let addr = listener.local_addr().expect("a bound listener's address");
        let (stop, stopped) = oneshot::channel::<()>();
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    stopped.await.ok();
                })
                .await
                .unwrap_or_else(|e| panic!("serving the {name} fake: {e}"));
        });
        LocalServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits until the server has let go of its port.
    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            task.await.ok();
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The client a fake sends its webhooks with: `timeout` for the whole exchange, no proxy (they
/// go to a local receiver, which a proxy from the environment must not take).
pub(crate) fn outbound_client(timeout: Duration, user_agent: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .user_agent(user_agent)
        .build()
        .expect("a plain HTTP client")
}
