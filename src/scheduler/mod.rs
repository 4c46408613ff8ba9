//! The scheduler: a pure function from (pod, nodes with their allocations) to a
//! chosen node or a readable explanation, as kube-scheduler's filter and score
//! plugins decide it. It imports only `api` and does no I/O. (Issue 6 fills it.)
