"""Recipes: YAML files that name sources, steps and outputs, validated with line-numbered errors.

    name: instruction-pool
    sources:
      - {name: lima, path: ../data/lima_train.jsonl, dialect: auto, license: CC BY-NC-SA}
      - {name: tulu, path: "hf://allenai/tulu-3-sft-mixture:train", optional: true}
    steps:
      - ingest: {}
      - embed: {view: prompt}
      - select: {name: random-1k, selector: random, budget: 1000, params: {seed: 0}}
    output: {folder: out, format: jsonl}

Each step is a one-key mapping `kind: {parameters}`; the kinds and their parameters are registered by
`curate.flows.steps` (the same parameters as the matching CLI command). Relative paths are resolved
against the recipe file's folder, so a recipe runs the same from any working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from curate.errors import CurateError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(Strict):
    name: str
    path: str = Field(description="file, folder, glob, saved dataset, or hf://owner/name[:split]")
    dialect: str = "auto"
    fields: dict[str, str] = Field(default_factory=dict, description="canonical field -> path in the record")
    license: str | None = None
    optional: bool = Field(False, description="skip with a warning when unreachable")


class OutputSpec(Strict):
    folder: str = "curate-out"
    format: Literal["jsonl", "parquet", "hf"] = "jsonl"
    emit: list[str] | None = Field(None, description="names of select steps to emit (default: all)")
    report: bool = True


class StepSpec(BaseModel):
    """One validated step: its kind and its parameters (an instance of the kind's model)."""

    kind: str
    params: Any
    line: int | None = None


class Recipe(BaseModel):
    name: str
    path: Path
    sources: list[SourceSpec]
    steps: list[StepSpec]
    output: OutputSpec

    def resolve(self, path: str) -> str:
        """A path from the recipe, made absolute against the recipe's folder (hf:// left alone)."""
        if path.startswith("hf://") or Path(path).is_absolute():
            return path
        return str((self.path.parent / path).resolve())


# -- YAML with line numbers -------------------------------------------------------------------------


class _LineLoader(yaml.SafeLoader):
    """Records the line of every mapping key and sequence item, by its path in the document."""


def _load_with_lines(text: str, origin: str) -> tuple[Any, dict[tuple, int]]:
    lines: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[path + (key.value,)] = key.start_mark.line + 1
                walk(value, path + (key.value,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[path + (index,)] = item.start_mark.line + 1
                walk(item, path + (index,))

    try:
        root = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark else origin
        raise CurateError(f"{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if root is not None:
        walk(root, ())
    return data, lines


def _line_of(lines: dict[tuple, int], path: tuple) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(error: dict, model: type[BaseModel] | None) -> str:
    message = error["msg"]
    if error["type"] == "extra_forbidden" and model is not None:
        message = f"unknown key; valid keys: {', '.join(model.model_fields)}"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif error["type"] == "literal_error":
        message = f"invalid value; {error['msg'].lower()}"
    return message


def _raise(origin: str, lines: dict[tuple, int], prefix: tuple, error: ValidationError,
           model: type[BaseModel] | None) -> None:
    problems = []
    for item in error.errors():
        path = prefix + tuple(item["loc"])
        line = _line_of(lines, path)
        problems.append(f"{origin}:{line or '?'}: {_dotted(path)}: {_describe(item, _model_at(model, item['loc']))}")
    raise CurateError("invalid recipe\n" + "\n".join(problems))


def _model_at(model: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of `loc` (for listing valid keys)."""
    current = model
    for part in loc[:-1]:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        current = candidates[0] if candidates else None
    return current


# -- loading ---------------------------------------------------------------------------------------


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe; any error names the file, line and key and lists valid choices."""
    from curate.flows.steps import STEPS   # the registry of step kinds

    path = Path(path)
    origin = str(path)
    if not path.is_file():
        raise CurateError(f"{origin}: no such recipe file")
    data, lines = _load_with_lines(path.read_text(), origin)
    if not isinstance(data, dict):
        raise CurateError(f"{origin}:1: a recipe is a mapping with name, sources, steps and output")
    allowed = {"name", "sources", "steps", "output"}
    for key in data:
        if key not in allowed:
            raise CurateError(f"{origin}:{lines.get((key,), '?')}: {key}: unknown key; valid keys: "
                              f"{', '.join(sorted(allowed))}")

    class Top(Strict):
        name: str
        sources: list[SourceSpec] = Field(default_factory=list)
        steps: list[dict[str, Any]]
        output: OutputSpec = Field(default_factory=OutputSpec)

    try:
        top = Top.model_validate(data)
    except ValidationError as error:
        _raise(origin, lines, (), error, Top)

    steps = []
    for index, raw in enumerate(top.steps):
        where = ("steps", index)
        line = lines.get(where)
        if len(raw) != 1:
            raise CurateError(f"{origin}:{line}: steps[{index}]: each step is one `kind: {{parameters}}` mapping; "
                              f"valid kinds: {', '.join(STEPS)}")
        (kind, params), = raw.items()
        if kind not in STEPS:
            raise CurateError(f"{origin}:{lines.get(where + (kind,), line)}: steps[{index}]: unknown step kind "
                              f"{kind!r}; valid kinds: {', '.join(STEPS)}")
        model = STEPS[kind].params
        try:
            parsed = model.model_validate(params or {})
        except ValidationError as error:
            _raise(origin, lines, where + (kind,), error, model)
        steps.append(StepSpec(kind=kind, params=parsed, line=line))

    names = [s.params.name for s in steps if s.kind == "select"]
    if len(set(names)) != len(names):
        raise CurateError(f"{origin}: two select steps share a name: {names}")
    source_names = [s.name for s in top.sources]
    if len(set(source_names)) != len(source_names):
        raise CurateError(f"{origin}: two sources share a name: {source_names}")
    for name in top.output.emit or []:
        if name not in names:
            raise CurateError(f"{origin}:{lines.get(('output', 'emit'), '?')}: output.emit: no select step named "
                              f"{name!r}; select steps: {', '.join(names) or 'none'}")
    return Recipe(name=top.name, path=path.resolve(), sources=top.sources, steps=steps, output=top.output)
