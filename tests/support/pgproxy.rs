//! A TCP proxy in front of the PostgreSQL server, to take the database away from a running
//! hotline without stopping the server the other tests share. [`PgProxy::down`] closes
//! every proxied connection and closes new ones at once (what clients see when the server
//! stops); [`PgProxy::up`] lets connections through again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct PgProxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl PgProxy {
    /// A proxy on an ephemeral loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (up2, links2) = (up.clone(), links.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut links = links2.lock().unwrap();
                links.retain(|l| !l.is_finished());
                links.push(link.abort_handle());
            }
        })
        .abort_handle();
        PgProxy {
            addr,
            up,
            links,
            accept,
        }
    }

    /// `url` (a `postgres://…@127.0.0.1:5432/…` URL) through this proxy.
    pub fn url(&self, url: &str) -> String {
        let at = url.find('@').expect("user@ in the URL") + 1;
        let end = url[at..].find('/').map(|i| at + i).unwrap_or(url.len());
        format!("{}{}{}", &url[..at], self.addr, &url[end..])
    }

    /// The database goes away: open connections are cut, new ones closed at once.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for l in self.links.lock().unwrap().drain(..) {
            l.abort();
        }
    }

    /// The database is back.
    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.down();
    }
}
