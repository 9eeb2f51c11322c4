"""Grids, centred FFTs, radial filters and soft masks: the Fourier conventions every layer shares."""
