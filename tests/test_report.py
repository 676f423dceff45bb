"""`curate report`: one self-contained HTML file whose sections follow what the store holds."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from curate.ingest import ingest
from curate.report import render_report, write_report
from curate.scoring import ScoreRow, write_scores
from curate.selectors import Pool, run_selection
from curate.selectors.random import RandomSelector
from tests.conftest import write_jsonl


@pytest.fixture
def selected(store, tmp_path):
    ingest(store, [str(write_jsonl(tmp_path / "a.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(60)]))],
           source="first")
    ingest(store, [str(write_jsonl(tmp_path / "b.jsonl", [{"prompt": f"z{i}", "completion": f"b{i}"} for i in range(40)]))],
           source="second")
    pool = Pool.from_store(store)
    rng = np.random.default_rng(0)
    write_scores(store, "quality", [ScoreRow(sid, float(v)) for sid, v in zip(pool.ids, rng.normal(size=len(pool)))])
    with store.transaction() as con:
        con.executemany("INSERT INTO labels VALUES (?, ?, 'test')",
                        [(sid, f"label-{i % 7}") for i, sid in enumerate(pool.ids)])
    return run_selection(store, RandomSelector(seed=1), pool, 25), run_selection(store, RandomSelector(seed=2), pool, 25)


def test_report_sections_follow_the_store(store, selected):
    first, second = selected
    page = render_report(store, first, compare=[second])
    for heading in ("Selection report", "Parameters", "Sources", "Scores", "Labels"):
        assert f"<h" in page and heading in page
    assert "Embedding space" not in page               # no embeddings in this store
    images = re.findall(r'<img class="plot" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3 and all(len(i) > 1000 for i in images)
    assert "covers 7 of 7 labels" in page
    assert "http://" not in page and "https://" not in page   # self-contained


def test_report_refuses_a_non_selection_run(store, selected, tmp_path):
    from curate.errors import CurateError
    from curate.store.runs import start_run
    with start_run(store, "score:test", {}) as run:
        pass
    with pytest.raises(CurateError, match="a report is about a selection run"):
        write_report(store, run.run_id, tmp_path / "r.html")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(store, selected, tmp_path):
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium is not installed (make test-slow installs it)")
    first, _ = selected
    page = render_report(store, first)
    # the test (not the product) adds a script that reports how many images decoded
    probe = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
             "document.title='loaded '+i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;});</script>")
    (tmp_path / "report.html").write_text(page.replace("</body>", probe + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400"]
    url = f"file://{tmp_path / 'report.html'}"
    dom = subprocess.run([browser, *flags, "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<title>loaded 3/3</title>" in dom
    subprocess.run([browser, *flags, f"--screenshot={tmp_path / 'shot.png'}", url], capture_output=True, timeout=120)
    from PIL import Image
    pixels = np.asarray(Image.open(tmp_path / "shot.png").convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01    # not blank: text and plots drew
