//! Which entry of an image index this host runs: os, architecture and CPU
//! variant, matched as containerd does (oci-client's default resolver ignores
//! variants, which would hand an ARMv6 host an ARMv7 image).

use super::manifest::{Descriptor, Platform};

/// The platform of this host (the one the agent runs on).
pub fn host() -> Platform {
    let architecture = crate::registry::oci_architecture().to_string();
    let variant = match architecture.as_str() {
        "arm" => arm_variant(),
        "arm64" => Some("v8".to_string()),
        _ => None,
    };
    Platform {
        os: "linux".into(),
        architecture,
        variant,
    }
}

/// 32-bit ARM: the "CPU architecture" line of /proc/cpuinfo (7 → v7).
fn arm_variant() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("CPU architecture"))
        .and_then(|rest| rest.trim_start_matches([' ', '\t', ':']).chars().next())
        .filter(char::is_ascii_digit)
        .map(|d| format!("v{d}"))
}

/// How well an index entry's platform suits `host`: None if it cannot run,
/// otherwise higher is better.
fn fitness(entry: &Platform, host: &Platform) -> Option<u16> {
    if entry.os != host.os || entry.architecture != host.architecture {
        return None;
    }
    let want = host.variant.as_deref();
    let have = entry.variant.as_deref();
    match (host.architecture.as_str(), want, have) {
        (_, w, h) if w == h => Some(300),
        // arm64 is v8 whether or not the index says so.
        ("arm64", Some("v8"), None) => Some(300),
        // An older ARM variant runs on a newer CPU, the closer the better.
        ("arm", Some(w), Some(h)) => {
            let (w, h) = (variant_number(w)?, variant_number(h)?);
            (h < w).then(|| 200 - u16::from(w - h))
        }
        // amd64 v1 is the baseline every x86-64 CPU runs.
        ("amd64", None, Some("v1")) => Some(200),
        (_, _, None) => Some(100),
        _ => None,
    }
}

fn variant_number(v: &str) -> Option<u8> {
    v.strip_prefix('v')?.parse().ok()
}

/// The best entry of an index for `host`, skipping attestation manifests.
pub fn choose<'a>(entries: &'a [Descriptor], host: &Platform) -> Option<&'a Descriptor> {
    entries
        .iter()
        .filter_map(|e| Some((e, fitness(e.platform.as_ref()?, host)?)))
        .max_by_key(|(_, score)| *score)
        .map(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: format!("sha256:{arch}{}", variant.unwrap_or("")),
            size: 1,
            platform: Some(Platform {
                os: "linux".into(),
                architecture: arch.into(),
                variant: variant.map(str::to_string),
            }),
        }
    }

    fn host_of(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
        }
    }

    #[test]
    fn variants_are_honoured() {
        let index = vec![
            entry("amd64", None),
            entry("arm", Some("v6")),
            entry("arm", Some("v7")),
            entry("arm64", None),
        ];
        let pick =
            |arch, variant| choose(&index, &host_of(arch, variant)).map(|e| e.digest.clone());
        assert_eq!(pick("arm", Some("v7")).as_deref(), Some("sha256:armv7"));
        assert_eq!(pick("arm", Some("v6")).as_deref(), Some("sha256:armv6"));
        assert_eq!(pick("arm", Some("v5")), None);
        assert_eq!(pick("arm64", Some("v8")).as_deref(), Some("sha256:arm64"));
        assert_eq!(pick("amd64", None).as_deref(), Some("sha256:amd64"));
        assert_eq!(pick("s390x", None), None);
        // An ARMv8 32-bit host takes v7 over v6.
        assert_eq!(pick("arm", Some("v8")).as_deref(), Some("sha256:armv7"));
    }

    #[test]
    fn attestations_and_other_oses_are_skipped() {
        let mut attestation = entry("amd64", None);
        attestation.platform = Some(Platform {
            os: "unknown".into(),
            architecture: "unknown".into(),
            variant: None,
        });
        let index = vec![attestation, entry("amd64", None)];
        assert_eq!(
            choose(&index, &host_of("amd64", None)).map(|e| e.digest.as_str()),
            Some("sha256:amd64")
        );
    }
}
