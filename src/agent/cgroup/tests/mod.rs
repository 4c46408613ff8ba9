//! Tests of the cgroup module: mountinfo parsing, fake v1 and v2 trees in
//! temporary directories (what our code writes, without a kernel), and the
//! real host's cgroups as root (limits, freeze, OOM, pids, CPU quota).

mod detect;
mod fake_v1;
mod fake_v2;
mod host;

use std::path::Path;

/// Writes a file of a fake cgroup tree, creating its directory.
fn put(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create fake cgroup dir");
    }
    std::fs::write(path, text).expect("write fake cgroup file");
}

fn get(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}
