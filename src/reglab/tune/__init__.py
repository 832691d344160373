"""`reglab tune`: each method's hyperparameters chosen on the validation split (Optuna), run locally or on Ray.

:mod:`reglab.tune.search` holds the search spaces and the tuning loop,
:mod:`reglab.tune.executors` where batched models train (in-process or Ray tasks),
:mod:`reglab.tune.history` what a tune writes, :mod:`reglab.tune.cli` the command.
"""
