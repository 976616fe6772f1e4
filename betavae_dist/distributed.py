"""Process-group set-up through Accelerate, with a guard against silently lost ranks.

On a CPU-only host, `accelerate launch --cpu --num_processes 2` starts ONE process, and
`--multi_gpu --num_processes 2` starts two that each think they are alone (both seen with
accelerate 1.15 on CPU-only hosts; tests/test_train.py holds the first). We ask for
`Accelerator(cpu=True)` whenever there is no GPU, which turns the second case into real gloo
ranks, and we refuse to train when the world size Accelerate reports differs from the one the
launcher started.

DeepSpeed on a CPU-only host needs the opposite: `cpu=True` would silently run plain DDP, and
Accelerate leaves the process-group backend unset, so we ask for gloo explicitly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ctypes
import gc
import os
import signal
import socket
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs

from .config import ConfigError
from .errors import BetaVAEError

if TYPE_CHECKING:
    from .experiment import Config


class LaunchError(BetaVAEError, RuntimeError):
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


def deepspeed_requested() -> bool:
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def die_with_launcher() -> None:
    """Under a launcher, have Linux send this worker SIGTERM when the launcher dies: torch elastic
    starts workers in a session of their own, so nothing else stops them (they would train on)."""
    if "LOCAL_RANK" not in os.environ or not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the launcher died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def make_accelerator(collective_timeout: float | None = None, **kwargs) -> Accelerator:
    """An Accelerator on the GPU when there is one, else on the CPU with gloo; world size checked.
    `collective_timeout` (seconds) bounds how long a rank waits for the others in a collective."""
    expected = launched_world_size()
    cpu_only, deepspeed = not torch.cuda.is_available(), deepspeed_requested()
    if deepspeed:
        try:
            import deepspeed as _  # noqa: F401  (Accelerate's DeepSpeed plugin needs both)
            import transformers as _  # noqa: F401,F811
        except ImportError as e:
            raise LaunchError(f"the launch config asks for DeepSpeed but {e.name} is not installed: "
                              "pip install 'betavae-dist[deepspeed]'") from None
    group = {}
    if cpu_only and deepspeed and "LOCAL_RANK" in os.environ:
        group["backend"] = "gloo"
    if collective_timeout:
        group["timeout"] = timedelta(seconds=collective_timeout)
    handlers = [InitProcessGroupKwargs(**group)] if group else []
    accelerator = Accelerator(cpu=cpu_only and not deepspeed, kwargs_handlers=handlers, **kwargs)
    if deepspeed and accelerator.distributed_type != DistributedType.DEEPSPEED:
        raise LaunchError(f"DeepSpeed was requested but Accelerate runs {accelerator.distributed_type.value}")
    if accelerator.num_processes != expected:
        raise LaunchError(
            f"the launcher started {expected} processes but Accelerate sees a world of "
            f"{accelerator.num_processes} ({accelerator.distributed_type.value}); gradients would not be "
            "synchronised. On a CPU-only host use --config_file launch/cpu_ddp.yaml"
        )
    return accelerator


TOLD = "told"  # RUN/.ranks/told: a rank of this job has told of a lost or frozen peer


class Heartbeat:
    """Each rank touches RUN/.ranks/rank_R every few seconds from a thread, which goes on while the
    main thread waits in a collective; a frozen or killed rank's file goes stale, so the rank that
    times out can name it (`silent_ranks`). The file holds the rank's host and pid, so a rank that
    loses a peer on its own host names it at once, before its file could go stale."""

    INTERVAL = 2.0

    def __init__(self, run_dir: Path, rank: int):
        self.path = run_dir / ".ranks" / f"rank_{rank}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{socket.gethostname()} {os.getpid()}")
        if rank == 0:  # a new job: no rank has told of a lost peer yet (before any collective can fail)
            (self.path.parent / TOLD).unlink(missing_ok=True)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")
        self.thread.start()

    def _beat(self) -> None:
        while True:
            self.path.touch()
            if self.stopped.wait(self.INTERVAL):
                return

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()
        self.path.unlink(missing_ok=True)


def first_to_tell(run_dir: Path) -> bool:
    """Whether this rank is the first of its job to tell of a lost or frozen peer: the ranks that
    see it cannot agree through the process group any more, so they claim a file in the run
    directory (shared by all nodes, as the checkpoints are); one line per job."""
    try:
        os.close(os.open(run_dir / ".ranks" / TOLD, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False
    except OSError:  # cannot claim it: better a line twice than none
        return True


def silent_ranks(run_dir: Path, world_size: int, end_frozen: bool = False) -> str:
    """The ranks that are gone (their process on this host has ended) or whose heartbeat is stale,
    e.g. "rank 1 (pid 4242) is gone, rank 2 silent for 12 s", or "" when none is. `end_frozen`: a
    silent rank on this host is killed (SIGKILL reaches a stopped process too), so that the launcher
    need not wait for it once this rank gives up on it."""
    now, silent = time.time(), []
    for rank in range(world_size):
        path = run_dir / ".ranks" / f"rank_{rank}"
        try:
            age, (host, pid) = now - path.stat().st_mtime, path.read_text().split()
        except (FileNotFoundError, ValueError):  # that rank never started, or ended cleanly
            continue
        here = host == socket.gethostname()
        if here and not _running(int(pid)):
            silent.append(f"rank {rank} (pid {pid}) is gone")
        elif age > 3 * Heartbeat.INTERVAL:
            ended = end_frozen and here and _kill(int(pid))
            silent.append(f"rank {rank} silent for {age:.0f} s" + (f" (pid {pid}, ended here)" if ended else ""))
    return ", ".join(silent)


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except OSError:
        return False


def _running(pid: int) -> bool:
    """Whether process `pid` runs (a zombie has ended; only its parent's wait is missing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def unwrap(accelerator: Accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a prepared one. Accelerate's `unwrap_model` imports DeepSpeed whenever it is
    installed (its "Setting accelerator" warning in every run, and ~1 ms per call), so only
    DeepSpeed runs go through it."""
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return accelerator.unwrap_model(model)
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


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


def configure_deepspeed(accelerator: Accelerator, cfg: Config, micro_batch: int) -> None:
    """Make the DeepSpeed config agree with ours before `prepare`; refuse explicit disagreements.

    Left alone, Accelerate would take DeepSpeed's gradient accumulation over ours (with a warning)
    and clip gradients at 1.0 when the launch config says nothing.
    """
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    ours = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": cfg.train.grad_accum,
        "train_batch_size": cfg.train.batch_size,
        "gradient_clipping": cfg.optim.grad_clip,
    }
    for key, value in ours.items():
        theirs = ds.get(key, "auto")
        if theirs != "auto" and theirs != value:
            raise ConfigError(
                f"the DeepSpeed config sets {key}={theirs} but this run needs {value} (from train.batch_size, "
                "train.grad_accum and optim.grad_clip); leave it out of the launch config or set it to auto"
            )
        ds[key] = value


def offloads_optimizer(accelerator: Accelerator) -> bool:
    plugin = accelerator.state.deepspeed_plugin
    device = plugin.deepspeed_config.get("zero_optimization", {}).get("offload_optimizer", {}).get("device") if plugin else None
    return device not in (None, "none")
