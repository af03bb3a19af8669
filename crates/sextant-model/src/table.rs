//! The tables a tenant can query: where each signal's rows land.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Signal};

/// A queryable table. Each signal fills one stored table; `templates` is derived (the log
/// templates the tenant's miner knows); `events` holds anomalies, capacity warnings and alerts;
/// `incidents` what the correlator made of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Logs,
    Spans,
    Metrics,
    Templates,
    Events,
    Incidents,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::Logs,
        Table::Spans,
        Table::Metrics,
        Table::Templates,
        Table::Events,
        Table::Incidents,
    ];
    /// The tables kept as rows in segment files.
    pub const STORED: [Table; 3] = [Table::Logs, Table::Spans, Table::Metrics];

    /// The SQL name, also the table's folder in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Logs => "logs",
            Table::Spans => "spans",
            Table::Metrics => "metrics",
            Table::Templates => "templates",
            Table::Events => "events",
            Table::Incidents => "incidents",
        }
    }

    /// The table a signal's rows go to.
    pub fn of(signal: Signal) -> Table {
        match signal {
            Signal::Logs => Table::Logs,
            Signal::Metrics => Table::Metrics,
            Signal::Traces => Table::Spans,
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Table {
    type Err = Error;

    fn from_str(s: &str) -> Result<Table, Error> {
        Table::ALL
            .into_iter()
            .find(|table| table.as_str() == s)
            .ok_or_else(|| Error::UnknownTable { name: s.to_owned() })
    }
}
