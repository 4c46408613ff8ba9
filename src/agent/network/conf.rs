//! The JSON flotilla speaks to CNI plugins: the network configuration list
//! (bridge + host-local + portmap), the per-plugin stdin libcni would build
//! from it, and reading an ADD result back into an [`Attachment`].

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use super::{Attachment, Ipv4Net, NetworkConfig, PortMapping};

/// The pod's interface: what Kubernetes and every CNI runtime call it.
pub(crate) const POD_IFNAME: &str = "eth0";

/// The network configuration list for this node: one bridge with the
/// gateway address on it, host-local leases from the node's pod subnet, and
/// portmap for `hostPort`s.
///
/// * `isGateway`: the bridge holds the subnet's first address, the pods' default route.
/// * `ipMasq` off: bridge would install a nat chain per pod (two iptables
///   runs at every ADD, three at every DEL) and masquerade pod-to-pod
///   traffic across nodes too; the node has one rule instead
///   ([`super::masq::ensure_node_rules`]).
/// * `hairpinMode`: a pod can reach itself through its own host port.
/// * host-local's `dataDir` is under the agent's state dir, not
///   `/var/lib/cni/networks`: demo nodes share one filesystem, and two nodes
///   leasing from one directory would hand out each other's addresses.
pub(crate) fn conflist(config: &NetworkConfig, cni_version: &str) -> Value {
    let subnet = config.pod_subnet.network();
    let mut range = Map::new();
    range.insert("subnet".into(), json!(subnet.to_string()));
    if let Some(gateway) = gateway(&config.pod_subnet) {
        range.insert("gateway".into(), json!(gateway.to_string()));
    }
    json!({
        "cniVersion": cni_version,
        "name": config.network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[Value::Object(range)]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": config.state_dir.join("ipam").to_string_lossy(),
                },
            },
            {
                "type": "portmap",
                "capabilities": {"portMappings": true},
                "snat": true,
            },
        ],
    })
}

/// The gateway of a pod subnet: its first host, when it has one.
pub(crate) fn gateway(subnet: &Ipv4Net) -> Option<Ipv4Addr> {
    (subnet.prefix < 31).then(|| subnet.host(1)).flatten()
}

/// The single-plugin configuration that brings the pod's `lo` up.
pub(crate) fn loopback(network_name: &str, cni_version: &str) -> Value {
    json!({"cniVersion": cni_version, "name": network_name, "type": "loopback"})
}

/// What the runtime offers for capabilities (CNI CONVENTIONS.md): the pod's
/// port mappings, under the name portmap declares.
pub(crate) fn runtime_config(ports: &[PortMapping]) -> Map<String, Value> {
    let mappings = ports
        .iter()
        .map(|p| {
            let mut m = Map::new();
            m.insert("hostPort".into(), json!(p.host_port));
            m.insert("containerPort".into(), json!(p.container_port));
            m.insert("protocol".into(), json!(p.protocol));
            if let Some(ip) = p.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
                m.insert("hostIP".into(), json!(ip));
            }
            Value::Object(m)
        })
        .collect();
    let mut rc = Map::new();
    rc.insert("portMappings".into(), Value::Array(mappings));
    rc
}

/// The stdin for one plugin of `list`, as the spec's "Deriving execution
/// configuration from plugin configuration" says: the plugin's object with
/// the list's `name` and `cniVersion`, the previous result, and a
/// `runtimeConfig` holding only the capabilities the plugin declared.
pub(crate) fn plugin_stdin(
    list: &Value,
    plugin: &Value,
    prev_result: Option<&Value>,
    runtime: &Map<String, Value>,
) -> Value {
    let mut conf = plugin.as_object().cloned().unwrap_or_default();
    conf.insert("name".into(), list["name"].clone());
    conf.insert("cniVersion".into(), list["cniVersion"].clone());
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    let declared = conf.get("capabilities").and_then(Value::as_object);
    let offered: Map<String, Value> = runtime
        .iter()
        .filter(|(key, _)| {
            declared.and_then(|caps| caps.get(key.as_str())) == Some(&Value::Bool(true))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !offered.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(offered));
    }
    Value::Object(conf)
}

/// The pod's address out of an ADD result (CNI 0.4.0 or 1.0.0 shape): the
/// IPv4 entry of `ips` whose `interface` index names `ifname` inside the
/// sandbox, or the first IPv4 entry when none says.
pub(crate) fn attachment(result: &Value, ifname: &str) -> Result<Attachment, String> {
    let interfaces = result
        .get("interfaces")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let pod_if = interfaces.iter().position(|i| {
        i.get("name").and_then(Value::as_str) == Some(ifname)
            && i.get("sandbox")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
    });
    let ips = result
        .get("ips")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("the result has no `ips`: {result}"))?;
    let v4: Vec<(&Value, Ipv4Net)> = ips
        .iter()
        .filter_map(|ip| {
            let net = ip.get("address")?.as_str()?.parse::<Ipv4Net>().ok()?;
            Some((ip, net))
        })
        .collect();
    let (entry, address) = v4
        .iter()
        .find(|(ip, _)| {
            pod_if.is_some()
                && ip.get("interface").and_then(Value::as_u64) == pod_if.map(|i| i as u64)
        })
        .or_else(|| v4.first())
        .ok_or_else(|| format!("the result has no IPv4 address: {result}"))?;
    let gateway = match entry.get("gateway").and_then(Value::as_str) {
        Some(text) => Some(
            text.parse::<Ipv4Addr>()
                .map_err(|_| format!("the result's gateway `{text}` is not an IPv4 address"))?,
        ),
        None => None,
    };
    Ok(Attachment {
        ip: address.addr,
        prefix: address.prefix,
        gateway,
        interface: ifname.to_string(),
        result: result.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn config() -> NetworkConfig {
        NetworkConfig {
            pod_subnet: "10.88.3.0/24".parse().unwrap(),
            cluster_cidr: "10.88.0.0/16".parse().unwrap(),
            plugin_dirs: vec!["/usr/lib/cni".into()],
            state_dir: PathBuf::from("/var/lib/flotilla/network"),
            bridge: "flotilla0".into(),
            network_name: "flotilla".into(),
        }
    }

    #[test]
    fn conflist_shape() {
        let list = conflist(&config(), "1.0.0");
        assert_eq!(
            list,
            json!({
                "cniVersion": "1.0.0",
                "name": "flotilla",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": "flotilla0",
                        "isGateway": true,
                        "ipMasq": false,
                        "hairpinMode": true,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": "10.88.3.0/24", "gateway": "10.88.3.1"}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": "/var/lib/flotilla/network/ipam",
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
                ],
            })
        );
        // Host bits in the configured subnet do not reach the plugin.
        let mut odd = config();
        odd.pod_subnet = "10.88.3.9/24".parse().unwrap();
        let list = conflist(&odd, "0.4.0");
        assert_eq!(list["cniVersion"], "0.4.0");
        assert_eq!(
            list["plugins"][0]["ipam"]["ranges"][0][0],
            json!({"subnet": "10.88.3.0/24", "gateway": "10.88.3.1"})
        );
        assert_eq!(
            loopback("flotilla", "1.0.0"),
            json!({"cniVersion": "1.0.0", "name": "flotilla", "type": "loopback"})
        );
    }

    #[test]
    fn stdin_carries_name_version_prev_result_and_declared_capabilities() {
        let list = conflist(&config(), "1.0.0");
        let ports = [
            PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: None,
            },
            PortMapping {
                host_port: 5353,
                container_port: 53,
                protocol: "udp".into(),
                host_ip: Some("10.77.0.11".into()),
            },
        ];
        let rc = runtime_config(&ports);
        let prev = json!({"cniVersion": "1.0.0", "ips": []});

        let bridge = plugin_stdin(&list, &list["plugins"][0], None, &rc);
        assert_eq!(bridge["name"], "flotilla");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert_eq!(bridge["type"], "bridge");
        // bridge declares no capabilities: no runtimeConfig, no prevResult on the first.
        assert!(bridge.get("runtimeConfig").is_none());
        assert!(bridge.get("prevResult").is_none());

        let portmap = plugin_stdin(&list, &list["plugins"][1], Some(&prev), &rc);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"],
            json!({"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "10.77.0.11"},
            ]})
        );
        assert_eq!(portmap["capabilities"], json!({"portMappings": true}));
    }

    fn result_1_0_0() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "flotilla0", "mac": "62:c8:a2:67:a8:3d"},
                {"name": "veth529a73da", "mac": "f6:bb:71:b4:83:22"},
                {"name": "eth0", "mac": "ae:d5:8e:2f:f7:29", "sandbox": "/run/netns/p"},
            ],
            "ips": [
                {"interface": 0, "address": "10.88.3.1/24"},
                {"interface": 2, "address": "10.88.3.2/24", "gateway": "10.88.3.1"},
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {},
        })
    }

    #[test]
    fn reads_the_pod_address_from_results() {
        let a = attachment(&result_1_0_0(), "eth0").unwrap();
        assert_eq!(a.ip, Ipv4Addr::new(10, 88, 3, 2));
        assert_eq!(a.prefix, 24);
        assert_eq!(a.gateway, Some(Ipv4Addr::new(10, 88, 3, 1)));
        assert_eq!(a.interface, "eth0");
        assert_eq!(a.result, result_1_0_0());

        // 0.4.0 carries `version`; IPv6 entries are skipped.
        let old = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "sandbox": "/proc/1/ns/net"}],
            "ips": [
                {"version": "6", "interface": 0, "address": "fd00::2/64"},
                {"version": "4", "interface": 0, "address": "10.88.3.9/24", "gateway": "10.88.3.1"},
            ],
        });
        let a = attachment(&old, "eth0").unwrap();
        assert_eq!((a.ip, a.prefix), (Ipv4Addr::new(10, 88, 3, 9), 24));

        // No interface indexes at all: the first IPv4 entry.
        let bare = json!({"ips": [{"address": "10.88.3.4/24"}]});
        let a = attachment(&bare, "eth0").unwrap();
        assert_eq!((a.ip, a.gateway), (Ipv4Addr::new(10, 88, 3, 4), None));

        for bad in [
            json!({"cniVersion": "1.0.0"}),
            json!({"ips": []}),
            json!({"ips": [{"address": "fd00::2/64"}]}),
            json!({"ips": [{"address": "10.88.3.4/24", "gateway": "nope"}]}),
        ] {
            assert!(attachment(&bad, "eth0").is_err(), "{bad}");
        }
    }
}
