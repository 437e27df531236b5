//! Runs a simulated cluster by hand: prints the kubeconfig to use, runs until Ctrl-C, then cleans up.

use std::time::Duration;

use kubesim::{Kubesim, Options};

const USAGE: &str = "usage: kubesim [--slow-first-start SECS] [--without-node]

Runs a simulated Kubernetes cluster on 127.0.0.1 until Ctrl-C.
  --slow-first-start SECS  each container's first start takes SECS seconds before it is ready
  --without-node           control plane only: pods are scheduled but never run";

fn parse_options(arguments: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut arguments = arguments.iter();
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--slow-first-start" => {
                let value = arguments.next().ok_or("--slow-first-start needs a number of seconds")?;
                let seconds: f64 = value
                    .parse()
                    .ok()
                    .filter(|seconds: &f64| seconds.is_finite() && *seconds >= 0.0)
                    .ok_or_else(|| format!("--slow-first-start: {value:?} is not a number of seconds"))?;
                options.slow_first_start = Some(Duration::from_secs_f64(seconds));
            }
            "--without-node" => options.without_node = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

async fn interrupted() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("kubesim=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_options(&arguments) {
        Ok(options) => options,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("kubesim: {problem}");
            }
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(if problem.is_empty() { 0 } else { 2 });
        }
    };
    let simulator = match Kubesim::start(options) {
        Ok(simulator) => simulator,
        Err(error) => {
            eprintln!("kubesim: cannot start: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("kubesim is running at {}", simulator.url());
    println!("kubeconfig: {}", simulator.kubeconfig_path().display());
    println!("export KUBECONFIG={}", simulator.kubeconfig_path().display());
    println!("Press Ctrl-C to stop.");
    let waited = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|runtime| runtime.block_on(interrupted()));
    if let Err(error) = waited {
        eprintln!("kubesim: cannot wait for Ctrl-C ({error}); stopping");
    }
    eprintln!("kubesim: stopping");
    let mut simulator = simulator;
    simulator.shutdown();
    let leftovers = simulator.leftovers();
    if leftovers.is_empty() {
        eprintln!("kubesim: stopped, nothing left behind");
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("kubesim: stopped, but these remain: {}", leftovers.join(", "));
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        let options = parse_options(&["--slow-first-start".into(), "2.5".into()]).expect("valid");
        assert_eq!(options.slow_first_start, Some(Duration::from_millis(2500)));
        assert!(parse_options(&["--slow-first-start".into()]).is_err());
        assert!(parse_options(&["--bogus".into()]).is_err());
        assert!(parse_options(&["--without-node".into()]).expect("valid").without_node);
    }
}
