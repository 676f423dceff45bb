"""Recipes: validation errors name the file, line and key and list valid choices."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from curate.config import load_recipe
from curate.errors import CurateError


def recipe(tmp_path, text: str):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """\
    name: good
    sources:
      - {name: a, path: data/a.jsonl}
    steps:
      - ingest: {}
      - select: {name: pick, selector: random, budget: 5, params: {seed: 1}}
    output: {folder: out}
"""


def test_valid_recipe_resolves_paths_against_its_folder(tmp_path):
    loaded = load_recipe(recipe(tmp_path, GOOD))
    assert [s.kind for s in loaded.steps] == ["ingest", "select"]
    assert loaded.steps[1].params.budget == 5 and loaded.steps[1].line == 6
    assert loaded.resolve("data/a.jsonl") == str(tmp_path / "data" / "a.jsonl")
    assert loaded.resolve("hf://o/n:train") == "hf://o/n:train"


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("- ingest: {}", "- ingestt: {}"), ["r.yaml:5", "unknown step kind 'ingestt'", "valid kinds: embed, ingest, label, score, select, synth"]),
    (GOOD.replace("budget: 5", "budget: five"), ["r.yaml:6", "steps[1].select.budget", "integer"]),
    (GOOD.replace("params: {seed: 1}", "params: {seed: 1}, colour: red"),
     ["r.yaml:6", "steps[1].select.colour", "valid keys: name, selector, budget"]),
    (GOOD.replace("{name: a, path: data/a.jsonl}", "{name: a, pth: data/a.jsonl}"),
     ["r.yaml:3", "sources[0]", "valid keys: name, path, dialect"]),
    (GOOD.replace("output: {folder: out}", "output: {folder: out, format: csv}"),
     ["r.yaml:7", "output.format", "'jsonl', 'parquet' or 'hf'"]),
    (GOOD.replace("output: {folder: out}", "output: {folder: out, emit: [nope]}"),
     ["output.emit", "no select step named 'nope'", "pick"]),
    (GOOD.replace("name: good\n", "name: good\n    colour: red\n"), ["r.yaml:2", "colour", "valid keys"]),
    ("name: x\nsteps:\n  - ingest: {}\n   bad: indent\n", ["r.yaml:4", "not valid YAML"]),
])
def test_errors_point_at_the_line_and_list_choices(tmp_path, text, expected):
    with pytest.raises(CurateError) as error:
        load_recipe(recipe(tmp_path, text))
    for fragment in expected:
        assert fragment in str(error.value), str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(CurateError, match="no such recipe"):
        load_recipe(tmp_path / "nope.yaml")



CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"
SHARED_DATA = (CATALOGS.parent.parent / "shared" / "data").resolve()


@pytest.mark.parametrize("path", sorted(CATALOGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_validates_and_reads_the_shared_data_in_place(path):
    recipe = load_recipe(path)
    assert recipe.steps and recipe.output
    for source in recipe.sources:
        resolved = recipe.resolve(source.path)
        if resolved.startswith("hf://"):
            continue
        assert Path(resolved).is_relative_to(SHARED_DATA), resolved
        assert Path(resolved).exists() or not SHARED_DATA.exists(), resolved
