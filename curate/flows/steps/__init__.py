"""The steps a recipe can run; importing this package registers every kind in `STEPS`."""

from curate.flows.steps import embed, ingest, label, score, select, synth  # noqa: F401  (registers)
from curate.flows.steps.base import STEPS, Step, StepContext, StepParams, StepResult, step

__all__ = ["STEPS", "Step", "StepContext", "StepParams", "StepResult", "step"]
