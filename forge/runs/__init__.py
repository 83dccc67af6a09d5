"""Operating runs: start, status, metrics, ls, stop, report."""
