//! Pods through `flotilla-agent`'s own verbs, as root, on real containers:
//! each test has a node of its own (support::pods) and checks that what it
//! ran leaves nothing behind.

mod support;

use support::pods::Node;

#[test]
fn run_streams_the_output_and_exits_with_the_containers_code() {
    let node = Node::new("run-fg");
    let run = node.run(&[
        "run",
        "--rm",
        &node.image,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(run.status.code(), Some(7), "{}", run.text());
    assert_eq!(run.stdout, "out\n", "{}", run.text());
    assert_eq!(run.stderr, "err\n", "{}", run.text());
    node.assert_clean();
}
