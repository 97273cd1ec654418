//! Shared by every mason role: the wire messages, the framing that carries them, the
//! handshake and the one connection layer every role's connections go through, the one
//! driver shape for a role's state machine, the transport seam, the spaces/number types,
//! the on-disk records of bound and acknowledged numbers, and the one invariant checker
//! used by `mason local` and the simulator.

pub mod auth;
pub mod codec;
pub mod conn;
pub mod driver;
pub mod logmsg;
pub mod metrics;
pub mod msg;
pub mod procstat;
pub mod record;
pub mod spin;
pub mod statusmsg;
pub mod transport;
pub mod types;
pub mod verify;
pub mod zkmsg;

pub use types::{SpaceMask, MAX_SPACES};
