"""Write chapters/06_opening_the_box.ipynb (unexecuted) from the cells below.

Run from the repository root, then execute it in place:

    .venv/bin/python scripts/ch06_make_notebook.py
    MLKIT_DATA=/work/shared/data .venv/bin/jupyter execute --inplace --timeout=900 \
        chapters/06_opening_the_box.ipynb
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nb import Notebook  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "chapters" / "06_opening_the_box.ipynb"
nb = Notebook()
md, code = nb.md, nb.code


md(r"""
# 6 Opening the box: explaining meta-learners

Chapters 3 and 4 trained meta-learners and measured how well they do. This chapter asks
*why*. Chapter 2 stated the three questions the book is built around, and each section
below answers one of them with experiments on the book's checkpoints:

1. **What general strategy was learned?** Representation similarity before and after
   adaptation, and what happens when the body of the network is frozen at test time; what
   a metric learner's embedding encodes.
2. **How is it applied to a new task?** The inner loop followed step by step: losses, the
   size of each step per layer, and the activations of every layer and unit; the attention
   of metric learners over their support sets.
3. **Which factors drive a decision?** Attributions before and after adaptation, the
   influence of each support example, a local surrogate, permutation importance, and the
   sensitivity to the inner rate $\alpha$, the number of steps and the margin $m$.

A debugging case study closes the chapter: two deliberately broken settings, diagnosed with
these tools, fixed, and the fix measured. These are the uses the source names for
explanations: debugging, improvement and trust (its section 1.2), with model-agnostic and
model-specific methods (its section 2.2).

Every number printed below is computed when the chapter runs, from whatever checkpoint is
in the repository; the prose says what to look for, not what the numbers are. The chapter
runs on a CPU in about a minute and a half; it trains nothing heavy (`TRAIN = False`).
""")

code(r"""
TRAIN = False  # True retrains the book's checkpoints with the package's recipes (hours on a CPU)

import functools
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.stats import spearmanr

from mlkit import data as D, interpret as I, maml, nets, protonet, siamese, viz
from mlkit.checkpoints import describe_training, manifest
from mlkit.stats import mean_ci95
from mlkit.widgets import Slider, explorer

torch.set_num_threads(1)  # single-threaded reductions: the printed numbers are reproducible
torch.manual_seed(0)
if TRAIN:
    for name in ("maml-omniglot-5w1s", "siamese-omniglot", "protonet-omniglot"):
        subprocess.run([sys.executable, "-m", "mlkit", "train", name, "--resume"], check=True)
""")

md(r"""
## The models

The MAML model is chapter 3's Omniglot 5-way 1-shot checkpoint: Finn et al.'s four-block
convolutional network {cite}`finn2017maml`, meta-trained on Finn's random split of the
characters (with rotations as new classes) and tested here on the held-out characters. Its
BatchNorm layers normalise each batch with that batch's own statistics, as Finn's code did;
this will matter for the attributions of section 6.3. The metric learners are chapter 4's
Siamese network {cite}`koch2015siamese` and prototypical network
{cite}`snell2017prototypical`, trained on Lake's background alphabets and tested on the
evaluation alphabets.
""")

code(r"""
model, config, entry = maml.load_model("maml-omniglot-5w1s")
model.eval()  # no effect on Finn's BatchNorm (always batch statistics); stated for clarity
print(f"MAML checkpoint: {entry['iterations']:,} meta-iterations of the recipe's "
      f"{config.iterations:,}, trained\n{describe_training(entry)}")
print(f"inner loop: alpha = {config.alpha} on the summed cross-entropy, "
      f"{config.inner_steps} step in training, {config.test_inner_steps} at test")

learned = manifest()
metric_nets = {}
if "siamese-omniglot" in learned:
    net, e = siamese.load_siamese()
    metric_nets["Siamese"] = (net.embedding, e)
if "protonet-omniglot" in learned:
    emb, e = protonet.load_protonet()
    metric_nets["prototypical"] = (emb, e)

# A small Siamese embedding trained here in seconds (used by the case study, and in place of
# the checkpoints when a fresh clone does not have them yet).
# Embeddings of free length, every negative averaged (chapter 4's first recipe): the collapse
# of the case study below is what the unit sphere of the book's recipe rules out.
SMALL = {"eval_every": 0, "hidden": 16, "n_pairs": 64, "augment": False, "rotations": False,
         "form": "source", "lr": 3e-3, "normalize": False, "negatives": "all"}
SMALL_ITERATIONS = 80


@functools.lru_cache(maxsize=None)
def small_siamese(margin):
    net, history = siamese.train_siamese(SMALL_ITERATIONS, config={**SMALL, "margin": margin},
                                         seed=0, progress=False)
    return net.eval(), history


if not metric_nets:
    metric_nets["small Siamese (trained here)"] = (small_siamese(1.0)[0].embedding,
                                                   {"iterations": SMALL_ITERATIONS})
for name, (emb, e) in metric_nets.items():
    print(f"{name}: {e['iterations']:,} training iterations")
""")

code(r"""
test_pool = D.omniglot_classes("finn-test")        # MAML's held-out characters (4 rotations)
evaluation = D.omniglot_classes("evaluation")      # the metric learners' test alphabets
inner_loss = maml.summed_cross_entropy(config.k_shot)
alpha, steps = config.alpha, config.test_inner_steps
head = nets.head_parameter_names(model)

N_TASKS, MAX_STEPS = 40, 6
tasks = D.EpisodeSampler(test_pool, n_way=5, k_shot=1, q_queries=3, seed=0).batch(N_TASKS)


def trajectory(alpha, adapt_names=None, k_shot=1, batch=tasks):
    # all N_TASKS tasks at once, one inner step at a time (mlkit.interpret records it)
    return I.fast_weight_trajectory(
        model, batch.support_x, batch.support_y, loss_fn=maml.summed_cross_entropy(k_shot),
        inner_steps=MAX_STEPS, alpha=alpha, query_x=batch.query_x, query_y=batch.query_y,
        query_loss_fn=maml.cross_entropy, adapt_names=adapt_names, batched=True)


full = trajectory(alpha)
print(f"{N_TASKS} test tasks, 5-way 1-shot, 15 queries each; query accuracy after "
      f"{steps} steps: {100 * full.query_accuracy[steps]:.1f}%")
""")

md(r"""
## 6.1 What general strategy was learned?

### Feature reuse: CKA layer by layer

Raghu et al. {cite}`raghu2020rapid` asked whether MAML's inner loop *learns new features*
for each task (rapid learning) or *reuses* the features the initialisation already computes
(feature reuse). Their instrument compares the representations a layer produces for the
same images before and after the inner loop. With $X$ and $Y$ the two representations of
$n$ images (one row per image, a convolutional layer's whole feature map flattened into one
vector), each centred column-wise, linear centred kernel alignment
{cite}`kornblith2019similarity` is

$$
\mathrm{CKA}(X, Y) = \frac{\lVert Y^\top X \rVert_F^2}{\lVert X^\top X \rVert_F\,\lVert Y^\top Y \rVert_F}.
$$

It is 1 when $Y$ is a rotated and rescaled copy of $X$ and falls towards 0 as the two
representations stop sharing structure; being invariant to rotations and isotropic scaling
it ignores changes that no linear read-out could notice. Raghu et al. found CKA above 0.9 for
every convolutional layer and below 0.5 for the head: the body is reused, only the head
learns. We repeat the measurement on the query images of test tasks, after the test-time
number of inner steps.
""")

code(r"""
N_CKA = 20
layers = I.default_layers(model)
cka = {lay: [] for lay in layers}
for t in range(N_CKA):
    after = I.task_params(full.params[steps], t)
    for lay, v in I.layer_cka(model, None, after, tasks.query_x[t]).items():
        cka[lay].append(v)

print(f"linear CKA before vs after {steps} inner steps, {N_CKA} test tasks (mean, 95% CI)")
for lay in layers:
    m, h = mean_ci95(cka[lay])
    claim = "< 0.5" if lay == "head" else "> 0.9"
    holds = (m < 0.5) if lay == "head" else (m > 0.9)
    print(f"  {lay:7s} {m:.3f} ± {h:.3f}   Raghu et al.: {claim}  -> {'agrees' if holds else 'differs'}")
viz.plot_cka_layers({"MAML, full inner loop": cka},
                    references={"0.9": 0.9, "0.5": 0.5},
                    title="How much each layer's representation changes in the inner loop")
plt.show()
""")

md(r"""
The CKA falls layer by layer: the first block hardly moves, the deeper blocks move a
little more and the head most. Whether each number clears Raghu et al.'s thresholds is
printed beside it. Where it does not, remember that their MAML ran to convergence; a
checkpoint that is still early in meta-training (the iteration count is printed at the top)
has a body that is less finished, and its inner loop may still have to repair more of it.
The size of the inner step matters as well: the step is $\alpha$ times a gradient whose
scale is set by the summed loss (Finn's $\alpha = 0.4$), so a body layer with large
gradients can move noticeably in a single step.

### Freezing the body at test time (ANIL)

If the body is reused, it need not be adapted at all. Raghu et al. turned this into ANIL
(almost no inner loop): adapt only the head. Here we take the MAML-trained model *as it is*
and restrict its test-time inner loop to the head, with the same $\alpha$; nothing is
retrained.
""")

code(r"""
head_only = trajectory(alpha, adapt_names=head)
acc = {"MAML (all layers adapted)": full, "ANIL at test time (head only)": head_only}
x = np.arange(MAX_STEPS + 1)
for name, tr in acc.items():
    m, h = mean_ci95(100 * tr.task_accuracy[steps].numpy())
    print(f"{name:32s} after {steps} steps: {m:.1f} ± {h:.1f}%")
m0, h0 = mean_ci95(100 * full.task_accuracy[0].numpy())
print(f"{'no adaptation':32s} {m0:.1f} ± {h0:.1f}% (chance 20%)")
diff = 100 * (full.task_accuracy[steps] - head_only.task_accuracy[steps]).numpy()
md_, hd = mean_ci95(diff)
print(f"paired difference (all layers - head only): {md_:+.1f} ± {hd:.1f} points; "
      f"freezing the body {'costs nothing measurable' if abs(md_) <= hd else 'costs accuracy'} "
      f"here at alpha = {alpha}")
viz.plot_accuracy_curves({k: (x, 100 * torch.stack(v.task_accuracy, 1)) for k, v in acc.items()},
                         chance=20, title="Adapting everything vs adapting the head only")
plt.show()
""")

md(r"""
The paired difference, with its 95% interval over the same tasks, says how much the body's
adaptation contributes. An interval that contains 0 is Raghu et al.'s result: the body's
share of the inner loop can be dropped at test time. The curves over the number of steps
show more than the single number: the head-only loop uses the step size that was tuned for
adapting *all* layers, and the head alone may need a different one (exercise 6.3).

### What a metric learner's embedding encodes

A Siamese or prototypical network has no inner loop; everything it learned is in its
embedding. Three measurements describe it. Per unit, the *correlation ratio*
$\eta^2 = \mathrm{Var}_\text{between classes} / \mathrm{Var}_\text{total}$ says how much of
the unit's variation the character explains (1: the unit encodes which character, 0: it
encodes the particular drawing). The top-activating images show what a unit responds to
{cite}`zeiler2014visualizing`. And CKA between different learners' embeddings of the same
images says whether they learned the same representation.
""")

code(r"""
sub = siamese.eval_subset(stride=6)          # every 6th evaluation character, 20 drawings each
images = torch.from_numpy(sub.images.reshape(-1, 1, 28, 28).astype(np.float32))
chars = torch.arange(len(sub)).repeat_interleave(20)
alphabet_names = sorted({sub.alphabet(c) for c in range(len(sub))})
alphabets = torch.tensor([alphabet_names.index(sub.alphabet(c))
                          for c in range(len(sub))]).repeat_interleave(20)

reps = {name: siamese.embed_images(emb, images) for name, (emb, _) in metric_nets.items()}
with torch.no_grad():
    reps["MAML body (not adapted)"] = model.features(images)
reps["pixels"] = images.reshape(len(images), -1)

print(f"{len(sub)} evaluation characters x 20 drawings; mean per-unit eta^2 (share of variance "
      "explained)")
for name, z in reps.items():
    by_char = float(I.class_selectivity(z, chars).mean())
    by_alpha = float(I.class_selectivity(z, alphabets).mean())
    print(f"  {name:28s} by character {by_char:.2f}   by alphabet {by_alpha:.2f}   "
          f"effective rank {I.effective_rank(z):5.1f} of {z.shape[1]}")
names = list(reps)
short = {n: n.split(" ")[0] + (" body" if n.startswith("MAML") else "") for n in names}
print("\nlinear CKA between representations of the same images")
print(" " * 30 + "".join(f"{short[n]:>14s}" for n in names))
for a in names:
    print(f"  {a:28s}" + "".join(f"{I.linear_cka(reps[a], reps[b]):14.2f}" for b in names))
""")

code(r"""
main_name, (main_embed, _) = next(iter(metric_nets.items()))
z = reps[main_name]
eta = I.class_selectivity(z, chars)
units = eta.argsort(descending=True)[:5].tolist()
top = I.top_activating(z, k=8)
rows = [[images[i] for i in top[u]] for u in units]
viz.plot_image_rows(rows, row_labels=[f"unit {u}\neta²={float(eta[u]):.2f}" for u in units],
                    title=f"{main_name}: the 8 drawings that excite each of its 5 most "
                          "character-selective units most")
plt.show()
""")

md(r"""
Each row is one embedding unit: the drawings that excite it most. A unit with a high
$\eta^2$ tends to collect several drawings of the *same* character, a unit with a low one
responds to a stroke pattern shared across characters. The table above puts numbers on it:
a learned embedding should be far more character-selective than the pixels are, and its
effective rank (the exponential of the entropy of its singular values
{cite}`roy2007effective`) says how many directions it really uses.

Which parts of two drawings make the Siamese network call them the same? The pair's
similarity $s(x_1, x_2) = -d(f(x_1), f(x_2))$ is a function of each image with the other
held fixed, so Integrated Gradients {cite}`sundararajan2017axiomatic` can attribute it to
the pixels of $x_1$, then of $x_2$ (beside it, the plain gradient, saliency
{cite}`simonyan2014deep`). The metric learners use BatchNorm with running
statistics, so an image's embedding depends on that image alone and the attribution is
well defined.
""")

code(r"""
g = np.random.default_rng(3)
c1, c2 = g.choice(len(sub), 2, replace=False)
a1, a2, b1 = (torch.from_numpy(sub.drawings(c, [i]).astype(np.float32))[:, None]
              for c, i in ((c1, 0), (c1, 1), (c2, 0)))
pairs = {"same character": (a1, a2), "different characters": (a1, b1)}
rows_img, sal_maps, maps, labels = [], [], [], []
for kind, (u, v) in pairs.items():
    for who, (x, other) in (("first", (u, v)), ("second", (v, u))):
        similarity = I.pair_similarity(main_embed, other)
        ig = I.integrated_gradients(similarity, x, n_steps=32)
        sal_maps.append(I.saliency(similarity, x, absolute=False).attribution[0, 0])
        rows_img.append(x[0])
        maps.append(ig.attribution[0, 0])
        labels.append(f"{kind}\n{who} image")
    print(f"{kind}: distance {-float(ig.output):.3f}; IG completeness error "
          f"{float(ig.delta.abs()):.1e} of {float((ig.output - ig.baseline_output).abs()):.2f}")
viz.plot_attribution_grid(torch.stack(rows_img), {"saliency (signed gradient)": torch.stack(sal_maps),
                                                   "Integrated Gradients": torch.stack(maps)},
                          row_labels=labels,
                          title=f"{main_name}: which pixels make the pair similar (red) or not (blue)")
plt.show()
""")

md(r"""
## 6.2 How is the strategy applied to a new task?

### The fast weights' trajectory

The inner loop is a short optimisation: $\theta_{t+1} = \theta_t - \alpha \nabla_\theta
\mathcal{L}_S(\theta_t)$. Recording it step by step shows how fast the support loss falls,
whether the query loss follows, and which layers the steps move. The slider below moves
through the inner steps of one test task; the faint lines are the steps still to come.
""")

code(r"""
one = D.sample_episode(test_pool, 5, 1, 3, seed=11)
path = I.fast_weight_trajectory(model, one.support_x, one.support_y, loss_fn=inner_loss,
                                inner_steps=10, alpha=alpha, query_x=one.query_x,
                                query_y=one.query_y, query_loss_fn=maml.cross_entropy)


def draw(inner_steps):
    acc_t = 100 * path.query_accuracy[inner_steps]
    return viz.plot_trajectory(path.support_loss, path.query_loss, path.step_size,
                               upto=inner_steps,
                               title=f"after {inner_steps} inner steps: query accuracy {acc_t:.0f}%")


explorer(draw, [Slider("inner_steps", values=list(range(11)), value=steps, label="inner steps")],
         title="The inner loop of one test task, step by step")
""", tags=["nbval-ignore-output"])

code(r"""
print(f"size of the first three steps per layer (RMS over {N_TASKS} tasks), and the share of "
      "the whole first step")
total1 = sum(v[0] ** 2 for v in full.step_size.values()) ** 0.5
for lay, v in full.step_size.items():
    size = sum(float(p.detach().pow(2).sum()) for n, p in model.named_parameters()
               if I.layer_of(n) == lay) ** 0.5
    print(f"  {lay:7s} steps {v[0]:.3f} {v[1]:.3f} {v[2]:.3f}   relative to the layer's norm "
          f"{v[0] / size:.3f}   share of step 1 {100 * (v[0] / total1) ** 2:4.1f}%")
print("support loss by step:", " ".join(f"{v:.3f}" for v in full.support_loss))
print("query loss by step:  ", " ".join(f"{v:.3f}" for v in full.query_loss))
""")

md(r"""
The first step does most of the work: the support loss drops by the largest amount there,
and later steps are much smaller. The printed shares say which layers that first step
moves, in absolute and in relative terms; the last column is the share of the squared
length of the whole step. Section 6.1's CKA measures the consequence in representation
space.

### Activation change per layer and per unit

Weight changes matter only through what they do to the activations. For the same query
images, we record every layer's output at every inner step with forward hooks and measure
$\lVert a_t - a_0 \rVert / \lVert a_0 \rVert$ per layer, and, after the last step, the mean
absolute change of each unit (channel) relative to the layer's mean activation.
""")

code(r"""
change = I.activation_change(model, path.params, one.query_x)
for lay in change.per_step:
    u = change.per_unit[lay].sort(descending=True).values
    half = int((u.cumsum(0) < 0.5 * u.sum()).sum()) + 1
    print(f"  {lay:7s} relative change after 1 / 10 steps: {change.per_step[lay][1]:.3f} / "
          f"{change.per_step[lay][10]:.3f};  half of the unit-level change sits in "
          f"{half} of {len(u)} units")
viz.plot_activation_change(change.per_step, change.per_unit,
                           title="How the activations of one task's queries move in the inner loop")
plt.show()
""")

md(r"""
The per-layer curves compound: a small change in an early layer is passed on and added to
by every later one, so the relative change tends to grow with depth even when the weights
of the deep layers move little. The per-unit curves show whether the change is spread over the
layer or concentrated in a few units; the printed count is the number of units that carry
half of it.

### Support attention in the metric learners

A metric learner applies what it learned without changing any weight: it compares. The
attention of matching networks {cite}`vinyals2016matching`,
$a(q, s_i) = \mathrm{softmax}_i(-\lVert f(q) - f(s_i) \rVert^2)$, makes the comparison
visible: each query row says which support images it looks to. The prototypical network
was trained through exactly this softmax, so its distances have the scale the softmax
needs; the Siamese network was trained with a margin on distances, and if its distances
are small (below 1) the softmax over their squares is nearly flat even when the nearest
support image is the right one. The printed numbers separate the two: the attention mass
on the true class depends on the scale, the share of queries whose largest attention is on
the true class does not.
""")

code(r"""
ep = D.sample_episode(evaluation, 5, 1, 2, seed=5)
for name, (emb, _) in metric_nets.items():
    att = I.support_attention(siamese.embed_images(emb, ep.query_x),
                              siamese.embed_images(emb, ep.support_x))
    on_true = att[torch.arange(len(ep.query_y)), ep.query_y]
    correct = (att.argmax(1) == ep.query_y).float().mean()
    print(f"{name}: mean attention on the true class's support image {float(on_true.mean()):.2f}; "
          f"largest attention on the right class for {100 * float(correct):.0f}% of the queries")
    viz.plot_support_attention(att, ep.support_x, ep.query_x, support_labels=ep.support_y,
                               query_labels=ep.query_y,
                               title=f"{name}: attention of each query over the support set")
    plt.show()

for name, (emb, _) in metric_nets.items():
    zz = siamese.embed_pool(emb, sub)
    accs = siamese.few_shot_accuracy(zz, 5, 1, 200, q_queries=5, method="nearest", seed=0)
    m, h = mean_ci95(accs)
    print(f"{name}: 5-way 1-shot accuracy by the nearest support embedding, 200 tasks on "
          f"{len(sub)} evaluation characters: {m:.1f} ± {h:.1f}%")
""")

md(r"""
## 6.3 Which factors drive a decision?

### Attributions before and after adaptation

Saliency {cite}`simonyan2014deep` is the gradient of a query's logit with respect to its
pixels; Integrated Gradients {cite}`sundararajan2017axiomatic` integrates that gradient
along the straight path from a baseline $x'$ (a blank page) to the image,

$$
\mathrm{IG}_i(x) = (x_i - x'_i)\int_0^1 \frac{\partial f(x' + t(x - x'))}{\partial x_i}\,dt,
$$

and its attributions add up to $f(x) - f(x')$ (completeness). Both are computed with Captum
for the logit of the query's true class, once with the meta-learned initialisation and once
with the fast weights.

**A caveat specific to MAML.** Finn's network normalises each batch with its own statistics.
Integrated Gradients evaluates the network on a batch of interpolated copies of one image,
whose statistics are nothing like a real batch's, so the function being explained would not
be the classifier. We therefore *freeze* the statistics: they are computed once, on the
task's real query batch, and every attribution call normalises with those fixed values
(`interpret.frozen_statistics`). On the real batch the frozen network gives exactly the
model's outputs; unlike the live network it treats each image independently. The
completeness errors below show why this matters.
""")

code(r"""
ep1 = D.sample_episode(test_pool, 5, 1, 3, seed=21)
fast = maml.adapt(model, ep1.support_x, ep1.support_y, loss_fn=inner_loss, inner_steps=steps,
                  alpha=alpha)
fast = {k: v.detach() for k, v in fast.items()}
before = I.frozen_statistics(model, None, ep1.query_x)
after = I.frozen_statistics(model, fast, ep1.query_x)
print("frozen statistics reproduce the model on the real batch: max |difference| "
      f"{float((after(ep1.query_x) - maml.predict(model, fast, ep1.query_x)).abs().max()):.1e}")

show = torch.arange(0, 15, 3)  # one query per class
qx, qy = ep1.query_x[show], ep1.query_y[show]
maps, gaps = {}, {}
for when, f in (("before", before), ("after", after)):
    maps[f"saliency {when}"] = I.saliency(f, qx, target=qy).attribution
    ig = I.integrated_gradients(f, qx, target=qy, n_steps=64)
    maps[f"IG {when}"] = ig.attribution
    gaps[when] = ig
live = I.integrated_gradients(functools.partial(maml.predict, model, fast), qx, target=qy,
                              n_steps=64)
gap = (gaps["after"].output - gaps["after"].baseline_output).abs()
print(f"logit gaps f(x) - f(x') of the 5 queries after adaptation: {float(gap.min()):.2f} to "
      f"{float(gap.max()):.2f}")
for name, ig in (("frozen statistics", gaps["after"]), ("live batch statistics", live)):
    print(f"IG after adaptation, {name:22s}: completeness error |sum IG - gap| up to "
          f"{float(ig.delta.abs().max()):.3f} (mean {float(ig.delta.abs().mean()):.3f})")
corr = [float(np.corrcoef(maps["IG before"][i].ravel(), maps["IG after"][i].ravel())[0, 1])
        for i in range(len(qx))]
print("correlation of the IG maps before vs after adaptation, per query:",
      " ".join(f"{c:.2f}" for c in corr))
pred_after = after(qx).argmax(1)
viz.plot_attribution_grid(qx, {k: maps[k] for k in ("saliency before", "saliency after",
                                                   "IG before", "IG after")},
                          row_labels=[f"label {int(y)}\npred. {int(p)}" for y, p in zip(qy, pred_after)],
                          title="What raises the true class's logit, before and after the inner loop")
plt.show()
""")

md(r"""
Before adaptation the head has never seen these classes, so the "true class" logit is
arbitrary and its attribution shows what the *initialisation's* features respond to; after
adaptation the same features are read by a head fitted to this task, and the map shows what
separates the class from the four others. The printed correlations measure how far the
explanation moved. With live batch statistics the completeness error is large, with frozen
statistics it is the quadrature error only: that is the difference between explaining the
classifier and explaining an artefact of the interpolation batch.

### Support influence

Which support images mattered for a decision? The direct answer is *leave-one-out*: remove
support image $i$, run the inner loop again, and measure the rise in the query's loss
$\Delta L_q = L_q(S \setminus \{i\}) - L_q(S)$ (the quantity that influence functions
{cite}`koh2017understanding` approximate). The differentiable answer is the gradient of the
query loss with respect to the support *pixels*, taken through the inner loop (second
order): it maps which pixels of which support image the query depends on, and
$-\langle \nabla_{x_i} L, x_i \rangle$ estimates the rise in the loss if image $i$ were
blanked. We use a 5-way 5-shot task, so that leaving one image out leaves its class
represented, and the queries' BatchNorm statistics frozen on the real query batch.
""")

code(r"""
ep5 = D.sample_episode(test_pool, 5, 5, 3, seed=4)
loss5 = maml.summed_cross_entropy(5)


def maml_fit_predict(sx, sy, qx, first_order=False):
    w = maml.adapt(model, sx, sy, loss_fn=loss5, inner_steps=steps, alpha=alpha,
                   first_order=first_order)
    return I.frozen_statistics(model, w, ep5.query_x)(qx)


def proto_fit_predict(sx, sy, qx, emb):
    return I.prototype_scorer(emb, sx, sy, 5, support_grad=True)(qx)


loo = I.loo_influence(functools.partial(maml_fit_predict, first_order=True), ep5.support_x,
                      ep5.support_y, ep5.query_x, ep5.query_y)
with torch.no_grad():
    query_losses = torch.nn.functional.cross_entropy(
        maml_fit_predict(ep5.support_x, ep5.support_y, ep5.query_x, first_order=True),
        ep5.query_y, reduction="none")
q = int(query_losses.argmax())  # the hardest query: the one whose decision is least settled
print(f"query {q} has the largest loss after adaptation ({float(query_losses[q]):.3f}; "
      f"median over the 15 queries {float(query_losses.median()):.3f})")
grad, score = I.gradient_influence(maml_fit_predict, ep5.support_x, ep5.support_y,
                                   ep5.query_x[q:q + 1], ep5.query_y[q:q + 1])
rho = spearmanr(loo[q].numpy(), score.numpy()).statistic
own = ep5.support_y == ep5.query_y[q]
print(f"MAML, query {q}: mean leave-one-out influence of its own class's 5 images "
      f"{float(loo[q, own].mean()):+.2e}, of the 20 others {float(loo[q, ~own].mean()):+.2e}")
print(f"MAML, query {q}: Spearman correlation of leave-one-out and gradient estimate {rho:.2f}")
for name, (emb, _) in metric_nets.items():
    fp = functools.partial(proto_fit_predict, emb=emb)
    with torch.no_grad():
        qm = int(torch.nn.functional.cross_entropy(
            fp(ep5.support_x, ep5.support_y, ep5.query_x), ep5.query_y, reduction="none").argmax())
    lp = I.loo_influence(fp, ep5.support_x, ep5.support_y, ep5.query_x, ep5.query_y)
    _, sp = I.gradient_influence(fp, ep5.support_x, ep5.support_y, ep5.query_x[qm:qm + 1],
                                 ep5.query_y[qm:qm + 1])
    own_m = ep5.support_y == ep5.query_y[qm]
    print(f"{name}, its hardest query {qm}: own class {float(lp[qm, own_m].mean()):+.2e}, others "
          f"{float(lp[qm, ~own_m].mean()):+.2e}; Spearman with the gradient estimate "
          f"{spearmanr(lp[qm].numpy(), sp.numpy()).statistic:.2f}")
viz.plot_support_influence(ep5.query_x[q], ep5.support_x, loo[q], grad, score,
                           support_labels=ep5.support_y, query_label=int(ep5.query_y[q]),
                           title="MAML: how much each support image moved the hardest query's loss")
plt.show()
""")

md(r"""
The images of the query's own class should carry positive influence (removing one makes
the query harder) and the others smaller or negative influence. The rank correlation says
how far the cheap gradient estimate can stand in for re-adaptation: blanking an image is
not the same intervention as removing it, and the inner loop is far from linear in its
inputs, so the two need not agree.

### A local surrogate and permutation importance

Both model-agnostic methods of chapter 2 apply unchanged to the adapted MAML model, through
the frozen-statistics function. LIME {cite}`ribeiro2016why` fits a linear model on
$4 \times 4$ patches switched on and off around one query; permutation importance
{cite}`breiman2001random` shuffles one patch across the task's queries and measures the
rise in the query loss. Two checks keep the surrogate honest: its local fidelity (the $R^2$
of the linear model against the network on fresh random coalitions; a low value means the
coefficients should not be read as the network's reasons), and a deletion test: blanking
the three patches it ranks highest should lower the logit more than blanking three random
patches.
""")

code(r"""
mask = I.patch_mask((28, 28), 4)
x0, y0 = ep1.query_x[:1], int(ep1.query_y[0])
sur = I.lime_surrogate(after, x0, target=y0, feature_mask=mask, n_samples=300, seed=0)


def drop_after_blanking(patches):
    keep = ~torch.isin(mask, torch.as_tensor(patches))
    with torch.no_grad():
        return float(after(x0)[0, y0] - after(x0 * keep)[0, y0])


top3 = sur.coefficients.argsort(descending=True)[:3].tolist()
rand = [drop_after_blanking(np.random.default_rng(s).choice(49, 3, replace=False).tolist())
        for s in range(20)]
print(f"LIME surrogate: local fidelity R^2 = {sur.fidelity:.2f} on fresh coalitions")
print(f"LIME: blanking the 3 top patches lowers the true logit by {drop_after_blanking(top3):.2f}; "
      f"3 random patches by {np.mean(rand):.2f} on average (20 draws)")
perm = I.permutation_importance(after, ep1.query_x, ep1.query_y, feature_mask=mask, n_repeats=3)
pm = perm.importances_mean
inner_ids = [r * 7 + c for r in range(1, 6) for c in range(1, 6)]
print(f"permutation importance: query loss {perm.baseline_loss:.3f}; the inner 5x5 patches "
      f"hold {100 * float(pm[inner_ids].clamp_min(0).sum() / pm.clamp_min(0).sum()):.0f}% of "
      "the positive importance")
viz.plot_attribution_grid(x0, {"LIME coefficient per patch\n(this query's logit)": sur.attribution[0, 0],
                               "permutation importance\n(loss over all queries)": pm[mask]},
                          title="Model-agnostic explanations of the adapted MAML model")
plt.show()
""")

md(r"""
### Sensitivity to α, the number of steps, and the margin

An explanation is also a statement about what the decision depends on among the
*settings*. The inner rate $\alpha$ and the number of steps define the base learner; we
rerun the inner loop on the same tasks for a grid of rates. The margin $m$ of a Siamese
network is a training setting, so its sensitivity is measured by training: the case study
below trains the small Siamese embedding at two margins.
""")

code(r"""
alphas = [0.1, alpha, 1.6, 4.0]
sweep = {a: (full if a == alpha else trajectory(a)) for a in alphas}
print("query accuracy (%) by inner rate and number of steps, "
      f"{N_TASKS} tasks (trained with alpha = {alpha}, {config.inner_steps} step)")
print("alpha   " + "".join(f"{t:>7d}" for t in range(MAX_STEPS + 1)))
for a, tr in sweep.items():
    print(f"{a:<8g}" + "".join(f"{100 * v:7.1f}" for v in tr.query_accuracy))
viz.plot_accuracy_curves({f"α = {a:g}": (np.arange(MAX_STEPS + 1), 100 * torch.stack(tr.task_accuracy, 1))
                          for a, tr in sweep.items()}, chance=20,
                         title="Sensitivity to the inner rate and the number of steps")
plt.show()
""")

md(r"""
## A debugging case study

Explanations earn their keep when something is wrong. Here are two failures, each
introduced on purpose, diagnosed with this chapter's tools before looking at the accuracy,
then fixed, with the fix measured.

### MAML with an inner rate that is too large

Suppose a user, reading that the inner rate was 0.4 for Finn's summed loss, moves to a
larger rate, $\alpha = 4$. The trajectory and the CKA tell what goes wrong.
""")

code(r"""
bad_alpha = 4.0
bad = sweep[bad_alpha]
print("support loss by step, alpha = 4.0:", " ".join(f"{v:.3g}" for v in bad.support_loss))
print("support loss by step, alpha = 0.4:", " ".join(f"{v:.3g}" for v in full.support_loss))
print("first step size per layer, alpha 4.0 vs 0.4:",
      ", ".join(f"{lay} {bad.step_size[lay][0]:.2f} vs {full.step_size[lay][0]:.2f}"
                for lay in bad.step_size))
cka_bad = {lay: [] for lay in layers}
for t in range(N_CKA):
    for lay, v in I.layer_cka(model, None, I.task_params(bad.params[steps], t),
                              tasks.query_x[t]).items():
        cka_bad[lay].append(v)
print("mean CKA per layer, alpha = 4.0:", ", ".join(f"{lay} {np.mean(v):.2f}" for lay, v in cka_bad.items()))
viz.plot_cka_layers({f"α = {alpha:g} (trained)": cka, f"α = {bad_alpha:g} (broken)": cka_bad},
                    references={"0.9": 0.9, "0.5": 0.5},
                    title="Diagnosis: a too-large α rewrites the body instead of reusing it")
plt.show()
""")

md(r"""
The diagnosis reads directly off the numbers. With the large rate the support loss, which
the inner loop exists to lower, does not fall step after step as it does with the trained
rate (compare the two printed rows): the steps overshoot, each one landing where the loss
is steeper. The first step moves every layer
ten times as far as the trained rate does (the step is linear in $\alpha$), and the CKA of
the body drops: the features the meta-learner built are overwritten instead of reused. The fix
follows from the diagnosis without looking at the queries: choose the rate from the support
loss alone, the largest rate of the grid whose support loss falls at every step.
""")

code(r"""
def falls_every_step(tr):
    return all(b < a for a, b in zip(tr.support_loss, tr.support_loss[1:]))


fixed_alpha = max(a for a, tr in sweep.items() if falls_every_step(tr))
fixed = sweep[fixed_alpha]
print(f"rates whose support loss falls at every step: "
      f"{[a for a, tr in sweep.items() if falls_every_step(tr)]}; chosen alpha = {fixed_alpha}")
res = {}
for name, tr in ((f"broken (α = {bad_alpha:g})", bad), (f"fixed (α = {fixed_alpha:g})", fixed)):
    m, h = mean_ci95(100 * tr.task_accuracy[steps].numpy())
    res[name] = m
    print(f"{name}: query accuracy after {steps} steps {m:.1f} ± {h:.1f}% ({N_TASKS} tasks)")
""")

md(r"""
### A Siamese network whose margin is too small

With the source's contrastive loss, same-class pairs are pulled together with a constant
force and different-class pairs are pushed apart only while they are closer than the margin
$m$. If $m$ is tiny compared with the distances at the start of training, almost no pair
pushes, and the cheapest way to lower the loss is to shrink everything: the embedding
*collapses*. We train the small Siamese embedding (four conv blocks of 16 channels, a few
seconds of training; the iteration count is printed below) with $m = 0.01$, diagnose it,
then retrain with $m = 1$; a run with $m = 0.1$ between them measures the sensitivity to
the margin.
""")

code(r"""
print(f"small Siamese embedding: {SMALL_ITERATIONS} iterations of {SMALL['n_pairs']} pairs, "
      f"source loss, Lake's background alphabets")
case = {}
ep_att = D.sample_episode(evaluation, 5, 1, 3, seed=8)
MARGINS = (0.01, 0.1, 1.0)
for margin in MARGINS:
    net, hist = small_siamese(margin)
    zz = siamese.embed_pool(net.embedding, sub)
    # drawing 0 of each character against drawings 1-4 of the same character, and against
    # drawing 0 of the next four characters
    d_same = torch.cat([(zz[:, 0] - zz[:, j]).norm(dim=1) for j in range(1, 5)])
    d_diff = torch.cat([(zz[:, 0] - zz.roll(r, 0)[:, 0]).norm(dim=1) for r in range(1, 5)])
    att = I.support_attention(siamese.embed_images(net.embedding, ep_att.query_x),
                              siamese.embed_images(net.embedding, ep_att.support_x))
    entropy = float(-(att * att.clamp_min(1e-12).log()).sum(1).mean() / np.log(5))
    accs = siamese.few_shot_accuracy(zz, 5, 1, 200, q_queries=5, method="nearest", seed=0)
    case[margin] = dict(d_same=d_same, d_diff=d_diff, ratio=float(d_diff.mean() / d_same.mean()),
                        entropy=entropy, erank=I.effective_rank(zz.reshape(-1, zz.shape[-1])),
                        acc=mean_ci95(accs), diff_inside=hist["inside_margin"][-1])
    c = case[margin]
    print(f"m = {margin:<5g} mean distance same {float(d_same.mean()):.3f}, different "
          f"{float(d_diff.mean()):.3f} (ratio {c['ratio']:.2f}); attention entropy "
          f"{c['entropy']:.2f} of the uniform's; effective rank {c['erank']:.1f}; different "
          f"pairs inside the margin in the last training batch {100 * c['diff_inside']:.0f}%")
fig, axes = plt.subplots(1, len(case), figsize=(4.6 * len(case), 3.4))
for ax, margin in zip(axes, case):
    viz.plot_distance_histograms(case[margin]["d_same"], case[margin]["d_diff"], margin, ax=ax,
                                 title=f"margin m = {margin:g}")
fig.tight_layout()
plt.show()
""")

md(r"""
The collapse shows before any accuracy is computed: with the tiny margin, same-class and
different-class distances pile up in the same narrow range (their ratio near 1), and the
support attention of a query is spread almost evenly over the support set (entropy near
that of the uniform distribution): the embedding no longer tells characters apart. With
$m = 1$ the two histograms separate. The effective rank does *not* flag this collapse: the
shrunken embedding still spreads its small variance over many directions, it has collapsed
in scale relative to the differences between characters, not in dimension. The accuracy
measures the fix. The last number printed for each margin, the share of different-class
pairs inside it at the end of training, tells how often the push acted at all: while no
different-class pair comes within the margin the loss only pulls, so two small margins
that no pair reaches give nearly the same training run.
""")

code(r"""
for margin, c in case.items():
    m, h = c["acc"]
    print(f"m = {margin:<5g} 5-way 1-shot accuracy {m:.1f} ± {h:.1f}% (200 tasks, evaluation alphabets)")
viz.plot_metric_bars({
    "accuracy (%)": {f"m = {k:g}": v["acc"][0] for k, v in case.items()},
    "d_diff / d_same": {f"m = {k:g}": v["ratio"] for k, v in case.items()},
    "attention entropy": {f"m = {k:g}": v["entropy"] for k, v in case.items()},
}, title="The small Siamese embedding: collapsed (m = 0.01) and fixed (m = 1)")
plt.show()
""")

md(r"""
What generalises from the two cases: in both, the failure was visible in a quantity the
learner itself optimises or produces (the support loss along the inner loop; the distances
and the attention over the support set) before it was visible in the test accuracy, and in
both the fix could be chosen from that quantity alone. The explanations did not just
describe the models; they told us what to change.

## Summary

| question | instrument | what to read |
|---|---|---|
| what strategy was learned | CKA per layer before and after the inner loop; the body frozen at test time; $\eta^2$, top-activating images and CKA for the embeddings | feature reuse (high CKA in the body, low in the head) and the accuracy cost of not adapting the body |
| how it is applied | the trajectory of losses and steps per layer; activation change per layer and unit; support attention | where the inner loop moves the network, and whom a query looks to |
| what drives a decision | Saliency and Integrated Gradients with frozen BatchNorm statistics; leave-one-out and gradient support influence; LIME; permutation importance; sensitivity to α, steps, m | pixels, support images and settings a prediction depends on |

## Exercises
""")

md(r"""
```{exercise} CKA by hand
:label: ex-ch6-1

Write linear CKA yourself, from the formula in section 6.1, for two matrices `X` (n × p)
and `Y` (n × q): centre the columns, then compute
$\lVert Y^\top X\rVert_F^2 / (\lVert X^\top X\rVert_F \lVert Y^\top Y\rVert_F)$. Apply it to
the body features of one test task's queries before and after adaptation, and check your
value with `check("ex-ch6-1", X, Y, value)`.
```

```{solution} ex-ch6-1
:class: dropdown

Centre with `X - X.mean(0)`, then `(Y.T @ X).norm()**2 / ((X.T @ X).norm() * (Y.T @ Y).norm())`
in float64. The solution cell below does it for the 64-dimensional features of
`model.features` before and after adaptation.
```
""")

code(r"""
with torch.no_grad():
    X = model.features(ep1.query_x).double()
    Y = I.layer_activations(model, fast, ep1.query_x, ["body.3"])["body.3"].mean((-2, -1)).double()
Xc, Yc = X - X.mean(0), Y - Y.mean(0)
value = float((Yc.T @ Xc).norm() ** 2 / ((Xc.T @ Xc).norm() * (Yc.T @ Yc).norm()))
print(f"CKA of the body features before vs after adaptation: {value:.4f}")
""", tags=["solution"])

code(r"""
from mlkit.exercises import check

check("ex-ch6-1", X, Y, value)
""")

md(r"""
```{exercise} Leave-one-out influence for a prototype classifier
:label: ex-ch6-2

For the 5-way 5-shot episode `ep5` and the first metric learner, compute by hand the
leave-one-out influence of every support image on the mean query loss: recompute the
prototypes without image $i$, take the cross-entropy of the queries under
$\mathrm{softmax}_c(-\lVert f(x) - p_c\rVert^2)$, subtract the loss with all images. Check
with `check("ex-ch6-2", embed, ep5, influence)` where `influence` has one number per support
image.
```

```{solution} ex-ch6-2
:class: dropdown

Embed once, then for each $i$ drop row $i$, average each class's remaining rows, and score.
It equals `interpret.loo_influence(...).mean(0)` with the prototype scorer.
```
""")

code(r"""
embed = main_embed
with torch.no_grad():
    zs, zq = embed(ep5.support_x), embed(ep5.query_x)


def proto_loss(zs, ys):
    protos = torch.stack([zs[ys == c].mean(0) for c in range(5)])
    logits = -(zq[:, None] - protos[None]).pow(2).sum(-1)
    return torch.nn.functional.cross_entropy(logits, ep5.query_y)


base = proto_loss(zs, ep5.support_y)
influence = torch.stack([proto_loss(zs[torch.arange(25) != i], ep5.support_y[torch.arange(25) != i]) - base
                         for i in range(25)])
print("most helpful support images:", influence.argsort(descending=True)[:5].tolist())
""", tags=["solution"])

code(r"""
check("ex-ch6-2", embed, ep5, influence)
""")

md(r"""
```{exercise} A rate for the head alone
:label: ex-ch6-3

Section 6.1 adapted only the head at test time with the rate tuned for adapting every
layer. Rerun `trajectory(a, adapt_names=head)` for a few rates `a` and find the best rate
for the head alone. Does head-only adaptation then match full adaptation? What does that
say about the body's share of the inner loop?
```

```{solution} ex-ch6-3
:class: dropdown

The head's gradient is only part of the full gradient, so the best rate for the head alone
can differ from the rate tuned for all layers. The cell below scans four rates; compare its
best row with the full inner loop's accuracy printed in section 6.1. If the best head-only
rate closes the gap, the body's adaptation was not needed, only a better-tuned head step:
Raghu et al.'s feature reuse.
```
""")

code(r"""
for a in (0.1, 0.4, 1.0, 2.0):
    tr = trajectory(a, adapt_names=head)
    print(f"head only, alpha = {a}: " + " ".join(f"{100 * v:.1f}" for v in tr.query_accuracy))
""", tags=["solution"])

md(r"""
```{exercise} Explaining with live statistics
:label: ex-ch6-4

Compute Integrated Gradients of the adapted MAML model *without* freezing the BatchNorm
statistics, for several numbers of interpolation steps (16, 64, 256). Does the completeness
error shrink as it does for the frozen network? Explain why not.
```

```{solution} ex-ch6-4
:class: dropdown

It does not shrink: the error is not a quadrature error. With live statistics, Captum's
batch of interpolated images is normalised with its own mean and variance, so each
evaluation point is a different function of the image, and the path integral is taken of
a function that is not the classifier. Freezing the statistics on the real query batch
restores a fixed function of one image, for which the error falls with the step count.
```
""")


if __name__ == "__main__":
    nb.write(OUT)
