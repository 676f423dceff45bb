#!/usr/bin/env bash
# The demo: ingest the real data that is reachable, audit it, select, emit a training set.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=demo-out
DB=$OUT/curate.duckdb
DATA=../shared/data
rm -rf "$OUT" && mkdir -p "$OUT"
export CURATE_DB=$DB

inputs=()
for path in "$DATA/instruct/lima_train.jsonl" "$DATA/instruct/sharegpt_dummy.json" \
            "$DATA/instruct/alpaca_zh_10000.json" "$DATA/instruct/t0_train_50k" \
            "$DATA/mig/example.jsonl" "$DATA/math/gsm8k_train.jsonl" "$DATA/math/math500_test.jsonl"; do
  if [ -e "$path" ]; then inputs+=("$path"); else echo "skipped (not reachable): $path"; fi
done
if [ ${#inputs[@]} -eq 0 ]; then
  echo "no input data reachable at $DATA; nothing to ingest" >&2
  exit 1
fi

curate ingest "${inputs[@]}"
curate stats
run=$(curate select random --budget 1000 --seed 0 --where "kind = 'instruction' AND chars < 8000" | tail -n 1)
curate emit "$run" --out "$OUT/random-1000"

cat <<MSG

Done. Outputs:
  store:        $DB
  training set: $OUT/random-1000/train.jsonl (+ manifest.json)

Audit queries to try:
  curate --db $DB sql "SELECT name, dialect, rows_read, rows_new, rows_quarantined FROM sources ORDER BY rows_read DESC LIMIT 10"
  curate --db $DB sql "SELECT reason, count(*) AS n FROM quarantine GROUP BY reason ORDER BY n DESC"
  curate --db $DB sql "SELECT s.sample_id, s.turns, s.chars, left(s.prompt, 60) AS prompt FROM selections sel JOIN samples s USING (sample_id) WHERE sel.run_id = '$run' ORDER BY sel.rank LIMIT 5"
MSG
