"""Write chapters/02_core_concepts.ipynb (unexecuted) from the cells below.

Run from the repository root, then execute it in place:

    .venv/bin/python scripts/ch02_make_notebook.py
    MLKIT_DATA=/work/shared/data .venv/bin/jupyter execute --inplace --timeout=900 \
        chapters/02_core_concepts.ipynb
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nb import Notebook  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "chapters" / "02_core_concepts.ipynb"
nb = Notebook()
md, code = nb.md, nb.code

md(r"""
# 2 Core concepts

This chapter fixes the vocabulary of the book. Section 2.1 says what a meta-learner is and how
the data it learns from is organised: tasks, support and query sets, episodes. Section 2.2
surveys the ways to explain a model, from methods that treat it as a black box to methods
that look inside it, and runs each of them on a small meta-learner trained while you read.
Section 2.3 states the three questions the rest of the book answers.

Everything below runs on a CPU in well under a minute. The code is short because the logic
lives in the book's package `mlkit`: `mlkit.data` draws the tasks, `mlkit.demos` trains the
small model, `mlkit.interpret` computes the explanations and `mlkit.viz` draws them.
""")

code(r"""
import numpy as np
import torch
import matplotlib.pyplot as plt
from torch import nn

from mlkit import data as D, demos, interpret, stats, viz

# Single-threaded reductions, so that the printed numbers are reproducible.
torch.set_num_threads(1)
""")

md(r"""
## 2.1 Meta-learning

### The base learner and the meta-learner

A **base learner** solves one task. Given that task's few labelled examples it produces a
predictor: a network fitted by a few gradient steps, or a nearest-neighbour rule in some
feature space. On its own it knows nothing about any other task, so with five examples it
can do little (chapter 1 shows a network trained from scratch on five points).

A **meta-learner** works one level up. It sees many tasks drawn from a family
$p(\mathcal{T})$ and learns *how to produce a good base learner for a new task of that
family*: the shared knowledge $\phi$ that the base learner starts from. Writing
$A_\phi(S)$ for the predictor the base learner builds from a task's support set $S$ with the
meta-learned knowledge $\phi$, and $Q$ for examples of the same task that it did not see,
meta-learning solves

$$
\min_\phi \; \mathbb{E}_{\mathcal{T} \sim p(\mathcal{T})}
\Big[ \mathcal{L}\big(A_\phi(S_\mathcal{T}),\, Q_\mathcal{T}\big) \Big],
$$

the loss *after* adaptation, averaged over tasks {cite}`hospedales2021meta`. What $\phi$ is
decides the family of methods:

| method | what the meta-learner learns ($\phi$) | what the base learner does with a new task |
|---|---|---|
| MAML {cite}`finn2017maml` (chapter 3) | an initialisation of the network's weights | a few gradient steps on the support set from that initialisation |
| Siamese networks {cite}`koch2015siamese` (chapter 4) | an embedding in which same-class images are close | compares a query with each support image |
| prototypical networks {cite}`snell2017prototypical` | an embedding | averages each class's support embeddings into a prototype; the nearest prototype wins |
| matching networks {cite}`vinyals2016matching` | an embedding | attends over the support set and votes with the attention weights |

### Tasks, support and query sets, episodes

A **task** in few-shot classification is an *N-way K-shot* problem: $N$ classes never seen
in training, $K$ labelled examples of each. Those $N \times K$ examples are the **support
set** $S$; a few more examples of the same classes, whose labels the learner must predict,
are the **query set** $Q$. One support set with its query set is an **episode**.

Meta-training imitates meta-testing {cite}`vinyals2016matching`: the meta-learner is trained
on episodes drawn from *training* classes, the query loss of each episode telling it how
well its base learner did, and evaluated on episodes drawn from classes it never saw. Inside
an episode the labels are renamed $0, \dots, N-1$ in a random order, so "label 0" names a
different character in every episode: nothing can be learned by memorising what a label
means, only how to learn a new one quickly.

Omniglot {cite}`lake2015human` is the standard data set for this: 1,623 handwritten
characters from 50 alphabets, each drawn by 20 people. Lake et al. split it by alphabet into
30 *background* alphabets for training and 20 *evaluation* alphabets for testing, so that
test episodes hold characters from writing systems the learner has never seen.
""")

code(r"""
background = D.omniglot_classes("background")  # 964 characters, 30 alphabets
evaluation = D.omniglot_classes("evaluation")  # 659 characters, 20 other alphabets
print(f"background: {background.n_classes} classes, "
      f"evaluation: {evaluation.n_classes} classes")

sampler = D.EpisodeSampler(background, n_way=5, k_shot=1, q_queries=3, seed=0)
episode = sampler.episode()
print("support:", tuple(episode.support_x.shape), "labels", episode.support_y.tolist())
print("query:  ", tuple(episode.query_x.shape), "labels", episode.query_y.tolist())
""")

md(r"""
The support set holds $5 \times 1$ images of $28 \times 28$ pixels, the query set
$5 \times 3$. The figure draws the same episode from the original $105 \times 105$ scans,
one row per class, labelled with the alphabet each character comes from.
""")

code(r"""
def show_episode(pool, ep, title):
    # The 105 x 105 scans behind the episode's 28 x 28 network inputs, for display.
    support = demos.episode_images_full_size(pool, ep.support_x, ep.support_y,
                                             ep.classes)
    query = demos.episode_images_full_size(pool, ep.query_x, ep.query_y, ep.classes)
    alphabets = [pool.alphabet(c) for c in ep.classes]
    return viz.plot_episode(support, ep.support_y, query, ep.query_y,
                            row_labels=alphabets, title=title)


show_episode(background, episode,
             "A 5-way 1-shot meta-training episode (background alphabets)")
plt.show()
""")

md(r"""
The next training episode from the same sampler reuses the labels 0 to 4 for five other
characters. Label 0 means one thing in the first episode and another in the second:
""")

code(r"""
second = sampler.episode()
for name, ep in (("episode 1", episode), ("episode 2", second)):
    print(name, "label 0 is a character of", background.alphabet(int(ep.classes[0])),
          f"(pool class {int(ep.classes[0])})")
""")

md(r"""
A meta-test episode is drawn in the same way from the evaluation alphabets, which the
learner never sees during training:
""")

code(r"""
test_episode = D.sample_episode(evaluation, n_way=5, k_shot=1, q_queries=3, seed=1)
show_episode(evaluation, test_episode,
             "A 5-way 1-shot meta-test episode (evaluation alphabets)")
plt.show()
""")

md(r"""
### A meta-learner in a few seconds

To have something to explain in section 2.2, we train a small prototypical network
{cite}`snell2017prototypical` on 300 meta-training episodes (5-way 1-shot, 5 queries per
class). Its meta-learned knowledge $\phi$ is a four-layer convolutional embedding $f_\phi$
(32 channels per layer); its base learner, given a support set, computes one prototype per
class, $c_k = \frac{1}{K}\sum_{y_i = k} f_\phi(x_i)$, and scores a query $x$ by
$-\lVert f_\phi(x) - c_k\rVert^2$. The meta-training loss is the cross-entropy of those
scores on the query set. The training code is `mlkit.demos.train_tiny_protonet`; chapter 4
trains the full-size version.
""")

code(r"""
torch.manual_seed(0)
net, history = demos.train_tiny_protonet(300, n_way=5, k_shot=1, q_queries=5,
                                         hidden=32, seed=0)
viz.plot_training_curve(history, ("loss", "accuracy"), x="episode", window=20,
                        title="Meta-training the tiny prototypical network "
                              "(query set of each episode)")
plt.show()
""")

md(r"""
Does the meta-learned embedding help on characters it has never seen? We compare it, on the
same 100 meta-test episodes from the evaluation alphabets, with the same base learner working
on raw pixels and on the embedding of an untrained network with the same architecture. The
numbers are the mean query accuracy with a 95% confidence interval over the episodes.
""")

code(r"""
torch.manual_seed(0)
embeddings = {
    "raw pixels (no meta-learning)": nn.Flatten(),
    "untrained embedding": demos.InductiveConvEmbedding(hidden=32).eval(),
    "meta-trained embedding": net,
}
for name, embedding in embeddings.items():
    accuracies = demos.evaluate_protonet(embedding, 100, n_way=5, k_shot=1, seed=1)
    mean, half = stats.mean_ci95(accuracies)
    print(f"{name:31s} 5-way 1-shot accuracy {100 * mean:5.1f}% ± {100 * half:.1f}")
""")

md(r"""
Three hundred episodes lift the accuracy on unseen alphabets well above both baselines
(chance is 20%). Full-size models trained far longer do much better: the published 5-way
1-shot Omniglot results of MAML and prototypical networks are near 99%
{cite}`finn2017maml,snell2017prototypical`, and chapters 3 and 4 measure our own. This small
model is what we now try to explain.

## 2.2 Interpretability

Explaining a model means answering *why did it output this?* in terms a person can check
{cite}`molnar2022interpretable`. The methods fall into two groups.

* **Model-agnostic** methods only query the model: change the input, watch the output. They
  work for any meta-learner, and for a MAML model before and after adaptation alike.
  Examples: permutation feature importance {cite}`breiman2001random` and local interpretable
  surrogates such as LIME {cite}`ribeiro2016why`.
* **Model-specific** methods look inside: at the weights, the activations, or a mechanism
  the architecture has, such as the attention of a matching network over its support set
  {cite}`vinyals2016matching`. Gradient-based saliency {cite}`simonyan2014deep` and
  integrated gradients {cite}`sundararajan2017axiomatic` also belong here; chapter 6 uses
  them.

We explain the tiny prototypical network on one meta-test episode from the evaluation
alphabets: 5-way 2-shot with 8 queries per class. `PrototypeClassifier` wraps the embedding
and the support set into an ordinary classifier of query images, which is all the
model-agnostic methods need.
""")

code(r"""
ep = D.sample_episode(evaluation, n_way=5, k_shot=2, q_queries=8, seed=3)
clf = demos.PrototypeClassifier(net, ep.support_x, ep.support_y)
with torch.no_grad():
    logits = clf(ep.query_x)
pred = logits.argmax(1)
print("alphabets:", [evaluation.alphabet(c) for c in ep.classes])
accuracy = (pred == ep.query_y).float().mean().item()
print(f"query accuracy on this episode: {accuracy:.3f} ({len(ep.query_y)} queries)")
""")

md(r"""
### Model-agnostic: permutation feature importance

Breiman's permutation importance {cite}`breiman2001random` asks how much worse the model gets
when one input feature is made useless: shuffle that feature's values across the examples,
which keeps their distribution but breaks their link to the labels, and measure the rise of
the loss,

$$
I_j = \mathcal{L}\big(f(x^{\pi_j}), y\big) - \mathcal{L}\big(f(x), y\big).
$$

A feature the model ignores has $I_j = 0$. For images a single pixel is too small a feature,
so we shuffle $4 \times 4$ patches: patch $j$ of every query is swapped with patch $j$ of
another query (`interpret.patch_mask` numbers the 49 patches of a $28 \times 28$ image). The
loss is the cross-entropy of the query predictions; the shuffling is repeated five times.
""")

code(r"""
patches = interpret.patch_mask((28, 28), 4)  # 7 x 7 patches of 4 x 4 pixels
importance = interpret.permutation_importance(clf, ep.query_x, ep.query_y,
                                              feature_mask=patches, n_repeats=5, seed=0)
print(f"query loss, intact: {importance.baseline_loss:.3f}")
top = importance.importances_mean.argsort(descending=True)[:3]
for j in top.tolist():
    print(f"patch {j:2d} (row {j // 7}, column {j % 7}): loss rises by "
          f"{importance.importances_mean[j]:.3f} ± {importance.importances_std[j]:.3f}")
unused = int((importance.importances == 0).all(0).sum())
print(f"patches whose shuffling changes nothing: {unused} of {patches.max().item() + 1}")
viz.plot_image_maps(ep.query_x.mean(0), importance.importances_mean[patches][None],
                    titles=["mean query image"], map_label="loss increase",
                    symmetric=False, suptitle="Permutation importance per 4x4 patch")
plt.show()
""")

md(r"""
The important patches lie where the queries' strokes are; the border patches, blank in
every image, change nothing when shuffled. Permutation importance is a *global* explanation:
it says what the model relies on across these queries, not why it classified one of them as
it did.

### Model-agnostic: a local surrogate (LIME)

LIME {cite}`ribeiro2016why` explains one prediction. It switches groups of input features
off at random (here: $7 \times 7$ patches replaced by blank paper), records the model's score
for the class of interest on each perturbed input, and fits a linear model to those scores,
weighting each sample by its closeness to the original:

$$
g = \arg\min_{g \text{ linear}} \sum_{z} \pi_x(z)\, \big(f(h_x(z)) - g(z)\big)^2
+ \alpha \lVert w \rVert^2 ,
$$

where $z \in \{0, 1\}^{16}$ says which patches are kept and $h_x(z)$ is the image with the
others blanked. A positive coefficient means that keeping the patch raises the score. We fit
one surrogate for the predicted class of the first query and one for another class
(`interpret.lime_surrogate`, which uses Captum's `Lime` with a scikit-learn ridge
regression).
""")

code(r"""
x0 = ep.query_x[:1]
predicted = int(pred[0])
other = (predicted + 1) % ep.n_way
coarse = interpret.patch_mask((28, 28), 7)  # 4 x 4 patches of 7 x 7 pixels
surrogates = {k: interpret.lime_surrogate(clf, x0, target=k, feature_mask=coarse,
                                          n_samples=400, seed=0)
              for k in (predicted, other)}
print(f"true label {int(ep.query_y[0])}, predicted {predicted}")
for k, s in surrogates.items():
    best = int(s.coefficients.argmax())
    print(f"class {k}: intercept {s.intercept:8.2f}; most supportive patch {best:2d} "
          f"(coefficient {s.coefficients[best]:.2f}); fidelity R² {s.fidelity:.2f}")
viz.plot_image_maps(torch.cat([x0, x0]),
                    torch.stack([s.attribution for s in surrogates.values()]),
                    titles=[f"score of class {k}" for k in surrogates],
                    map_label="LIME coefficient",
                    suptitle="LIME: which patches raise each class's score")
plt.show()
""")

md(r"""
For the predicted class the patches that hold the character's distinctive strokes carry the
largest positive coefficients: the model's score for that class rests on them. The second
surrogate shows how much less the same strokes do for a class the model did not choose. The
printed *fidelity* is the surrogate's $R^2$ against the model on fresh random patch
coalitions: the share of the model's behaviour around this input that the linear story
captures {cite}`ribeiro2016why`. Where it is low, the coefficients are not the model's reasons
and should not be read as such.

### Model-specific: attention over the support set

A metric-based meta-learner decides by comparing the query with the support set, so the
natural explanation is *which support examples did it compare the query with?* Matching
networks {cite}`vinyals2016matching` make this explicit: a query $\hat x$ attends to the
support examples with weights

$$
a(\hat x, x_i) = \frac{\exp\big(c(f(\hat x), f(x_i)) / T\big)}
{\sum_{j} \exp\big(c(f(\hat x), f(x_j)) / T\big)},
$$

where $c$ is a similarity (the cosine in matching networks; here the negative squared
Euclidean distance of our prototypical embedding) and each row sums to 1. Summing a row over
each class's support examples (`interpret.class_attention`) gives a matching network's class
probabilities. We show two queries per class against the ten support images.
""")

code(r"""
with torch.no_grad():
    z_query, z_support = net(ep.query_x), net(ep.support_x)
rows = torch.arange(0, len(ep.query_y), 4)  # two queries per class
attention = interpret.support_attention(z_query[rows], z_support, metric="euclidean")
by_class = interpret.class_attention(attention, ep.support_y)
print("rows sum to", attention.sum(1).numpy().round(6).tolist())
print("class with the most attention == prototype prediction:",
      bool((by_class.argmax(1) == pred[rows]).all()))
viz.plot_support_attention(attention, ep.support_x, ep.query_x[rows],
                           support_labels=ep.support_y, query_labels=ep.query_y[rows],
                           title="Which support examples each query attends to")
plt.show()
""")

md(r"""
Each query shown puts most of its attention on the two drawings of its own class, often more
on one of them than on the other; a row spread over two classes would show, with the images
on the edges, which characters the model confuses. In this episode the class that receives the most attention is also
the prototype network's prediction (the check above compares them); that need not always
hold, because attention averages over single support examples and the prototype averages
their embeddings first.

### Model-specific: neuron activations

Finally we look at what the layers compute. `interpret.record_activations` registers a
forward hook on each named layer, keeps its output, and removes the hooks when the `with`
block ends. The figure shows the first eight channels ("units") of the first three blocks for
one query; the printout gives each layer's shape and the share of its units that are active
(positive after the ReLU).
""")

code(r"""
layers = ["body.0", "body.1", "body.2", "body.3"]
with interpret.record_activations(net, layers) as acts:
    with torch.no_grad():
        embedding = net(x0)
for name in layers:
    a = acts[name]
    active = (a > 0).float().mean().item()
    print(f"{name}: shape {tuple(a.shape)}, active units {active:.2f}")
print("the 32-dimensional embedding is body.3 flattened:",
      torch.equal(acts["body.3"].flatten(1), embedding))
viz.plot_activation_maps(x0, {n: acts[n][0] for n in layers[:3]}, channels=8,
                         title="Activations of the first eight units of three layers")
plt.show()
""")

md(r"""
The first layer's units respond to strokes at particular places and orientations and keep
the character's shape; deeper layers see coarser grids and respond to larger parts. Which of
these units a *new task* changes, and how much, is the question chapter 6 asks of MAML by
recording the same activations before and after adaptation.

## 2.3 The three questions

The tools above answer small questions about one model. This book uses them to answer three
larger ones about meta-learners:

1. **What general strategy does the meta-learner learn?** Is MAML's initialisation a set of
   reusable features that adaptation barely touches, or a point from which the whole network
   changes quickly? {cite}`raghu2020rapid` argue for feature reuse; {doc}`06_opening_the_box`
   measures it on our own checkpoint with representation similarity
   {cite}`kornblith2019similarity`, and {doc}`04_siamese` shows what a metric learner's
   embedding encodes.
2. **How does it apply that strategy to a new task?** {doc}`03_maml` runs the inner loop step
   by step, {doc}`05_mathematics` derives what one gradient step from a meta-learned
   initialisation does, and {doc}`06_opening_the_box` follows the activations and the fast
   weights through adaptation and the attention of metric learners over their support sets.
3. **Which factors drive its decisions?** {doc}`06_opening_the_box` compares attributions
   before and after adaptation, measures how much each support example moves a prediction,
   and applies the permutation importance and local surrogates of section 2.2 to the full-size
   models.

## Exercises

```{exercise} Labels mean nothing across episodes
:label: ex-ch2-1

Draw 1,000 episodes (5-way 1-shot) from the background pool with one `EpisodeSampler`. How
often is the character behind label 0 the same in two consecutive episodes? What would a
network that simply memorised "label 0 looks like this" score on the query sets?
```

```{solution} ex-ch2-1
:class: dropdown

Two consecutive episodes almost never share the character behind label 0 (there are 964
classes), so a memorising network could only guess: 20% on 5-way queries. The learner must
use the support set.
The numbers come from the hidden solution cell below.
```
""")

code(r"""
s = D.EpisodeSampler(background, n_way=5, k_shot=1, q_queries=1, seed=42)
firsts = [int(s.episode().classes[0]) for _ in range(1000)]
same = sum(a == b for a, b in zip(firsts, firsts[1:]))
print(f"label 0 repeats its character in {same} of 999 consecutive pairs")
""", tags=["solution", "hide-cell"])

md(r"""
```{exercise} Patch size
:label: ex-ch2-2

Recompute the permutation importance of section 2.2 with $2 \times 2$ and $7 \times 7$
patches. Which map is easier to read, and why do very small patches give small importances
even where the strokes are?
```

```{solution} ex-ch2-2
:class: dropdown

Call `interpret.permutation_importance(clf, ep.query_x, ep.query_y,
feature_mask=interpret.patch_mask((28, 28), p))` for `p = 2` and `p = 7`. A $2 \times 2$
patch holds little of a stroke, and the network's later layers pool over neighbouring
pixels, so shuffling one small patch rarely changes the embedding much: the importances are
small and noisy. Large patches give larger, steadier numbers at the price of a coarser map.
Features that are correlated (neighbouring pixels) share their importance, which is a known
limitation of permutation importance {cite}`molnar2022interpretable`.
```

```{exercise} Temperature of the attention
:label: ex-ch2-3

Recompute the support attention with `temperature` 0.1, 10 and 100, and with
`metric="cosine"` as in matching networks. Which rows change? Can the class that receives the
most attention change with the temperature?
```

```{solution} ex-ch2-3
:class: dropdown

A low temperature makes every row nearly one-hot on the nearest support example; a high one
spreads it towards uniform (with squared Euclidean distances, $T = 100$ gives almost 0.1 to
each of the ten support examples). The single most-attended *example* never changes, because
the softmax is monotone, but the most-attended *class* can in principle: a class with two
moderately close examples can overtake a class with one close example as the temperature
rises (in this episode it does not happen for these temperatures). Cosine similarities lie in
$[-1, 1]$, so with $T = 1$ or even $T = 0.1$ the cosine attention is almost uniform; matching
networks learn their embedding for that scale, our network was not trained for it, and a
temperature near 0.01 is needed to see structure.
```

```{exercise} Agnostic or specific?
:label: ex-ch2-4

For each of the four methods of section 2.2, say what access to the model it needs. Which of
them could you apply, unchanged, to a MAML model after adaptation, given only a function
that maps images to logits?
```

```{solution} ex-ch2-4
:class: dropdown

Permutation importance and LIME need only that function (they are model-agnostic), so they
apply unchanged, e.g. to `functools.partial(mlkit.maml.predict, model, fast_weights)`.
Support attention needs an embedding and a similarity, which a MAML classifier does not
have in that form (its "comparison" with the support set happened in the inner loop), and
activation recording needs the network's modules: both are model-specific. Chapter 6 records
activations of the adapted MAML model through the same hooks, because `predict` runs the
network's own modules with the fast weights.
```
""")


if __name__ == "__main__":
    nb.write(OUT)
