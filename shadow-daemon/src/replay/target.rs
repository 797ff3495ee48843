//! Where a replayed request goes: the production request target, its path rewritten by the
//! `shadow.model` shortcut and then by the `[[shadow.rewrite]]` rules (in order, each on the
//! result of the one before; the query is kept as is), joined to the shadow URL and its prefix.
//!
//! `shadow.model = NAME` (`--shadow-model NAME`) stands for one rewrite per protocol whose paths
//! name the model (the version segment, if any, is kept):
//!
//! | protocol | production path | shadow path |
//! |---|---|---|
//! | Open Inference Protocol (KServe v2, MLServer, Triton) | `/v2/models/wine[/versions/1]/infer` | `/v2/models/NAME[/versions/1]/infer` (also `/ready` and metadata) |
//! | TF-Serving, KServe v1 | `/v1/models/wine[/versions/1]:predict` | `/v1/models/NAME[/versions/1]:predict` |
//! | MLflow deployments, Databricks serving endpoints | `/endpoints/wine/invocations`, `/serving-endpoints/wine/invocations` | the same with `NAME` |
//!
//! A plain MLflow scoring server (`mlflow models serve`) answers `/invocations` and serves one
//! model: its path names none, so the shadow URL alone chooses the model.

use super::ReplayError;
use crate::config::{Rewrite, ShadowConfig};
use hyper::Uri;
use regex::Regex;

/// One path rewrite and where it came from (for `check-config`).
#[derive(Clone, Debug)]
struct Rule {
    rewrite: Rewrite,
    source: String,
}

/// The shadow URI of a production request target.
#[derive(Clone, Debug)]
pub struct TargetMap {
    scheme_authority: String,
    prefix: String,
    rules: Vec<Rule>,
}

/// Where a target goes, and which rules changed it on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The shadow URI.
    pub uri: Uri,
    /// The rules that changed the path, in order, each described with its config key.
    pub applied: Vec<String>,
}

/// The rewrites `shadow.model = name` stands for: (protocol, pattern, replacement).
fn model_rules(name: &str) -> [(&'static str, &'static str, String); 3] {
    [
        (
            "Open Inference Protocol",
            r"^(/v2/models/)[^/]+",
            format!("${{1}}{name}"),
        ),
        (
            "TF-Serving / KServe v1",
            r"^(/v1/models/)[^/:]+",
            format!("${{1}}{name}"),
        ),
        (
            "MLflow deployments",
            r"^(/(?:serving-)?endpoints/)[^/]+(/invocations)$",
            format!("${{1}}{name}${{2}}"),
        ),
    ]
}

impl TargetMap {
    /// The map the checked `[shadow]` config describes.
    pub fn new(c: &ShadowConfig) -> TargetMap {
        let mut rules = Vec::new();
        if let Some(name) = &c.model {
            for (protocol, pattern, replacement) in model_rules(name) {
                // The patterns are constants and `name` was checked to hold no `$`.
                let Ok(pattern) = Regex::new(pattern) else {
                    continue;
                };
                rules.push(Rule {
                    rewrite: Rewrite {
                        pattern,
                        replacement,
                    },
                    source: format!("shadow.model = {name:?} ({protocol})"),
                });
            }
        }
        for (i, rewrite) in c.rewrites.iter().enumerate() {
            rules.push(Rule {
                source: format!(
                    "shadow.rewrite[{i}]: {:?} -> {:?}",
                    rewrite.pattern.as_str(),
                    rewrite.replacement
                ),
                rewrite: rewrite.clone(),
            });
        }
        TargetMap {
            scheme_authority: format!("http://{}", c.url.authority()),
            prefix: c.url.prefix().to_string(),
            rules,
        }
    }

    /// The shadow URI of `target` (origin form, or absolute form whose path is used).
    pub fn uri(&self, target: &str) -> Result<Uri, ReplayError> {
        self.map(target, None)
    }

    /// [`TargetMap::uri`], with the rules that changed the path.
    pub fn explain(&self, target: &str) -> Result<Mapping, ReplayError> {
        let mut applied = Vec::new();
        let uri = self.map(target, Some(&mut applied))?;
        Ok(Mapping { uri, applied })
    }

    fn map(&self, target: &str, mut applied: Option<&mut Vec<String>>) -> Result<Uri, ReplayError> {
        let bad = || ReplayError::Target(target.to_string());
        let path_and_query: String = if target.starts_with('/') {
            target.to_string()
        } else if let Ok(abs) = target.parse::<Uri>()
            && abs.scheme().is_some()
        {
            abs.path_and_query().map_or("/", |p| p.as_str()).to_string()
        } else {
            return Err(bad());
        };
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query.as_str(), None),
        };
        let mut path = path.to_string();
        for rule in &self.rules {
            let rewritten = rule.rewrite.apply(&path);
            if rewritten != path {
                let rewritten = rewritten.into_owned();
                if let Some(applied) = applied.as_deref_mut() {
                    applied.push(rule.source.clone());
                }
                path = rewritten;
            }
        }
        if !path.starts_with('/') {
            return Err(ReplayError::Rewritten {
                target: target.to_string(),
                path,
            });
        }
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        format!("{}{}{path}{query}", self.scheme_authority, self.prefix)
            .parse()
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map of a `[shadow]` section (at `http://127.0.0.1:9` unless it gives a `url`).
    fn map(shadow: &str) -> TargetMap {
        let url = if shadow.contains("url =") {
            ""
        } else {
            "url = \"http://127.0.0.1:9\"\n"
        };
        let text = format!("[capture]\nports = [1]\n[shadow]\n{url}{shadow}");
        match crate::config::Config::from_toml(&text, std::path::Path::new("t.toml")) {
            Ok(c) => TargetMap::new(&c.shadow),
            Err(e) => panic!("{e}"),
        }
    }

    fn uri(m: &TargetMap, target: &str) -> String {
        m.uri(target).unwrap().to_string()
    }

    #[test]
    fn without_rules_the_target_is_joined_to_the_url() {
        let m = map("");
        assert_eq!(
            uri(&m, "/v2/models/wine/infer?x=1"),
            "http://127.0.0.1:9/v2/models/wine/infer?x=1"
        );
        let mapping = m.explain("/v2/models/wine/infer").unwrap();
        assert!(mapping.applied.is_empty());
    }

    #[test]
    fn the_model_shortcut_renames_the_model_in_every_protocol() {
        let m = map("model = \"wine-v2\"");
        let base = "http://127.0.0.1:9";
        for (from, to) in [
            ("/v2/models/wine/infer", "/v2/models/wine-v2/infer"),
            (
                "/v2/models/wine/versions/3/infer?trace=1",
                "/v2/models/wine-v2/versions/3/infer?trace=1",
            ),
            ("/v2/models/wine/ready", "/v2/models/wine-v2/ready"),
            ("/v2/models/wine", "/v2/models/wine-v2"),
            ("/v1/models/wine:predict", "/v1/models/wine-v2:predict"),
            (
                "/v1/models/wine/versions/2:classify",
                "/v1/models/wine-v2/versions/2:classify",
            ),
            (
                "/serving-endpoints/wine/invocations",
                "/serving-endpoints/wine-v2/invocations",
            ),
            (
                "/endpoints/wine/invocations",
                "/endpoints/wine-v2/invocations",
            ),
            // Paths that name no model are left alone.
            ("/invocations", "/invocations"),
            ("/v2/health/ready", "/v2/health/ready"),
            ("/v2/models", "/v2/models"),
            ("/other/v2/models/wine/infer", "/other/v2/models/wine/infer"),
        ] {
            assert_eq!(uri(&m, from), format!("{base}{to}"), "{from}");
        }
        let mapping = m.explain("/v2/models/wine/infer").unwrap();
        assert_eq!(
            mapping.applied,
            vec!["shadow.model = \"wine-v2\" (Open Inference Protocol)"]
        );
    }

    #[test]
    fn rewrite_rules_apply_in_order_after_the_model_and_keep_the_query() {
        let m = map("url = \"http://127.0.0.1:9/prefix/\"\nmodel = \"b\"\n\
             [[shadow.rewrite]]\npath = \"^/v2/models/b/\"\nreplacement = \"/v2/models/c/\"\n\
             [[shadow.rewrite]]\npath = \"^/v2/models/(?P<m>[^/]+)/infer$\"\nreplacement = \"/predict/${m}\"\n");
        let mapping = m.explain("/v2/models/a/infer?q=/v2/models/a/").unwrap();
        assert_eq!(
            mapping.uri.to_string(),
            "http://127.0.0.1:9/prefix/predict/c?q=/v2/models/a/"
        );
        assert_eq!(mapping.applied.len(), 3, "{:?}", mapping.applied);
        assert!(mapping.applied[1].starts_with("shadow.rewrite[0]: "));
        // Absolute-form targets are rewritten by their path.
        assert_eq!(
            uri(&m, "http://prod:8080/v2/models/x/infer"),
            "http://127.0.0.1:9/prefix/predict/c"
        );
    }

    #[test]
    fn a_rewrite_that_leaves_no_path_is_an_error() {
        let m = map("[[shadow.rewrite]]\npath = \"^/\"\nreplacement = \"\"\n");
        assert!(matches!(
            m.uri("/v2/models/m/infer"),
            Err(ReplayError::Rewritten { .. })
        ));
        assert!(matches!(map("").uri("*"), Err(ReplayError::Target(_))));
    }
}
