"""Representational geometry: distances between networks' states (:mod:`.metrics`) and how
well labels separate networks in a distance matrix (:mod:`.separability`)."""

from __future__ import annotations

from .metrics import DEFAULT_K as DEFAULT_K
from .metrics import METRICS as METRICS
from .metrics import Metric as Metric
from .metrics import distance as distance
from .metrics import pairwise_distances as pairwise_distances
from .metrics import svcca_k as svcca_k
from .separability import Separability as Separability
from .separability import chance_level as chance_level
from .separability import mds as mds
from .separability import nearest_neighbor_accuracy as nearest_neighbor_accuracy
from .separability import nearest_neighbor_scores as nearest_neighbor_scores
from .separability import nearest_neighbours as nearest_neighbours
from .separability import nn_permutation_p as nn_permutation_p
from .separability import permutation_test as permutation_test
from .separability import separability as separability
from .separability import silhouette as silhouette
