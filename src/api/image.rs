//! Image references, only as far as the pull-policy default needs them: whether an
//! image names a tag, which one, and whether it is pinned by digest. Registry
//! hosts with ports (`10.77.0.1:5000/demo/busybox`) are why the tag is looked for
//! only after the last `/`.

use super::pod::PullPolicy;

/// An image reference split into its parts; nothing is normalised or checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageRef<'a> {
    /// Everything before the tag and digest, registry included.
    pub name: &'a str,
    pub tag: Option<&'a str>,
    /// `sha256:...`, without the `@`.
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    pub fn parse(image: &'a str) -> Self {
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (image, None),
        };
        let last_component = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_component..].rfind(':') {
            Some(i) => {
                let colon = last_component + i;
                (&rest[..colon], Some(&rest[colon + 1..]))
            }
            None => (rest, None),
        };
        Self { name, tag, digest }
    }

    /// The tag a runtime pulls: the one written, else `latest` unless pinned by digest.
    pub fn effective_tag(&self) -> Option<&'a str> {
        match (self.tag, self.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }
}

/// A reference with Docker's defaults applied and every part checked against
/// the distribution grammar: `busybox` is `docker.io/library/busybox:latest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedImage {
    /// `host[:port]`; `docker.io` for Docker Hub.
    pub registry: String,
    pub repository: String,
    /// None only when the reference is pinned by digest alone.
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl NormalizedImage {
    /// Parses and normalises `image`; the error says which part is wrong.
    pub fn parse(image: &str) -> Result<NormalizedImage, String> {
        let parts = ImageRef::parse(image);
        if parts.name.is_empty() {
            return Err("the image name is empty".into());
        }
        let (registry, path) = match parts.name.split_once('/') {
            // The first component is a registry only if it looks like a host.
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), parts.name.to_string()),
        };
        check_registry(&registry)?;
        let repository = if registry == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        for component in repository.split('/') {
            check_path_component(component)?;
        }
        if registry.len() + 1 + repository.len() > 255 {
            return Err("the image name is longer than 255 characters".into());
        }
        if let Some(tag) = parts.tag {
            check_tag(tag)?;
        }
        if let Some(digest) = parts.digest {
            check_digest(digest)?;
        }
        let tag = match (parts.tag, parts.digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(NormalizedImage {
            registry,
            repository,
            tag,
            digest: parts.digest.map(str::to_string),
        })
    }
}

impl std::fmt::Display for NormalizedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `host`, `host:port`, or `[ipv6]:port`, as a reference may name a registry.
fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry {registry:?}: unclosed '['"))?;
        if v6.is_empty()
            || !v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("registry {registry:?}: not an IPv6 address"));
        }
        (None, after.strip_prefix(':'))
    } else {
        match registry.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!("registry {registry:?}: not a host name"));
        }
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("registry {registry:?}: {port:?} is not a port"));
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, the distribution grammar's path component.
fn check_path_component(component: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "repository component {component:?}: use lowercase letters and digits, separated by '.', '_', '__' or dashes"
        )
    };
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return Err(bad());
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?}: use up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        ))
    }
}

/// `algorithm:hex`; sha256 must have 64 lowercase hex digits.
fn check_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!(
            "digest {digest:?}: write it as sha256:<64 hex digits>"
        ));
    };
    let hex_ok = !hex.is_empty()
        && hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    match algorithm {
        "sha256" if hex.len() == 64 && hex_ok => Ok(()),
        "sha512" if hex.len() == 128 && hex_ok => Ok(()),
        _ => Err(format!(
            "digest {digest:?}: write it as sha256:<64 lowercase hex digits>"
        )),
    }
}

/// Kubernetes' default `imagePullPolicy`: `Always` for `:latest` (written or
/// implied by an untagged, undigested image), else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> PullPolicy {
    if ImageRef::parse(image).effective_tag() == Some("latest") {
        PullPolicy::Always
    } else {
        PullPolicy::IfNotPresent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_as_docker_does() {
        let n = |s: &str| NormalizedImage::parse(s).map(|i| i.to_string());
        assert_eq!(
            n("busybox").as_deref(),
            Ok("docker.io/library/busybox:latest")
        );
        assert_eq!(n("user/app:1.2").as_deref(), Ok("docker.io/user/app:1.2"));
        assert_eq!(
            n("10.77.0.1:5000/demo/busybox").as_deref(),
            Ok("10.77.0.1:5000/demo/busybox:latest")
        );
        assert_eq!(n("localhost/x").as_deref(), Ok("localhost/x:latest"));
        assert_eq!(n("ghcr.io/a/b/c:v1").as_deref(), Ok("ghcr.io/a/b/c:v1"));
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&format!("nginx@{digest}")),
            Ok(format!("docker.io/library/nginx@{digest}"))
        );
        assert_eq!(
            n(&format!("[::1]:5000/x:t@{digest}")),
            Ok(format!("[::1]:5000/x:t@{digest}"))
        );
        assert_eq!(
            n("a__b/c-d--e.f").as_deref(),
            Ok("docker.io/a__b/c-d--e.f:latest")
        );
    }

    #[test]
    fn names_the_wrong_part() {
        let e = |s: &str| NormalizedImage::parse(s).expect_err(s);
        assert!(e("Upper/case").contains("repository component \"Upper\""));
        assert!(e("x:-tag").contains("tag"));
        assert!(e("x@sha256:abc").contains("digest"));
        assert!(e("host:0/x").contains("port"));
        assert!(e("a..b/x").contains("registry"));
        assert!(e("x/a..b").contains("repository"));
        assert!(e("").contains("empty"));
        assert!(e("x/").contains("repository"));
    }

    #[test]
    fn splits_tags_after_the_last_slash() {
        let r = ImageRef::parse("10.77.0.1:5000/demo/busybox");
        assert_eq!(
            (r.name, r.tag, r.digest),
            ("10.77.0.1:5000/demo/busybox", None, None)
        );
        let r = ImageRef::parse("10.77.0.1:5000/demo/busybox:1.36");
        assert_eq!(
            (r.name, r.tag),
            ("10.77.0.1:5000/demo/busybox", Some("1.36"))
        );
        let r = ImageRef::parse("nginx@sha256:abcd");
        assert_eq!(
            (r.name, r.tag, r.digest),
            ("nginx", None, Some("sha256:abcd"))
        );
        let r = ImageRef::parse("nginx:1.25@sha256:abcd");
        assert_eq!(
            (r.name, r.tag, r.digest),
            ("nginx", Some("1.25"), Some("sha256:abcd"))
        );
    }

    #[test]
    fn pull_policy_defaults_like_kubernetes() {
        use PullPolicy::*;
        for (image, policy) in [
            ("nginx", Always),
            ("nginx:latest", Always),
            ("nginx:1.14.2", IfNotPresent),
            ("10.77.0.1:5000/demo/busybox", Always),
            ("10.77.0.1:5000/demo/busybox:latest", Always),
            ("10.77.0.1:5000/demo/httpd:v1", IfNotPresent),
            ("nginx@sha256:0123", IfNotPresent),
            ("nginx:latest@sha256:0123", Always),
        ] {
            assert_eq!(default_pull_policy(image), policy, "{image}");
        }
    }
}
