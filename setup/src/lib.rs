//! Everything about the machines of a real cluster: Mason's `machine_info.txt` (one
//! machine a line, its role taken from its name), the Emulab/CloudLab "List View" paste it
//! is made from, and running commands and copying files on those machines over SSH.

pub mod listview;
pub mod machines;
pub mod probe;
pub mod ssh;

pub use machines::{parse_machine_info, Machine, MachineError, Role};
