//! Container logs as the kubelet serves them: every stored line carries the time it was written (the CRI log
//! format's timestamp), and a log request picks lines by `tailLines` and `sinceSeconds`/`sinceTime`, prefixes
//! them with their time when `timestamps` is asked and stops after `limitBytes`
//! (pkg/kubelet/kuberuntime/logs: the tail is found first, then older lines are skipped, then the bytes counted).

use jiff::Timestamp;

use crate::status::Cause;

/// What a log request asks for, besides the container and `previous`/`follow`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    pub since: Option<Timestamp>,
}

/// How the kubelet prints a line's time: RFC 3339 with nine fractional digits.
pub fn format_time(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string()
}

/// One stored line: its time, a space, the text and a newline.
pub fn stored_line(time: Timestamp, text: &str) -> String {
    format!("{} {}\n", format_time(time), text.trim_end_matches('\n'))
}

/// The options of a log request from its query parameters, checked as the API server checks PodLogOptions:
/// the causes of an invalid request otherwise.
pub fn options_from_query<'a>(get: impl Fn(&str) -> Option<&'a str>, now: Timestamp) -> Result<LogOptions, Vec<Cause>> {
    let mut causes = Vec::new();
    let mut number = |field: &str, minimum: i64, rule: &str| -> Option<i64> {
        let text = get(field)?;
        match text.parse::<i64>() {
            Ok(value) if value >= minimum => Some(value),
            Ok(value) => {
                causes.push(invalid(field, &format!("Invalid value: {value}: {rule}")));
                None
            }
            Err(_) => {
                causes.push(invalid(field, &format!("Invalid value: {text:?}: must be an integer")));
                None
            }
        }
    };
    let tail_lines = number("tailLines", 0, "must be greater than or equal to 0");
    let limit_bytes = number("limitBytes", 1, "must be greater than 0");
    let since_seconds = number("sinceSeconds", 1, "must be greater than 0");
    let since_time = get("sinceTime").filter(|text| !text.is_empty());
    let mut since = since_seconds.map(|seconds| now - jiff::SignedDuration::from_secs(seconds));
    if let Some(text) = since_time {
        if since_seconds.is_some() {
            causes.push(Cause {
                reason: "FieldValueForbidden".into(),
                message: "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
                field: "sinceSeconds".into(),
            });
        }
        match text.parse::<Timestamp>() {
            Ok(time) => since = Some(time),
            Err(_) => causes.push(invalid(
                "sinceTime",
                &format!("Invalid value: {text:?}: must be an RFC 3339 time"),
            )),
        }
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    Ok(LogOptions {
        timestamps: get("timestamps").is_some_and(is_true),
        tail_lines: tail_lines.map(|lines| lines as usize),
        limit_bytes: limit_bytes.map(|bytes| bytes as usize),
        since,
    })
}

/// A true boolean query parameter, in every spelling the API server's parser (Go's `strconv.ParseBool`) takes:
/// the Python client sends `True`.
pub fn is_true(text: &str) -> bool {
    matches!(text, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn invalid(field: &str, message: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: message.into(),
        field: field.into(),
    }
}

/// A stored line split into its time and text (a line without a readable time keeps all of it as text).
fn parse_line(line: &str) -> (Option<Timestamp>, &str) {
    match line.split_once(' ') {
        Some((time, text)) => match time.parse::<Timestamp>() {
            Ok(time) => (Some(time), text),
            Err(_) => (None, line),
        },
        None => (None, line),
    }
}

/// Renders whole stored lines (each ending in a newline) for a request: `tail` applies here (the first part of a
/// log), `since` and `timestamps` to every part. `limitBytes` is left to [`Budget`].
pub fn render(stored: &str, options: &LogOptions, tail: bool) -> String {
    let lines: Vec<&str> = stored.split_inclusive('\n').collect();
    let start = match options.tail_lines.filter(|_| tail) {
        Some(tail_lines) => lines.len().saturating_sub(tail_lines),
        None => 0,
    };
    let mut out = String::new();
    for line in &lines[start..] {
        let (time, text) = parse_line(line);
        if let (Some(since), Some(time)) = (options.since, time)
            && time < since
        {
            continue;
        }
        if options.timestamps {
            out.push_str(&format_time(time.unwrap_or(Timestamp::UNIX_EPOCH)));
            out.push(' ');
        }
        out.push_str(text);
    }
    out
}

/// What is left of `limitBytes` over a whole (possibly followed) log.
#[derive(Debug)]
pub struct Budget(Option<usize>);

impl Budget {
    pub fn new(options: &LogOptions) -> Budget {
        Budget(options.limit_bytes)
    }

    /// The part of `text` still within the limit.
    pub fn take(&mut self, mut text: String) -> String {
        if let Some(left) = self.0.as_mut() {
            if text.len() > *left {
                let mut cut = *left;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            *left -= text.len();
        }
        text
    }

    pub fn exhausted(&self) -> bool {
        self.0 == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("time")
    }

    fn stored() -> String {
        [
            stored_line(at("2025-01-01T10:00:00Z"), "first"),
            stored_line(at("2025-01-01T10:30:00.5Z"), "second\n"),
            stored_line(at("2025-01-01T11:00:00.000000123Z"), "third"),
        ]
        .concat()
    }

    fn query<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |key| pairs.iter().find(|(name, _)| *name == key).map(|(_, value)| *value)
    }

    #[test]
    fn times_print_with_nine_digits() {
        assert_eq!(
            format_time(at("2025-01-01T10:30:00.5Z")),
            "2025-01-01T10:30:00.500000000Z"
        );
        assert_eq!(
            stored_line(at("2025-01-01T10:00:00Z"), "x\n"),
            "2025-01-01T10:00:00.000000000Z x\n"
        );
    }

    #[test]
    fn plain_logs_drop_the_stored_times() {
        let options = LogOptions::default();
        assert_eq!(render(&stored(), &options, true), "first\nsecond\nthird\n");
    }

    #[test]
    fn timestamps_tail_and_since() {
        let options = LogOptions {
            timestamps: true,
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        assert_eq!(
            render(&stored(), &options, true),
            "2025-01-01T10:30:00.500000000Z second\n2025-01-01T11:00:00.000000123Z third\n"
        );
        // The tail applies to the first part of a followed log only.
        assert_eq!(render(&stored(), &options, false).lines().count(), 3);
        let since = LogOptions {
            since: Some(at("2025-01-01T10:30:00Z")),
            ..LogOptions::default()
        };
        assert_eq!(render(&stored(), &since, true), "second\nthird\n");
        // The tail is taken before older lines are skipped, as the kubelet does.
        let both = LogOptions {
            tail_lines: Some(2),
            since: Some(at("2025-01-01T10:45:00Z")),
            ..LogOptions::default()
        };
        assert_eq!(render(&stored(), &both, true), "third\n");
    }

    #[test]
    fn the_byte_limit_spans_every_part() {
        let mut budget = Budget::new(&LogOptions {
            limit_bytes: Some(8),
            ..LogOptions::default()
        });
        assert_eq!(budget.take("first\n".into()), "first\n");
        assert!(!budget.exhausted());
        assert_eq!(budget.take("second\n".into()), "se");
        assert!(budget.exhausted());
        assert_eq!(budget.take("third\n".into()), "");
        let mut unlimited = Budget::new(&LogOptions::default());
        assert_eq!(unlimited.take("all of it\n".into()), "all of it\n");
        assert!(!unlimited.exhausted());
    }

    #[test]
    fn query_parameters_are_checked_like_pod_log_options() {
        let now = at("2025-01-01T12:00:00Z");
        let options = options_from_query(
            query(&[
                ("timestamps", "true"),
                ("tailLines", "5"),
                ("limitBytes", "100"),
                ("sinceSeconds", "3600"),
            ]),
            now,
        )
        .expect("valid");
        assert_eq!(
            options,
            LogOptions {
                timestamps: true,
                tail_lines: Some(5),
                limit_bytes: Some(100),
                since: Some(at("2025-01-01T11:00:00Z")),
            }
        );
        // The Python client spells its booleans `True`.
        assert!(
            options_from_query(query(&[("timestamps", "True")]), now)
                .unwrap()
                .timestamps
        );
        assert!(
            !options_from_query(query(&[("timestamps", "False")]), now)
                .unwrap()
                .timestamps
        );
        let since_time = options_from_query(query(&[("sinceTime", "2025-01-01T10:00:00Z")]), now).expect("valid");
        assert_eq!(since_time.since, Some(at("2025-01-01T10:00:00Z")));

        let causes = options_from_query(query(&[("tailLines", "-1"), ("limitBytes", "0")]), now).unwrap_err();
        let shown: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        assert_eq!(
            shown,
            [
                "tailLines: Invalid value: -1: must be greater than or equal to 0",
                "limitBytes: Invalid value: 0: must be greater than 0",
            ]
        );
        let causes = options_from_query(
            query(&[("sinceSeconds", "10"), ("sinceTime", "2025-01-01T10:00:00Z")]),
            now,
        )
        .unwrap_err();
        assert!(
            causes[0]
                .message
                .contains("at most one of `sinceTime` or `sinceSeconds`")
        );
    }
}
