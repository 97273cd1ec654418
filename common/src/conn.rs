//! The one connection layer every role uses: accepted connections ([`serve`]) and
//! reconnecting outgoing links ([`spawn_link`]), both starting with the handshake of
//! [`crate::auth`] and both framed by [`crate::codec::FrameCodec`].
//!
//! - **Who**: a connection's role comes from its handshake; the role's [`Handler`] decides
//!   whether that role may use this port and how large its frames may be, and closes the
//!   connection (with a logged reason) on any frame that role may not send.
//! - **How many**: at most `max_handshakes` connections may be in their handshake at once
//!   (each for at most `handshake_timeout`), and at most `max_conns` past it.
//! - **How much**: every outgoing queue is bounded in bytes ([`Outbox`]): an accepted
//!   connection whose peer stops reading is closed once its queue passes the bound; a link
//!   drops what does not fit (its protocols re-send). Reading never reserves more than
//!   what arrived (see [`crate::codec`]).

mod link;
mod outbox;
mod serve;

pub use link::{dial, spawn_link, Dialed, LinkConfig, LinkHandler, SendOnly};
pub use outbox::{outbox, spawn_writer, Outbox, OutboxRx, Overflow, SendError};
pub use serve::{log_close, serve, ConnInfo, Handler, ServeConfig};

/// Identifies one accepted connection within a process.
pub type ConnId = u64;
