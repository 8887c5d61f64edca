"""On-disk layouts of the real datasets: where each split's images and masks are, and how labels decode.

One module per dataset; :mod:`segbench.data.layouts.base` holds what they share
(root resolution, pairing, label look-up tables, the errors that say what is
missing and where the data comes from). Layouts need numpy and PIL, never torch:
the check command and the preview use them too.
"""
