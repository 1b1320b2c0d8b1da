//! Reading the agents' OpenMetrics text: split into metric families (kept whole, so the
//! collector can expose them again exactly as written, histogram buckets in order), and
//! samples (name, labels, value) for the rules and the dashboard.

use webstack_alerts::Labels;

/// One metric family of one scrape: its `# HELP`/`# TYPE`/`# UNIT` lines and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyBlock {
    pub name: String,
    pub meta: Vec<String>,
    pub samples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

/// The families of a scrape, in order.
pub fn families(text: &str) -> Vec<FamilyBlock> {
    let mut out: Vec<FamilyBlock> = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut it = rest.splitn(3, ' ');
            let (_kind, name) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            match out.last_mut() {
                Some(f) if f.name == name => f.meta.push(line.to_string()),
                _ => out.push(FamilyBlock {
                    name: name.to_string(),
                    meta: vec![line.to_string()],
                    samples: Vec::new(),
                }),
            }
        } else if let Some(f) = out.last_mut() {
            f.samples.push(line.to_string());
        }
    }
    out
}

/// A sample line: `name{a="b",c="d"} value [timestamp]`. Label values keep OpenMetrics'
/// escapes (`\\`, `\"`, `\n`) undone.
pub fn sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = Labels::new();
    let rest = if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            r = r.trim_start_matches(',');
            if let Some(after) = r.strip_prefix('}') {
                break after;
            }
            let eq = r.find('=')?;
            let key = r[..eq].to_string();
            let mut chars = r[eq + 1..].strip_prefix('"')?.char_indices();
            let mut value = String::new();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key, value);
            r = &r[eq + 1 + 1 + end + 1..];
        }
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// A label value written for OpenMetrics.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_of_an_agent_scrape() {
        let text = "# HELP webstack_x A thing.\n# TYPE webstack_x counter\nwebstack_x_total{server=\"a\",rule=\"1. say \\\"hi\\\"\"} 4\n# TYPE webstack_y gauge\nwebstack_y 1.5\n# EOF\n";
        let f = families(text);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].meta.len(), 2);
        let s = sample(&f[0].samples[0]).unwrap();
        assert_eq!(s.name, "webstack_x_total");
        assert_eq!(s.labels["rule"], "1. say \"hi\"");
        assert_eq!(s.value, 4.0);
        assert_eq!(sample("webstack_y 1.5").unwrap().value, 1.5);
        assert_eq!(
            sample("b_bucket{le=\"+Inf\"} 3").unwrap().labels["le"],
            "+Inf"
        );
        assert!(sample("broken{a=\"b} 1").is_none());
    }
}
