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
