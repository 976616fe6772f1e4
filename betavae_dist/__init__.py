"""betavae-dist: distributed β-VAE training and disentanglement evaluation (README.md)."""

__version__ = "0.2.0"  # pyproject.toml reads it; CHANGELOG.md says what each version changed
