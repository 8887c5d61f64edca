"""Regression tracking across commits: compare, check, history, run-at-revisions (and ``db merge``'s command).

Every job in the results database carries the git commit (and dirty flag) of
the code it measured, the machine it ran on and its ``job_key``. This package
turns that history into answers the way airspeed velocity and conbench do for
benchmarks: which numbers changed between two revisions, whether a change is
real or noise, and at which commit a metric stepped.

Modules, one idea each: :mod:`~segbench.regress.stats` (the decisions),
:mod:`~segbench.regress.rules` (which decision applies to which metric),
:mod:`~segbench.regress.gitrev` (revisions → commits), :mod:`~segbench.regress.snapshot`
(the results at one revision), :mod:`~segbench.regress.compare`,
:mod:`~segbench.regress.history`, :mod:`~segbench.regress.at` and
:mod:`~segbench.regress.cli`. They read the database through
:mod:`segbench.store.reads`; merging databases is store work
(:mod:`segbench.store.merge`). None imports torch.
"""
