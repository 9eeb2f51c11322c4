"""The Gaussian mixture model of a map: the model, fitting it to a map, focus masks, patches."""
