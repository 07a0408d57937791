//! The suite's one table: a row per metric with our figure, the anchor's figure from the same
//! run, the ratio (above 1 means we are ahead) and the target, printed and written as JSON.

use serde::Serialize;

/// Which direction is good for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// A target on our figure (`Max`/`Min`) or on the ratio to the anchor (`MinRatio`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    Max(f64),
    Min(f64),
    MinRatio(f64),
}

impl Target {
    fn describe(self, unit: &str) -> String {
        match self {
            Target::Max(v) => format!("<= {} {unit}", number(v)),
            Target::Min(v) => format!(">= {} {unit}", number(v)),
            Target::MinRatio(v) => format!("ratio >= {}", number(v)),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: String,
    pub unit: String,
    pub ours: f64,
    pub anchor: Option<f64>,
    pub ratio: Option<f64>,
    pub better: Better,
    /// Printed, not part of the JSON list the issue specifies.
    #[serde(skip)]
    pub targets: Vec<Target>,
    /// Who the anchor is (`nats-server`, `git status`), printed under the table.
    #[serde(skip)]
    pub anchor_name: Option<&'static str>,
}

impl Row {
    pub fn new(metric: &str, unit: &str, better: Better, ours: f64) -> Row {
        Row {
            metric: metric.into(),
            unit: unit.into(),
            ours,
            anchor: None,
            ratio: None,
            better,
            targets: Vec::new(),
            anchor_name: None,
        }
    }

    /// Sets the anchor's figure; the ratio is how many times better ours is.
    pub fn anchor(mut self, name: &'static str, anchor: f64) -> Row {
        self.anchor = Some(anchor);
        self.anchor_name = Some(name);
        self.ratio = ratio(self.better, self.ours, anchor);
        self
    }

    pub fn target(mut self, target: Target) -> Row {
        self.targets.push(target);
        self
    }

    /// Whether every target is met; `None` without targets.
    pub fn met(&self) -> Option<bool> {
        if self.targets.is_empty() {
            return None;
        }
        Some(self.targets.iter().all(|t| match *t {
            Target::Max(v) => self.ours <= v,
            Target::Min(v) => self.ours >= v,
            Target::MinRatio(v) => self.ratio.is_some_and(|r| r >= v),
        }))
    }
}

/// How many times better `ours` is than `anchor`, given the direction; `None` when undefined.
pub fn ratio(better: Better, ours: f64, anchor: f64) -> Option<f64> {
    let r = match better {
        Better::Higher => ours / anchor,
        Better::Lower => anchor / ours,
    };
    r.is_finite().then_some(r)
}

/// A figure with a sensible number of digits and thousands separators for big ones.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 10_000.0 {
        let digits = format!("{:.0}", a);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The table as text.
pub fn table(rows: &[Row]) -> String {
    let header = ["metric", "unit", "ours", "anchor", "ratio", "target", "verdict"];
    let mut lines: Vec<[String; 7]> = vec![header.map(String::from)];
    for row in rows {
        lines.push([
            row.metric.clone(),
            row.unit.clone(),
            number(row.ours),
            row.anchor.map(number).unwrap_or_else(|| "-".into()),
            row.ratio.map(|r| format!("{}x", number(r))).unwrap_or_else(|| "-".into()),
            if row.targets.is_empty() {
                "-".into()
            } else {
                row.targets.iter().map(|t| t.describe(&row.unit)).collect::<Vec<_>>().join(", ")
            },
            match row.met() {
                None => "-".into(),
                Some(true) => "met".into(),
                Some(false) => "MISSED".into(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..7).map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(c, cell)| match c {
                // Numbers right-aligned, words left-aligned.
                2..=4 => format!("{cell:>w$}", w = widths[c]),
                _ => format!("{cell:<w$}", w = widths[c]),
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
        if i == 0 {
            let rule: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(c, w)| if (2..=4).contains(&c) { format!("{}:", "-".repeat(*w - 1)) } else { "-".repeat(*w) })
                .collect();
            out.push_str(&format!("| {} |\n", rule.join(" | ")));
        }
    }
    out
}

/// The JSON list of `{metric, unit, ours, anchor, ratio, better}`.
pub fn json(rows: &[Row]) -> String {
    serde_json::to_string_pretty(rows).expect("rows always serialize")
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile<T: Copy + Into<f64>>(sorted: &[T], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_above_one_when_we_are_ahead() {
        assert_eq!(ratio(Better::Higher, 3.0, 2.0), Some(1.5));
        assert_eq!(ratio(Better::Lower, 2.0, 500.0), Some(250.0));
        assert_eq!(ratio(Better::Lower, 0.0, 5.0), None);
        let row = Row::new("git_incremental_speedup", "ms", Better::Lower, 2.0)
            .anchor("git status", 500.0)
            .target(Target::MinRatio(30.0))
            .target(Target::Max(5.0));
        assert_eq!(row.met(), Some(true));
        let slow = Row::new("fanout_p99_ms", "ms", Better::Lower, 120.0).target(Target::Max(100.0));
        assert_eq!(slow.met(), Some(false));
        assert_eq!(Row::new("x", "ms", Better::Lower, 1.0).met(), None);
    }

    #[test]
    fn json_has_exactly_the_issue_fields() {
        let rows = vec![
            Row::new("fanout_deliveries_per_s", "1/s", Better::Higher, 3e6).anchor("nats-server", 2e6),
            Row::new("e2e_save_to_viewer_p50_ms", "ms", Better::Lower, 30.0).target(Target::Max(50.0)),
        ];
        let value: serde_json::Value = serde_json::from_str(&json(&rows)).unwrap();
        assert_eq!(
            value,
            serde_json::json!([
                {"metric": "fanout_deliveries_per_s", "unit": "1/s", "ours": 3e6, "anchor": 2e6, "ratio": 1.5, "better": "higher"},
                {"metric": "e2e_save_to_viewer_p50_ms", "unit": "ms", "ours": 30.0, "anchor": null, "ratio": null, "better": "lower"}
            ])
        );
    }

    #[test]
    fn table_aligns_and_judges() {
        let rows = vec![Row::new("idle_viewer_bytes", "B", Better::Lower, 12_345.0)
            .anchor("nats-server", 24_690.0)
            .target(Target::Max(16_384.0))];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
        assert!(lines[2].contains("12,345") && lines[2].contains("2.00x") && lines[2].contains("<= 16,384 B"));
        assert!(lines[2].contains("met"));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), 50.0);
        assert_eq!(percentile(&samples, 99.0), 99.0);
        assert_eq!(percentile(&samples, 100.0), 100.0);
        assert_eq!(percentile(&[7u32], 99.0), 7.0);
        assert!(percentile::<f64>(&[], 50.0).is_nan());
    }
}
