"""RELION External job adapter (console script ``gmmrefine-relion``)."""
