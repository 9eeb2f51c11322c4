"""gmmrefine: GMM-based particle pose refinement for single-particle cryo-EM.

The engine reads in the order the method runs: particles -> ctf ->
reconstruct -> fsc -> (gmm -> project -> align -> refine). Host formats are
met only in :mod:`gmmrefine.io`; everything else speaks one convention
(docs/conventions.md).
"""

__version__ = "0.1.0"
