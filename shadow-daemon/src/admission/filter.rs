//! Method and path allow/deny lists.

use crate::config::MirrorConfig;

/// Decides from method and path whether a request may be mirrored.
#[derive(Clone, Debug)]
pub struct RequestFilter {
    methods: Vec<String>,
    deny_methods: Vec<String>,
    paths: Vec<String>,
    deny_paths: Vec<String>,
}

impl RequestFilter {
    /// The filter of the `[mirror]` config.
    pub fn new(c: &MirrorConfig) -> Self {
        let upper = |v: &[String]| v.iter().map(|m| m.to_ascii_uppercase()).collect();
        RequestFilter {
            methods: upper(&c.methods),
            deny_methods: upper(&c.deny_methods),
            paths: c.paths.clone(),
            deny_paths: c.deny_paths.clone(),
        }
    }

    /// Whether `method target` passes: method allowed and not denied, path (target without
    /// query) under an allowed prefix (if any are given) and under no denied prefix.
    pub fn allows(&self, method: &str, target: &str) -> bool {
        let method = method.to_ascii_uppercase();
        if self.deny_methods.contains(&method) || !self.methods.contains(&method) {
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

    #[test]
    fn default_methods_are_get_post_head_only() {
        let f = RequestFilter::new(&MirrorConfig::default());
        for m in ["GET", "post", "HEAD"] {
            assert!(f.allows(m, "/v2/models/m/infer"), "{m}");
        }
        for m in ["PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT"] {
            assert!(!f.allows(m, "/x"), "{m}");
        }
    }

    #[test]
    fn deny_wins_over_allow_and_paths_are_prefixes() {
        let f = RequestFilter::new(&MirrorConfig {
            methods: vec!["GET".into(), "POST".into(), "DELETE".into()],
            deny_methods: vec!["DELETE".into()],
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
