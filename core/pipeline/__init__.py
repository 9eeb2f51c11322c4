"""A refinement run: its options, inputs, iterations on in-memory state, run directory and patch runs."""
