"""segbench: benchmark and ablation harness for semantic-segmentation models.

The package root stays import-light on purpose: ``segbench --help``, ``list`` and
``report`` must not pay for importing torch.
"""

__version__ = "0.1.0"
