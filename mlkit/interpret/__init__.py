"""Explaining meta-learners: why a base learner, adapted or not, decided what
it decided.

This is the first version of the module (chapter 2 shows each tool on a small
model; chapter 6 adds representation similarity, gradient attributions and
support influence). Every tool takes a *callable* (``predict``, ``loss_fn``, a
model or ``functools.partial(maml.predict, model, fast_weights)``), never a
training loop: ``interpret`` never trains.

Model-agnostic methods (they only query the model):

* :func:`permutation_importance`: Breiman's (2001) permutation importance, the
  rise in the loss when one input feature (or one image patch, via
  :func:`patch_mask`) is shuffled across the batch, computed with Captum's
  ``FeaturePermutation``.
* :func:`lime_surrogate`: a local interpretable surrogate of one prediction
  (LIME, Ribeiro, Singh & Guestrin 2016), fitted with Captum's ``Lime`` and a
  scikit-learn ridge regression.

Model-specific methods (they look inside):

* :func:`support_attention`: which support examples a query attends to, the
  softmax over similarities of matching networks (Vinyals et al. 2016);
  :func:`class_attention` sums it per class.
* :func:`record_activations`: per-layer activations captured with forward
  hooks, removed on exit.
* :func:`weight_change`: how far adaptation moved each parameter tensor,
  relative to its size.

Chapter 6 (opening the box) adds, each usable on an adapted MAML model given as
fast weights and on a metric learner's scorer:

* representation similarity: :func:`linear_cka` (debiased by default: Song et
  al. 2012's unbiased HSIC; Kornblith et al. 2019's with ``debiased=False``),
  :func:`cka_interval` (pooled over tasks, bootstrap interval) and
  :func:`layer_cka`, layer by layer before and after the inner loop (Raghu et
  al. 2020); :func:`effective_rank`, :func:`dead_units`,
  :func:`class_selectivity` and :func:`top_activating` describe one
  representation;
* scorers to explain: :func:`frozen_statistics` (a batch-statistics BatchNorm
  network with its statistics frozen on a real batch, so that attributions
  explain the classifier and not the interpolation batch),
  :func:`prototype_scorer` (prototypical / nearest-neighbour class scores) and
  :func:`pair_similarity` (a Siamese pair's similarity as a function of one
  image);
* gradient attributions with Captum: :func:`saliency`,
  :func:`integrated_gradients`;
* support-example influence: :func:`loo_influence` (leave-one-out
  re-adaptation) and :func:`gradient_influence` (the query loss's gradient with
  respect to the support images, through the inner loop);
* the inner loop step by step: :func:`fast_weight_trajectory` (losses and step
  size per layer, one task or a task batch), :func:`activation_change` (per
  layer and per unit);
* example-based explanations: :func:`mmd_critic`, prototypes and criticisms of
  a data set or an embedding (Kim, Khanna & Koyejo 2016), with :func:`mmd2`,
  :func:`rbf_kernel` and :func:`median_gamma`.

The package has one module per family: :mod:`.similarity`,
:mod:`.activations`, :mod:`.attribution`, :mod:`.influence`,
:mod:`.surrogates` and :mod:`.examples`; every public name is importable from
``mlkit.interpret`` itself.
"""

from __future__ import annotations

from . import (
    activations,
    attribution,
    examples,
    influence,
    similarity,
    surrogates,
)

# Each module's __all__ is its public names; the package re-exports them all.
from .activations import *  # noqa: F401,F403
from .attribution import *  # noqa: F401,F403
from .examples import *  # noqa: F401,F403
from .influence import *  # noqa: F401,F403
from .similarity import *  # noqa: F401,F403
from .surrogates import *  # noqa: F401,F403

__all__ = [
    *similarity.__all__,
    *activations.__all__,
    *attribution.__all__,
    *influence.__all__,
    *surrogates.__all__,
    *examples.__all__,
]
