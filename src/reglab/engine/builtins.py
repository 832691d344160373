"""The six Table 9 regularizers (and early stopping), and the built-ins beyond them (Gaussian dropout,
soft orthogonality, label smoothing, decoupled weight decay, DropConnect), declared through the regularizer API.

Each keeps its hand-written, tested gradient (``regularizers``); the step
reaches them only through ``Regularizer.bind`` and the ``Hooks`` it returns.
The step calls the hooks in registration order, train-time noise first (hidden backward in reverse).
"""

from __future__ import annotations

import math

from reglab.engine.dropconnect import DropConnect
from reglab.engine.dropout import Dropout
from reglab.engine.gaussian_dropout import GaussianDropout
from reglab.engine.label_smoothing import LabelSmoothing
from reglab.engine.penalties import L1, L2, KLSparsity, MaxNorm, orthogonality
from reglab.engine.regularizer import Hyperparameter, Regularizer
from reglab.engine.weight_decay import DecoupledWeightDecay

_L1_HP = (Hyperparameter("l1", low=0.0, log=True, doc="lambda in lambda * sum |w|",
                         search=(1e-7, 1e-3), grid=(1e-6, 1e-5, 1e-4)),)
_L1_LATE_HP = _L1_HP + (Hyperparameter("l1_start", low=0.0, high=1.0, doc="fraction of all steps before L1 acts",
                                        search=(0.5, 0.95), grid=(0.6, 0.8, 0.9)),)

BUILTINS: dict[str, Regularizer] = {r.name: r for r in (
    Regularizer("l2", "lambda/2 * sum w^2 (weights only); gradient lambda * w",
                (Hyperparameter("l2", low=0.0, log=True, doc="lambda in lambda/2 * sum w^2",
                                search=(1e-6, 1e-1), grid=(1e-5, 1e-4, 1e-3)),),
                lambda m: m.uses_l2, L2),
    Regularizer("l1", "lambda * sum |w| (weights only); gradient lambda * sign(w)", _L1_HP,
                lambda m: m.uses_l1 and not m.uses_late_l1, lambda c: L1(c, late=False)),
    Regularizer("l1_late", "lambda * sum |w| for steps t > l1_start * T", _L1_LATE_HP,
                lambda m: m.uses_late_l1, lambda c: L1(c, late=True)),
    Regularizer("kl_sparsity", "beta * sum_j KL(rho || q_j), q_j = m_j / (1 + m_j), m_j unit j's mean output",
                (Hyperparameter("kl_beta", low=0.0, log=True, search=(1e-5, 1e-1), grid=(1e-4, 1e-3, 1e-2)),
                 Hyperparameter("kl_rho", low=0.0, high=1.0, default=0.05, log=True, search=(0.01, 0.3),
                                grid=(0.03, 0.1, 0.2)),
                 Hyperparameter("kl_ema", low=0.0, high=1.0, tuned=False)),
                lambda m: m.uses_kl_sparsity, KLSparsity),
    Regularizer("max_norm", "after every update w_j <- w_j * min(1, c / ||w_j||_2), w_j unit j's incoming weights",
                (Hyperparameter("max_norm", low=0.0, default=math.inf, log=True, search=(0.5, 20.0),
                                grid=(1.5, 3.0, 6.0)),),
                lambda m: m.uses_max_norm, MaxNorm),
    Regularizer("dropout", "inverted dropout: h <- h * mask / (1 - p), mask ~ Bernoulli(1 - p); off at evaluation",
                (Hyperparameter("dropout_input", low=0.0, high=1.0, doc="drop probability of input units",
                                search=(0.0, 0.5), grid=(0.1, 0.2, 0.4)),
                 Hyperparameter("dropout_hidden", low=0.0, high=1.0, doc="drop probability of hidden units",
                                search=(0.1, 0.7), grid=(0.3, 0.5, 0.6))),
                lambda m: m.uses_dropout, Dropout, noise=True),
    # beyond Table 9 (issue 19): off unless a method sets them; the default study does not
    Regularizer("gaussian_dropout", "Gaussian dropout (Srivastava et al. 2014, sec. 10): h <- h * r, "
                "r ~ N(1, p/(1-p)) per unit and example, on inputs and/or hidden units; off at evaluation",
                (Hyperparameter("gaussian_dropout_input", low=0.0, high=1.0,
                                doc="drop rate p the input noise stands for: variance p/(1-p)",
                                search=(0.05, 0.5), grid=(0.1, 0.2, 0.4)),
                 Hyperparameter("gaussian_dropout_hidden", low=0.0, high=1.0,
                                doc="drop rate p the hidden noise stands for: variance p/(1-p)",
                                search=(0.1, 0.7), grid=(0.3, 0.5, 0.6))),
                lambda m: m.uses_gaussian_dropout, GaussianDropout, noise=True),
    Regularizer("orthogonality", "lambda * sum_l ||W_l^T W_l - I||_F^2, W_l (in, out): the Gram matrix of the "
                "units' incoming weight vectors (weights only); gradient 4 lambda W (W^T W - I)",
                (Hyperparameter("orthogonality", low=0.0, log=True, doc="lambda in lambda * ||W^T W - I||_F^2",
                                search=(1e-6, 1e-2), grid=(1e-5, 1e-4, 1e-3)),),
                lambda m: m.uses_orthogonality, orthogonality),
    Regularizer("label_smoothing", "targets (1 - eps) * one-hot + eps / C: loss (1 - eps) * CE + "
                "eps * mean_c(-log p_c); the recorded training loss is this smoothed one",
                (Hyperparameter("label_smoothing", low=0.0, high=1.0, log=True,
                                doc="eps, the probability mass spread over the C classes",
                                search=(0.01, 0.3), grid=(0.05, 0.1, 0.2)),),
                lambda m: m.uses_label_smoothing, LabelSmoothing),
    Regularizer("decoupled_weight_decay", "before each update w <- w - lr_t * lambda_d * w (weights only; AdamW "
                "with Adam, SGDW with SGD; Loshchilov & Hutter 2019); not a loss term",
                (Hyperparameter("decoupled_weight_decay", low=0.0, log=True,
                                doc="lambda_d in w <- w - lr_t * lambda_d * w", search=(1e-5, 1e-1),
                                grid=(1e-4, 1e-3, 1e-2)),),
                lambda m: m.uses_decoupled_weight_decay, DecoupledWeightDecay),
    Regularizer("dropconnect", "DropConnect (Wan et al. 2013), inverted: each layer's products read W * M / (1 - p), "
                "M ~ Bernoulli(1 - p) per weight, one M per minibatch and variant (biases never); gradient "
                "M / (1 - p) * (h^T dz); plain W at evaluation (mean-field)",
                (Hyperparameter("dropconnect", low=0.0, high=1.0, doc="drop probability of each weight",
                                search=(0.05, 0.7), grid=(0.1, 0.3, 0.5)),),
                lambda m: m.uses_dropconnect, DropConnect, noise=True),
    Regularizer("early_stopping", "stop after `patience` epochs without a val improvement > min_delta; "
                "restore the best weights", (), lambda m: m.early_stopping, None),
)}
