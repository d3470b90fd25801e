//! What the guardctl integration tests share: a real server on an ephemeral port.
#![allow(dead_code)]

use guardctl::api::{ServeConfig, Server};
use guardctl::cli::client::AdminClient;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A server on an ephemeral port, on its own runtime thread; stopped (gracefully) on drop.
pub struct TestServer {
    pub url: String,
    pub admin_token: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub fn start(db_path: &Path) -> TestServer {
        Self::start_with_page_size(db_path, 1000)
    }

    pub fn start_with_page_size(db_path: &Path, sync_page_size: usize) -> TestServer {
        Self::start_config(ServeConfig {
            sync_page_size,
            ..ServeConfig::new(db_path)
        })
    }

    /// A server with its admin token in `admin_token_file` (replicas share one).
    pub fn start_with(db_path: &Path, admin_token_file: Option<PathBuf>) -> TestServer {
        Self::start_config(ServeConfig {
            admin_token_file,
            ..ServeConfig::new(db_path)
        })
    }

    fn start_config(config: ServeConfig) -> TestServer {
        let server = Server::open(&config).expect("open server");
        let admin_token = std::fs::read_to_string(server.admin_token_path()).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                server
                    .run(listener, async move {
                        let _ = stopped.await;
                    })
                    .await
            })
        });
        TestServer {
            url,
            admin_token,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn client(&self) -> AdminClient {
        AdminClient::new(&self.url, self.admin_token.clone()).unwrap()
    }

    /// Stops the server and waits for `run` to return, failing if it takes too long.
    pub fn stop(mut self) {
        self.shutdown_within(Duration::from_secs(10));
    }

    pub fn shutdown_within(&mut self, limit: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let started = Instant::now();
            while !thread.is_finished() {
                assert!(
                    started.elapsed() < limit,
                    "server did not stop in {limit:?}"
                );
                thread::sleep(Duration::from_millis(10));
            }
            thread.join().unwrap().expect("server run failed");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.shutdown_within(Duration::from_secs(10));
        }
    }
}
