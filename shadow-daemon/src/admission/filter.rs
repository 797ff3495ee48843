//! Method and path allow/deny lists.

use crate::config::{MethodSet, MirrorConfig};

/// Decides from method and path whether a request may be mirrored.
#[derive(Clone, Debug)]
pub struct RequestFilter {
    methods: MethodSet,
    deny_methods: MethodSet,
    paths: Vec<String>,
    deny_paths: Vec<String>,
}

impl RequestFilter {
    /// The filter of the `[mirror]` config.
    pub fn new(c: &MirrorConfig) -> Self {
        RequestFilter {
            methods: c.methods.clone(),
            deny_methods: c.deny_methods.clone(),
            paths: c.paths.clone(),
            deny_paths: c.deny_paths.clone(),
        }
    }

    /// Whether `method target` passes: method allowed and not denied (methods are
    /// case-sensitive on the wire, RFC 9110 §9.1; the config's were upper-cased when parsed),
    /// path (target without query) under an allowed prefix (if any are given) and under no
    /// denied prefix.
    pub fn allows(&self, method: &str, target: &str) -> bool {
        if self.deny_methods.contains(method) || !self.methods.contains(method) {
            return false;
        }
        let path = path_of(target);
        if self.deny_paths.iter().any(|p| path.starts_with(p.as_str())) {
            return false;
        }
        self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p.as_str()))
    }
}

/// The path of a request target: origin form without query, or the path of an absolute URL.
pub fn path_of(target: &str) -> &str {
    let t = match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => target,
    };
    t.split(['?', '#']).next().unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Method;

    #[test]
    fn default_methods_are_get_post_head_only() {
        let f = RequestFilter::new(&MirrorConfig::default());
        for m in ["GET", "POST", "HEAD"] {
            assert!(f.allows(m, "/v2/models/m/infer"), "{m}");
        }
        // Methods are case-sensitive: `post` is not POST.
        for m in ["PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "post"] {
            assert!(!f.allows(m, "/x"), "{m}");
        }
    }

    #[test]
    fn lowercase_config_methods_match_uppercase_requests() {
        let c = crate::config::test_config("[mirror]\nmethods = [\"get\"]\ndeny_methods = []\n");
        let f = RequestFilter::new(&c.mirror);
        assert!(f.allows("GET", "/x"));
        assert!(!f.allows("POST", "/x"));
    }

    #[test]
    fn deny_wins_over_allow_and_paths_are_prefixes() {
        let f = RequestFilter::new(&MirrorConfig {
            methods: [Method::GET, Method::POST, Method::DELETE]
                .into_iter()
                .collect(),
            deny_methods: [Method::DELETE].into_iter().collect(),
            paths: vec!["/v2/models/".into()],
            deny_paths: vec!["/v2/models/secret".into()],
            ..MirrorConfig::default()
        });
        assert!(!f.allows("DELETE", "/v2/models/m"));
        assert!(f.allows("POST", "/v2/models/m/infer?x=/v2/models/secret"));
        assert!(!f.allows("POST", "/v2/models/secret/infer"));
        assert!(!f.allows("GET", "/healthz"));
        assert!(f.allows("GET", "http://host:8080/v2/models/m"));
    }

    #[test]
    fn path_of_strips_query_and_authority() {
        assert_eq!(path_of("/a/b?c=d"), "/a/b");
        assert_eq!(path_of("http://h:1/a?q"), "/a");
        assert_eq!(path_of("http://h:1"), "/");
        assert_eq!(path_of("*"), "*");
    }
}
