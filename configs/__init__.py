"""Experiment configurations (LightningCLI YAML), shipped with the package so `coadv` finds them anywhere."""
