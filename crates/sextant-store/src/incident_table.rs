//! The `incidents` table's batch (its schema is `sextant_tables::schema`), from the incident
//! rows the metadata store keeps.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampNanosecondArray, UInt64Array};
use arrow::record_batch::RecordBatch;
use sextant_model::Table;
use sextant_tables::schema::{UTC, schema};

use crate::meta::IncidentRow;

/// The `incidents` batch of `rows`.
pub fn incident_batch(rows: &[IncidentRow]) -> RecordBatch {
    let bodies: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap_or_default())
        .collect();
    let text = |key: &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            bodies
                .iter()
                .map(|b| b[key].as_str().unwrap_or_default().to_owned()),
        ))
    };
    let times = |values: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampNanosecondArray::from(values).with_timezone(UTC))
    };
    let columns: Vec<ArrayRef> = vec![
        times(rows.iter().map(|r| Some(r.opened_at)).collect()),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.id))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.status.clone()),
        )),
        text("title"),
        text("severity"),
        times(rows.iter().map(|r| Some(r.updated_at)).collect()),
        times(bodies.iter().map(|b| b["resolved_at"].as_i64()).collect()),
        Arc::new(StringArray::from_iter_values(
            bodies.iter().map(|b| b["services"].to_string()),
        )),
        Arc::new(UInt64Array::from_iter_values(
            bodies
                .iter()
                .map(|b| b["members"].as_array().map_or(0, |m| m.len() as u64)),
        )),
        Arc::new(UInt64Array::from_iter_values(
            bodies
                .iter()
                .map(|b| b["notifications"].as_u64().unwrap_or(0)),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.body.clone()),
        )),
    ];
    RecordBatch::try_new(schema(Table::Incidents), columns)
        .expect("the incidents columns match their schema")
}
