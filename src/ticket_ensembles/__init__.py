"""Ensembles of sparse subnetworks ("lottery tickets") drawn from one pretrained model."""

__version__ = "0.1.0"
