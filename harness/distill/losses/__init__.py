"""Distillation losses, one module per loss (equations in each module's docstring and in
docs/LOSSES.md)."""

from ._common import LossInputError
from .bilinear import CountSketch, compact_bilinear, l2_normalise, signed_sqrt
from .ce import bce_multilabel, classification_loss, cross_entropy, soft_cross_entropy
from .cosine import cosine_distance
from .em import (
    EM_METHODS,
    class_ground_cost,
    class_prototypes,
    em_batch_sets,
    em_distance,
    floor_renormalise,
    pairwise_euclidean,
    sinkhorn_log,
    zero_one_cost,
)
from .feature_kl import feature_kl
from .kd import kd_loss, kd_multi, kd_to_distribution
from .mmd import gaussian_mmd, mean_pairwise_sq_dist, pairwise_sq_dists
from .pseudo_label import RefinedLabels, refine_labels, teacher_consensus

__all__ = [
    "LossInputError",
    "CountSketch",
    "compact_bilinear",
    "l2_normalise",
    "signed_sqrt",
    "bce_multilabel",
    "classification_loss",
    "cross_entropy",
    "soft_cross_entropy",
    "cosine_distance",
    "EM_METHODS",
    "class_ground_cost",
    "class_prototypes",
    "em_batch_sets",
    "em_distance",
    "floor_renormalise",
    "pairwise_euclidean",
    "sinkhorn_log",
    "zero_one_cost",
    "feature_kl",
    "kd_loss",
    "kd_multi",
    "kd_to_distribution",
    "gaussian_mmd",
    "mean_pairwise_sq_dist",
    "pairwise_sq_dists",
    "RefinedLabels",
    "refine_labels",
    "teacher_consensus",
]
