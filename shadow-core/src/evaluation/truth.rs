//! Ground truth as it arrives: JSON lines `{"id": ..., "label": ...}` (a class: string,
//! integer or boolean, or an array of them, one per row of a batch request) or
//! `{"id": ..., "value": ...}` (a number, or an array of numbers, for regression). Both keys
//! may be given. The id is a string or an integer.
//!
//! Labels are spelled as the comparer spells predicted labels (integers without a decimal
//! point, booleans as `true` / `false`), so a true label `5` meets a predicted class `5`.

use serde_json::Value;

/// The true answer for one request: one label and/or one value per row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Truth {
    /// True class per row (empty when only values were given).
    pub labels: Vec<String>,
    /// True numeric value per row (empty when only labels were given).
    pub values: Vec<f64>,
}

impl Truth {
    /// Bytes this truth takes in memory, roughly (for the preload cap).
    pub fn size_estimate(&self) -> usize {
        self.labels.iter().map(|l| l.len() + 24).sum::<usize>() + 8 * self.values.len() + 48
    }
}

/// One parsed label line.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelLine {
    /// The request id it belongs to.
    pub id: String,
    /// The truth.
    pub truth: Truth,
}

/// Why a label line was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelLineError {
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// No `id`, or one that is neither a string nor an integer.
    #[error("`id` is missing or not a string or integer")]
    Id,
    /// Neither `label` nor `value`, or one of the wrong type.
    #[error(
        "needs `label` (string, integer, boolean or an array of them) or `value` (a number or \
         an array of numbers)"
    )]
    Truth,
}

/// Parses one label line.
pub fn parse_label_line(line: &str) -> Result<LabelLine, LabelLineError> {
    let v: Value = serde_json::from_str(line).map_err(|e| LabelLineError::Json(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| LabelLineError::Json("expected an object".into()))?;
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return Err(LabelLineError::Id),
    };
    let labels = match obj.get("label") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(rows)) => rows
            .iter()
            .map(label_of)
            .collect::<Option<Vec<_>>>()
            .ok_or(LabelLineError::Truth)?,
        Some(one) => vec![label_of(one).ok_or(LabelLineError::Truth)?],
    };
    let values = match obj.get("value") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(rows)) => rows
            .iter()
            .map(Value::as_f64)
            .collect::<Option<Vec<_>>>()
            .ok_or(LabelLineError::Truth)?,
        Some(one) => vec![one.as_f64().ok_or(LabelLineError::Truth)?],
    };
    if labels.is_empty() && values.is_empty() {
        return Err(LabelLineError::Truth);
    }
    Ok(LabelLine {
        id,
        truth: Truth { labels, values },
    })
}

/// A class label: strings, integers (also floats with no fraction, as `5.0` → `5`) and
/// booleans.
fn label_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Value::Number(n) => {
            let f = n.as_f64()?;
            (f.fract() == 0.0 && f.abs() < 9e15).then(|| format!("{}", f as i64))
        }
        _ => None,
    }
}

/// The lines of a label file or `POST /api/labels` body: parsed lines, and the refused ones
/// with their 1-based line numbers. Blank lines are skipped.
pub fn parse_label_lines(text: &str) -> (Vec<LabelLine>, Vec<(usize, LabelLineError)>) {
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match parse_label_line(line) {
            Ok(l) => ok.push(l),
            Err(e) => refused.push((i + 1, e)),
        }
    }
    (ok, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_values_and_batches() {
        let l = parse_label_line(r#"{"id": "a-1", "label": 5}"#).unwrap();
        assert_eq!(l.id, "a-1");
        assert_eq!(l.truth.labels, ["5"]);
        let l = parse_label_line(r#"{"id": 7, "label": ["cat", true, 2.0]}"#).unwrap();
        assert_eq!(l.id, "7");
        assert_eq!(l.truth.labels, ["cat", "true", "2"]);
        let l = parse_label_line(r#"{"id": "r", "value": [1.5, -2]}"#).unwrap();
        assert_eq!(l.truth.values, [1.5, -2.0]);
        assert!(l.truth.labels.is_empty());
    }

    #[test]
    fn refused_lines_say_why() {
        assert_eq!(parse_label_line(r#"{"label": 1}"#), Err(LabelLineError::Id));
        assert_eq!(
            parse_label_line(r#"{"id": 1.5, "label": 1}"#),
            Err(LabelLineError::Id)
        );
        assert_eq!(
            parse_label_line(r#"{"id": "x"}"#),
            Err(LabelLineError::Truth)
        );
        assert_eq!(
            parse_label_line(r#"{"id": "x", "label": 0.5}"#),
            Err(LabelLineError::Truth)
        );
        assert!(matches!(
            parse_label_line("not json"),
            Err(LabelLineError::Json(_))
        ));
        let (ok, refused) =
            parse_label_lines("{\"id\":\"a\",\"label\":1}\n\n[1]\n{\"id\":\"b\",\"value\":2}\n");
        assert_eq!(ok.len(), 2);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, 3, "line numbers count blank lines");
    }
}
