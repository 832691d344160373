"""Adam's bias correction shown three ways: simulation, measurement on MNIST training, derivation (docs/adam.md).

:mod:`reglab.adam.simulation` runs Adam's moment recursions from zero over many
independent runs; :mod:`reglab.adam.real_training` records reglab's Adam on a
plain torch.nn MLP; :mod:`reglab.adam.figures` and :mod:`reglab.adam.report`
draw and write the results; :mod:`reglab.adam.cli` is ``reglab adam``.
"""
