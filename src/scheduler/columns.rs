//! Facts about some of the nodes, kept as columns: for one label key, one
//! image or one deployment, the (node index, value) pairs of the nodes that
//! have it, sorted by node. A decision reads only the columns its pod
//! names — the keys of its node selection, its images, its deployment — and
//! walks each in step with the search ([`Cursor`]), so it reads memory in
//! order and never looks at a node's other labels, images or replicas.

/// (node index, value), sorted by node index.
pub(super) type Column<T> = Vec<(u32, T)>;

fn find<T>(column: &[(u32, T)], node: u32) -> Result<usize, usize> {
    column.binary_search_by_key(&node, |&(n, _)| n)
}

/// Sets the node's value.
pub(super) fn set<T>(column: &mut Column<T>, node: u32, value: T) {
    match find(column, node) {
        Ok(i) => column[i].1 = value,
        Err(i) => column.insert(i, (node, value)),
    }
}

/// Removes the node's value, if it has one.
pub(super) fn unset<T>(column: &mut Column<T>, node: u32) {
    if let Ok(i) = find(column, node) {
        column.remove(i);
    }
}

/// Adds one to the node's count.
pub(super) fn increment(column: &mut Column<u32>, node: u32) {
    match find(column, node) {
        Ok(i) => column[i].1 += 1,
        Err(i) => column.insert(i, (node, 1)),
    }
}

/// Takes one from the node's count; a count of 0 leaves the column.
pub(super) fn decrement(column: &mut Column<u32>, node: u32) {
    if let Ok(i) = find(column, node) {
        column[i].1 -= 1;
        if column[i].1 == 0 {
            column.remove(i);
        }
    }
}

/// Reads a column node by node as a search goes: from its start to the last
/// node, then from node 0 on (once it wraps round). Each call costs the
/// entries skipped since the last, so a search reads each column once.
pub(super) struct Cursor<'a, T> {
    entries: &'a [(u32, T)],
    pos: usize,
    last: u32,
}

impl<'a, T: Copy> Cursor<'a, T> {
    /// A cursor at node `start` of `nodes`.
    pub fn new(entries: &'a [(u32, T)], start: usize, nodes: usize) -> Self {
        let start32 = u32::try_from(start).unwrap_or(u32::MAX);
        Self {
            entries,
            pos: first_at_or_after(entries, start32, start, nodes),
            last: start32,
        }
    }

    /// The node's value, if it has one.
    pub fn at(&mut self, node: usize) -> Option<T> {
        let node = u32::try_from(node).unwrap_or(u32::MAX);
        if node < self.last {
            // The search wrapped round.
            self.pos = 0;
        }
        self.last = node;
        while let Some(&(n, _)) = self.entries.get(self.pos) {
            if n >= node {
                break;
            }
            self.pos += 1;
        }
        match self.entries.get(self.pos) {
            Some(&(n, value)) if n == node => Some(value),
            _ => None,
        }
    }
}

/// The position of the first entry for node `start` or a later one. A
/// column's nodes are spread over all `nodes`, so the entry is near the same
/// share of the column: look there first, and only search the column when
/// it is not within a few entries (a search costs a cache miss a step, and
/// the columns a decision reads are seldom in the cache).
fn first_at_or_after<T>(
    entries: &[(u32, T)],
    start: u32,
    start_index: usize,
    nodes: usize,
) -> usize {
    const NEAR: usize = 8;
    let len = entries.len();
    if len == 0 || nodes == 0 {
        return 0;
    }
    let guess = ((start_index as u128 * len as u128) / nodes as u128).min(len as u128) as usize;
    let mut pos = guess;
    for _ in 0..NEAR {
        if pos > 0 && entries[pos - 1].0 >= start {
            pos -= 1;
        } else if pos < len && entries[pos].0 < start {
            pos += 1;
        } else {
            return pos;
        }
    }
    entries.partition_point(|&(n, _)| n < start)
}
