"""Job execution: the backends and their seam, device planning, the per-job pipeline, and a run's recording listener and progress view."""
