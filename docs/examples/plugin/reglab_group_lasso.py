"""Group lasso on units, a reglab plugin regularizer: the worked example of docs/regularizers.md.

    penalty = lambda_g * sum_layers sum_j sqrt(sum_i w_ij^2 + eps)

over each unit j's incoming weight vector w_j (column j of a layer's W, weights only, never
biases); its (sub)gradient lambda_g * w_j / ||w_j|| pushes whole units to zero (Yuan & Lin 2006;
Scardapane et al. 2017 for neural networks). The value is all reglab needs: its gradient comes
from autograd. ``eps`` keeps the gradient finite at w_j = 0.
"""

from reglab.engine.regularizer import Hyperparameter, Regularizer, WeightPenalty

__version__ = "0.1.0"
EPS = 1e-12


def value(w, hp):
    """(V,) penalty of one layer's stacked weights w (V, in, out); hp["group_lasso"] is (V,)."""
    unit_norms = (w.pow(2).sum(dim=1) + EPS).sqrt()        # (V, out): ||w_j|| of every unit
    return hp["group_lasso"] * unit_norms.sum(dim=1)


GROUP_LASSO = Regularizer(
    name="group_lasso",
    formula="lambda_g * sum_j ||w_j||_2 over every unit's incoming weights (weights only); gradient "
            "lambda_g * w_j / ||w_j||_2 (autograd)",
    hyperparameters=(Hyperparameter("group_lasso", low=0.0, high=1.0, log=True, search=(1e-5, 1e-2),
                                    doc="lambda_g, the coefficient of sum_j ||w_j||_2"),),
    uses=lambda m: m.group_lasso > 0,
    bind=lambda context: WeightPenalty(context, lambda m: m.group_lasso or None, ("group_lasso",), value),
)

REGULARIZERS = [GROUP_LASSO]
