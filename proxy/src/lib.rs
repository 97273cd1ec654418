//! placeholder
use raft as _; use protobuf as _; use slog as _;
