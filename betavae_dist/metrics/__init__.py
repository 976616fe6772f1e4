"""Disentanglement metrics. Each takes a dataset with ground-truth factors (`factor_sizes`,
`sample_factors`) and a representation function (factor vectors -> codes), and returns a dict
of named scores. `METRICS` maps the names used in configs to the functions.

Result keys follow one pattern: a metric with a single score reports it under its own name (`mig`,
`sap`); one with several reports `<name>.<score>` (`beta_vae.eval_accuracy`, `dci.completeness`);
the evaluator adds `<name>.seconds`. Each metric reproduces disentanglement_lib's (see its module)."""

from .beta_vae import beta_vae_score
from .dci import dci
from .factor_vae import factor_vae_score
from .mig import mig
from .sap import sap

METRICS = {"beta_vae": beta_vae_score, "factor_vae": factor_vae_score, "mig": mig, "dci": dci, "sap": sap}
