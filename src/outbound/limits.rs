//! Send limits per mailbox, as the big providers enforce them (Microsoft
//! 365: 30 messages a minute, 10,000 recipients a day; exceeding them gets
//! `554 5.2.0` and a blocked mailbox). Sliding windows over what was really
//! sent, decided from a history the caller keeps durably, so a restart does
//! not reset a day's recipient count. Pure: the caller passes the clock.

use std::time::Duration;

/// The budgets of one mailbox; a zero cap is "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    pub messages: u64,
    pub messages_window: Duration,
    pub bytes: u64,
    pub bytes_window: Duration,
    pub recipients: u64,
    pub recipients_window: Duration,
}

impl Default for SendLimits {
    /// 10 messages a minute, 50 MB per 5 minutes, 10,000 recipients a day.
    fn default() -> Self {
        SendLimits {
            messages: 10,
            messages_window: Duration::from_secs(60),
            bytes: 50_000_000,
            bytes_window: Duration::from_secs(5 * 60),
            recipients: 10_000,
            recipients_window: Duration::from_secs(24 * 3600),
        }
    }
}

impl SendLimits {
    /// The longest window: history older than this can be forgotten.
    pub fn horizon(&self) -> Duration {
        self.messages_window
            .max(self.bytes_window)
            .max(self.recipients_window)
    }
}

/// One message handed to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    pub bytes: u64,
    pub recipients: u64,
}

/// Which budget made a message wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitReason {
    Messages,
    Bytes,
    Recipients,
}

impl LimitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitReason::Messages => "messages_per_window",
            LimitReason::Bytes => "bytes_per_window",
            LimitReason::Recipients => "recipients_per_window",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Send,
    /// Not before this time (ms since the epoch), because of this budget.
    Wait {
        until_ms: i64,
        reason: LimitReason,
    },
}

/// May a message of `bytes` to `recipients` go now, given what was sent
/// (`history`, any order)? A message larger than a whole budget (a 60 MB
/// mail against 50 MB per 5 minutes) goes once that window is empty, so it
/// is never stuck for ever.
pub fn decide(
    limits: &SendLimits,
    history: &[Sent],
    now_ms: i64,
    bytes: u64,
    recipients: u64,
) -> Decision {
    // The send log comes oldest first; copy and sort only when it does not
    // (a clock that stepped back).
    let sorted: std::borrow::Cow<'_, [Sent]> = if history.is_sorted_by_key(|s| s.at_ms) {
        std::borrow::Cow::Borrowed(history)
    } else {
        let mut v = history.to_vec();
        v.sort_by_key(|s| s.at_ms);
        std::borrow::Cow::Owned(v)
    };
    let windows = [
        (
            LimitReason::Messages,
            limits.messages,
            limits.messages_window,
            1,
            (|_: &Sent| 1) as fn(&Sent) -> u64,
        ),
        (
            LimitReason::Bytes,
            limits.bytes,
            limits.bytes_window,
            bytes,
            |s: &Sent| s.bytes,
        ),
        (
            LimitReason::Recipients,
            limits.recipients,
            limits.recipients_window,
            recipients,
            |s: &Sent| s.recipients,
        ),
    ];
    let mut wait: Option<(i64, LimitReason)> = None;
    for (reason, cap, window, wanted, amount) in windows {
        if cap == 0 {
            continue;
        }
        let window_ms = window.as_millis() as i64;
        let inside: Vec<&Sent> = sorted
            .iter()
            .filter(|s| s.at_ms > now_ms - window_ms)
            .collect();
        let mut used: u64 = inside.iter().map(|s| amount(s)).sum();
        let wanted = wanted.min(cap);
        if used + wanted <= cap {
            continue;
        }
        // The window slides past its oldest entries one by one until the
        // message fits: it may go when the last of those has left.
        let mut until = now_ms;
        for s in &inside {
            used -= amount(s);
            until = s.at_ms + window_ms;
            if used + wanted <= cap {
                break;
            }
        }
        if wait.is_none_or(|(t, _)| until > t) {
            wait = Some((until, reason));
        }
    }
    match wait {
        Some((until_ms, reason)) if until_ms > now_ms => Decision::Wait { until_ms, reason },
        _ => Decision::Send,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn sent(at_ms: i64, bytes: u64, recipients: u64) -> Sent {
        Sent {
            at_ms,
            bytes,
            recipients,
        }
    }

    #[test]
    fn the_eleventh_message_in_a_minute_waits_for_the_next_minute() {
        let l = SendLimits::default();
        let history: Vec<Sent> = (0..10).map(|i| sent(i * 1000, 1000, 1)).collect();
        assert_eq!(
            decide(&l, &history, 30_000, 1000, 1),
            Decision::Wait {
                until_ms: MIN,
                reason: LimitReason::Messages
            }
        );
        // When the first one has left the window, one more may go.
        assert_eq!(decide(&l, &history, MIN, 1000, 1), Decision::Send);
        assert_eq!(decide(&l, &history[..9], 30_000, 1000, 1), Decision::Send);
    }

    #[test]
    fn a_30_and_a_25_megabyte_message_wait_on_the_byte_budget() {
        let l = SendLimits::default();
        let history = [sent(0, 30_000_000, 1)];
        assert_eq!(
            decide(&l, &history, 1000, 25_000_000, 1),
            Decision::Wait {
                until_ms: 5 * MIN,
                reason: LimitReason::Bytes
            }
        );
        assert_eq!(decide(&l, &history, 5 * MIN, 25_000_000, 1), Decision::Send);
        assert_eq!(decide(&l, &history, 1000, 20_000_000, 1), Decision::Send);
    }

    #[test]
    fn a_message_larger_than_the_budget_goes_when_the_window_is_empty() {
        let l = SendLimits::default();
        assert_eq!(decide(&l, &[], 0, 60_000_000, 1), Decision::Send);
        let history = [sent(0, 1, 1)];
        assert_eq!(
            decide(&l, &history, 10, 60_000_000, 1),
            Decision::Wait {
                until_ms: 5 * MIN,
                reason: LimitReason::Bytes
            }
        );
    }

    #[test]
    fn recipients_are_counted_over_a_day_and_the_longest_wait_wins() {
        let l = SendLimits::default();
        let day = 24 * 60 * MIN;
        let history = [sent(0, 10, 9_000), sent(1000, 10, 900)];
        assert_eq!(decide(&l, &history, 2000, 10, 100), Decision::Send);
        assert_eq!(
            decide(&l, &history, 2000, 10, 101),
            Decision::Wait {
                until_ms: day,
                reason: LimitReason::Recipients
            }
        );
        // Oversized recipient lists are capped at the budget, not stuck.
        assert_eq!(
            decide(&l, &history, 2000, 10, 50_000),
            Decision::Wait {
                until_ms: day + 1000,
                reason: LimitReason::Recipients
            }
        );
    }

    #[test]
    fn zero_means_no_limit() {
        let l = SendLimits {
            messages: 0,
            bytes: 0,
            recipients: 0,
            ..SendLimits::default()
        };
        let history: Vec<Sent> = (0..1000).map(|i| sent(i, u64::MAX / 2000, 1000)).collect();
        assert_eq!(decide(&l, &history, 1000, 1 << 40, 1 << 20), Decision::Send);
    }
}
