"""Choices of the heterogeneity layer that front ends must know, free of TensorFlow."""

from __future__ import annotations

# What the encoder reads (gmmrefine.hetero.features).
FEATURE_KINDS = ("anchors", "gaussians")
# How a conformation becomes a pose (gmmrefine.hetero.conf2pose).
CONVERSIONS = ("kabsch", "adam")
