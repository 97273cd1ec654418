//! The transport seam: anything that gives ordered, reliable byte streams between
//! addresses. Kernel TCP is the default; another transport (a kernel-bypass one, say)
//! implements [`Transport`] and every role runs on it unchanged.

use futures::future::BoxFuture;
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};

pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// One established connection, split into its halves.
pub struct Connection {
    pub read: BoxRead,
    pub write: BoxWrite,
    pub peer: String,
}

pub trait Listener: Send {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Connection>>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

pub trait Transport: Send + Sync + 'static {
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Connection>>;
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>>;
}

/// Kernel TCP with Nagle off.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tcp;

fn split(stream: tokio::net::TcpStream) -> io::Result<Connection> {
    stream.set_nodelay(true)?;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let (r, w) = stream.into_split();
    Ok(Connection {
        read: Box::new(r),
        write: Box::new(w),
        peer,
    })
}

struct TcpListener(tokio::net::TcpListener);

impl Listener for TcpListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Connection>> {
        Box::pin(async move {
            let (s, _) = self.0.accept().await?;
            split(s)
        })
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Transport for Tcp {
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Connection>> {
        Box::pin(async move { split(tokio::net::TcpStream::connect(addr).await?) })
    }
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TcpListener(l)) as Box<dyn Listener>)
        })
    }
}
