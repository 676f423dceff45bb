"""Recipes as Prefect flows: a real run, reuse on re-run, audits while a flow writes, schedules."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from curate.flows.recipe import run_recipe
from curate.store import Store
from curate.store.audit import run_sql
from tests.conftest import count, write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def make_recipe(tmp_path: Path, rows: int = 200, budget: int = 20, name: str = "tiny") -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    write_jsonl(tmp_path / "data" / "a.jsonl",
                [{"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."} for i in range(rows)]
                + [{"instruction": "no output"}])
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        sources:
          - {{name: a, path: data/a.jsonl, license: test}}
          - {{name: missing, path: "hf://nobody/nothing", optional: true}}
        steps:
          - ingest: {{}}
          - select: {{name: pick, selector: random, budget: {budget}, params: {{seed: 3}}}}
        output: {{folder: out, format: jsonl}}
    """))
    return path


def test_recipe_flow_runs_emits_reports_and_links_prefect(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    store = Store(tmp_path / "s.duckdb")
    result = run_recipe(make_recipe(tmp_path), store.path)
    ingest, select = result["steps"]
    assert ingest["result"]["counts"]["new"] == 200 and ingest["result"]["counts"]["quarantined"] == 1
    assert ingest["result"]["counts"]["sources_skipped"] == 1
    assert select["result"]["counts"]["selected"] == 20
    assert (tmp_path / "out" / "pick" / "train.jsonl").read_text().count("\n") == 20
    assert (tmp_path / "out" / "report.html").read_text().count("<img") >= 1
    with store.connect() as con:
        runs = con.execute("SELECT kind, status, flow_run_id, recipe FROM runs ORDER BY started_at").fetchall()
    assert [(k, s) for k, s, _, _ in runs] == [("recipe:tiny", "completed"), ("select:random", "completed")]
    assert {f for _, _, f, _ in runs} == {result["flow_run_id"]} and result["flow_run_id"]
    assert {r for _, _, _, r in runs} == {"tiny"}

    # the artifacts are in Prefect's API, linked to the flow run
    import asyncio

    from prefect.client.orchestration import get_client

    async def artifacts():
        async with get_client() as client:   # the REST filter: Prefect 3.8's typed client call drops them
            response = await client._client.post("/artifacts/filter", json={
                "artifacts": {"flow_run_id": {"any_": [result["flow_run_id"]]}},
                "limit": 50, "offset": 0, "sort": "CREATED_DESC"})
            return response.json()

    found = {a["key"]: a for a in asyncio.run(artifacts())}
    assert found["tiny-summary"]["type"] == "markdown" and "| 0 | ingest |" in found["tiny-summary"]["data"]
    assert found["pick-selection"]["type"] == "table"

    # a second run changes nothing: the source is unchanged and the selection is reused
    again = run_recipe(make_recipe(tmp_path), store.path)
    assert again["steps"][0]["result"]["counts"]["new"] == 0
    assert again["steps"][1]["result"]["reused"] and again["steps"][1]["result"]["run_id"] == select["result"]["run_id"]
    assert count(store, "SELECT count(*) FROM runs WHERE kind = 'select:random'") == 1


def test_bad_recipe_fails_before_prefect_starts(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nsteps:\n  - nope: {}\n")
    from curate.errors import CurateError
    with pytest.raises(CurateError, match="bad.yaml:3.*unknown step kind"):
        run_recipe(path, str(tmp_path / "s.duckdb"))


def test_audits_work_while_a_flow_writes(tmp_path):
    """A flow ingests in one process (small batches, many transactions); audits loop in this one."""
    recipe = make_recipe(tmp_path, rows=60_000, budget=100)
    db = tmp_path / "busy.duckdb"
    launcher = textwrap.dedent(f"""
        import curate.ingest, curate.store.store
        curate.store.store.HOLD_SECONDS = 0.1     # hand the file over often, so audits interleave
        curate.ingest.BATCH_ROWS = 2000
        curate.ingest.readers.BATCH_BYTES = 100_000
        from curate.flows.recipe import run_recipe
        run_recipe({str(recipe)!r}, {str(db)!r})
    """)
    writer = subprocess.Popen([sys.executable, "-c", launcher], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    store = Store(db, lock_wait=60)
    seen, audits, errors = set(), 0, []
    deadline = time.monotonic() + 600
    while writer.poll() is None and time.monotonic() < deadline:
        if not db.exists():
            time.sleep(0.2)
            continue
        try:
            seen.add(run_sql(store, "SELECT count(*) AS n FROM samples").to_pylist()[0]["n"])
            run_sql(store, "SELECT name, rows_read FROM sources")
            audits += 1
        except Exception as error:  # any error reaching the user fails the test
            errors.append(repr(error))
    assert writer.wait(timeout=60) == 0, writer.stderr.read()
    assert not errors, errors[:3]
    assert audits >= 5
    assert any(0 < n < 60_000 for n in seen), f"no audit saw the ingest in progress: {sorted(seen)[:10]}"
    assert run_sql(store, "SELECT count(*) AS n FROM samples").to_pylist() == [{"n": 60_000}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_schedule_serves_a_deployment_on_a_real_prefect_server(tmp_path):
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "HF_HUB_OFFLINE": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    serving = None
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "the Prefect server did not start"
            time.sleep(1)
        env["PREFECT_API_URL"] = api
        db = tmp_path / "scheduled.duckdb"
        serving = subprocess.Popen([sys.executable, "-m", "curate", "--db", str(db), "schedule",
                                    str(make_recipe(tmp_path)), "--interval", "5", "--name", "every-5s"],
                                   cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        store = Store(db, lock_wait=60)
        deadline = time.monotonic() + 300
        completed = 0
        while completed == 0:
            assert serving.poll() is None, serving.stdout.read()
            assert time.monotonic() < deadline, "no scheduled run completed in time"
            time.sleep(2)
            if db.exists():
                completed = run_sql(store, "SELECT count(*) AS n FROM runs WHERE kind = 'recipe:tiny' "
                                           "AND status = 'completed' AND flow_run_id IS NOT NULL").to_pylist()[0]["n"]
        listed = subprocess.run([sys.executable, "-m", "curate", "schedule", "--list"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert listed.returncode == 0 and "curate-recipe/every-5s" in listed.stdout, listed.stderr
    finally:
        for process in (serving, server):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def with_llm_scoring(path: Path) -> Path:
    """The tiny recipe plus a DEITA score step with the small real LLM on 3 samples."""
    text = path.read_text().replace("  - select:", "  - score: {method: deita, limit: 3}\n  - select:")
    path.write_text(text)
    return path


@pytest.mark.slow
def test_ray_runner_gives_the_same_results_as_local(tmp_path):
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    local_dir.mkdir()
    ray_dir.mkdir()
    local = run_recipe(with_llm_scoring(make_recipe(local_dir)), str(local_dir / "s.duckdb"))
    on_ray = run_recipe(with_llm_scoring(make_recipe(ray_dir)), str(ray_dir / "s.duckdb"), runner="ray")
    assert local["steps"][1]["result"]["counts"]["ok"] == 3      # the score step ran (on Ray's replicas)
    assert [s["result"]["counts"] for s in on_ray["steps"]] == [s["result"]["counts"] for s in local["steps"]]
    assert (ray_dir / "out" / "pick" / "train.jsonl").read_text() == (local_dir / "out" / "pick" / "train.jsonl").read_text()
