//! Pods on this host: their persisted specs and statuses, the lifecycle of
//! their containers (create, start, stop, restart with back-off) and the
//! policies the kubelet applies. (Being built for issue 4: the back-off
//! schedule is here; the lifecycle joins it once the runtime, cgroup, log and
//! protocol modules land.)

pub mod backoff;
