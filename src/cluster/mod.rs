//! Cluster state: the model between the node sessions that feed it and the
//! console, CLI verbs and controller that read it. Pure: no SSH, sockets or
//! files.

mod clock;
pub mod history;
pub mod resources;

pub use clock::{Clock, ManualClock, SystemClock};
pub use history::Series;
pub use resources::{Allocated, CpuMemory, NodeResources, percent_of};
