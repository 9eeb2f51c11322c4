"""Direct Fourier inversion, the gold-standard FSC, map symmetry and local resolution."""
