//! Random layers built from hostile pieces: whatever the unpacker makes of
//! them (and most are refused), nothing outside `dest` changes and nothing
//! panics. `Sandbox::apply` does the checking.

use proptest::prelude::*;
use tar::EntryType;

use super::*;

/// Ordinary names, weighted so most layers get far enough to matter.
const NAMES: &[&str] = &["a", "b", "outside", "sentinel", "sub", "top", "mid"];
/// Pieces that climb, name the directory itself or whiteout things.
const DOTS: &[&str] = &["..", ".", ""];
const WHITEOUTS: &[&str] = &[".wh.a", ".wh.sentinel", ".wh..wh..opq", ".wh.."];

/// Symlink and hard link targets. `{top}` stands for the sandbox's temp
/// dir, the stand-in for `/` (see the module doc of `tests`).
const TARGETS: &[&str] = &[
    "{top}",
    "..",
    "../..",
    "../../..",
    "a",
    "{top}/a",
    "a/b",
    "../outside",
    "../outside/sentinel",
    "{top}/sentinel",
    "{top}/l1",
    "b/../..",
    "sub/deep",
    "{outside}",
    "{outside}/sentinel",
];

#[derive(Debug, Clone)]
enum Op {
    File(String),
    Dir(String),
    Symlink(String, String),
    HardLink(String, String),
    Fifo(String),
}

fn piece() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        10 => prop::sample::select(NAMES),
        2 => prop::sample::select(DOTS),
        1 => prop::sample::select(WHITEOUTS),
    ]
}

fn path() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(piece(), 1..5)).prop_map(|(absolute, parts)| {
        let p = parts.join("/");
        if absolute { format!("/{p}") } else { p }
    })
}

fn op() -> impl Strategy<Value = Op> {
    let target = prop::sample::select(TARGETS).prop_map(str::to_owned);
    prop_oneof![
        4 => path().prop_map(Op::File),
        2 => path().prop_map(Op::Dir),
        3 => (path(), target.clone()).prop_map(|(p, t)| Op::Symlink(p, t)),
        // Also to the layer's own paths, so some links succeed.
        1 => (path(), target).prop_map(|(p, t)| Op::HardLink(p, t)),
        1 => (path(), path()).prop_map(|(p, t)| Op::HardLink(p, t)),
        1 => path().prop_map(Op::Fifo),
    ]
}

fn build(ops: &[Op], sb: &Sandbox) -> Vec<u8> {
    let outside = sb.outside().display().to_string();
    let target = |t: &str| t.replace("{top}", &sb.top()).replace("{outside}", &outside);
    let mut layer = Layer::new();
    for op in ops {
        layer = match op {
            Op::File(p) => layer.file(p, "pwned"),
            Op::Dir(p) => layer.dir(p),
            Op::Symlink(p, t) => layer.symlink(p, &target(t)),
            Op::HardLink(p, t) => layer.hard_link(p, &target(t)),
            Op::Fifo(p) => layer.raw(header(EntryType::Fifo, p, "", 0, 0o644), b""),
        };
    }
    layer.finish()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // A failure prints its minimal case; no regression file in src/.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_hostile_layers_stay_inside(ops in prop::collection::vec(op(), 1..12)) {
        let sb = Sandbox::new();
        let layer = build(&ops, &sb);
        let _ = sb.apply(&layer);
    }
}
