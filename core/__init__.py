"""gmmrefine: GMM-based particle pose refinement for single-particle cryo-EM.

The engine's subpackages are the method's layers, each importing only those
below it (docs/architecture.md): fourier -> data, gmm -> io, reconstruct ->
align -> report -> pipeline, with the command line and the host adapters on
top. Host formats are met only in :mod:`gmmrefine.io`; everything else
speaks one convention (docs/conventions.md).
"""

import logging

__version__ = "0.1.0"

# A library logs and leaves the handlers to its caller (gmmrefine.report.log).
logging.getLogger(__name__).addHandler(logging.NullHandler())
