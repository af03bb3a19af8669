//! End-to-end queries over Parquet segments in a temporary directory plus unflushed rows.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use object_store::local::LocalFileSystem;
use parquet::arrow::ArrowWriter;
use sextant_model::Table;
use sextant_query::{Error, QueryEngine, QueryLimits, QueryOutput};
use sextant_store::{SegmentFile, TableSnapshot};

/// 2026-01-01T00:00:00Z in ns.
const JAN_1: i64 = 1_767_225_600_000_000_000;
const MINUTE: i64 = 60_000_000_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("service", DataType::Utf8, true),
        Field::new("body", DataType::Utf8, true),
    ]))
}

fn batch(rows: &[(i64, &str, &str)]) -> RecordBatch {
    let time = TimestampNanosecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .with_timezone("UTC");
    let service = StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>());
    let body = StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>());
    let columns: Vec<ArrayRef> = vec![Arc::new(time), Arc::new(service), Arc::new(body)];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// A temporary segment store and the engine over it.
struct Fixture {
    dir: tempfile::TempDir,
    engine: QueryEngine,
}

impl Fixture {
    fn new(limits: QueryLimits) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let engine = QueryEngine::new(Arc::new(store), limits);
        Fixture { dir, engine }
    }

    /// Writes `rows` as a Parquet segment at `path` and returns its catalog entry.
    fn segment(&self, path: &str, rows: &[(i64, &str, &str)]) -> SegmentFile {
        let full = self.dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        let file = std::fs::File::create(&full).unwrap();
        let mut writer = ArrowWriter::try_new(file, schema(), None).unwrap();
        writer.write(&batch(rows)).unwrap();
        writer.close().unwrap();
        SegmentFile {
            path: path.to_owned(),
            min_time: rows.iter().map(|r| r.0).min().unwrap(),
            max_time: rows.iter().map(|r| r.0).max().unwrap(),
            rows: rows.len() as u64,
            bytes: file_size(&full),
        }
    }

    async fn sql(&self, tables: Vec<TableSnapshot>, sql: &str) -> Result<QueryOutput, Error> {
        self.engine.sql(tables, sql).await
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// A catalog entry whose object does not exist: opening it fails the query.
fn missing_segment(min_time: i64, max_time: i64) -> SegmentFile {
    SegmentFile {
        path: "acme/logs/missing/nope.parquet".to_owned(),
        min_time,
        max_time,
        rows: 10,
        bytes: 1000,
    }
}

fn logs(files: Vec<SegmentFile>, buffered: Vec<RecordBatch>) -> TableSnapshot {
    TableSnapshot {
        table: Table::Logs,
        schema: schema(),
        files,
        buffered,
    }
}

/// Two segments of two rows each (one at 00:00-00:01, one at 01:00-01:01 on 2026-01-01)
/// and one unflushed row at 02:00.
fn two_segments_and_a_buffer(fixture: &Fixture) -> TableSnapshot {
    let early = fixture.segment(
        "acme/logs/2026-01-01/00/a.parquet",
        &[
            (JAN_1, "api", "early one"),
            (JAN_1 + MINUTE, "db", "early two"),
        ],
    );
    let late = fixture.segment(
        "acme/logs/2026-01-01/01/b.parquet",
        &[
            (JAN_1 + 60 * MINUTE, "api", "late one"),
            (JAN_1 + 61 * MINUTE, "api", "late two"),
        ],
    );
    logs(
        vec![early, late],
        vec![batch(&[(JAN_1 + 120 * MINUTE, "web", "buffered")])],
    )
}

fn column_strings(output: &QueryOutput, column: &str) -> Vec<String> {
    let mut values = Vec::new();
    for batch in &output.batches {
        let array = batch.column_by_name(column).unwrap();
        let array = arrow::compute::cast(array, &DataType::Utf8).unwrap();
        let strings = array.as_any().downcast_ref::<StringArray>().unwrap();
        values.extend(strings.iter().map(|v| v.unwrap_or("NULL").to_owned()));
    }
    values
}

fn single_i64(output: &QueryOutput) -> i64 {
    let values = column_strings(output, output.schema.field(0).name());
    assert_eq!(values.len(), 1, "{values:?}");
    values[0].parse().unwrap()
}

#[tokio::test]
async fn rows_come_from_segments_and_the_buffer() {
    let fixture = Fixture::new(QueryLimits::default());
    let table = two_segments_and_a_buffer(&fixture);
    let output = fixture
        .sql(vec![table], "SELECT body FROM logs ORDER BY time")
        .await
        .unwrap();
    assert_eq!(
        column_strings(&output, "body"),
        ["early one", "early two", "late one", "late two", "buffered"]
    );
    assert!(!output.truncated);
}

#[tokio::test]
async fn count_and_group_by() {
    let fixture = Fixture::new(QueryLimits::default());
    let table = two_segments_and_a_buffer(&fixture);
    let count = fixture
        .sql(vec![table.clone()], "SELECT count(*) FROM logs")
        .await
        .unwrap();
    assert_eq!(single_i64(&count), 5);

    let grouped = fixture
        .sql(
            vec![table],
            "SELECT service, count(*) AS n FROM logs GROUP BY service ORDER BY n DESC, service",
        )
        .await
        .unwrap();
    assert_eq!(column_strings(&grouped, "service"), ["api", "db", "web"]);
    assert_eq!(column_strings(&grouped, "n"), ["3", "1", "1"]);
}

#[tokio::test]
async fn time_filters_prune_files_before_they_are_opened() {
    let fixture = Fixture::new(QueryLimits::default());
    let mut table = two_segments_and_a_buffer(&fixture);
    // A file from 2025 that cannot be opened: any query that reads it fails.
    table
        .files
        .push(missing_segment(JAN_1 - 1_000 * MINUTE, JAN_1 - 1));

    let unfiltered = fixture
        .sql(vec![table.clone()], "SELECT count(*) FROM logs")
        .await
        .unwrap_err();
    assert_eq!(unfiltered.code(), "internal", "{unfiltered}");

    for filter in [
        "time >= '2026-01-01T00:00:00Z'",
        "time >= TIMESTAMP '2026-01-01 00:00:00'",
        "time >= '2026-01-01'::timestamp",
        "time >= to_timestamp('2026-01-01T00:00:00Z')",
        "time >= to_timestamp_seconds(1767225600)",
        "time BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-02T00:00:00Z'",
        "'2026-01-01T00:00:00Z' <= time AND service = 'api'",
    ] {
        let sql = format!("SELECT count(*) FROM logs WHERE {filter}");
        let output = fixture
            .sql(vec![table.clone()], &sql)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
        assert!(single_i64(&output) >= 3, "{sql}");
    }

    // An upper bound prunes the later files the same way.
    let mut table = two_segments_and_a_buffer(&fixture);
    table
        .files
        .push(missing_segment(JAN_1 + 30 * MINUTE, JAN_1 + 45 * MINUTE));
    let output = fixture
        .sql(
            vec![table],
            "SELECT body FROM logs WHERE time < '2026-01-01T00:30:00Z' ORDER BY time",
        )
        .await
        .unwrap();
    assert_eq!(column_strings(&output, "body"), ["early one", "early two"]);
}

#[tokio::test]
async fn relative_time_filters_prune_too() {
    let fixture = Fixture::new(QueryLimits::default());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let recent = fixture.segment(
        "acme/logs/now/recent.parquet",
        &[(now - 10 * MINUTE, "api", "recent")],
    );
    let table = logs(
        vec![recent, missing_segment(JAN_1 - 100 * MINUTE, JAN_1)],
        Vec::new(),
    );
    let output = fixture
        .sql(
            vec![table],
            "SELECT body FROM logs WHERE time > now() - interval '1 hour'",
        )
        .await
        .unwrap();
    assert_eq!(column_strings(&output, "body"), ["recent"]);
}

#[tokio::test]
async fn limit_is_honoured_and_spares_files() {
    let fixture = Fixture::new(QueryLimits::default());
    let table = two_segments_and_a_buffer(&fixture);
    let output = fixture
        .sql(vec![table], "SELECT * FROM logs ORDER BY time DESC LIMIT 2")
        .await
        .unwrap();
    assert_eq!(column_strings(&output, "body"), ["buffered", "late two"]);
    assert!(!output.truncated);

    // Without a filter or an order, the unflushed rows answer a small LIMIT alone.
    let table = logs(
        vec![missing_segment(JAN_1, JAN_1 + MINUTE)],
        vec![batch(&[
            (JAN_1, "a", "x"),
            (JAN_1, "b", "y"),
            (JAN_1, "c", "z"),
        ])],
    );
    let output = fixture
        .sql(vec![table], "SELECT service FROM logs LIMIT 2")
        .await
        .unwrap();
    assert_eq!(output.num_rows(), 2);
    assert_eq!(output.schema.fields().len(), 1);
}

#[tokio::test]
async fn max_rows_cuts_the_result() {
    let fixture = Fixture::new(QueryLimits {
        max_rows: 3,
        ..QueryLimits::default()
    });
    let table = two_segments_and_a_buffer(&fixture);
    let output = fixture
        .sql(vec![table.clone()], "SELECT body FROM logs ORDER BY time")
        .await
        .unwrap();
    assert_eq!(
        column_strings(&output, "body"),
        ["early one", "early two", "late one"]
    );
    assert!(output.truncated);

    let output = fixture
        .sql(
            vec![table.clone()],
            "SELECT body FROM logs ORDER BY time LIMIT 3",
        )
        .await
        .unwrap();
    assert_eq!(output.num_rows(), 3);
    assert!(!output.truncated, "a result of exactly max_rows is whole");

    let output = fixture
        .sql(vec![table], "SELECT * FROM generate_series(1, 1000000)")
        .await
        .unwrap();
    assert_eq!(output.num_rows(), 3);
    assert!(output.truncated);
}

#[tokio::test]
async fn slow_queries_time_out() {
    let fixture = Fixture::new(QueryLimits {
        timeout: Duration::from_millis(200),
        ..QueryLimits::default()
    });
    let started = std::time::Instant::now();
    let err = fixture
        .sql(
            Vec::new(),
            "SELECT max(a.value * b.value) FROM generate_series(1, 1000000) a \
             CROSS JOIN generate_series(1, 1000000) b",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { limit } if limit == Duration::from_millis(200)),
        "{err}"
    );
    assert_eq!(err.code(), "timeout");

    // The dropped query gives its threads back at once (its join yields), so the engine
    // answers the next query within its 200 ms (retried a few times for a busy machine).
    let mut next = fixture.sql(Vec::new(), "SELECT 1 AS one").await;
    for _ in 0..5 {
        if next.is_ok() {
            break;
        }
        next = fixture.sql(Vec::new(), "SELECT 1 AS one").await;
    }
    assert_eq!(single_i64(&next.unwrap()), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn scans_over_the_byte_limit_are_refused_before_reading() {
    let probe = Fixture::new(QueryLimits::default());
    let table = two_segments_and_a_buffer(&probe);
    let one_file = table.files[0].bytes;
    let both_files = one_file + table.files[1].bytes;

    let fixture = Fixture::new(QueryLimits {
        max_scan_bytes: both_files - 1,
        ..QueryLimits::default()
    });
    let table = two_segments_and_a_buffer(&fixture);
    let err = fixture
        .sql(vec![table.clone()], "SELECT count(*) FROM logs")
        .await
        .unwrap_err();
    match &err {
        Error::ScanTooLarge { bytes, limit } => {
            assert_eq!((*bytes, *limit), (both_files, both_files - 1));
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert_eq!(err.code(), "scan_too_large");
    assert!(err.to_string().contains(&both_files.to_string()), "{err}");

    // Narrowed by time, the same query fits.
    let output = fixture
        .sql(
            vec![table],
            "SELECT count(*) FROM logs WHERE time >= '2026-01-01T00:30:00Z'",
        )
        .await
        .unwrap();
    assert_eq!(single_i64(&output), 3);

    // The refusal comes before any file is opened: these files do not exist.
    let huge = SegmentFile {
        bytes: both_files,
        ..missing_segment(JAN_1, JAN_1)
    };
    let err = fixture
        .sql(vec![logs(vec![huge], Vec::new())], "SELECT * FROM logs")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "scan_too_large", "{err}");

    // All scanned tables count together, a table scanned twice twice.
    let mut half = missing_segment(JAN_1, JAN_1);
    half.bytes = both_files / 2 + 1;
    let err = fixture
        .sql(
            vec![logs(vec![half], Vec::new())],
            "SELECT * FROM logs a JOIN logs b ON a.time = b.time",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "scan_too_large", "{err}");
}

#[tokio::test]
async fn statements_that_change_anything_are_refused() {
    let fixture = Fixture::new(QueryLimits::default());
    let table = two_segments_and_a_buffer(&fixture);
    let outside = fixture.dir.path().join("written.csv");
    for (sql, what) in [
        ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
        ("CREATE TABLE t (a INT)", "CREATE TABLE"),
        (
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "CREATE EXTERNAL TABLE",
        ),
        ("CREATE VIEW v AS SELECT * FROM logs", "CREATE VIEW"),
        ("CREATE SCHEMA s", "CREATE SCHEMA"),
        (
            "CREATE FUNCTION f(INT) RETURNS INT RETURN 1",
            "CREATE FUNCTION",
        ),
        ("DROP TABLE logs", "DROP TABLE"),
        ("DROP VIEW logs", "DROP VIEW"),
        ("INSERT INTO logs SELECT * FROM logs", "INSERT"),
        ("DELETE FROM logs", "DELETE"),
        ("UPDATE logs SET body = 'x'", "UPDATE"),
        ("TRUNCATE logs", "TRUNCATE"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("RESET datafusion.execution.batch_size", "RESET"),
        ("SHOW TABLES", "SHOW"),
        ("PREPARE p AS SELECT 1", "PREPARE"),
        ("BEGIN", "BEGIN"),
        ("EXPLAIN DROP TABLE logs", "DROP TABLE"),
        ("SELECT * INTO t FROM logs", "CREATE MEMORY TABLE"),
    ] {
        let err = fixture.sql(vec![table.clone()], sql).await.expect_err(sql);
        assert!(
            matches!(&err, Error::NotAllowed { what: w } if w == what),
            "{sql}: {err:?}"
        );
        assert_eq!(err.code(), "not_allowed");
    }

    let copy = format!("COPY (SELECT * FROM logs) TO '{}'", outside.display());
    let err = fixture.sql(vec![table.clone()], &copy).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotAllowed { what } if what == "COPY"),
        "{err:?}"
    );
    assert!(!outside.exists());

    // Two statements, the second a write: refused as a whole, nothing dropped.
    let err = fixture
        .sql(vec![table.clone()], "SELECT 1; DROP TABLE logs")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_sql", "{err}");
    let output = fixture
        .sql(vec![table], "SELECT count(*) FROM logs")
        .await
        .unwrap();
    assert_eq!(single_i64(&output), 5);
}

#[tokio::test]
async fn no_query_reaches_outside_the_given_tables() {
    let fixture = Fixture::new(QueryLimits::default());
    let table = two_segments_and_a_buffer(&fixture);
    let secret = fixture.dir.path().join("secret.csv");
    std::fs::write(&secret, "a,b\n1,2\n").unwrap();
    let segment = fixture.dir.path().join("acme/logs/2026-01-01/00/a.parquet");
    for sql in [
        "SELECT * FROM spans".to_owned(),
        "SELECT * FROM other_tenant.logs".to_owned(),
        "SELECT * FROM '/etc/passwd'".to_owned(),
        format!("SELECT * FROM '{}'", secret.display()),
        format!("SELECT * FROM 'file://{}'", secret.display()),
        format!("SELECT * FROM '{}'", segment.display()),
        "SELECT * FROM 'sextant://segments/acme/logs/2026-01-01/00/a.parquet'".to_owned(),
        "SELECT * FROM read_parquet('/etc/passwd')".to_owned(),
        format!("SELECT * FROM read_csv('{}')", secret.display()),
        "SELECT * FROM read_json('/etc/passwd')".to_owned(),
        "SELECT * FROM parquet_metadata('/etc/passwd')".to_owned(),
        "SELECT * FROM information_schema.tables".to_owned(),
    ] {
        let err = fixture
            .sql(vec![table.clone()], &sql)
            .await
            .expect_err(&sql);
        assert_eq!(err.code(), "invalid_sql", "{sql}: {err}");
    }

    let err = fixture
        .sql(vec![table], "SELECT * FROM nope")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid query: table 'nope' not found");
}

#[tokio::test]
async fn error_messages_are_plain() {
    let fixture = Fixture::new(QueryLimits::default());
    let table = two_segments_and_a_buffer(&fixture);
    for sql in [
        "SELECT nope FROM logs",
        "SELEC 1",
        "SELECT * FROM logs WHERE",
        "SELECT body + 1 FROM logs",
    ] {
        let err = fixture.sql(vec![table.clone()], sql).await.unwrap_err();
        assert_eq!(err.code(), "invalid_sql", "{sql}: {err}");
        let Error::InvalidSql { message } = &err else {
            unreachable!()
        };
        assert!(
            message.starts_with(|c: char| !c.is_uppercase()),
            "{sql}: {message}"
        );
        for internal in [
            "Error during planning",
            "Schema error",
            "SQL error",
            "ParserError",
        ] {
            assert!(!message.contains(internal), "{sql}: {message}");
        }
        assert!(!message.ends_with('.'), "{sql}: {message}");
    }

    let err = fixture
        .sql(vec![table], "SELECT CAST(body AS BIGINT) FROM logs")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "query_failed", "{err}");
}

#[tokio::test]
async fn explain_and_describe_are_read_only() {
    let fixture = Fixture::new(QueryLimits::default());
    let table = two_segments_and_a_buffer(&fixture);
    let output = fixture
        .sql(
            vec![table.clone()],
            "EXPLAIN SELECT count(*) FROM logs WHERE time >= '2026-01-01T00:30:00Z'",
        )
        .await
        .unwrap();
    let plan = column_strings(&output, "plan").join("\n");
    // Only the later file is scanned, and its row groups are pruned by the same filter.
    assert!(plan.contains("01/b.parquet"), "{plan}");
    assert!(!plan.contains("00/a.parquet"), "{plan}");
    assert!(plan.contains("predicate=time@0 >= "), "{plan}");
    let output = fixture.sql(vec![table], "DESCRIBE logs").await.unwrap();
    assert_eq!(
        column_strings(&output, "column_name"),
        ["time", "service", "body"]
    );
}

#[tokio::test]
async fn results_render_as_json_rows_and_csv() {
    let fixture = Fixture::new(QueryLimits::default());
    let table = two_segments_and_a_buffer(&fixture);
    let output = fixture
        .sql(
            vec![table],
            "SELECT time, service, body FROM logs WHERE service = 'api' ORDER BY time LIMIT 2",
        )
        .await
        .unwrap();
    assert_eq!(
        output.to_json_rows(),
        serde_json::json!([
            {"time": "2026-01-01T00:00:00Z", "service": "api", "body": "early one"},
            {"time": "2026-01-01T01:00:00Z", "service": "api", "body": "late one"},
        ])
    );
    assert_eq!(
        output.to_csv(),
        "time,service,body\n\
         2026-01-01T00:00:00Z,api,early one\n\
         2026-01-01T01:00:00Z,api,late one\n"
    );
}

/// The rows the Parquet scan produced, from `EXPLAIN ANALYZE` of `sql` (which rounds them to
/// three digits: `8.19 K`).
async fn rows_scanned(fixture: &Fixture, table: TableSnapshot, sql: &str) -> f64 {
    let output = fixture
        .sql(vec![table], &format!("EXPLAIN ANALYZE {sql}"))
        .await
        .unwrap();
    let plan = column_strings(&output, "plan").join("\n");
    let scan = plan
        .lines()
        .find(|line| line.contains("DataSourceExec") && line.contains("parquet"))
        .unwrap_or_else(|| panic!("no Parquet scan in\n{plan}"));
    let rows = scan
        .split("output_rows=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no output_rows in {scan}"));
    let (number, unit) = rows.split_once(' ').unwrap_or((rows, ""));
    let scale = match unit {
        "" => 1.0,
        "K" => 1e3,
        "M" => 1e6,
        other => panic!("unit `{other}` in {scan}"),
    };
    number.parse::<f64>().unwrap() * scale
}

#[tokio::test]
async fn word_search_reads_only_the_blocks_its_token_index_allows() {
    use sextant_store::segments::SegmentStore;
    use sextant_store::token_index::BLOCK_ROWS;

    let fixture = Fixture::new(QueryLimits::default());
    let total = 5 * BLOCK_ROWS;
    let bodies: Vec<String> = (0..total)
        .map(|i| match i {
            _ if i == 3 * BLOCK_ROWS + 17 => "Found the NEEDLE-7 here".to_owned(),
            _ if i == BLOCK_ROWS + 2 => "needles are not needle7x".to_owned(),
            _ => format!("request {i} served"),
        })
        .collect();
    let rows: Vec<(i64, &str, &str)> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| (JAN_1 + i as i64, "api", body.as_str()))
        .collect();
    let store = SegmentStore::local(fixture.dir.path()).unwrap();
    let tenant = sextant_model::TenantId::new("acme").unwrap();
    let files = store
        .write(&tenant, Table::Logs, &[batch(&rows)], "indexed")
        .await
        .unwrap();
    let table = || logs(files.clone(), Vec::new());

    let fixture = &fixture;
    let count = |sql: &'static str| {
        let table = table();
        async move { single_i64(&fixture.sql(vec![table], sql).await.unwrap()) }
    };
    // Whole words, ignoring case: `needle-7` is in one row; `needle` (alone) in none.
    let found = "SELECT count(*) FROM logs WHERE word_match(body, 'needle-7')";
    assert_eq!(count(found).await, 1);
    assert_eq!(
        count("SELECT count(*) FROM logs WHERE word_match(body, 'needle')").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM logs WHERE word_match(body, 'needle-7 here')").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM logs WHERE word_match(body, 'absent')").await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM logs WHERE NOT word_match(body, 'served')").await,
        2
    );

    // Only the needle's block is read; a word in every block reads them all.
    let near = |rows: f64, expected: usize| (rows / expected as f64 - 1.0).abs() < 0.01;
    let scanned = rows_scanned(fixture, table(), found).await;
    assert!(near(scanned, BLOCK_ROWS), "{scanned} rows scanned");
    let everywhere = "SELECT count(*) FROM logs WHERE word_match(body, 'served')";
    let scanned = rows_scanned(fixture, table(), everywhere).await;
    assert!(near(scanned, total), "{scanned} rows scanned");
}
