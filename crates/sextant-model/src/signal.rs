//! The three OpenTelemetry signals Sextant ingests.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Logs, metrics or traces. The numeric form (`as_u8`) is what the write-ahead log stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Logs,
    Metrics,
    Traces,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Logs, Signal::Metrics, Signal::Traces];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }

    /// The stable one-byte tag used on disk.
    pub fn as_u8(self) -> u8 {
        match self {
            Signal::Logs => 1,
            Signal::Metrics => 2,
            Signal::Traces => 3,
        }
    }

    pub fn from_u8(tag: u8) -> Option<Signal> {
        match tag {
            1 => Some(Signal::Logs),
            2 => Some(Signal::Metrics),
            3 => Some(Signal::Traces),
            _ => None,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Signal {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Signal::ALL
            .into_iter()
            .find(|signal| signal.as_str() == s)
            .ok_or_else(|| Error::UnknownSignal { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for signal in Signal::ALL {
            assert_eq!(Signal::from_u8(signal.as_u8()), Some(signal));
            assert_eq!(signal.as_str().parse::<Signal>().unwrap(), signal);
        }
        assert_eq!(Signal::from_u8(0), None);
        assert!("spans".parse::<Signal>().is_err());
    }
}
