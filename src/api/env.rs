//! Kubernetes' `$(VAR)` expansion (kubelet's `third_party/forked/golang/expansion`):
//! env values see only the variables defined before them, command and args see
//! the whole environment, `$$` escapes a `$`, and references to unknown variables
//! stay as written. Pure, so the agent can run it and tests can pin it.

use super::pod::EnvVar;

/// Expands `$(NAME)` references in `input` using `lookup`.
pub fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                // `$$` is an escaped `$`.
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match lookup(name) {
                            Some(value) => out.push_str(value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    // An unclosed `$(` is kept; the rest is copied as text.
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                // A `$` before anything else is kept, with what follows copied as text.
                _ => {
                    out.push('$');
                    0
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    out
}

/// The container's environment as kubelet builds it: in order of first
/// definition, a later definition of the same name replacing the value, and each
/// value expanded against the variables resolved before it.
pub fn resolve_env(env: &[EnvVar]) -> Vec<(String, String)> {
    let mut resolved: Vec<(String, String)> = Vec::with_capacity(env.len());
    for var in env {
        let value = expand(&var.value, |name| {
            resolved
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        });
        match resolved.iter_mut().find(|(n, _)| *n == var.name) {
            Some(slot) => slot.1 = value,
            None => resolved.push((var.name.clone(), value)),
        }
    }
    resolved
}

/// Command or args expanded against the container's whole resolved environment.
pub fn expand_args(args: &[String], env: &[(String, String)]) -> Vec<String> {
    args.iter()
        .map(|arg| {
            expand(arg, |name| {
                env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    fn lookup_in<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn expansion_matches_kubernetes_cases() {
        let vars = [("VAR_A", "A"), ("VAR_B", "B"), ("EMPTY", "")];
        let lookup = lookup_in(&vars);
        for (input, want) in [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_B)", "A-B"),
            ("$(EMPTY)", ""),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$", "$"),
            ("$", "$"),
            ("foo$", "foo$"),
            ("$VAR_A", "$VAR_A"),
            ("$(VAR_A", "$(VAR_A"),
            ("$()", "$()"),
            ("f$(VAR_A)o", "fAo"),
            ("$(VAR_A)$(VAR_B)", "AB"),
            ("héllo $(VAR_A) wörld", "héllo A wörld"),
            ("$é", "$é"),
        ] {
            assert_eq!(expand(input, &lookup), want, "{input:?}");
        }
    }

    /// ../shared/k8s-examples/pods/inject/dependent-envars.yaml, as Kubernetes runs it.
    #[test]
    fn dependent_envars_example() {
        let env = [
            var("SERVICE_PORT", "80"),
            var("SERVICE_IP", "172.17.0.1"),
            var(
                "UNCHANGED_REFERENCE",
                "$(PROTOCOL)://$(SERVICE_IP):$(SERVICE_PORT)",
            ),
            var("PROTOCOL", "https"),
            var(
                "SERVICE_ADDRESS",
                "$(PROTOCOL)://$(SERVICE_IP):$(SERVICE_PORT)",
            ),
            var(
                "ESCAPED_REFERENCE",
                "$$(PROTOCOL)://$(SERVICE_IP):$(SERVICE_PORT)",
            ),
        ];
        let resolved = resolve_env(&env);
        let get = |name: &str| {
            resolved
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("UNCHANGED_REFERENCE"),
            Some("$(PROTOCOL)://172.17.0.1:80")
        );
        assert_eq!(get("SERVICE_ADDRESS"), Some("https://172.17.0.1:80"));
        assert_eq!(
            get("ESCAPED_REFERENCE"),
            Some("$(PROTOCOL)://172.17.0.1:80")
        );

        let args = expand_args(
            &["echo $(SERVICE_ADDRESS) $(PROTOCOL) $$(PROTOCOL) $(NOPE)".to_owned()],
            &resolved,
        );
        assert_eq!(
            args,
            ["echo https://172.17.0.1:80 https $(PROTOCOL) $(NOPE)"]
        );
    }

    #[test]
    fn redefinition_replaces_in_place() {
        let resolved = resolve_env(&[var("A", "1"), var("B", "$(A)"), var("A", "2$(A)")]);
        assert_eq!(
            resolved,
            [
                ("A".to_owned(), "21".to_owned()),
                ("B".to_owned(), "1".to_owned())
            ]
        );
    }
}
