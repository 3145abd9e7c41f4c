"""Where a build's parallel work runs: Prefect task runners chosen by the spec.

``threads`` (default) runs everything in the flow process; teacher calls stream through
one async client and each answer is recorded as it arrives. ``dask`` (prefect-dask) sends
shards of teacher calls and the candidate retrieval of each source to Dask workers, a
local multi-process cluster or a scheduler address; workers return results, and the flow
process, the one warehouse writer, records them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RunnerConfig(BaseModel):
    """The spec's ``runner`` section."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["threads", "dask"] = "threads"
    max_workers: int = Field(4, ge=1, description="threads: worker threads")
    address: str | None = Field(None, description="dask: scheduler address; none starts a local cluster")
    n_workers: int = Field(2, ge=1, description="dask local cluster: worker processes")
    shard_size: int = Field(200, ge=1, description="dask: teacher calls per shard")


def task_runner(config: RunnerConfig):
    """The Prefect task runner a runner config asks for."""
    if config.kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=config.max_workers)
    from prefect_dask import DaskTaskRunner

    if config.address:
        return DaskTaskRunner(address=config.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": config.n_workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})
