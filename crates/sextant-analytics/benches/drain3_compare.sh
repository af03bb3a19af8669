#!/usr/bin/env bash
# Run with `bash crates/sextant-analytics/benches/drain3_compare.sh` from the workspace root:
# times `TemplateMiner` (release bench) and the Python `drain3` package (default settings, in a
# temporary venv) on the same 32,000 loghub-2k lines, and prints both rates and their ratio.
#
# Both mine the `Content` column of the 16 `<DS>_2k.log_structured_corrected.csv` files with
# one fresh miner per system; both report the best of several rounds. Needs `python3` with
# `venv` and network access to PyPI. `SEXTANT_DATASETS` overrides `../shared/datasets`.
set -euo pipefail

root=$(cd "$(dirname "$0")/../../.." && pwd)
datasets=${SEXTANT_DATASETS:-$root/../shared/datasets}
labels=$datasets/loghub-2k-corrected
[ -d "$labels" ] || { echo "no loghub-2k labels at $labels" >&2; exit 1; }

venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet drain3

echo "== sextant TemplateMiner (cargo bench, release)"
sextant_line=$(cd "$root" && SEXTANT_DATASETS=$datasets \
    cargo bench -q -p sextant-analytics --bench template_miner 2>/dev/null | grep '^template_miner:')
echo "$sextant_line"
sextant_rate=$(sed -E 's/.* ([0-9]+) lines\/s.*/\1/' <<<"$sextant_line")

echo "== drain3 $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("drain3"))') (default settings)"
drain3_rate=$("$venv/bin/python" - "$labels" <<'PY'
import csv, logging, sys, time
from pathlib import Path

logging.disable(logging.CRITICAL)  # drain3 logs a warning per miner about its missing .ini
from drain3 import TemplateMiner

labels = Path(sys.argv[1])
systems = sorted(p.name for p in labels.iterdir()
                 if (p / f"{p.name}_2k.log_structured_corrected.csv").is_file())
corpus = []
for system in systems:
    path = labels / system / f"{system}_2k.log_structured_corrected.csv"
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        corpus.append([row["Content"] for row in csv.DictReader(f)])
lines = sum(len(c) for c in corpus)

def round_time():
    start = time.perf_counter()
    for contents in corpus:
        miner = TemplateMiner()
        for line in contents:
            miner.add_log_message(line)
    return time.perf_counter() - start

best = min(round_time() for _ in range(3))
print(f"drain3: {lines} lines, best round {best * 1e3:.1f} ms, {lines / best:.0f} lines/s",
      file=sys.stderr)
print(f"{lines / best:.0f}")
PY
)
echo "drain3 lines/s: $drain3_rate"
python3 -c "import sys; s, d = map(float, sys.argv[1:]); print(f'sextant {s:,.0f} lines/s, drain3 {d:,.0f} lines/s, ratio {s / d:.1f}x')" \
    "$sextant_rate" "$drain3_rate"
