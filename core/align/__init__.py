"""Per-particle pose refinement against a GMM: rings and scores, the projection kernel, the optimisers."""
