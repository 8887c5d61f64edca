"""Job execution: the per-job pipeline in worker processes, the scheduler and its backends."""
