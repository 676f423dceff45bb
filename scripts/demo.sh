#!/usr/bin/env bash
# The demo: `curate run catalogs/demo.yaml` (one Prefect flow run), then where things are and what to ask.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=demo-out/demo
DB=demo-out/curate.duckdb
rm -rf "$OUT" "$DB" "$DB.wal"
mkdir -p demo-out
export CURATE_DB=$DB

started=$(date +%s)
.venv/bin/curate run catalogs/demo.yaml
seconds=$(( $(date +%s) - started ))

MIG="(SELECT run_id FROM runs WHERE kind = 'select:mig' ORDER BY started_at DESC LIMIT 1)"
cat <<MSG

Done in ${seconds}s. Outputs:
  store:          $DB   (DuckDB: every sample, label, score, run and decision)
  training sets:  $OUT/mig-500/train.jsonl, $OUT/kmq-16/train.jsonl   (+ manifest.json each)
  report:         $OUT/report.html   (open it in a browser)

Audit queries to try:
  .venv/bin/curate --db $DB sql "SELECT name, dialect, rows_read, rows_new, rows_quarantined FROM sources ORDER BY rows_read DESC"
  .venv/bin/curate --db $DB sql "SELECT r.kind, r.run_id, sel.selected, sel.reason, count(*) AS n FROM selections sel JOIN runs r USING (run_id) GROUP BY ALL ORDER BY r.kind, n DESC"
  .venv/bin/curate --db $DB sql "SELECT sel.rank, round(sel.score, 3) AS gain, left(s.prompt, 50) AS prompt, (SELECT list(label) FROM labels l WHERE l.sample_id = sel.sample_id AND l.origin = 'embedding') AS tags FROM selections sel JOIN samples s USING (sample_id) WHERE sel.run_id = $MIG AND sel.selected ORDER BY sel.rank LIMIT 10"
MSG
