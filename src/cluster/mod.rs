//! Cluster state: the model between the node sessions that feed it and the
//! console, CLI verbs and controller that read it. Pure: no SSH, sockets or
//! files.

mod clock;
pub mod history;

pub use clock::{Clock, ManualClock, SystemClock};
pub use history::Series;
