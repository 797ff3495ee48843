//! JSON-aware diff: numbers within tolerance are equal, ignored paths are skipped, and chosen
//! arrays are compared as multisets.
//!
//! Paths are JSON pointers (RFC 6901); in patterns `*` matches any one segment.

use serde::Serialize;
use serde_json::Value;

/// A JSON pointer pattern: `/outputs/*/data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern(Vec<String>);

impl PathPattern {
    /// Parses a pointer (`""` is the root); `~1` and `~0` are unescaped.
    pub fn parse(pointer: &str) -> PathPattern {
        if pointer.is_empty() {
            return PathPattern(Vec::new());
        }
        PathPattern(
            pointer
                .trim_start_matches('/')
                .split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect(),
        )
    }

    /// The pattern's segments.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// Whether the pattern names `path` or one of its ancestors.
    pub fn matches_prefix(&self, path: &[String]) -> bool {
        path.len() >= self.0.len() && self.matches(&path[..self.0.len()])
    }

    /// Whether the pattern names exactly `path`.
    pub fn matches(&self, path: &[String]) -> bool {
        self.0.len() == path.len() && self.0.iter().zip(path).all(|(p, s)| p == "*" || p == s)
    }
}

/// Tolerances and path rules.
#[derive(Clone, Debug, Default)]
pub struct DiffOptions {
    /// Numbers are equal when |a-b| <= abs_tolerance ...
    pub abs_tolerance: f64,
    /// ... or |a-b| <= rel_tolerance * max(|a|, |b|).
    pub rel_tolerance: f64,
    /// Subtrees not compared.
    pub ignore: Vec<PathPattern>,
    /// Arrays compared without regard to order.
    pub unordered: Vec<PathPattern>,
    /// Stop after this many differences (0 = unlimited).
    pub max_diffs: usize,
}

/// What kind of difference a field has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// Both numbers, outside tolerance.
    Number,
    /// Same type, different value (strings, booleans).
    Value,
    /// Different JSON types.
    Type,
    /// Present in production only.
    MissingInShadow,
    /// Present in shadow only.
    ExtraInShadow,
    /// Arrays of different length.
    Length,
    /// Unordered arrays whose elements do not pair up.
    Unmatched,
}

/// One difference, with both values (absent when missing on that side).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldDiff {
    /// JSON pointer of the field.
    pub path: String,
    /// How the values differ.
    pub kind: DiffKind,
    /// Production's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub production: Option<Value>,
    /// The shadow's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Value>,
}

/// Whether two numbers are equal within the tolerances.
pub fn numbers_close(a: f64, b: f64, opts: &DiffOptions) -> bool {
    if a == b {
        return true;
    }
    let d = (a - b).abs();
    d <= opts.abs_tolerance || d <= opts.rel_tolerance * a.abs().max(b.abs())
}

/// Differences of `shadow` from `production`, depth first, in document order.
pub fn diff(production: &Value, shadow: &Value, opts: &DiffOptions) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk(production, shadow, opts, &mut path, &mut out);
    out
}

/// Whether the values are equal under the options.
pub fn equal(production: &Value, shadow: &Value, opts: &DiffOptions) -> bool {
    let one = DiffOptions {
        max_diffs: 1,
        ..opts.clone()
    };
    diff(production, shadow, &one).is_empty()
}

fn pointer(path: &[String]) -> String {
    path.iter()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn full(out: &[FieldDiff], opts: &DiffOptions) -> bool {
    opts.max_diffs != 0 && out.len() >= opts.max_diffs
}

fn push(
    out: &mut Vec<FieldDiff>,
    opts: &DiffOptions,
    path: &[String],
    kind: DiffKind,
    p: Option<&Value>,
    s: Option<&Value>,
) {
    if !full(out, opts) {
        out.push(FieldDiff {
            path: pointer(path),
            kind,
            production: p.cloned(),
            shadow: s.cloned(),
        });
    }
}

fn walk(
    p: &Value,
    s: &Value,
    opts: &DiffOptions,
    path: &mut Vec<String>,
    out: &mut Vec<FieldDiff>,
) {
    if full(out, opts) || opts.ignore.iter().any(|i| i.matches(path)) {
        return;
    }
    match (p, s) {
        (Value::Number(a), Value::Number(b)) => {
            let same = match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) if x == y => true,
                _ => numbers_close(
                    a.as_f64().unwrap_or(f64::NAN),
                    b.as_f64().unwrap_or(f64::NAN),
                    opts,
                ),
            };
            if !same {
                push(out, opts, path, DiffKind::Number, Some(p), Some(s));
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, av) in a {
                path.push(k.clone());
                match b.get(k) {
                    Some(bv) => walk(av, bv, opts, path, out),
                    None if !opts.ignore.iter().any(|i| i.matches(path)) => {
                        push(out, opts, path, DiffKind::MissingInShadow, Some(av), None)
                    }
                    None => {}
                }
                path.pop();
            }
            for (k, bv) in b {
                if !a.contains_key(k) {
                    path.push(k.clone());
                    if !opts.ignore.iter().any(|i| i.matches(path)) {
                        push(out, opts, path, DiffKind::ExtraInShadow, None, Some(bv));
                    }
                    path.pop();
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if opts.unordered.iter().any(|u| u.matches(path)) => {
            if a.len() != b.len() {
                push(out, opts, path, DiffKind::Length, Some(p), Some(s));
            } else if !multiset_equal(a, b, opts, path) {
                push(out, opts, path, DiffKind::Unmatched, Some(p), Some(s));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                push(out, opts, path, DiffKind::Length, Some(p), Some(s));
                return;
            }
            for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                path.push(i.to_string());
                walk(av, bv, opts, path, out);
                path.pop();
            }
        }
        _ if std::mem::discriminant(p) != std::mem::discriminant(s) => {
            push(out, opts, path, DiffKind::Type, Some(p), Some(s));
        }
        _ => {
            if p != s {
                push(out, opts, path, DiffKind::Value, Some(p), Some(s));
            }
        }
    }
}

/// Greedy pairing of equal elements; elements are compared at the array's path so that ignore
/// rules with `*` below it still apply.
fn multiset_equal(a: &[Value], b: &[Value], opts: &DiffOptions, path: &mut Vec<String>) -> bool {
    const MAX_PAIRING: usize = 2048;
    if a.len() > MAX_PAIRING {
        // Too large for quadratic pairing: compare sorted canonical text instead (exact).
        let mut x: Vec<String> = a.iter().map(Value::to_string).collect();
        let mut y: Vec<String> = b.iter().map(Value::to_string).collect();
        x.sort();
        y.sort();
        return x == y;
    }
    let one = DiffOptions {
        max_diffs: 1,
        ..opts.clone()
    };
    let mut used = vec![false; b.len()];
    path.push("*".into());
    let ok = a.iter().all(|av| {
        let found = b.iter().enumerate().find(|(j, bv)| {
            if used[*j] {
                return false;
            }
            let mut sub = Vec::new();
            let mut p = path.clone();
            walk(av, bv, &one, &mut p, &mut sub);
            sub.is_empty()
        });
        match found {
            Some((j, _)) => {
                used[j] = true;
                true
            }
            None => false,
        }
    });
    path.pop();
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(abs: f64, rel: f64) -> DiffOptions {
        DiffOptions {
            abs_tolerance: abs,
            rel_tolerance: rel,
            ..Default::default()
        }
    }

    #[test]
    fn numbers_within_absolute_or_relative_tolerance_are_equal() {
        let o = opts(0.01, 0.0);
        assert!(diff(&json!({"p": 0.500}), &json!({"p": 0.509}), &o).is_empty());
        let d = diff(&json!({"p": 0.50}), &json!({"p": 0.52}), &o);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "/p");
        assert_eq!(d[0].kind, DiffKind::Number);
        assert_eq!(d[0].production, Some(json!(0.50)));
        assert_eq!(d[0].shadow, Some(json!(0.52)));
        // 1000 vs 1005: absolute 5 > 0.01 but relative 0.5% <= 1%.
        let o = opts(0.01, 0.01);
        assert!(diff(&json!([1000.0]), &json!([1005.0]), &o).is_empty());
        assert_eq!(diff(&json!([1000.0]), &json!([1020.0]), &o).len(), 1);
        // Integers compare exactly when no tolerance applies.
        assert_eq!(diff(&json!(3), &json!(4), &opts(0.0, 0.0)).len(), 1);
        assert!(diff(&json!(3), &json!(3.0), &opts(0.0, 0.0)).is_empty());
    }

    #[test]
    fn structure_differences_are_reported_with_pointers() {
        let p = json!({"a": {"b/c": 1, "gone": true}, "s": "x", "arr": [1, 2]});
        let s = json!({"a": {"b/c": 1, "new": null}, "s": 5, "arr": [1, 2, 3]});
        let d = diff(&p, &s, &opts(0.0, 0.0));
        let got: Vec<(&str, DiffKind)> = d.iter().map(|f| (f.path.as_str(), f.kind)).collect();
        assert_eq!(
            got,
            vec![
                ("/a/gone", DiffKind::MissingInShadow),
                ("/a/new", DiffKind::ExtraInShadow),
                ("/arr", DiffKind::Length),
                ("/s", DiffKind::Type),
            ]
        );
        assert_eq!(
            diff(&json!({"k~": "a"}), &json!({"k~": "b"}), &opts(0.0, 0.0))[0].path,
            "/k~0"
        );
    }

    #[test]
    fn ignored_paths_are_skipped_including_wildcards() {
        let mut o = opts(0.0, 0.0);
        o.ignore = vec![
            PathPattern::parse("/id"),
            PathPattern::parse("/outputs/*/name"),
        ];
        let p = json!({"id": "1", "outputs": [{"name": "a", "data": [1]}]});
        let s = json!({"id": "2", "outputs": [{"name": "b", "data": [1]}], });
        assert!(diff(&p, &s, &o).is_empty());
        // An ignored key missing on one side is not a difference either.
        assert!(diff(&json!({"id": 1, "x": 1}), &json!({"x": 1}), &o).is_empty());
        let s2 = json!({"id": "2", "outputs": [{"name": "b", "data": [2]}]});
        let d = diff(&p, &s2, &o);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "/outputs/0/data/0");
    }

    #[test]
    fn unordered_arrays_pair_elements_with_tolerance() {
        let mut o = opts(0.001, 0.0);
        o.unordered = vec![PathPattern::parse("/tags"), PathPattern::parse("/items")];
        assert!(
            diff(
                &json!({"tags": ["a", "b", "a"]}),
                &json!({"tags": ["a", "a", "b"]}),
                &o
            )
            .is_empty()
        );
        assert!(
            diff(
                &json!({"items": [{"k": 1, "v": 0.5}, {"k": 2, "v": 0.25}]}),
                &json!({"items": [{"k": 2, "v": 0.2504}, {"k": 1, "v": 0.5}]}),
                &o
            )
            .is_empty()
        );
        let d = diff(
            &json!({"tags": ["a", "b"]}),
            &json!({"tags": ["a", "a"]}),
            &o,
        );
        assert_eq!(d[0].kind, DiffKind::Unmatched);
        // Ordered by default.
        assert_eq!(
            diff(&json!(["a", "b"]), &json!(["b", "a"]), &opts(0.0, 0.0)).len(),
            2
        );
    }

    #[test]
    fn max_diffs_caps_the_output() {
        let mut o = opts(0.0, 0.0);
        o.max_diffs = 3;
        let p: Vec<i32> = (0..10).collect();
        let s: Vec<i32> = (1..11).collect();
        assert_eq!(diff(&json!(p), &json!(s), &o).len(), 3);
        assert!(!equal(&json!(p), &json!(s), &o));
    }
}
