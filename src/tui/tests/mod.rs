//! The console without a terminal: each view drawn into ratatui's
//! TestBackend and compared with a reviewed snapshot (the text of the
//! screen, in `snapshots/`; `UPDATE_SNAPSHOTS=1` rewrites them for review),
//! and what each key does per view.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

use super::app::{App, Focus, Mode, View, complete};
use super::backend::Request;
use super::draw::draw;
use super::fixture;
use super::keymap::Keymap;
use super::manifests::scan;
use super::model::{ConsoleData, RowKey};
use super::theme::Theme;
use crate::controller::events::{ControllerEvent, InvolvedObject};

fn app(data: ConsoleData) -> App {
    let mut app = App::new(data, Theme::dark(), Keymap::default());
    app.fixed_now = Some(fixture::now());
    app
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn type_text(app: &mut App, text: &str) -> Vec<Request> {
    text.chars().flat_map(|c| app.on_key(ch(c))).collect()
}

fn render(app: &mut App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|f| draw(f, app)).expect("draw");
    terminal.backend().buffer().clone()
}

fn text_of(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut text = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn snapshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/tui/tests/snapshots")
        .join(format!("{name}.txt"))
}

/// Compares the screen with its reviewed snapshot.
fn assert_snapshot(name: &str, buffer: &Buffer) {
    let actual = text_of(buffer);
    let path = snapshot_path(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no snapshot {} ({e}); run with UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "screen differs from {}: review, and if right, UPDATE_SNAPSHOTS=1",
        path.display()
    );
}

/// The cell holding the first character of `needle` on screen.
fn find(buffer: &Buffer, needle: &str) -> Option<(u16, u16)> {
    let text = text_of(buffer);
    for (y, line) in text.lines().enumerate() {
        if let Some(byte) = line.find(needle) {
            let x = line[..byte].chars().count();
            return Some((x as u16, y as u16));
        }
    }
    None
}

#[test]
fn nodes_view_matches_its_snapshot_with_statuses_coloured() {
    let mut app = app(fixture::cluster(3, 30));
    let buffer = render(&mut app, 120, 16);
    assert_snapshot("nodes", &buffer);
    let (x, y) = find(&buffer, "Unreachable").expect("node3 is shown unreachable");
    assert_eq!(
        buffer[(x, y)].fg,
        Color::Magenta,
        "unreachable has its role"
    );
    // node1's row is selected (selection style); node2's is not.
    let (x, y) = find(&buffer, "node2  Ready").expect("node2 is Ready");
    assert_eq!(buffer[(x + 7, y)].fg, Color::Green, "Ready is green");
    let (x, y) = find(&buffer, "node1").expect("node1");
    assert_eq!(buffer[(x, y)].bg, Color::Cyan, "the selected row");
}

#[test]
fn pods_view_matches_its_snapshot() {
    let mut app = app(fixture::cluster(3, 30));
    app.run_command("pods");
    let buffer = render(&mut app, 120, 24);
    assert_snapshot("pods", &buffer);
    let (x, y) = find(&buffer, "CrashLoopBackOff").expect("a crash-looping pod");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
}

/// The pod's `podIP` (`get pods -o wide`'s IP), or for a hostNetwork pod
/// its status' `hostIP`, else "-"; in describe too.
#[test]
fn each_pods_ip_shows_in_its_column_and_its_description() {
    use crate::controller::world::{NodeState, World};
    let mut data = fixture::cluster(3, 30);
    let mut snapshot = (*data.snapshot).clone();
    let node1 = Arc::make_mut(&mut snapshot.nodes[0]);
    let mut pods = node1.pods.to_vec();
    for record in &mut pods {
        match record.pod.metadata.name.as_str() {
            // On its node's network: the node's address, when the status
            // has it.
            "web-00003" => {
                record.pod.spec.host_network = true;
                record.status.pod_ip.clear();
                record.status.host_ip = "10.77.0.11".into();
            }
            // A node named by host name: no hostIP.
            "web-00006" => {
                record.pod.spec.host_network = true;
                record.status.pod_ip.clear();
                record.status.host_ip.clear();
            }
            _ => {}
        }
    }
    node1.pods = pods.into();
    data.world = Some(Arc::new(World {
        nodes: snapshot
            .nodes
            .iter()
            .map(|n| NodeState {
                name: n.name.clone(),
                pods: n.pods.to_vec(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }));
    data.snapshot = Arc::new(snapshot);
    let mut app = app(data);
    app.run_command("pods");
    let text = text_of(&render(&mut app, 120, 24));
    let row = |name: &str| {
        text.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
    };
    let header = row("NAMESPACE");
    let ip = header
        .iter()
        .position(|&h| h == "IP")
        .expect("an IP column");
    assert_eq!(header[ip + 1], "NODE", "IP before NODE, as in k9s");
    for (pod, shown) in [
        ("web-00001", "10.88.1.2"),
        ("web-00003", "10.77.0.11"),
        ("web-00006", "-"),
        // Still making its sandbox: no address yet.
        ("web-00018", "-"),
    ] {
        assert_eq!(row(pod)[ip], shown, "{pod}");
    }
    // The filter sees it too.
    app.on_key(ch('/'));
    type_text(&mut app, "10.77.0.11");
    app.on_key(key(KeyCode::Enter));
    app.refresh();
    assert_eq!(app.screen().table.len(), 1);
    app.on_key(ch('d'));
    match &app.screen().view {
        View::Describe { lines, .. } => {
            let line = lines
                .iter()
                .find(|l| l.starts_with("IP:"))
                .unwrap_or_else(|| panic!("no IP line: {lines:#?}"));
            assert!(line.ends_with(" 10.77.0.11"), "{line:?}");
        }
        other => panic!("not describing: {other:?}"),
    }
}

/// kubectl shows IP only with `-o wide`: on a screen too narrow for every
/// column, the IP column goes, whole, before the others are cut short.
#[test]
fn on_a_narrow_screen_the_ip_column_goes_first() {
    let mut app = app(fixture::cluster(3, 30));
    app.run_command("pods");
    let wide = text_of(&render(&mut app, 100, 12));
    assert!(
        wide.contains(" IP ") && wide.contains("10.88.1.2"),
        "{wide}"
    );
    let narrow = text_of(&render(&mut app, 84, 12));
    assert!(
        !narrow.contains(" IP ") && !narrow.contains("10.88.1.2"),
        "{narrow}"
    );
    for kept in ["CrashLoopBackOff", "node2", "9m59s"] {
        assert!(narrow.contains(kept), "{kept}:\n{narrow}");
    }
}

#[test]
fn enter_drills_node_to_pods_to_containers_and_esc_goes_back() {
    let mut app = app(fixture::cluster(3, 30));
    app.refresh();
    app.on_key(key(KeyCode::Enter));
    app.refresh();
    assert_eq!(app.screen().view.title(), "Pods on node1");
    assert_eq!(app.screen().table.len(), 10);
    app.on_key(key(KeyCode::Enter));
    let buffer = render(&mut app, 120, 12);
    assert_snapshot("containers", &buffer);
    assert!(matches!(app.screen().view, View::Containers { .. }));
    app.on_key(key(KeyCode::Esc));
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.screen().view, View::Nodes);
    assert!(!app.quit);
    app.on_key(ch('q'));
    assert!(app.quit, "q on the first view quits");
}

#[test]
fn help_lists_every_key_of_the_view() {
    let mut app = app(fixture::cluster(3, 3));
    app.run_command("pods");
    app.on_key(ch('?'));
    assert!(matches!(app.mode, Mode::Help));
    let buffer = render(&mut app, 100, 40);
    assert_snapshot("help-pods", &buffer);
    let text = text_of(&buffer);
    for needle in [
        "kill the pod",
        "delete (asks first)",
        "logs in a pane",
        "follow on/off",
    ] {
        assert!(text.contains(needle), "help lacks {needle:?}");
    }
    app.on_key(ch('x'));
    assert!(matches!(app.mode, Mode::Normal), "any key closes help");
}

#[test]
fn k_kills_the_selected_pod_at_once() {
    let mut app = app(fixture::cluster(3, 30));
    app.run_command("pods");
    app.refresh();
    app.on_key(key(KeyCode::Down));
    let requests = app.on_key(ch('k'));
    match requests.as_slice() {
        [Request::Kill { namespace, name }] => {
            assert_eq!(
                (namespace.as_str(), name.as_str()),
                ("default", "web-00002")
            );
        }
        other => panic!("expected one kill, got {other:?}"),
    }
}

/// The rows' order is the old sort's: (namespace, name, node), node by
/// name, then the waiting pods in the store's order. Names that share
/// their first eight or sixteen bytes, are shorter than eight or are a
/// prefix of another, namespaces met in any order and pods reported by two
/// nodes check the sort key's integer head against plain string order.
#[test]
fn pods_sort_by_namespace_name_and_node_and_the_selection_follows_its_pod() {
    use crate::controller::world::{PendingPod, World};
    let mut data = fixture::cluster(12, 120);
    let mut snapshot = (*data.snapshot).clone();
    let template = snapshot.nodes[0].pods[0].clone();
    let renamed = |namespace: &str, name: &str| {
        let mut record = template.clone();
        record.pod.metadata.namespace = namespace.into();
        record.pod.metadata.name = name.into();
        record
    };
    // Nodes by index: node1, node10, node11 and node2 (name order is not
    // file order).
    let extra = [
        (0, "zeta", "web-0000"),
        (9, "kube", "web-00000"),
        (10, "a", "web"),
        (1, "a", "web-00001"),
        (9, "kube", "web-00000x"),
        (10, "default", "web-00001"),
        (1, "default", "web-0000\u{e9}"),
        // Also on node10: "node10" sorts before "node2".
        (1, "default", "web-00009"),
        // Longer than sixteen bytes and sharing them, or exactly sixteen.
        (9, "default", "payments-api-7d9f8c6b5-x2k4p"),
        (0, "default", "payments-api-7d9f8c6b5-a1b2c"),
        (10, "default", "payments-api-7d9f8c6b5"),
        (1, "default", "payments-api-7d9"),
    ];
    for (n, namespace, name) in extra {
        let node = Arc::make_mut(&mut snapshot.nodes[n]);
        let mut pods = node.pods.to_vec();
        pods.push(renamed(namespace, name));
        pods.sort_by(|a, b| {
            (&a.pod.metadata.namespace, &a.pod.metadata.name)
                .cmp(&(&b.pod.metadata.namespace, &b.pod.metadata.name))
        });
        node.pods = pods.into();
    }
    let pending = |name: &str| PendingPod {
        pod: renamed("default", name).pod,
        status: Default::default(),
    };
    data.world = Some(Arc::new(World {
        pending: vec![pending("zz-waiting"), pending("aa-waiting")],
        ..Default::default()
    }));
    data.snapshot = Arc::new(snapshot);
    let mut expected: Vec<(String, String, String)> = data
        .snapshot
        .nodes
        .iter()
        .flat_map(|n| {
            n.pods.iter().map(|r| {
                let meta = &r.pod.metadata;
                (meta.namespace.clone(), meta.name.clone(), n.name.clone())
            })
        })
        .collect();
    expected.sort();
    for name in ["zz-waiting", "aa-waiting"] {
        expected.push(("default".into(), name.into(), String::new()));
    }
    let mut app = app(data);
    app.run_command("pods");
    app.refresh();
    let keys = |app: &App| -> Vec<(String, String, String)> {
        let table = &app.screen().table;
        (0..table.len())
            .map(|i| match table.key(i) {
                Some(RowKey::Pod {
                    namespace,
                    name,
                    node,
                }) => (namespace, name, node),
                other => panic!("not a pod row: {other:?}"),
            })
            .collect()
    };
    assert_eq!(keys(&app), expected);

    // The stale copy of web-00000 on node10 (the fixture's is on node1,
    // the row before it).
    let stale = expected
        .iter()
        .position(|k| *k == ("kube".into(), "web-00000".into(), "node10".into()))
        .expect("web-00000 on node10");
    assert_eq!(expected[stale - 1].2, "node1");
    for _ in 0..stale {
        app.on_key(key(KeyCode::Down));
    }
    // A pod that sorts first arrives: the selection stays on its pod.
    let mut snapshot = (*app.data.snapshot).clone();
    let node = Arc::make_mut(&mut snapshot.nodes[3]);
    let mut pods = node.pods.to_vec();
    pods.insert(0, renamed("a", "a"));
    node.pods = pods.into();
    app.set_snapshot(Arc::new(snapshot));
    app.refresh();
    assert_eq!(app.screen().selected, stale + 1);
    assert!(matches!(
        app.screen().selected_key(),
        Some(RowKey::Pod { name, node, .. }) if name == "web-00000" && node == "node10"
    ));
}

#[test]
fn s_asks_the_loop_for_a_shell_in_the_selected_pod_or_container() {
    let mut app = app(fixture::cluster(3, 30));
    app.run_command("pods");
    app.refresh();
    app.on_key(key(KeyCode::Down));
    assert!(app.on_key(ch('s')).is_empty(), "no backend request");
    let target = app.shell.take().expect("a shell asked for");
    assert_eq!(
        (target.namespace.as_str(), target.pod.as_str()),
        ("default", "web-00002")
    );
    assert!(!target.node.is_empty());
    assert_eq!(target.container, None);
    // From a pod's containers, that container.
    app.on_key(key(KeyCode::Enter));
    app.refresh();
    app.on_key(ch('s'));
    let target = app.shell.take().expect("a shell asked for");
    assert_eq!(target.pod, "web-00002");
    assert!(target.container.is_some());
    // The footer says how it ended.
    app.shell_ended(&target, Ok(127));
    let (text, error, _) = app.footer.clone().expect("a message");
    assert!(error && text.contains("no shell"), "{text}");
}

#[test]
fn delete_asks_first_and_the_default_answer_is_cancel() {
    let mut app = app(fixture::cluster(3, 30));
    app.run_command("pods");
    app.refresh();
    assert!(app.on_key(ctrl('d')).is_empty());
    assert!(matches!(app.mode, Mode::Confirm { yes: false, .. }));
    let buffer = render(&mut app, 100, 24);
    assert_snapshot("confirm-delete", &buffer);
    assert!(
        app.on_key(key(KeyCode::Enter)).is_empty(),
        "Enter on Cancel"
    );
    assert!(matches!(app.mode, Mode::Normal));
    app.on_key(ctrl('d'));
    app.on_key(key(KeyCode::Right));
    let requests = app.on_key(key(KeyCode::Enter));
    assert!(
        matches!(requests.as_slice(), [Request::DeletePod { name, .. }] if name == "web-00001"),
        "{requests:?}"
    );
}

#[test]
fn readonly_turns_every_mutating_key_off() {
    let mut keymap = Keymap::default();
    keymap.readonly = true;
    let mut app = App::new(fixture::cluster(3, 30), Theme::dark(), keymap);
    app.run_command("pods");
    app.refresh();
    assert!(app.on_key(ch('k')).is_empty());
    assert!(app.on_key(ctrl('d')).is_empty());
    assert!(app.on_key(ch('s')).is_empty());
    assert!(app.shell.is_none(), "no shell under --readonly");
    assert!(matches!(app.mode, Mode::Normal));
    let (text, error, _) = app.footer.clone().expect("a message");
    assert!(error && text.contains("read-only"), "{text}");
    app.run_command("nodes");
    app.refresh();
    for c in ['c', 'u', 'r'] {
        assert!(app.on_key(ch(c)).is_empty(), "{c} under --readonly");
    }
}

#[test]
fn node_keys_cordon_uncordon_and_drain_after_asking() {
    let mut app = app(fixture::cluster(3, 3));
    app.refresh();
    assert!(matches!(
        app.on_key(ch('c')).as_slice(),
        [Request::Cordon { node, unschedulable: true }] if node == "node1"
    ));
    assert!(matches!(
        app.on_key(ch('u')).as_slice(),
        [Request::Cordon {
            unschedulable: false,
            ..
        }]
    ));
    assert!(app.on_key(ch('r')).is_empty(), "drain asks first");
    assert!(matches!(
        app.on_key(ch('y')).as_slice(),
        [Request::Drain { node }] if node == "node1"
    ));
}

#[test]
fn command_mode_completes_and_switches_views() {
    assert_eq!(complete("po"), vec!["pods"]);
    assert_eq!(complete("n"), vec!["nodes", "ns"]);
    let mut app = app(fixture::cluster(3, 30));
    app.on_key(ch(':'));
    type_text(&mut app, "de");
    app.on_key(key(KeyCode::Tab));
    assert!(matches!(&app.mode, Mode::Command(t) if t == "deploy"));
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.screen().view, View::Deployments);
    app.on_key(ch(':'));
    type_text(&mut app, "ns kube");
    app.on_key(key(KeyCode::Enter));
    app.run_command("pods");
    app.refresh();
    assert!(!app.screen().table.is_empty());
    let table = &app.screen().table;
    assert!((0..table.len()).all(|i| matches!(
        table.key(i),
        Some(RowKey::Pod { namespace, .. }) if namespace == "kube"
    )));
    app.on_key(ch(':'));
    type_text(&mut app, "bogus");
    app.on_key(key(KeyCode::Enter));
    let (text, error, _) = app.footer.clone().expect("a message");
    assert!(error && text.contains("unknown command"), "{text}");
}

#[test]
fn filter_takes_a_substring_or_a_regex_and_a_bad_regex_says_why() {
    let mut app = app(fixture::cluster(3, 30));
    app.run_command("pods");
    app.on_key(ch('/'));
    type_text(&mut app, "crash");
    app.on_key(key(KeyCode::Enter));
    app.refresh();
    // web-7, 17 and 27 crash-loop, but 17 is on the unreachable node3: Unknown.
    assert_eq!(app.screen().table.len(), 2);
    app.on_key(ch('/'));
    // The filter line starts with the current filter: clear it first.
    for _ in 0..10 {
        app.on_key(key(KeyCode::Backspace));
    }
    type_text(&mut app, "/web-0000[12]$/");
    app.on_key(key(KeyCode::Enter));
    app.refresh();
    assert_eq!(app.screen().table.len(), 2);
    app.on_key(ch('/'));
    for _ in 0..20 {
        app.on_key(key(KeyCode::Backspace));
    }
    type_text(&mut app, "/web-(/");
    app.on_key(key(KeyCode::Enter));
    let (text, error, _) = app.footer.clone().expect("a message");
    assert!(error && text.contains("regex parse error"), "{text}");
    app.refresh();
    assert_eq!(app.screen().table.len(), 2, "the previous filter stays");
}

#[test]
fn scale_keys_ask_for_one_more_or_one_less() {
    let mut app = app(fixture::cluster(3, 3));
    app.run_command("deploy");
    app.refresh();
    // No deployment read yet: the key says so instead of doing nothing.
    assert!(app.on_key(ch('+')).is_empty());
    let (text, error, _) = app.footer.clone().expect("a message");
    assert!(error && text.contains("not on this row"), "{text}");
}

#[test]
fn manifests_view_lists_each_object_and_a_applies_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/manifests");
    for entry in std::fs::read_dir(&manifests).expect("assets/manifests") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    std::fs::write(dir.path().join("broken.yaml"), "kind: Pod\nmetadata: [\n").expect("write");
    let mut data = fixture::cluster(3, 3);
    data.manifests = Arc::new(scan(&[dir.path().to_path_buf()]));
    let mut app = app(data);
    app.run_command("manifests");
    app.refresh();
    let table = &app.screen().table;
    let rows: Vec<_> = (0..table.len()).map(|i| table.cells(i)).collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let broken = rows
        .iter()
        .find(|cells| cells[0].text.ends_with("broken.yaml"))
        .expect("the broken file is listed");
    assert!(broken[4].text.contains("broken.yaml"), "{:?}", broken[4]);
    let deployment = rows
        .iter()
        .position(|cells| cells[1].text == "Deployment")
        .expect("the deployment");
    for _ in 0..deployment {
        app.on_key(key(KeyCode::Down));
    }
    match app.on_key(ch('a')).as_slice() {
        [Request::Apply(entry)] => {
            assert_eq!(entry.name, "httpd");
            assert!(entry.object.is_some());
        }
        other => panic!("expected an apply, got {other:?}"),
    }
}

#[test]
fn text_from_the_cluster_never_reaches_the_terminal_raw() {
    let mut data = fixture::cluster(3, 3);
    data.store_events = Arc::new(vec![ControllerEvent {
        involved_object: InvolvedObject::pod("default", "web-00000"),
        type_: crate::agent::protocol::messages::EventType::Warning,
        reason: "BackOff".into(),
        message: "boom \x1b]52;c;ZXZpbA==\x07 \x1b[2J\u{9b}31m done".into(),
        time: fixture::now(),
        source: "test".into(),
    }]);
    let mut app = app(data);
    app.run_command("events");
    let buffer = render(&mut app, 120, 12);
    for cell in buffer.content() {
        let symbol = cell.symbol();
        assert!(
            !symbol.chars().any(|c| c.is_control()),
            "a control character reached the screen: {symbol:?}"
        );
    }
    assert!(text_of(&buffer).contains("boom"));
}

#[test]
fn a_terminal_too_small_says_so() {
    let mut app = app(fixture::cluster(3, 3));
    let buffer = render(&mut app, 40, 8);
    let text = text_of(&buffer);
    assert!(text.contains("terminal too small"), "{text}");
}

#[test]
fn logs_open_a_pane_for_the_selected_pod_and_tab_moves_focus() {
    let mut app = app(fixture::cluster(3, 3));
    app.run_command("pods");
    app.refresh();
    let requests = app.on_key(ch('l'));
    match requests.as_slice() {
        [Request::Logs { targets, .. }] => {
            assert_eq!(targets.len(), 1);
            assert_eq!(targets[0].pod, "web-00001");
            assert_eq!(targets[0].node, "node2");
        }
        other => panic!("expected logs, got {other:?}"),
    }
    assert_eq!(app.focus, Focus::Pane(0));
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.focus, Focus::Table);
    // Five panes asked for: the oldest closes, four stay.
    for _ in 0..4 {
        app.on_key(ch('l'));
        app.on_key(key(KeyCode::Esc));
    }
    assert_eq!(app.panes.len(), 4);
    // q closes the panes before it quits.
    let closed = app.on_key(ch('q'));
    assert_eq!(closed.len(), 4, "{closed:?}");
    assert!(!app.quit);
    app.on_key(ch('q'));
    assert!(app.quit);
}
