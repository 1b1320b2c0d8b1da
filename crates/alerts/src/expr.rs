//! A subset of PromQL, enough for alert rules: selectors with `=` and `!=` matchers,
//! `rate` and `increase` over a range, `sum`/`max`/`min`/`count` with `by (...)`,
//! arithmetic (`+ - * /`) and comparisons (`> < >= <= == !=`) between vectors (matched
//! on identical labels) or a vector and a number. Comparisons filter, as in PromQL.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub type Labels = BTreeMap<String, String>;
/// An instant vector: one value per label set.
pub type Vector = Vec<(Labels, f64)>;
/// Samples of one series: (seconds, value), oldest first.
pub type Points = Vec<(f64, f64)>;

#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    Eq(String, String),
    Ne(String, String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub metric: String,
    pub matchers: Vec<Matcher>,
}

impl Selector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| match m {
            Matcher::Eq(k, v) => labels.get(k).map(String::as_str).unwrap_or("") == v,
            Matcher::Ne(k, v) => labels.get(k).map(String::as_str).unwrap_or("") != v,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeFn {
    Rate,
    Increase,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agg {
    Sum,
    Max,
    Min,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
    Ne,
}

impl BinOp {
    fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le | BinOp::Eq | BinOp::Ne
        )
    }

    fn apply(self, a: f64, b: f64) -> Option<f64> {
        let holds = |c: bool| if c { Some(a) } else { None };
        match self {
            BinOp::Add => Some(a + b),
            BinOp::Sub => Some(a - b),
            BinOp::Mul => Some(a * b),
            // PromQL gives +Inf or NaN; an alert on a ratio of nothing is no alert.
            BinOp::Div => (b != 0.0).then(|| a / b),
            BinOp::Gt => holds(a > b),
            BinOp::Lt => holds(a < b),
            BinOp::Ge => holds(a >= b),
            BinOp::Le => holds(a <= b),
            BinOp::Eq => holds(a == b),
            BinOp::Ne => holds(a != b),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Select(Selector),
    Range(RangeFn, Selector, Duration),
    Aggregate(Agg, Vec<String>, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

/// What an expression reads its samples from.
pub trait Source {
    /// The newest value of every fresh series of `sel`.
    fn instant(&self, sel: &Selector) -> Vector;
    /// The samples (seconds, value) of every series of `sel` within `window` of now,
    /// oldest first.
    fn range(&self, sel: &Selector, window: Duration) -> Vec<(Labels, Points)>;
}

enum Value {
    Scalar(f64),
    Vector(Vector),
}

impl Expr {
    /// The label sets (and values) for which the expression holds now.
    pub fn eval(&self, src: &dyn Source) -> Vector {
        match self.value(src) {
            Value::Vector(v) => v,
            // A rule like `1 > 0` holds (or not) with no labels.
            Value::Scalar(x) if x != 0.0 && !x.is_nan() => vec![(Labels::new(), x)],
            Value::Scalar(_) => Vec::new(),
        }
    }

    fn value(&self, src: &dyn Source) -> Value {
        match self {
            Expr::Number(n) => Value::Scalar(*n),
            Expr::Select(sel) => Value::Vector(src.instant(sel)),
            Expr::Range(f, sel, window) => Value::Vector(
                src.range(sel, *window)
                    .into_iter()
                    .filter_map(|(labels, points)| {
                        let inc = increase(&points)?;
                        let v = match f {
                            RangeFn::Increase => inc,
                            RangeFn::Rate => inc / window.as_secs_f64(),
                        };
                        Some((labels, v))
                    })
                    .collect(),
            ),
            Expr::Aggregate(agg, by, inner) => {
                let Value::Vector(v) = inner.value(src) else {
                    return Value::Vector(Vec::new());
                };
                let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
                for (labels, x) in v {
                    let key: Labels = labels.into_iter().filter(|(k, _)| by.contains(k)).collect();
                    groups.entry(key).or_default().push(x);
                }
                Value::Vector(
                    groups
                        .into_iter()
                        .map(|(k, xs)| {
                            let v = match agg {
                                Agg::Sum => xs.iter().sum(),
                                Agg::Max => xs.iter().cloned().fold(f64::MIN, f64::max),
                                Agg::Min => xs.iter().cloned().fold(f64::MAX, f64::min),
                                Agg::Count => xs.len() as f64,
                            };
                            (k, v)
                        })
                        .collect(),
                )
            }
            Expr::Binary(op, a, b) => match (a.value(src), b.value(src)) {
                (Value::Scalar(x), Value::Scalar(y)) => {
                    Value::Scalar(op.apply(x, y).map_or(0.0, |v| {
                        if op.is_comparison() {
                            1.0
                        } else {
                            v
                        }
                    }))
                }
                (Value::Vector(v), Value::Scalar(y)) => Value::Vector(
                    v.into_iter()
                        .filter_map(|(l, x)| op.apply(x, y).map(|r| (l, r)))
                        .collect(),
                ),
                (Value::Scalar(x), Value::Vector(v)) => Value::Vector(
                    v.into_iter()
                        .filter_map(|(l, y)| {
                            op.apply(x, y)
                                .map(|r| (l, if op.is_comparison() { y } else { r }))
                        })
                        .collect(),
                ),
                (Value::Vector(a), Value::Vector(b)) => {
                    let b: BTreeMap<Labels, f64> = b.into_iter().collect();
                    Value::Vector(
                        a.into_iter()
                            .filter_map(|(l, x)| {
                                let y = *b.get(&l)?;
                                op.apply(x, y).map(|r| (l, r))
                            })
                            .collect(),
                    )
                }
            },
        }
    }
}

/// How much a counter grew over the samples, counting a drop as a reset (as PromQL's
/// `increase`, without its extrapolation to the window's edges). Fewer than two samples
/// say nothing.
fn increase(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    Some(
        points
            .windows(2)
            .map(|w| {
                let (prev, next) = (w[0].1, w[1].1);
                if next >= prev {
                    next - prev
                } else {
                    next
                }
            })
            .sum(),
    )
}

/// A duration as Prometheus writes them: `500ms`, `30s`, `1m`, `2h`, `1d`; `0s` is zero.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Character offset in the expression.
    pub at: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.at + 1, self.message)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Str(String),
    Dur(Duration),
    Punct(&'static str),
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, m: &str| ParseError {
        at,
        message: m.to_string(),
    };
    while i < b.len() {
        let c = b[i] as char;
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            out.push((start, Tok::Ident(s[start..i].to_string())));
        } else if c.is_ascii_digit() || c == '.' {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'e') {
                i += 1;
            }
            let text = &s[start..i];
            // `5m`, `30s`, `1h`, `500ms` are durations (only inside a range).
            let unit_end = {
                let mut j = i;
                while j < b.len() && b[j].is_ascii_alphabetic() {
                    j += 1;
                }
                j
            };
            if unit_end > i {
                let d = parse_duration(&s[start..unit_end])
                    .ok_or_else(|| err(i, "a duration is a number and a unit: ms, s, m, h or d"))?;
                out.push((start, Tok::Dur(d)));
                i = unit_end;
            } else {
                let n = text.parse().map_err(|_| err(start, "a bad number"))?;
                out.push((start, Tok::Num(n)));
            }
        } else if c == '"' {
            i += 1;
            let mut v = String::new();
            loop {
                match b.get(i) {
                    None => return Err(err(start, "a string that is never closed")),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        i += 1;
                        match b.get(i) {
                            Some(b'n') => v.push('\n'),
                            Some(&x) => v.push(x as char),
                            None => return Err(err(start, "a string that is never closed")),
                        }
                    }
                    Some(_) => {
                        let ch = s[i..].chars().next().expect("inside the string");
                        v.push(ch);
                        i += ch.len_utf8() - 1;
                    }
                }
                i += 1;
            }
            i += 1;
            out.push((start, Tok::Str(v)));
        } else {
            let p = PUNCT
                .iter()
                .find(|p| s[i..].starts_with(**p))
                .ok_or_else(|| err(i, &format!("unexpected {c:?}")))?;
            out.push((start, Tok::Punct(p)));
            i += p.len();
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

/// Parses an alert expression.
pub fn parse(s: &str) -> Result<Expr, ParseError> {
    let toks = lex(s)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: s.len(),
    };
    let e = p.comparison()?;
    if p.pos < p.toks.len() {
        return Err(p.error("an operator or the end of the expression"));
    }
    Ok(e)
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(a, _)| *a)
    }

    fn error(&self, wanted: &str) -> ParseError {
        let found = match self.peek() {
            None => "the end".to_string(),
            Some(Tok::Ident(s)) => format!("{s:?}"),
            Some(Tok::Num(n)) => n.to_string(),
            Some(Tok::Str(s)) => format!("the string {s:?}"),
            Some(Tok::Dur(d)) => format!("the duration {d:?}"),
            Some(Tok::Punct(p)) => format!("{p:?}"),
        };
        ParseError {
            at: self.at(),
            message: format!("expected {wanted}, found {found}"),
        }
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.peek() == Some(&Tok::Punct(static_punct(p))) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), ParseError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(self.error(&format!("{p:?}")))
        }
    }

    fn binary_level(
        &mut self,
        ops: &[(&str, BinOp)],
        next: fn(&mut Parser) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        let mut lhs = next(self)?;
        'outer: loop {
            for (p, op) in ops {
                if self.eat(p) {
                    let rhs = next(self)?;
                    lhs = Expr::Binary(*op, Box::new(lhs), Box::new(rhs));
                    continue 'outer;
                }
            }
            return Ok(lhs);
        }
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        self.binary_level(
            &[
                (">=", BinOp::Ge),
                ("<=", BinOp::Le),
                ("==", BinOp::Eq),
                ("!=", BinOp::Ne),
                (">", BinOp::Gt),
                ("<", BinOp::Lt),
            ],
            Parser::additive,
        )
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        self.binary_level(&[("+", BinOp::Add), ("-", BinOp::Sub)], Parser::term)
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        self.binary_level(&[("*", BinOp::Mul), ("/", BinOp::Div)], Parser::primary)
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.peek().cloned() {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok(Expr::Number(n))
            }
            Some(Tok::Punct("-")) => {
                self.pos += 1;
                Ok(match self.primary()? {
                    Expr::Number(n) => Expr::Number(-n),
                    e => Expr::Binary(BinOp::Mul, Box::new(Expr::Number(-1.0)), Box::new(e)),
                })
            }
            Some(Tok::Punct("(")) => {
                self.pos += 1;
                let e = self.comparison()?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                let agg = match name.as_str() {
                    "sum" => Some(Agg::Sum),
                    "max" => Some(Agg::Max),
                    "min" => Some(Agg::Min),
                    "count" => Some(Agg::Count),
                    _ => None,
                };
                if let Some(agg) = agg {
                    let mut by = Vec::new();
                    if self.peek() == Some(&Tok::Ident("by".into())) {
                        self.pos += 1;
                        self.expect("(")?;
                        while let Some(Tok::Ident(l)) = self.peek().cloned() {
                            self.pos += 1;
                            by.push(l);
                            if !self.eat(",") {
                                break;
                            }
                        }
                        self.expect(")")?;
                    }
                    self.expect("(")?;
                    let inner = self.comparison()?;
                    self.expect(")")?;
                    return Ok(Expr::Aggregate(agg, by, Box::new(inner)));
                }
                let range_fn = match name.as_str() {
                    "rate" => Some(RangeFn::Rate),
                    "increase" => Some(RangeFn::Increase),
                    _ => None,
                };
                if let Some(f) = range_fn {
                    self.expect("(")?;
                    let Some(Tok::Ident(metric)) = self.peek().cloned() else {
                        return Err(self.error("a metric name"));
                    };
                    self.pos += 1;
                    let sel = self.selector(metric)?;
                    self.expect("[")?;
                    let Some(Tok::Dur(d)) = self.peek().cloned() else {
                        return Err(self.error("a duration such as 1m or 30s"));
                    };
                    self.pos += 1;
                    self.expect("]")?;
                    self.expect(")")?;
                    return Ok(Expr::Range(f, sel, d));
                }
                if self.peek() == Some(&Tok::Punct("(")) {
                    return Err(ParseError {
                        at: self.at(),
                        message: format!(
                            "{name}() is not supported (functions: rate, increase, sum, max, min, count)"
                        ),
                    });
                }
                Ok(Expr::Select(self.selector(name)?))
            }
            _ => Err(self.error("a metric, a number, a function or \"(\"")),
        }
    }

    fn selector(&mut self, metric: String) -> Result<Selector, ParseError> {
        let mut matchers = Vec::new();
        if self.eat("{") {
            while let Some(Tok::Ident(label)) = self.peek().cloned() {
                self.pos += 1;
                let eq = if self.eat("=") {
                    true
                } else if self.eat("!=") {
                    false
                } else {
                    return Err(self.error("= or != (regular expressions are not supported)"));
                };
                let Some(Tok::Str(v)) = self.peek().cloned() else {
                    return Err(self.error("a quoted label value"));
                };
                self.pos += 1;
                matchers.push(if eq {
                    Matcher::Eq(label, v)
                } else {
                    Matcher::Ne(label, v)
                });
                if !self.eat(",") {
                    break;
                }
            }
            self.expect("}")?;
        }
        Ok(Selector { metric, matchers })
    }
}

/// Longest first, so `>=` is not read as `>` then `=`.
const PUNCT: [&str; 20] = [
    ">=", "<=", "==", "!=", "=~", "!~", ">", "<", "=", "(", ")", "{", "}", "[", "]", ",", "+", "-",
    "*", "/",
];

fn static_punct(p: &str) -> &'static str {
    PUNCT
        .iter()
        .find(|x| **x == p)
        .expect("a known punctuation")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<(Labels, String, Points)>);

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    impl Source for Fixed {
        fn instant(&self, sel: &Selector) -> Vector {
            self.0
                .iter()
                .filter(|(l, m, _)| *m == sel.metric && sel.matches(l))
                .map(|(l, _, p)| (l.clone(), p.last().unwrap().1))
                .collect()
        }
        fn range(&self, sel: &Selector, _w: Duration) -> Vec<(Labels, Points)> {
            self.0
                .iter()
                .filter(|(l, m, _)| *m == sel.metric && sel.matches(l))
                .map(|(l, _, p)| (l.clone(), p.clone()))
                .collect()
        }
    }

    #[test]
    fn comparison_filters_and_keeps_the_value() {
        let src = Fixed(vec![
            (labels(&[("server", "a")]), "up".into(), vec![(0.0, 1.0)]),
            (labels(&[("server", "b")]), "up".into(), vec![(0.0, 0.0)]),
        ]);
        let v = parse("up == 0").unwrap().eval(&src);
        assert_eq!(v, vec![(labels(&[("server", "b")]), 0.0)]);
    }

    #[test]
    fn error_ratio_by_server_over_rates() {
        let req = |status: &str, pts: Vec<(f64, f64)>| {
            (
                labels(&[("server", "lb1"), ("status", status)]),
                "webstack_http_requests_total".to_string(),
                pts,
            )
        };
        let src = Fixed(vec![
            req("2xx", vec![(0.0, 0.0), (60.0, 90.0)]),
            req("5xx", vec![(0.0, 5.0), (60.0, 15.0)]),
        ]);
        let e = parse(
            r#"sum by (server) (rate(webstack_http_requests_total{status="5xx"}[1m]))
             / sum by (server) (rate(webstack_http_requests_total[1m])) > 0.05"#,
        )
        .unwrap();
        let v = e.eval(&src);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0, labels(&[("server", "lb1")]));
        assert!((v[0].1 - 0.1).abs() < 1e-9, "{v:?}");
        // Below the bound nothing holds.
        let e = parse(r#"sum by (server) (rate(webstack_http_requests_total{status="5xx"}[1m])) / sum by (server) (rate(webstack_http_requests_total[1m])) > 0.2"#).unwrap();
        assert!(e.eval(&src).is_empty());
    }

    #[test]
    fn increase_counts_a_reset_as_a_restart_from_zero() {
        assert_eq!(increase(&[(0.0, 5.0), (1.0, 8.0), (2.0, 2.0)]), Some(5.0));
        assert_eq!(increase(&[(0.0, 5.0)]), None);
    }

    #[test]
    fn division_by_zero_is_no_sample() {
        let src = Fixed(vec![
            (labels(&[]), "a".into(), vec![(0.0, 1.0)]),
            (labels(&[]), "b".into(), vec![(0.0, 0.0)]),
        ]);
        assert!(parse("a / b > 0").unwrap().eval(&src).is_empty());
    }

    #[test]
    fn arithmetic_on_numbers_and_precedence() {
        let src = Fixed(vec![(
            labels(&[("listen", "x")]),
            "expiry".into(),
            vec![(0.0, 86400.0)],
        )]);
        assert_eq!(parse("expiry < 20 * 86400").unwrap().eval(&src).len(), 1);
        assert!(parse("expiry < 86400 - 1").unwrap().eval(&src).is_empty());
        assert_eq!(parse("-expiry < -300").unwrap().eval(&src).len(), 1);
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = parse("up ==").unwrap_err();
        assert!(e.message.contains("expected a metric"), "{e}");
        let e = parse("up{server=~\"a\"} == 0").unwrap_err();
        assert!(e.message.contains("regular expressions"), "{e}");
        let e = parse("absent(up)").unwrap_err();
        assert!(e.message.contains("absent() is not supported"), "{e}");
        let e = parse("rate(x[5q])").unwrap_err();
        assert!(
            e.message.contains("a duration is a number and a unit"),
            "{e}"
        );
        assert_eq!(parse("up 0").unwrap_err().at, 3);
    }
}
