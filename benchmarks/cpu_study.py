"""A CPU-sized version of disentanglement_lib's unsupervised study (configs/study/): each method at
three of its study's settings, three seeds, a few hundred steps, evaluated with every study metric
at reduced sizes (the downstream task with its boosted trees only: its cross-validated logistic
regressions would take hours here), then put side by side with the study's table and analysis
(`sweep study`). A smoke run of the whole pipeline on a laptop, labelled as such: these models are
far from trained (the study trains 300,000 steps).

    python benchmarks/cpu_study.py --out docs/study_cpu --steps 150    # 30 min on 2 cores (54 models)

Annealed VAE's capacity rises over `capacity_steps`: scaled here to the run's steps (the study's
100,000 would leave C near 0).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # study file: three of its grid's values (the swept key is the grid's key but seed)
    "beta_vae": [1, 4, 16], "annealed_vae": [5, 25, 100], "factor_vae": [10, 30, 100], "dip_vae_i": [1, 5, 50],
    "dip_vae_ii": [1, 5, 50], "beta_tc_vae": [1, 4, 10],
}
EVAL = ["eval.n_train=500", "eval.n_eval=250", "eval.pairs=8", "eval.n_samples=1000",
        "eval.downstream_task.n_train=100,500", "eval.downstream_task.predictors=boosted_trees"]


SMOKE = """# A smoke run of the study, on a 2-core CPU: not a result

Every method of disentanglement_lib's study at 3 of its settings x {seeds} seeds ({models} models) on
dSprites, trained **{steps} steps** (the study trains 300,000): the models have barely left their
initialisation, most codes have collapsed (the β-TCVAE's above all), and the scores say nothing about
the methods. What this shows is the pipeline: every model trained, scored by every metric at
reduced sizes ({eval}), UDR, one table and the analysis, made by
`python benchmarks/cpu_study.py --steps {steps} --seeds {seeds}`.

- [study.md](study.md), [study.png](study.png): each headline metric against each method's setting
- [table.csv](table.csv): every model x every score (`pandas.read_csv`)
- [analysis.md](analysis.md): scores per method, rank correlations, the seed's share of each score's
  variance, what an unsupervised score or UDR would select
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/study_cpu"))
    parser.add_argument("--runs", type=Path, default=Path("runs/study_cpu"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    sweeps = []
    for name, values in SETTINGS.items():
        study = yaml.safe_load((ROOT / "configs" / "study" / f"{name}.yaml").read_text())
        key = next(k for k in study["grid"] if k != "seed")
        train = [*study["train"], f"train.steps={args.steps}", "train.log_every=100", f"train.ckpt_every={args.steps}",
                 "train.progress=false"]
        if name == "annealed_vae":
            train = [t for t in train if not t.startswith("loss.capacity_steps")] + [f"loss.capacity_steps={args.steps}"]
        sweep = {"base": str(ROOT / study["base"]), "out_dir": str(args.runs / name),
                 "grid": {"seed": list(range(args.seeds)), key: values}, "train": train,
                 "eval": [*study["eval"], *EVAL], "pack": len(values) * args.seeds}
        path = args.runs / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(sweep, sort_keys=False))
        subprocess.run([sys.executable, "-m", "betavae_dist.sweep", "run", str(path)], check=True)
        sweeps.append(str(args.runs / name))
    for sweep in sweeps:  # UDR among each setting's seeds, beside the other scores
        subprocess.run([sys.executable, "-m", "betavae_dist.sweep", "udr", sweep], check=True)
    subprocess.run([sys.executable, "-m", "betavae_dist.sweep", "study", *sweeps, "--out", str(args.out)], check=True)
    (args.out / "README.md").write_text(SMOKE.format(steps=args.steps, seeds=args.seeds, models=len(SETTINGS) * 3 * args.seeds,
                                                     eval=" ".join(EVAL)))


if __name__ == "__main__":
    main()
