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

    /// [`PathPattern::matches`] on the walk's borrowed path.
    fn matches_walk(&self, path: &[Step<'_>]) -> bool {
        self.0.len() == path.len() && self.0.iter().zip(path).all(|(p, s)| s.is_named_by(p))
    }
}

/// One step of the path the diff walks, borrowed from the document: no allocation per field
/// visited; a pointer string is built only for a field that differs.
#[derive(Clone, Copy, Debug)]
enum Step<'a> {
    /// An object member.
    Key(&'a str),
    /// An array element.
    Index(usize),
    /// Any element (unordered arrays compare elements at `*`).
    Any,
}

impl Step<'_> {
    /// Whether the pattern segment `p` names this step.
    fn is_named_by(&self, p: &str) -> bool {
        p == "*"
            || match self {
                Step::Key(k) => *k == p,
                // The index's decimal text exactly ("01" and "+1" name nothing).
                Step::Index(i) => {
                    p.bytes().all(|b| b.is_ascii_digit())
                        && (p.len() == 1 || !p.starts_with('0'))
                        && p.parse::<usize>() == Ok(*i)
                }
                Step::Any => false,
            }
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
    diff_at_most(production, shadow, opts, opts.max_diffs)
}

/// [`diff`] with `limit` in place of `opts.max_diffs` (0 = unlimited).
pub fn diff_at_most(
    production: &Value,
    shadow: &Value,
    opts: &DiffOptions,
    limit: usize,
) -> Vec<FieldDiff> {
    let mut walker = Walker {
        opts,
        limit,
        path: Vec::new(),
        out: Vec::new(),
    };
    walker.walk(production, shadow);
    walker.out
}

/// Whether the values are equal under the options.
pub fn equal(production: &Value, shadow: &Value, opts: &DiffOptions) -> bool {
    diff_at_most(production, shadow, opts, 1).is_empty()
}

/// The JSON pointer (RFC 6901) of a path.
fn pointer(path: &[Step<'_>]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for step in path {
        out.push('/');
        match step {
            Step::Key(k) => {
                for c in k.chars() {
                    match c {
                        '~' => out.push_str("~0"),
                        '/' => out.push_str("~1"),
                        c => out.push(c),
                    }
                }
            }
            Step::Index(i) => {
                let _ = write!(out, "{i}");
            }
            Step::Any => out.push('*'),
        }
    }
    out
}

/// One diff in progress: the options, the path to the current field, what was found.
struct Walker<'o, 'v> {
    opts: &'o DiffOptions,
    /// Stop after this many differences (0 = unlimited).
    limit: usize,
    path: Vec<Step<'v>>,
    out: Vec<FieldDiff>,
}

impl<'v> Walker<'_, 'v> {
    fn full(&self) -> bool {
        self.limit != 0 && self.out.len() >= self.limit
    }

    fn ignored(&self) -> bool {
        self.opts.ignore.iter().any(|i| i.matches_walk(&self.path))
    }

    fn push(&mut self, kind: DiffKind, p: Option<&Value>, s: Option<&Value>) {
        if !self.full() {
            self.out.push(FieldDiff {
                path: pointer(&self.path),
                kind,
                production: p.cloned(),
                shadow: s.cloned(),
            });
        }
    }

    fn walk(&mut self, p: &'v Value, s: &'v Value) {
        if self.full() || self.ignored() {
            return;
        }
        match (p, s) {
            (Value::Number(a), Value::Number(b)) => {
                let same = match (a.as_i64(), b.as_i64()) {
                    (Some(x), Some(y)) if x == y => true,
                    _ => numbers_close(
                        a.as_f64().unwrap_or(f64::NAN),
                        b.as_f64().unwrap_or(f64::NAN),
                        self.opts,
                    ),
                };
                if !same {
                    self.push(DiffKind::Number, Some(p), Some(s));
                }
            }
            (Value::Object(a), Value::Object(b)) => {
                for (k, av) in a {
                    self.path.push(Step::Key(k));
                    match b.get(k) {
                        Some(bv) => self.walk(av, bv),
                        None if !self.ignored() => {
                            self.push(DiffKind::MissingInShadow, Some(av), None)
                        }
                        None => {}
                    }
                    self.path.pop();
                }
                for (k, bv) in b {
                    if !a.contains_key(k) {
                        self.path.push(Step::Key(k));
                        if !self.ignored() {
                            self.push(DiffKind::ExtraInShadow, None, Some(bv));
                        }
                        self.path.pop();
                    }
                }
            }
            (Value::Array(a), Value::Array(b))
                if self
                    .opts
                    .unordered
                    .iter()
                    .any(|u| u.matches_walk(&self.path)) =>
            {
                if a.len() != b.len() {
                    self.push(DiffKind::Length, Some(p), Some(s));
                } else if !self.multiset_equal(a, b) {
                    self.push(DiffKind::Unmatched, Some(p), Some(s));
                }
            }
            (Value::Array(a), Value::Array(b)) => {
                if a.len() != b.len() {
                    self.push(DiffKind::Length, Some(p), Some(s));
                    return;
                }
                for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                    self.path.push(Step::Index(i));
                    self.walk(av, bv);
                    self.path.pop();
                }
            }
            _ if std::mem::discriminant(p) != std::mem::discriminant(s) => {
                self.push(DiffKind::Type, Some(p), Some(s));
            }
            _ => {
                if p != s {
                    self.push(DiffKind::Value, Some(p), Some(s));
                }
            }
        }
    }

    /// Greedy pairing of equal elements; elements are compared at the array's path plus `*`,
    /// so that ignore rules with `*` below it still apply.
    fn multiset_equal(&self, a: &'v [Value], b: &'v [Value]) -> bool {
        const MAX_PAIRING: usize = 2048;
        if a.len() > MAX_PAIRING {
            // Too large for quadratic pairing: compare sorted canonical text instead (exact).
            let mut x: Vec<String> = a.iter().map(Value::to_string).collect();
            let mut y: Vec<String> = b.iter().map(Value::to_string).collect();
            x.sort();
            y.sort();
            return x == y;
        }
        let mut path = self.path.clone();
        path.push(Step::Any);
        let mut element = Walker {
            opts: self.opts,
            limit: 1,
            path,
            out: Vec::new(),
        };
        let mut used = vec![false; b.len()];
        a.iter().all(|av| {
            let found = b.iter().enumerate().position(|(j, bv)| {
                if used[j] {
                    return false;
                }
                element.out.clear();
                element.walk(av, bv);
                element.out.is_empty()
            });
            match found {
                Some(j) => {
                    used[j] = true;
                    true
                }
                None => false,
            }
        })
    }
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
    fn index_patterns_name_the_exact_decimal_index() {
        let mut o = opts(0.0, 0.0);
        o.ignore = vec![PathPattern::parse("/a/1"), PathPattern::parse("/b/01")];
        let d = diff(
            &json!({"a": [0, 1, 2], "b": [0, 1]}),
            &json!({"a": [9, 9, 9], "b": [9, 9]}),
            &o,
        );
        let paths: Vec<&str> = d.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["/a/0", "/a/2", "/b/0", "/b/1"]);
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
