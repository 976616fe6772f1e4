"""Packed sweeps: the K points of a sweep trained (and evaluated) together in one process.

A sweep's points are small models (a 10-latent conv net at batch 64 uses a few per cent of a
GPU). A pack stacks the K points' parameters and runs them with `torch.func.vmap` over
`functional_call`, so each kernel does K points' work:

- model.py: `PackedVAE`, the stacked parameters (each point's initial weights are its solo run's)
  and the vmapped forward + objective, with each point's own loss settings (β, γ, capacity);
- step.py: one optimiser step of all points (per-point gradient norms, clipping and non-finite
  checks; a point that fails is frozen, the others go on), eager or as one CUDA graph;
- train.py: the pack's `Run` for the one loop (../loop.py); each point keeps its own run
  directory, just as a solo run's (config.yaml, metrics.jsonl, atomic verified checkpoints, export,
  figures), and a killed pack resumes;
- evaluate.py: the metrics of K models, each distinct image encoded once for all K.

`python -m betavae_dist.sweep run SWEEP --pack K` drives it. Points that differ in anything but
their seed, run directory and loss settings (β, γ, capacity) cannot share a pack;
`split_packs` groups them.
"""
