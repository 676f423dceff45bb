"""Prefect flows: thin wrappers over the library. The library runs without Prefect; a flow adds
retries, artifacts, a flow-run id on every run row, Ray task running and schedules."""

import os

# Prefect's ephemeral server sends telemetry by default; this tool never phones home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The ephemeral API server gets 20 s to start by default: too little on a loaded 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
