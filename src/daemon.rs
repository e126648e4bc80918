//! What both daemons, `weft router` and `weft npc`, share at the process edge: the duration
//! syntax of their flags and the signal that stops them. A leaf below both, so that npc does not
//! import the router's composition root.

use std::time::Duration;

/// Parses `250ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let input = input.trim();
    let (number, scale) = if let Some(ms) = input.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = input.strip_suffix('s') {
        (s, 1.0)
    } else if let Some(m) = input.strip_suffix('m') {
        (m, 60.0)
    } else {
        (input, 1.0)
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {input:?} (use e.g. 500ms, 10s, 2m)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("invalid duration {input:?}"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// SIGTERM (the kubelet stopping the container) or SIGINT.
pub async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
