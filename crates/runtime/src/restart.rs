//! Restart policies (`--restart`, compose's `restart:`), decided by a container's supervisor
//! when the container exits, as Docker's daemon decides them: there is no daemon here, so the
//! shim that supervises a detached container restarts it in place.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    /// After a non-zero exit, at most this many times (`None`: without limit).
    OnFailure(Option<u32>),
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "no" | "" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure(None),
            _ => match s.strip_prefix("on-failure:").map(str::parse::<u32>) {
                Some(Ok(n)) => RestartPolicy::OnFailure(Some(n)),
                _ => return Err(format!("invalid restart policy {s:?} (no, always, on-failure[:N] or unless-stopped)")),
            },
        })
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
            RestartPolicy::OnFailure(None) => f.write_str("on-failure"),
            RestartPolicy::OnFailure(Some(n)) => write!(f, "on-failure:{n}"),
        }
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl RestartPolicy {
    /// Whether a container that exited with `exit_code`, restarted `restarts` times so far,
    /// is restarted. A container stopped by the user (`stop`, `kill`) never is.
    pub fn restarts(self, exit_code: i32, restarts: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure(max) => exit_code != 0 && max.is_none_or(|m| restarts < m),
        }
    }
}

/// The wait before restart number `restarts + 1`: Docker's 100 ms, doubling, at most a
/// minute; a container that ran for 10 s or more starts the count again.
pub fn backoff(restarts_in_a_row: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << restarts_in_a_row.min(10))).min(Duration::from_secs(60))
}

/// Runs this long and the backoff starts again from 100 ms.
pub const STABLE_RUN: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_read_and_print_as_docker_writes_them() {
        for s in ["no", "always", "unless-stopped", "on-failure", "on-failure:3"] {
            assert_eq!(s.parse::<RestartPolicy>().map(|p| p.to_string()).as_deref(), Ok(s));
        }
        assert!("sometimes".parse::<RestartPolicy>().is_err());
        assert!("on-failure:x".parse::<RestartPolicy>().is_err());
    }

    #[test]
    fn who_is_restarted() {
        use RestartPolicy::*;
        assert!(!No.restarts(1, 0, false));
        assert!(Always.restarts(0, 5, false));
        assert!(UnlessStopped.restarts(0, 0, false));
        assert!(!Always.restarts(1, 0, true), "a user's stop wins over the policy");
        assert!(!OnFailure(None).restarts(0, 0, false), "a clean exit is not a failure");
        assert!(OnFailure(None).restarts(2, 100, false));
        assert!(OnFailure(Some(2)).restarts(1, 1, false));
        assert!(!OnFailure(Some(2)).restarts(1, 2, false), "at most N restarts");
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }
}
