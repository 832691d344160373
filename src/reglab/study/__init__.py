"""Studies: named presets, the runner that writes a run directory, and `reglab run`."""
