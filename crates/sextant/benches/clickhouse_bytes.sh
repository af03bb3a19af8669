#!/bin/sh
# Bytes per line of the model_state bench's lines stored in ClickHouse, for the comparison in
# BENCHMARKS.md: `MODEL_STATE_NDJSON=lines.ndjson cargo bench -p sextant --bench model_state`,
# then `crates/sextant/benches/clickhouse_bytes.sh lines.ndjson`.
#
# It starts a throwaway ClickHouse server (Debian's `clickhouse-server` package; its
# configuration file from `$CLICKHOUSE_CONFIG`, by default the package's) on a temporary
# directory and ports 19000/18123, stores the lines in a MergeTree table (service, time in ns,
# body; ordered by service and time; default compression), merges its parts, and prints the
# bytes on disk of the table's parts and per line. The server and its directory are removed.
set -eu
lines=${1:?usage: clickhouse_bytes.sh LINES.ndjson}
config=${CLICKHOUSE_CONFIG:-/etc/clickhouse-server/config.xml}
work=$(mktemp -d)
clickhouse-server --config-file="$config" -- --path="$work/" --tcp_port=19000 \
    --http_port=18123 --logger.log="$work/server.log" --logger.errorlog="$work/error.log" \
    >"$work/out" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
client() { clickhouse-client --port 19000 "$@"; }
for _ in $(seq 60); do
    client -q "SELECT 1" >/dev/null 2>&1 && break
    sleep 1
done
client -q "CREATE TABLE logs (service String, time UInt64, body String)
    ENGINE = MergeTree() ORDER BY (service, time)"
start=$(date +%s.%N)
client -q "INSERT INTO logs FORMAT JSONEachRow" <"$lines"
end=$(date +%s.%N)
client -q "OPTIMIZE TABLE logs FINAL"
client -q "SELECT version() AS clickhouse, count() AS lines,
    (SELECT sum(bytes_on_disk) FROM system.parts WHERE table = 'logs' AND active) AS bytes,
    round(bytes / lines, 1) AS bytes_per_line FROM logs FORMAT Vertical"
awk -v s="$start" -v e="$end" 'BEGIN { printf "insert took %.1f s\n", e - s }'
