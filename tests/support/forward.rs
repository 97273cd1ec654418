//! A loopback TCP forwarder that a test can cut: every connection made to it is relayed
//! to `target` until [`Forwarder::cut`] closes them all; while cut, new connections are
//! closed as they come, until [`Forwarder::resume`]. A ZooKeeper client behind it loses
//! its connection (not its session) and reconnects when resumed. [`Forwarder::retarget`]
//! sends later connections elsewhere (a client that moves to another server).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};

pub struct Forwarder {
    pub addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    paused: Arc<AtomicBool>,
    /// Bumped by every cut: relays of an older generation stop.
    generation: Arc<AtomicU64>,
    cut_tx: tokio::sync::watch::Sender<u64>,
}

impl Forwarder {
    /// Starts relaying from a fresh loopback port to `target` (on the current runtime).
    pub async fn start(target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let paused = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let (cut_tx, cut_rx) = tokio::sync::watch::channel(0u64);
        let (p, g) = (paused.clone(), generation.clone());
        let target = Arc::new(Mutex::new(target));
        let t = target.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if p.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mine = g.load(Ordering::SeqCst);
                let mut cut = cut_rx.clone();
                let to = *t.lock().expect("target");
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(to).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        _ = cut.wait_for(|g| *g > mine) => {}
                    }
                });
            }
        });
        Forwarder {
            addr,
            target,
            paused,
            generation,
            cut_tx,
        }
    }

    /// Closes every relayed connection and refuses new ones until resumed.
    pub fn cut(&self) {
        self.paused.store(true, Ordering::SeqCst);
        let g = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.cut_tx.send(g);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Relays the connections made from now on to `to`.
    pub fn retarget(&self, to: SocketAddr) {
        *self.target.lock().expect("target") = to;
    }
}
