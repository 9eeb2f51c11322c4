"""A realistic simulator with known truth."""
