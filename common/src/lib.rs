//! Shared by every mason role: the wire messages, the framing that carries them, the
//! transport seam, the spaces/number types, the on-disk records of bound and acknowledged
//! numbers, and the one invariant checker used by `mason local` (and, later, the simulator).

pub mod frame;
pub mod logmsg;
pub mod msg;
pub mod record;
pub mod transport;
pub mod types;
pub mod verify;

pub use types::{SpaceMask, MAX_SPACES};
