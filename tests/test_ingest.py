"""Ingest: readers, quarantine, provenance, idempotence, and recovery from a crash or a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import CurateError
from curate.ingest import ingest, writer
from tests.conftest import count, crash_on_commit, write_jsonl

ALPACA = [{"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."} for i in range(5)]


def by_status(reports):
    return {r.uri: r for r in reports}


def test_jsonl_quarantine_names_line_field_and_keeps_good_rows(store, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [ALPACA[0], {"instruction": "x"}, ALPACA[1], [1, 2]],
                       raw_lines={3: '{"instruction": "broken", ', 4: ""})
    (report,) = ingest(store, [str(path)])
    assert (report.dialect, report.counts.new, report.counts.quarantined) == ("alpaca", 2, 3)
    with store.connect() as con:
        rows = con.execute("SELECT row_number, field, reason, raw FROM quarantine ORDER BY row_number").fetchall()
    assert [r[0] for r in rows] == [2, 3, 6]          # line numbers, blank line 4 counted
    assert rows[0][1] == "output" and "missing" in rows[0][2]
    assert rows[1][1] is None and rows[1][2].startswith("invalid JSON")
    assert rows[1][3] == '{"instruction": "broken", '
    assert "expected a JSON object" in rows[2][2]
    assert count(store, "SELECT count(*) FROM sample_sources") == 2


def test_reingest_adds_nothing_and_second_file_adds_provenance_only(store, tmp_path):
    first = write_jsonl(tmp_path / "first.jsonl", ALPACA)
    (report,) = ingest(store, [str(first)])
    assert report.counts.new == 5
    (again,) = ingest(store, [str(first)])
    assert again.status == "unchanged" and again.counts.new == 0
    # the same samples, with different whitespace, in another file and format
    second = tmp_path / "second.json"
    second.write_text(json.dumps([{**r, "output": r["output"] + "\n"} for r in ALPACA[:3]]))
    (other,) = ingest(store, [str(second)])
    assert (other.counts.new, other.counts.duplicate) == (0, 3)
    assert count(store, "SELECT count(*) FROM samples") == 5
    assert count(store, "SELECT count(*) FROM sample_sources") == 8
    assert count(store, "SELECT count(DISTINCT sample_id) FROM samples") == 5


def test_changed_file_is_a_new_source(store, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", ALPACA[:2])
    ingest(store, [str(path)])
    write_jsonl(path, ALPACA[:3])
    (report,) = ingest(store, [str(path)])
    assert (report.status, report.counts.new, report.counts.duplicate) == ("ingested", 1, 2)


def test_json_object_of_arrays_parquet_csv_and_saved_dataset(store, tmp_path):
    (tmp_path / "splits.json").write_text(json.dumps({"train": ALPACA[:2], "test": ALPACA[2:3]}))
    pq.write_table(pa.Table.from_pylist([{"prompt": "p1", "completion": "c1"}, {"prompt": "p2", "completion": ""}]),
                   tmp_path / "pc.parquet")
    (tmp_path / "rows.csv").write_text('instruction,input,output\n"Multi\nline",,"ok, fine"\nx,,\n')
    import datasets
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "u"},
                                                           {"role": "assistant", "content": "a"}]}]),
        "test": datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "u2"},
                                                          {"role": "assistant", "content": "a2"}]}]),
    }).save_to_disk(str(tmp_path / "saved"))
    reports = by_status(ingest(store, [str(tmp_path / "splits.json"), str(tmp_path / "pc.parquet"),
                                       str(tmp_path / "rows.csv"), str(tmp_path / "saved")]))
    assert reports[str(tmp_path / "splits.json")].counts.new == 3
    parquet = reports[str(tmp_path / "pc.parquet")]
    assert (parquet.dialect, parquet.counts.new, parquet.counts.quarantined) == ("prompt-completion", 1, 1)
    csv = reports[str(tmp_path / "rows.csv")]
    assert (csv.dialect, csv.counts.new, csv.counts.quarantined) == ("alpaca", 1, 1)
    assert reports[f"{tmp_path / 'saved'}:train"].counts.new == 1
    assert reports[f"{tmp_path / 'saved'}:test"].counts.new == 1
    with store.connect() as con:
        assert con.execute("SELECT prompt, response FROM samples WHERE prompt LIKE 'Multi%'").fetchone() == \
            ("Multi\nline", "ok, fine")


def test_folders_and_globs(store, tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    write_jsonl(tmp_path / "d" / "one.jsonl", ALPACA[:2])
    write_jsonl(tmp_path / "d" / "sub" / "two.jsonl", ALPACA[2:4])
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    reports = ingest(store, [str(tmp_path / "d")])
    assert len(reports) == 2 and {r.name for r in reports} == {"d"}
    reports = ingest(store, [str(tmp_path / "d" / "**" / "*.jsonl")], source="globbed")
    assert {r.name for r in reports} == {"globbed"}
    assert count(store, "SELECT count(*) FROM samples") == 4


def test_unreadable_input_is_reported_and_others_land(store, tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", ALPACA)
    bad = tmp_path / "bad.json"
    bad.write_text("[{not json")
    truncated = tmp_path / "truncated.json"
    truncated.write_text(json.dumps([{**r, "output": f"{r['output']} (copy)"} for r in ALPACA], indent=1)[:-30])
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"text": "hello"}])
    reports = by_status(ingest(store, [str(bad), str(truncated), str(tmp_path / "missing.jsonl"), str(good),
                                       str(unknown)]))
    for broken in (bad, truncated):
        assert "not valid JSON" in reports[str(broken)].error and str(broken) in reports[str(broken)].error
    assert reports[str(truncated)].counts.new == len(ALPACA) - 1   # every element before the cut lands
    assert "no such file" in reports[str(tmp_path / "missing.jsonl")].error
    assert "cannot tell the dialect" in reports[str(unknown)].error and "text" in reports[str(unknown)].error
    assert reports[str(good)].counts.new == 5


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_a_dangling_link_in_a_folder_is_reported_and_the_rest_lands(store, tmp_path, suffix):
    """Listed with the folder but unopenable: the one input fails with its name, not the whole ingest."""
    folder = tmp_path / "d"
    folder.mkdir()
    write_jsonl(folder / "good.jsonl", ALPACA)
    (folder / f"gone{suffix}").symlink_to(tmp_path / "nowhere" / f"x{suffix}")
    reports = by_status(ingest(store, [str(folder)]))
    gone = str(folder / f"gone{suffix}")
    assert reports[gone].status == "error"
    assert gone in reports[gone].error and "cannot read" in reports[gone].error
    assert reports[str(folder / "good.jsonl")].counts.new == 5
    assert count(store, "SELECT count(*) FROM samples") == 5


@pytest.mark.parametrize("fast", [True, False])
def test_a_broken_json_array_lands_every_element_before_the_fault(tmp_path, monkeypatch, fast):
    from curate.ingest import json_array
    from curate.store import Store

    # small buffers and windows: DuckDB hands over some buffers before the fault, the fallback reads on
    monkeypatch.setattr(json_array, "MAX_ELEMENT_BYTES", 256)
    records = [{"instruction": f"task {i}", "output": "answer " + "x" * (i % 40)} for i in range(40)]
    text = json.dumps(records, indent=1).replace('"task 25"', '"task 25', 1)   # element 26 broken
    path = tmp_path / "broken.json"
    path.write_text(text)
    store = Store(tmp_path / "broken.duckdb")
    for attempt in range(2):   # a re-run resumes after the committed elements and stops at the same place
        (report,) = ingest(store, [str(path)], fast=fast)
        assert report.status == "error" and "not valid JSON in element 26" in report.error
        assert "the elements before it (25) were read" in report.error and str(path) in report.error
        assert count(store, "SELECT count(*) FROM samples") == 25
        assert count(store, "SELECT count(DISTINCT row_number) FROM sample_sources") == 25
        assert count(store, "SELECT count(*) FROM sample_sources") == 25
    assert count(store, "SELECT watermark FROM sources") == 25
    path.write_text(text[:text.index('"task 39"') + 4])   # truncated mid-element: the same up to the cut
    (report,) = ingest(Store(tmp_path / "truncated.duckdb"), [str(path)], fast=fast)
    assert report.status == "error" and "element 26" in report.error


def test_explicit_dialect_and_field_mapping(store, tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"query": "q", "reply": {"text": "a"}}])
    (report,) = ingest(store, [str(path)], dialect="alpaca", mapping={"instruction": "query", "output": "reply.text"})
    assert report.counts.new == 1
    with pytest.raises(CurateError, match="unknown dialect"):
        ingest(store, [str(path)], dialect="alpacca")


@pytest.mark.parametrize("offline", ["1", "0"])
def test_hub_dataset_unreachable_names_it(store, monkeypatch, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")   # never resolves: no network is touched
    (report,) = ingest(store, ["hf://nobody-here/no-such-dataset:train"])
    assert report.status == "error" and "hf://nobody-here/no-such-dataset" in report.error
    assert "not reachable" in report.error


def test_crash_mid_ingest_leaves_store_consistent_and_rerun_completes(store, tmp_path, monkeypatch):
    records = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(1000)]
    path = write_jsonl(tmp_path / "big.jsonl", records + records[:100], raw_lines={500: "{oops"})
    monkeypatch.setattr("curate.ingest.BATCH_ROWS", 200)
    monkeypatch.setattr("curate.ingest.readers.BATCH_BYTES", 2000)
    crash_on_commit(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest(store, [str(path)])
    with store.connect() as con:
        status, watermark, new = con.execute("SELECT status, watermark, rows_new FROM sources").fetchone()
        assert status == "partial" and 0 < watermark < 1101
        assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == new
        assert con.execute("SELECT max(row_number) FROM sample_sources").fetchone()[0] <= watermark

    monkeypatch.setattr("curate.ingest.commit", writer.commit)
    (report,) = ingest(store, [str(path)])
    assert report.status == "resumed"
    with store.connect() as con:
        rows_read, rows_new, dup, quarantined, status = con.execute(
            "SELECT rows_read, rows_new, rows_duplicate, rows_quarantined, status FROM sources").fetchone()
    assert (rows_read, rows_new, dup, quarantined, status) == (1101, 1000, 100, 1, "complete")
    assert count(store, "SELECT count(*) FROM samples") == 1000
    assert count(store, "SELECT count(*) FROM sample_sources") == 1100
    assert count(store, "SELECT count(*) FROM (SELECT source_id, row_number FROM sample_sources GROUP BY ALL "
                        "HAVING count(*) > 1)") == 0


def test_sigkill_mid_ingest_then_rerun_completes_without_duplicates(store, tmp_path):
    """A real kill: the process gets SIGKILL after its second batch commits, mid-run."""
    records = [{"prompt": f"prompt {i}", "completion": f"completion {i}"} for i in range(3000)]
    path = write_jsonl(tmp_path / "big.jsonl", records)
    script = textwrap.dedent(f"""
        import os, signal
        import curate.ingest as ingest_module
        from curate.ingest import writer
        from curate.store import Store
        ingest_module.BATCH_ROWS = 500
        ingest_module.readers.BATCH_BYTES = 4000
        real_commit, commits = writer.commit, []
        def commit_then_die(con, batch):
            if len(commits) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            commits.append(1)
            return real_commit(con, batch)
        ingest_module.commit = commit_then_die
        ingest_module.ingest(Store({store.path!r}), [{str(path)!r}])
    """)
    process = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), capture_output=True, text=True)
    assert process.returncode == -signal.SIGKILL, process.stderr
    partial = count(store, "SELECT count(*) FROM samples")
    assert 0 < partial < 3000
    assert count(store, "SELECT rows_new FROM sources") == partial
    (report,) = ingest(store, [str(path)])
    assert report.status == "resumed"
    assert count(store, "SELECT count(*) FROM samples") == 3000
    assert count(store, "SELECT count(DISTINCT sample_id) FROM samples") == 3000
    assert count(store, "SELECT count(*) FROM sample_sources") == 3000
    assert count(store, "SELECT rows_new FROM sources") == 3000


def test_the_same_input_named_twice_is_ingested_once(store, tmp_path):
    path = write_jsonl(tmp_path / "twice.jsonl", [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(5)])
    first, second = ingest(store, [str(path), str(path)])
    assert (first.status, second.status) == ("ingested", "unchanged")
    assert count(store, "SELECT count(*) FROM sample_sources") == 5


def test_a_json_array_is_streamed_and_lands_as_its_object_form_would(store, tmp_path):
    from curate.ingest.readers import expand, read
    from curate.store import Store

    records = [*ALPACA, [1, 2], "text", {**ALPACA[0], "output": "caf\u00e9 \u2014 d\u00e9j\u00e0"}, {"instruction": "x"}]
    array = tmp_path / "array.json"
    array.write_text(json.dumps(records, ensure_ascii=False, indent=1))
    (source,) = expand(str(array))
    batches = list(read(source, batch_rows=3))
    assert [len(b) for b in batches] == [3, 3, 3]                 # three elements at a time, not the whole file
    assert [row.row_number for b in batches for row in b] == list(range(1, 10))
    assert [row.record for b in batches for row in b] == records
    assert [row.record for b in read(source, skip_through=7, batch_rows=3) for row in b] == records[7:]

    other = Store(tmp_path / "object.duckdb")
    (tmp_path / "object.json").write_text(json.dumps({"train": records}))
    (streamed,), (whole,) = ingest(store, [str(array)]), ingest(other, [str(tmp_path / "object.json")])
    assert (streamed.counts.new, streamed.counts.quarantined) == (whole.counts.new, whole.counts.quarantined) == (6, 3)
    query = "SELECT row_number, field, reason FROM quarantine ORDER BY row_number"
    assert store.query(query).to_pylist() == other.query(query).to_pylist()
    query = "SELECT sample_id, messages FROM samples ORDER BY sample_id"
    assert store.query(query).to_pylist() == other.query(query).to_pylist()

