"""Scheduled builds: serve the build flow with a cron schedule, or deploy it to a work pool.

Both talk to whatever Prefect API the environment points at (``PREFECT_API_URL``: a
``prefect server start`` or Prefect Cloud). Like every build, a scheduled run whose inputs
and code have not changed records ``unchanged`` instead of publishing a copy (the spec's
``publish``).
"""

from __future__ import annotations

from pathlib import Path

from flows.build import build_flow
from flows.prefect_server import prefect_api
from flows.runners import task_runner
from flows.spec import load_spec

REPO_ROOT = Path(__file__).resolve().parents[1]


def deployment_name(spec_path: str | Path, name: str | None) -> str:
    return name or f"build-{load_spec(spec_path).dataset}"


def scheduled_parameters(spec_path: str | Path) -> dict:
    return {"spec_path": str(Path(spec_path).resolve())}


def serve_build(spec_path: str | Path, cron: str, name: str | None = None) -> None:
    """Serve the build as a deployment with a cron schedule; runs until interrupted."""
    runner = task_runner(load_spec(spec_path).runner)
    with prefect_api():
        build_flow.with_options(task_runner=runner).serve(name=deployment_name(spec_path, name), cron=cron,
                                                          parameters=scheduled_parameters(spec_path))


def deploy_build(spec_path: str | Path, work_pool: str, cron: str | None = None,
                 name: str | None = None) -> str:
    """Register a deployment of the build on a work pool (its workers run it); returns its id."""
    deployable = build_flow.from_source(source=str(REPO_ROOT), entrypoint="flows/build.py:build_flow")
    deployment_id = deployable.deploy(name=deployment_name(spec_path, name), work_pool_name=work_pool,
                                      cron=cron, parameters=scheduled_parameters(spec_path),
                                      build=False, push=False, print_next_steps=False)
    return str(deployment_id)
