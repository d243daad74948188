"""Multi-process training with ``torchrun`` (PyTorch DDP), kept out of the training loop's way.

Every rank walks the *same* global batch stream (same seed, same keys) and decodes only its own
slice of each batch, so N processes with a global batch B compute exactly what one process with
batch B computes: the loss terms are means over images, and DDP averages the per-rank gradients.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from instyle.core.errors import InstyleError
from instyle.data.datasets import _BatchKeys, batch_stream


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands; ``enabled`` is False for a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1): gloo on CPU, nccl on CUDA."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, enabled=True)


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """One GPU per process: CUDA ranks use their ``LOCAL_RANK``'s device."""
    if info.enabled and device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return device


def shard_slice(global_batch: int, info: DistInfo) -> slice:
    """This rank's part of a global batch (the batch must split evenly, or ranks would weigh differently)."""
    if global_batch % info.world_size:
        raise InstyleError(f"batch {global_batch} does not split evenly over {info.world_size} processes")
    per = global_batch // info.world_size
    return slice(info.rank * per, (info.rank + 1) * per)


class _ShardKeys:
    """The global batch-key stream, each batch cut down to this rank's slice."""

    def __init__(self, keys: _BatchKeys, part: slice):
        self.keys, self.part = keys, part

    def __iter__(self) -> Iterator[list[Any]]:
        for batch in self.keys:
            yield batch[self.part]


def sharded_batches(dataset: Dataset[Any], global_batch: int, seed: int, info: DistInfo,
                    num_workers: int | str = 0, start_step: int = 0, pin_memory: bool = False) -> Iterator[Any]:
    """``infinite_batches`` for one rank: the same global stream, only this rank's images decoded."""
    n = len(dataset)  # type: ignore[arg-type]
    if n < global_batch:
        raise InstyleError(f"batch size {global_batch} is larger than the {n} training images")
    part = shard_slice(global_batch, info)
    keys = _ShardKeys(_BatchKeys(n, global_batch, seed, start_step,
                                 bool(getattr(dataset, "accepts_epoch_keys", False))), part)
    yield from batch_stream(dataset, keys, num_workers, pin_memory)


def mean_over_ranks(values: dict[str, torch.Tensor], info: DistInfo) -> dict[str, torch.Tensor]:
    """Loss terms averaged over ranks (what one process with the global batch would log)."""
    if not info.enabled:
        return values
    names = list(values)
    stacked = torch.stack([values[k].detach().float() for k in names])
    dist.all_reduce(stacked)
    stacked /= info.world_size
    return dict(zip(names, stacked.unbind(), strict=True))


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def average_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Average floating-point buffers (norm running statistics) over ranks after a step.

    DDP would broadcast rank 0's, which saw only its shard; the average of per-shard updates is the
    single-process update exactly for instance statistics (equal shards). Batch statistics are
    already global (``norms._synced_batch_norm``), so every rank holds the same values anyway.
    """
    if not info.enabled:
        return
    bufs = [b for b in module.buffers() if b.is_floating_point()]
    if not bufs:
        return
    flat = torch.cat([b.reshape(-1) for b in bufs])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for b in bufs:
        b.copy_(flat[offset : offset + b.numel()].view_as(b))
        offset += b.numel()
