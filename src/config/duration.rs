//! Durations written as `"5m"`, `"30s"`, `"1h 30m"` or a whole number of seconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de::Error};

#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Seconds(u64),
    Text(String),
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    match Written::deserialize(deserializer)? {
        Written::Seconds(secs) => Ok(Duration::from_secs(secs)),
        Written::Text(text) => match text.trim().parse::<u64>() {
            Ok(secs) => Ok(Duration::from_secs(secs)),
            Err(_) => humantime::parse_duration(text.trim())
                .map_err(|e| D::Error::custom(format!("`{text}` is not a duration like \"30s\" or \"5m\": {e}"))),
        },
    }
}

/// An optional duration, for `#[serde(default, with = "duration::optional")]`.
pub mod optional {
    use std::time::Duration;

    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        super::deserialize(deserializer).map(Some)
    }
}
