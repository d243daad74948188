"""The Ray Data engine for dataset jobs: one actor per GPU (or per few CPU cores), each model loaded once.

Ray is an optional extra (``pip install 'instyle[ray]'``); the CLI imports this module only for
``--engine ray``. The plan, the per-image work and the manifest are ``instyle.inference.dataset_job``'s,
so this engine writes exactly the files the local one does. Actors append their records to their own
journal in the output folder, which therefore has to be a folder every node sees (a shared
filesystem); Ray restarts a killed actor and retries its batch, and a killed driver leaves journals
that the next run merges before it plans.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import pyarrow as pa
import ray
import ray.data
from tqdm import tqdm

from instyle.core.errors import InstyleError
from instyle.inference.dataset_job import (
    JobReport,
    Journal,
    Plan,
    StylizerCache,
    finish,
    process_items,
    spec_from_dict,
    spec_to_dict,
)


class StylizeBatch:
    """The class-based UDF: built once per actor (models load lazily, once per style), then called per batch."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec_from_dict(spec)
        self.cache = StylizerCache(self.spec)
        self.journal = Journal(self.spec.output, "ray")
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        records = process_items(batch.to_pylist(), self.cache, self.journal, worker=self.worker)
        return pa.table({"output": [r["output"] for r in records], "status": [r["status"] for r in records]})


def connect(num_cpus: int | None = None) -> bool:
    """Join the running cluster (``RAY_ADDRESS`` set, or ``ray.init`` already called); else start a local
    one for this job. True when this call started Ray (so the job shuts it down again)."""
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address="auto", log_to_driver=False)
        return False
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


def pool_shape(resources: dict[str, float], actors: int | None, cpus_per_actor: float | None,
               gpus_per_actor: float | None) -> tuple[int, float, float]:
    """(actors, CPUs each, GPUs each): one actor per GPU when the cluster has GPUs, else one per CPU."""
    gpus = float(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 1))
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus else 0.0
    if gpus_per_actor > 0:
        if gpus < gpus_per_actor:
            raise InstyleError(f"--gpus-per-actor {gpus_per_actor:g}: the Ray cluster has {gpus:g} GPUs")
        cpus_per_actor = 1.0 if cpus_per_actor is None else cpus_per_actor
        actors = actors or max(1, int(gpus // gpus_per_actor))
    else:
        cpus_per_actor = 1.0 if cpus_per_actor is None else cpus_per_actor
        actors = actors or max(1, int(cpus // cpus_per_actor))
    if cpus_per_actor * actors > cpus or cpus_per_actor <= 0:
        raise InstyleError(f"{actors} actors x {cpus_per_actor:g} CPUs do not fit the cluster's {cpus:g} CPUs")
    return actors, cpus_per_actor, gpus_per_actor


def run_ray(plan: Plan, *, batch: int = 1, actors: int | None = None, cpus_per_actor: float | None = None,
            gpus_per_actor: float | None = None, num_cpus: int | None = None, progress: bool = True,
            udf: type[StylizeBatch] = StylizeBatch) -> JobReport:
    """Run the plan's items with Ray Data ``map_batches`` on an actor pool; the manifest is merged at the end
    (also when the job fails, so a re-run resumes from everything finished). ``udf``: a ``StylizeBatch``
    subclass (tests kill their actor mid-job with one)."""
    if batch < 1:
        raise InstyleError(f"--batch must be at least 1, got {batch}")
    t0 = time.perf_counter()
    started = connect(num_cpus)
    try:
        n, cpus_each, gpus_each = pool_shape(ray.cluster_resources(), actors, cpus_per_actor, gpus_per_actor)
        spec = plan.spec
        if gpus_each > 0 and spec.device == "auto":
            spec.device = "cuda"
        spec.threads = max(1, int(cpus_each)) if gpus_each == 0 else None
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours counts images, Ray's count blocks
        ds = ray.data.from_items(plan.items, override_num_blocks=max(1, min(len(plan.items), 4 * n)))
        ds = ds.map_batches(
            udf, fn_constructor_kwargs={"spec": spec_to_dict(spec)}, batch_size=batch,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=n), num_cpus=cpus_each,
            num_gpus=gpus_each or None,
        )
        try:
            with tqdm(total=len(plan.items), unit="img", disable=not progress) as bar:
                for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                    bar.update(out.num_rows)
        except KeyboardInterrupt:
            finish(plan, time.perf_counter() - t0)  # the manifest shows what is done; a re-run resumes
            raise
        except Exception as exc:
            finish(plan, time.perf_counter() - t0)
            reason = " ".join(str(exc).split())[:300]
            raise InstyleError(f"the Ray job stopped ({type(exc).__name__}: {reason}); what finished is in the "
                               "manifest, run the same command again to resume") from None
        return finish(plan, time.perf_counter() - t0)
    finally:
        if started:
            ray.shutdown()
