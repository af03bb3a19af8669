//! [`TemplateMiners`]: every committed log row gets its `template_id` from its tenant's
//! [`TemplateMiner`], in write-ahead log order. The miners' states are saved with each flush's
//! checkpoint (same transaction) and restored on start, and replay feeds them the same records
//! in the same order, so the ids survive restarts and crashes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ListBuilder, StringArray, TimestampNanosecondArray, UInt64Array, UInt64Builder,
};
use arrow::record_batch::RecordBatch;
use sextant_analytics::patterns::{MinerConfig, MinerState, Template, TemplateMiner};
use sextant_model::{Table, TenantId};
use sextant_tables::schema::TEMPLATE_ID_COLUMN;

use crate::{Error, Result, TIME_COLUMN};

/// The log column that is mined.
const BODY_COLUMN: &str = "body";

/// One miner per tenant, created on the tenant's first log row.
#[derive(Debug)]
pub(crate) struct TemplateMiners {
    config: MinerConfig,
    miners: HashMap<TenantId, TemplateMiner>,
    /// Tenants whose miner changed since its state was last taken for saving.
    changed: HashSet<TenantId>,
}

impl TemplateMiners {
    /// Miners carrying on from their saved states, under `config` (a changed configuration
    /// applies from now on). A state that does not load stops the start: mining afresh would
    /// give the same templates new ids.
    pub fn restore(config: MinerConfig, saved: Vec<(TenantId, Vec<u8>)>) -> Result<Self> {
        config
            .validate()
            .map_err(|e| Error::Decode(format!("template miner settings: {e}")))?;
        let mut miners = HashMap::new();
        for (tenant, bytes) in saved {
            let mut state = decode_state(&bytes).map_err(|e| {
                Error::Decode(format!("saved template miner of tenant `{tenant}`: {e}"))
            })?;
            state.config = config.clone();
            let miner = TemplateMiner::from_state(state).map_err(|e| {
                Error::Decode(format!("saved template miner of tenant `{tenant}`: {e}"))
            })?;
            miners.insert(tenant, miner);
        }
        Ok(TemplateMiners {
            config,
            miners,
            changed: HashSet::new(),
        })
    }

    /// `rows` with `template_id` set from each body; batches without that column (not logs)
    /// come back as they are.
    pub fn label(&mut self, tenant: &TenantId, rows: RecordBatch) -> RecordBatch {
        let schema = rows.schema();
        let (Ok(id_index), Some(bodies), Some(times)) = (
            schema.index_of(TEMPLATE_ID_COLUMN),
            rows.column_by_name(BODY_COLUMN)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>()),
            rows.column_by_name(TIME_COLUMN)
                .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>()),
        ) else {
            return rows;
        };
        if rows.num_rows() == 0 {
            return rows;
        }
        let miner = match self.miners.entry(tenant.clone()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(
                TemplateMiner::new(self.config.clone()).expect("the miner config was validated"),
            ),
        };
        self.changed.insert(tenant.clone());
        let ids: UInt64Array = (0..rows.num_rows())
            .map(|row| {
                let body = if bodies.is_valid(row) {
                    bodies.value(row)
                } else {
                    ""
                };
                Some(miner.mine(body, times.value(row)).id.0)
            })
            .collect();
        let mut columns = rows.columns().to_vec();
        columns[id_index] = Arc::new(ids);
        RecordBatch::try_new(schema, columns).expect("the same schema with a UInt64 column")
    }

    /// The states of the miners that changed since the last call, for saving.
    pub fn take_changed(&mut self) -> Vec<(TenantId, MinerState)> {
        let mut states: Vec<_> = self
            .changed
            .drain()
            .filter_map(|tenant| {
                let state = self.miners.get(&tenant)?.state();
                Some((tenant, state))
            })
            .collect();
        states.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        states
    }

    /// Marks tenants changed again (their states were taken but not saved).
    pub fn mark_changed(&mut self, tenants: impl IntoIterator<Item = TenantId>) {
        self.changed.extend(tenants);
    }

    /// The `templates` table of `tenant` (see [`sextant_tables::schema::schema`]), `None` before its
    /// first log row.
    pub fn table(&self, tenant: &TenantId) -> Option<RecordBatch> {
        let miner = self.miners.get(tenant)?;
        let mut rows: Vec<(&Template, Vec<u64>)> = miner
            .templates()
            .map(|template| (template, vec![template.id().0]))
            .collect();
        rows.sort_by_key(|(template, _)| template.id().0);
        for (from, to) in miner.aliases() {
            let Some(to) = miner.resolve(to) else {
                continue;
            };
            if let Ok(at) = rows.binary_search_by_key(&to.0, |(t, _)| t.id().0) {
                rows[at].1.push(from.0);
            }
        }
        let total = rows.iter().map(|(_, ids)| ids.len()).sum();
        let mut ids = ListBuilder::with_capacity(UInt64Builder::with_capacity(total), rows.len());
        for (_, merged) in &mut rows {
            merged[1..].sort_unstable();
            ids.values().append_slice(merged);
            ids.append(true);
        }
        let times = |time: fn(&Template) -> i64| -> ArrayRef {
            Arc::new(
                TimestampNanosecondArray::from_iter_values(rows.iter().map(|(t, _)| time(t)))
                    .with_timezone("UTC"),
            )
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|(t, _)| t.id().0),
            )),
            Arc::new(ids.finish()),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(t, _)| t.text()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|(t, _)| t.count()),
            )),
            times(Template::first_seen),
            times(Template::last_seen),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(t, _)| t.example()),
            )),
        ];
        Some(
            RecordBatch::try_new(sextant_tables::schema::schema(Table::Templates), columns)
                .expect("the templates columns match their schema"),
        )
    }

    /// The template `id` of `tenant` belongs to now (following merges), if known.
    pub fn resolve(&self, tenant: &TenantId, id: u64) -> Option<u64> {
        let miner = self.miners.get(tenant)?;
        Some(
            miner
                .resolve(sextant_analytics::patterns::TemplateId(id))?
                .0,
        )
    }

    /// The text of template `id` of `tenant` (following merges), if known.
    pub fn template_text(&self, tenant: &TenantId, id: u64) -> Option<String> {
        let miner = self.miners.get(tenant)?;
        let id = miner.resolve(sextant_analytics::patterns::TemplateId(id))?;
        Some(miner.template(id)?.text().to_owned())
    }

    /// Drops a tenant's miner (its data was erased).
    pub fn forget(&mut self, tenant: &TenantId) {
        self.miners.remove(tenant);
        self.changed.remove(tenant);
    }
}

/// A miner state as saved in the metadata store: its JSON, compressed (its templates' texts
/// and masked forms repeat each other, so it shrinks several times over).
pub(crate) fn encode_state(state: &MinerState) -> Vec<u8> {
    crate::saved_state::compress(&serde_json::to_vec(state).expect("a miner state serialises"))
}

/// A saved miner state: compressed, or plain JSON as states were saved before.
fn decode_state(bytes: &[u8]) -> std::result::Result<MinerState, String> {
    let json = crate::saved_state::plain(bytes)?;
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sextant_model::{AttrValue, LogRow};
    use sextant_tables::schema::log_batch;

    fn rows(bodies: &[&str]) -> RecordBatch {
        let tenant = TenantId::new("acme").unwrap();
        let rows: Vec<LogRow> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| LogRow {
                tenant: tenant.clone(),
                service: "api".into(),
                time_unix_nano: 1_000 + i as u64,
                observed_time_unix_nano: 0,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: AttrValue::Str((*body).into()),
                trace_id: Vec::new(),
                span_id: Vec::new(),
                flags: 0,
                event_name: String::new(),
                attributes: Vec::new(),
                resource_attributes: Vec::new(),
                scope_name: String::new(),
                scope_version: String::new(),
            })
            .collect();
        log_batch(&rows)
    }

    fn ids(batch: &RecordBatch) -> Vec<u64> {
        let column = batch.column_by_name(TEMPLATE_ID_COLUMN).unwrap();
        let ids = column.as_any().downcast_ref::<UInt64Array>().unwrap();
        assert_eq!(ids.null_count(), 0);
        ids.values().to_vec()
    }

    const LINES: [&str; 4] = [
        "connected to 10.0.0.1 in 12 ms",
        "disk full on /dev/sda1",
        "connected to 10.0.0.7 in 3 ms",
        "disk full on /dev/sdb2",
    ];

    #[test]
    fn rows_get_ids_that_survive_saving_and_restoring() {
        let acme = TenantId::new("acme").unwrap();
        let mut miners = TemplateMiners::restore(MinerConfig::default(), Vec::new()).unwrap();
        let first = ids(&miners.label(&acme, rows(&LINES)));
        assert_eq!(first[0], first[2]);
        assert_eq!(first[1], first[3]);
        assert_ne!(first[0], first[1]);

        let saved: Vec<_> = miners
            .take_changed()
            .into_iter()
            .map(|(tenant, state)| (tenant, encode_state(&state)))
            .collect();
        assert_eq!(saved.len(), 1);
        assert!(miners.take_changed().is_empty(), "nothing changed since");

        let mut restored = TemplateMiners::restore(MinerConfig::default(), saved).unwrap();
        assert_eq!(ids(&restored.label(&acme, rows(&LINES))), first);
        // Another tenant's miner starts afresh and knows nothing of acme's templates.
        let globex = TenantId::new("globex").unwrap();
        let other = ids(&restored.label(&globex, rows(&["disk full on /dev/sdc3"])));
        assert_eq!(other.len(), 1);
    }

    #[test]
    fn states_are_saved_compressed_and_plain_ones_still_load() {
        let acme = TenantId::new("acme").unwrap();
        let mut miners = TemplateMiners::restore(MinerConfig::default(), Vec::new()).unwrap();
        let (things, states) = (
            ["Disk", "Cache", "Queue", "Link", "Fan", "Pump"],
            ["Failed", "Recovered", "Degraded", "Restarted"],
        );
        let bodies: Vec<String> = (0..480)
            .map(|i| {
                let (thing, state) = (things[i % 6], states[(i / 6) % 4]);
                format!(
                    "{thing} {state} on node {} after {i} retries ({} ms)",
                    i % 9,
                    i * 7
                )
            })
            .collect();
        let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let first = ids(&miners.label(&acme, rows(&bodies)));
        let (_, state) = miners.take_changed().pop().unwrap();
        let json = serde_json::to_vec(&state).unwrap();
        let compressed = encode_state(&state);
        assert!(compressed.starts_with(&crate::saved_state::ZSTD_MAGIC));
        assert!(
            compressed.len() * 3 < json.len(),
            "{} bytes compressed, {} as JSON",
            compressed.len(),
            json.len()
        );
        for saved in [compressed, json] {
            let mut restored =
                TemplateMiners::restore(MinerConfig::default(), vec![(acme.clone(), saved)])
                    .unwrap();
            assert_eq!(ids(&restored.label(&acme, rows(&bodies))), first);
        }
    }

    #[test]
    fn the_table_lists_each_template_once_with_the_ids_merged_into_it() {
        let acme = TenantId::new("acme").unwrap();
        let mut miners = TemplateMiners::restore(MinerConfig::default(), Vec::new()).unwrap();
        // alice and bob start two templates; carol's line makes the name a variable, and the
        // two merge.
        let lines = [
            "session opened for user alice",
            "session opened for user bob",
            "session opened for user carol",
            "disk full on /dev/sda1",
        ];
        let labelled = ids(&miners.label(&acme, rows(&lines)));
        assert_ne!(labelled[0], labelled[1], "{labelled:?}");
        let table = miners.table(&acme).unwrap();
        assert_eq!(table.num_rows(), 2);
        let column = |name: &str| table.column_by_name(name).unwrap().clone();
        let template_ids = column(TEMPLATE_ID_COLUMN);
        let template_ids = template_ids.as_any().downcast_ref::<UInt64Array>().unwrap();
        let counts = column("count");
        let counts = counts.as_any().downcast_ref::<UInt64Array>().unwrap();
        let texts = column("template");
        let texts = texts.as_any().downcast_ref::<StringArray>().unwrap();
        let merged = column("ids");
        let merged = merged
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .unwrap();
        let session = (0..2)
            .find(|&r| texts.value(r).starts_with("session"))
            .unwrap();
        assert_eq!(texts.value(session), "session opened for user <*>");
        assert_eq!(counts.value(session), 3);
        let session_ids = merged.value(session);
        let session_ids = session_ids.as_any().downcast_ref::<UInt64Array>().unwrap();
        // Its own id first, then the one merged into it: every id the lines carry.
        assert_eq!(session_ids.values()[0], template_ids.value(session));
        let mut all: Vec<u64> = session_ids.values().to_vec();
        all.sort_unstable();
        let mut carried = labelled[..3].to_vec();
        carried.sort_unstable();
        carried.dedup();
        assert_eq!(all, carried);
    }

    #[test]
    fn a_damaged_saved_state_stops_the_start() {
        let acme = TenantId::new("acme").unwrap();
        let err = TemplateMiners::restore(MinerConfig::default(), vec![(acme, b"{".to_vec())])
            .unwrap_err();
        assert!(err.to_string().contains("`acme`"), "{err}");
    }
}
