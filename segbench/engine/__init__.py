"""Training, evaluation and metrics: the part of a job that touches tensors.

The package root imports nothing, so ``import segbench.engine`` stays torch-free;
each submodule imports torch itself:

* :mod:`~segbench.engine.schedule` - the papers' "poly" learning rate with warm-up (torch-free).
* :mod:`~segbench.engine.metrics` - confusion matrix, foreground metrics, trimap band.
* :mod:`~segbench.engine.reproducibility` - seeding and deterministic mode.
* :mod:`~segbench.engine.checkpoint` - atomic, resumable training checkpoints.
* :mod:`~segbench.engine.batches` - shuffled training batches that resume mid-epoch.
* :mod:`~segbench.engine.loss` - cross-entropy with ignore_index plus the weighted aux loss.
* :mod:`~segbench.engine.train` - the SGD + poly LR training loop.
* :mod:`~segbench.engine.inference` - single/multi-scale, flip and sliding-window prediction.
* :mod:`~segbench.engine.evaluate` - evaluation of a model on a dataset.
"""
