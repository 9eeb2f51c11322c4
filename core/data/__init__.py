"""The particle set, its images and CTFs, rotations and symmetry operators, in the engine's one convention."""
