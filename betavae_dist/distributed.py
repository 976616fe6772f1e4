"""Process-group set-up through Accelerate, with a guard against silently lost ranks.

On a CPU-only host, `accelerate launch --cpu --num_processes 2` starts ONE process, and
`--multi_gpu --num_processes 2` starts two that each think they are alone (see
../shared/stack-facts.md). We ask for `Accelerator(cpu=True)` whenever there is no GPU, which turns
the second case into real gloo ranks, and we refuse to train when the world size Accelerate
reports differs from the one the launcher started.
"""

from __future__ import annotations

import gc
import os

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType


class LaunchError(RuntimeError):
    """The processes that exist are not the ones the launcher was asked for."""


def launched_world_size() -> int:
    """The number of processes the launcher started, from its environment."""
    if "WORLD_SIZE" in os.environ:  # torchrun, accelerate's multi-process launchers, SLURM scripts
        return int(os.environ["WORLD_SIZE"])
    # accelerate's single-process launcher exports MASTER_ADDR only when asked for >1 process.
    if "ACCELERATE_MIXED_PRECISION" in os.environ and "MASTER_ADDR" in os.environ:
        raise LaunchError(
            "accelerate launch was asked for several processes but started only this one "
            "(on a CPU-only host, --cpu and MULTI_CPU configs do that); "
            "use --config_file launch/cpu_ddp.yaml"
        )
    return 1


def make_accelerator(**kwargs) -> Accelerator:
    """An Accelerator on the GPU when there is one, else on the CPU with gloo; world size checked."""
    expected = launched_world_size()
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), **kwargs)
    if accelerator.num_processes != expected:
        raise LaunchError(
            f"the launcher started {expected} processes but Accelerate sees a world of "
            f"{accelerator.num_processes} ({accelerator.distributed_type.value}); gradients would not be "
            "synchronised. On a CPU-only host use --config_file launch/cpu_ddp.yaml"
        )
    return accelerator


def shutdown(accelerator: Accelerator, *objects) -> None:
    """Release models/optimisers before the process group goes away.

    Tearing down gloo with live references aborted 10-40% of 2-rank runs at exit
    ("terminate called without an active exception"); freeing them first made that go away.
    """
    accelerator.wait_for_everyone()
    accelerator.free_memory(*objects)
    del objects
    gc.collect()
    accelerator.end_training()
    if accelerator.distributed_type != DistributedType.NO and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
