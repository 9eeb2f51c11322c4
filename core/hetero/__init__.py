"""Heterogeneity: an encoder and decoder per half set, and each particle's conformation as a pose."""
