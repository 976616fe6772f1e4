"""The training step's data, noise and statistics: the device path gives today's batches, and an
ordinary step reads nothing back from the device."""

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from betavae_dist.experiment import Config, from_sources
from betavae_dist.data import build_dataset
from betavae_dist.data.batches import Batching, DeviceBatches, NoiseWindow, StepBatches, step_noise
from betavae_dist.data.dataset import FactorDataset
from betavae_dist.distributed import make_accelerator
from betavae_dist.data.dsprites import DSprites, render
from betavae_dist.models import BetaVAE
from betavae_dist.objectives import build_objective
from betavae_dist.plan import make_plan
from betavae_dist.step import EagerStep, GraphStep, launch_obstacle, make_step
from betavae_dist.stepstats import StepStats, finite_weights
from betavae_dist.optim import build_optimizer


class Numbered(FactorDataset):
    """A small dataset of one factor whose image i carries i in its first two pixels."""

    factor_names, factor_sizes = ("i",), (1000,)

    def raw_images(self, factors: np.ndarray) -> np.ndarray:
        index = factors[:, 0]
        out = np.zeros((len(index), 1, 64, 64), np.uint8)
        out[:, 0, 0, 0], out[:, 0, 0, 1] = index % 256, index // 256
        return out


def config(batch: int, accum: int = 1) -> Config:
    cfg = Config()
    cfg.seed, cfg.train.batch_size, cfg.train.grad_accum = 7, batch, accum
    return cfg


def noise_window(cfg: Config, device: torch.device, last_step: int) -> NoiseWindow:
    return NoiseWindow(cfg.seed, cfg.train.batch_size, cfg.model.latents, device, last_step)


def plan_of(cfg: Config, accelerator):
    return make_plan([cfg], accelerator.device, launch_obstacle=launch_obstacle(accelerator))


@pytest.mark.parametrize("world,accum", [(1, 1), (2, 1), (2, 2)])
def test_device_batches_equal_step_batches_across_epoch_boundaries(world, accum):
    cfg = config(96, accum)  # 1000 images: epochs end inside steps 10, 20 and 31
    for rank in range(world):
        batching = Batching.of(cfg.train, world, rank)
        host = StepBatches(Numbered(), cfg.seed, batching)
        device = DeviceBatches(Numbered(), cfg.seed, batching, torch.device("cpu"))
        host_seq, device_seq = host.micro_batches(0), device.micro_batches(0)
        for _ in range(35 * accum):
            (a, _), (b, _) = next(host_seq), next(device_seq)
            assert torch.equal(a, b)
        for step in (10, 20, 31, 104):  # straddling epochs, also after a resume far on
            for micro in range(accum):
                assert np.array_equal(host.indices(step, micro), device.indices(step, micro).numpy())


@pytest.mark.slow  # renders all of dSprites
def test_device_batches_of_dsprites_at_its_epoch_boundary():
    cfg = config(64)
    dataset = build_dataset(cfg.data)
    host, device = StepBatches(dataset, cfg.seed, Batching(64, 1)), DeviceBatches(dataset, cfg.seed, Batching(64, 1),
                                                                                    torch.device("cpu"))
    assert device.pixels.dtype == torch.uint8 and device.pixels.shape == (737_280, 1, 64, 64)
    boundary = 737_280 // 64  # step 11520 is the first of epoch 1
    for step in (0, boundary - 1, boundary, boundary + 1):
        assert torch.equal(host.images(step, 0), device.images(step, 0))


def test_noise_window_gives_each_step_its_own_noise():
    cfg = config(64)
    window = noise_window(cfg, torch.device("cpu"), last_step=5000)
    assert window.steps > 1
    for step in (0, 1, window.steps - 1, window.steps, 3 * window.steps + 2, 4999, 17):  # 17: back again
        assert torch.equal(window(step), step_noise(cfg.seed, step, 64, cfg.model.latents))


class HostReads(TorchFunctionMode):
    """Counts calls that copy a tensor's value to Python: on a GPU, each one waits for the device."""

    READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy"}

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) in self.READS:
            self.reads.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_ordinary_steps_read_nothing_from_the_device():
    cfg = config(16)
    cfg.optim.name = "sgd"  # torch's Adam reads its CPU step counter with .item(); on a GPU it is capturable
    cfg.train.cuda_graph = "off"  # the eager step (a GPU's auto would capture a graph)
    accelerator = make_accelerator()
    torch.manual_seed(0)
    model = BetaVAE()
    model, optimizer = accelerator.prepare(model, build_optimizer(model.parameters(), cfg.optim))
    objective = build_objective(cfg.loss, cfg.model)
    stats = StepStats(accelerator.device, objective.terms)
    run_step = make_step(model, optimizer, accelerator, plan_of(cfg, accelerator), stats)
    assert isinstance(run_step, EagerStep)
    batches = StepBatches(build_dataset(cfg.data), cfg.seed, Batching(16, 1)).micro_batches(0)
    noise = noise_window(cfg, accelerator.device, 20)
    with HostReads() as mode:
        for step in range(20):
            run_step(step, batches, noise(step), {})
    assert mode.reads == []
    with HostReads() as mode:
        metrics = stats.read(finite_weights(model), False, 0, ranks=1)[0]
    assert mode.reads  # the read is where values come back (so the mode does see reads)
    assert metrics["loss"] > 0 and metrics["grad_norm"] > 0 and metrics["bad_loss_step"] is None
    assert metrics["weights_finite"] and not metrics["stop"]


def prepared(accelerator, cfg):
    torch.manual_seed(0)
    model = BetaVAE(cfg.model.arch)
    model = model.to(memory_format=model.memory_format)
    return accelerator.prepare(model, build_optimizer(model.parameters(), cfg.optim))


class Sprites(Numbered):
    """1,000 real dSprites images, spread over the factor grid."""

    def raw_images(self, factors: np.ndarray) -> np.ndarray:
        return render(DSprites.index_to_factors(factors[:, 0] * 737))[:, None]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (CUDA graphs)")
@pytest.mark.parametrize("optimizer,objective", [("sgd", "beta"), ("adam", "annealed")])
def test_graph_step_trains_like_eager_steps_without_host_reads(optimizer, objective):
    cfg = config(64)
    cfg.optim.name, cfg.loss.objective, cfg.loss.capacity_steps = optimizer, objective, 20
    cfg.optim.lr = 1e-5 if optimizer == "sgd" else 5e-4  # SGD's momentum, on gradients of norm ~1e3
    accelerator = make_accelerator()
    batches = DeviceBatches(Sprites(), cfg.seed, Batching(64, 1), accelerator.device)
    noise = noise_window(cfg, accelerator.device, 20)
    runs = {}
    for mode in ("off", "on"):
        cfg.train.cuda_graph = mode
        model, optimizer = prepared(accelerator, cfg)
        start = [p.detach().clone() for p in model.parameters()]
        stats = StepStats(accelerator.device, build_objective(cfg.loss, cfg.model).terms)
        run_step = make_step(model, optimizer, accelerator, plan_of(cfg, accelerator), stats)
        data = batches.micro_batches(0)
        with HostReads() as reads:
            for step in range(20):
                run_step(step, data, noise(step), {"capacity": 0.5 * step} if objective == "annealed" else {})
        runs[mode] = (type(run_step).__name__, reads.reads, stats.read(finite_weights(model), False, 0, ranks=1)[0],
                      [p.detach().clone() for p in model.parameters()])
    assert runs["off"][0] == "EagerStep" and runs["on"][0] == "GraphStep"
    assert runs["on"][1] == []
    for term in ("loss", "recon", "kl"):
        assert runs["on"][2][term] == pytest.approx(runs["off"][2][term], rel=1e-3, abs=1e-3)  # KL starts near 0
    if cfg.optim.name == "sgd":  # Adam's sign-like first steps turn rounding on near-zero gradients into ±lr
        # The warm-up steps were undone: both runs moved the same way, up to rounding (not 3 steps more).
        moved = max((b - a).abs().max().item() for a, b in zip(start, runs["off"][3]))
        diff = max((a - b).abs().max().item() for a, b in zip(runs["off"][3], runs["on"][3]))
        assert diff < 1e-3 * moved, (diff, moved)


@pytest.mark.parametrize("objective,accum,clip", [("beta", 1, 0.0), ("annealed", 2, 1.0)])
def test_the_graph_steps_body_run_eagerly_equals_the_eager_step(objective, accum, clip):
    """GraphStep's body (the skeleton a pack's step shares, pack/step.py) without its graph, on
    the CPU: the same weights and statistics as Accelerate's eager step."""
    cfg = from_sources(None, ["seed=7", "train.batch_size=32", f"train.grad_accum={accum}", f"loss.objective={objective}",
                              f"optim.grad_clip={clip}", "train.cuda_graph=off"]
                       + (["loss.capacity_steps=5"] if objective == "annealed" else []))
    accelerator = make_accelerator(gradient_accumulation_steps=accum)  # as the trainer makes it
    plan, noise = plan_of(cfg, accelerator), noise_window(cfg, accelerator.device, 6)
    runs = []
    for device_step in (False, True):
        model, optimizer = prepared(accelerator, cfg)
        stats = StepStats(accelerator.device, plan.objectives[0].terms)
        run_step = (GraphStep(model, optimizer.optimizer, plan, stats) if device_step else
                    make_step(model, optimizer, accelerator, plan, stats))
        data = StepBatches(Sprites(), cfg.seed, plan.batching).micro_batches(0)
        for step in range(6):
            run_step(step, data, noise(step), plan.objectives[0].schedule(step))
        runs.append((stats.read(finite_weights(model), False, 0, ranks=1)[0], [p.detach().clone() for p in model.parameters()]))
    (eager, eager_weights), (body, body_weights) = runs
    for term in (*plan.objectives[0].terms, "grad_norm"):
        assert body[term] == pytest.approx(eager[term], rel=1e-5, abs=1e-6)
    assert max((a - b).abs().max().item() for a, b in zip(eager_weights, body_weights)) < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (CUDA graphs)")
def test_graph_step_records_the_first_non_finite_step():
    cfg = config(64)
    cfg.optim.lr, cfg.train.cuda_graph = 1e30, "on"
    accelerator = make_accelerator()
    model, optimizer = prepared(accelerator, cfg)
    objective = build_objective(cfg.loss, cfg.model)
    stats = StepStats(accelerator.device, objective.terms)
    run_step = make_step(model, optimizer, accelerator, plan_of(cfg, accelerator), stats)
    batches = DeviceBatches(Numbered(), cfg.seed, Batching(64, 1), accelerator.device).micro_batches(0)
    noise = noise_window(cfg, accelerator.device, 10)
    for step in range(10):
        run_step(step, batches, noise(step), {})
    metrics = stats.read(finite_weights(model), False, 0, ranks=1)[0]
    assert 0 < min(s for s in (metrics["bad_loss_step"], metrics["bad_grad_step"]) if s is not None) < 9
