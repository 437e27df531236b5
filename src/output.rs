//! The only place that writes to the terminal: results to stdout, progress and errors to stderr.
//!
//! Progress is shown as spinners on a terminal and as plain timestamped lines otherwise (CI, pipes, `-o json`);
//! the choice is made once, in `settings`.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle as BarStyle};

use crate::plan::{Reporter, StepOutcome};
use crate::settings::ProgressStyle;

/// Writes a result to stdout. A closed pipe (`lab status | head`) is not an error worth reporting.
pub fn print_result(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

/// Writes an error to stderr, once, at the top.
pub fn print_error(message: &str, color: bool) {
    let label = paint("error:", "1;31", color);
    eprintln!("{label} {message}");
}

/// Writes a question to stderr and reads one line of answer from stdin.
pub fn ask(question: &str) -> std::io::Result<String> {
    eprint!("{question} ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim().to_string())
}

/// Writes a demo's narration to stderr: it is progress, told while the demo runs (see `commands::demo`).
pub fn narrate(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
    let _ = err.flush();
}

/// `--pause`: waits for Enter when stdin is a terminal; elsewhere (CI, a pipe) it returns at once.
pub fn pause_for_enter(prompt: &str) {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let _ = ask(prompt);
    }
}

fn paint(text: &str, ansi: &str, color: bool) -> String {
    if color {
        format!("\x1b[{ansi}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Progress on stderr, as spinners or as plain lines.
pub struct Progress {
    style: ProgressStyle,
    color: bool,
    current: Mutex<Option<ProgressBar>>,
}

impl Progress {
    pub fn new(style: ProgressStyle, color: bool) -> Self {
        Progress {
            style,
            color,
            current: Mutex::new(None),
        }
    }

    fn line(&self, text: &str) {
        let now = jiff::Zoned::now();
        let stamp = now.strftime("%H:%M:%S%.3f");
        match self.current.lock().expect("progress lock is never poisoned").as_ref() {
            Some(bar) => bar.println(format!("{stamp} {text}")),
            None => eprintln!("{stamp} {text}"),
        }
    }
}

/// Human-readable duration: `850ms`, `12.3s`, `2m05s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

impl Reporter for Progress {
    fn step_started(&self, title: &str) {
        match self.style {
            ProgressStyle::Lines => self.line(&format!("▸ {title}")),
            ProgressStyle::Spinners => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    BarStyle::with_template("{spinner} {msg} {elapsed:.dim}").expect("static template is valid"),
                );
                bar.set_message(title.to_string());
                bar.enable_steady_tick(Duration::from_millis(100));
                *self.current.lock().expect("progress lock is never poisoned") = Some(bar);
            }
        }
    }

    fn step_progress(&self, title: &str, detail: &str) {
        match self.style {
            ProgressStyle::Lines => self.line(&format!("  {title}: {detail}")),
            ProgressStyle::Spinners => {
                if let Some(bar) = self.current.lock().expect("progress lock is never poisoned").as_ref() {
                    bar.set_message(format!("{title}: {detail}"));
                }
            }
        }
    }

    fn step_finished(&self, title: &str, outcome: StepOutcome, detail: &str, elapsed: Duration) {
        let (mark, ansi) = match outcome {
            StepOutcome::Done => ("✓", "32"),
            StepOutcome::Unchanged => ("=", "36"),
            StepOutcome::Passed => ("✓", "32"),
            StepOutcome::Failed => ("✗", "31"),
        };
        let mark = paint(mark, ansi, self.color);
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        let text = format!("{mark} {title}{detail} ({})", format_duration(elapsed));
        let bar = self.current.lock().expect("progress lock is never poisoned").take();
        match bar {
            Some(bar) => {
                bar.set_style(BarStyle::with_template("{msg}").expect("static template is valid"));
                bar.finish_with_message(text);
            }
            None => self.line(&text),
        }
    }

    fn note(&self, text: &str) {
        self.line(&format!("  note: {text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn paint_adds_ansi_only_with_colour() {
        assert_eq!(paint("x", "31", false), "x");
        assert_eq!(paint("x", "31", true), "\x1b[31mx\x1b[0m");
    }
}
