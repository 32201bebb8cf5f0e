"""Write chapters/04_siamese.ipynb (unexecuted) from the cells below.

Run from the repository root, then execute it in place:

    .venv/bin/python scripts/ch04_make_notebook.py
    MLKIT_DATA=/work/shared/data .venv/bin/jupyter execute --inplace --timeout=900 \
        chapters/04_siamese.ipynb
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nb import Notebook  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "chapters" / "04_siamese.ipynb"
nb = Notebook()
md, code = nb.md, nb.code

md(r"""
# 4 Metric-based meta-learning: Siamese networks

MAML (chapter 3) learns *where to start* so that a few gradient steps fit a new task. A
metric-based meta-learner needs no steps at all: it learns an **embedding** $f_\theta$ in
which images of the same class lie close together and images of different classes far
apart. A new class is then recognised by comparison: a query gets the label of the nearest
example. The classic architecture is the **Siamese network**
{cite}`koch2015siamese,hadsell2006dimensionality`; prototypical networks
{cite}`snell2017prototypical` refine the comparison and serve as our reference point.

The source describes the Siamese network in four steps (its section 3.2):

1. two identical networks that **share their parameters**;
2. **pairs** of images fed in, some from the same class, some from different classes;
3. the **distance** between the two embeddings;
4. parameter updates that **pull same-class pairs together and push different-class pairs
   apart**, by minimising (its section 4.2)

$$
\min_\theta \sum_{(i,j) \in S} d\big(f_\theta(x_i), f_\theta(x_j)\big)
 + \sum_{(i,j) \in D} \max\big(0,\; m - d(f_\theta(x_i), f_\theta(x_j))\big),
$$

where $S$ holds the same-class pairs, $D$ the different-class pairs and $m > 0$ is the
**margin**. This chapter runs the four steps as code, trains the network on Omniglot
{cite}`lake2015human`, measures it on Lake et al.'s 20 official one-shot runs, looks inside
its embedding, and lets you move the margin.

**Split.** Everything is trained on Lake's 30 *background* alphabets (964 characters) and
tested on the 20 *evaluation* alphabets (659 characters) and on Lake's 20 runs, which are
drawn from the evaluation alphabets: no test character, and no test alphabet, is ever seen
in training.

The trained networks are loaded from `checkpoints/`. Set `TRAIN = True` to retrain them with
the book's own command (many hours on one CPU core: each of the three Siamese runs takes
about 2.5 h at 0.9 s per iteration; minutes on a GPU with `--device cuda`); everything below
then uses the new weights.
""")

code(r"""
TRAIN = False  # True: retrain the checkpoints with `python -m mlkit train ...` (hours on a CPU)

import textwrap

import numpy as np
import torch
import matplotlib.pyplot as plt

from mlkit import data as D, protonet, siamese, stats, viz
from mlkit.checkpoints import checkpoint_entry, describe_training
from mlkit.widgets import Slider, explorer

torch.set_num_threads(1)  # single-threaded reductions: the printed numbers are reproducible
_ = torch.manual_seed(0)
""")

md(r"""
## 4.1 The four steps as code

**Step 1: two identical networks sharing parameters.** The two "networks" of a Siamese
network are one network used twice. `SiameseNet` holds a single embedding network $f$ (four
blocks of 3×3 convolution, BatchNorm, ReLU and 2×2 max-pooling, as in
{cite}`vinyals2016matching,snell2017prototypical`; the book's network has 128 channels per
block and maps a 28×28 image to 128 numbers scaled to unit length, for reasons section 4.2
gives) and applies it to both members of every pair. There is no second copy whose weights
could drift apart, so the parameters are shared by construction:
""")

code(r"""
net = siamese.build_siamese(siamese.SIAMESE_CONFIG)
n_siamese = sum(p.numel() for p in net.parameters())
n_f = sum(p.numel() for p in net.embedding.parameters())
print(f"parameters of the Siamese network: {n_siamese:,}; of its one embedding network f: {n_f:,}")
print("forward(x1, x2): z = f(cat[x1, x2]); z1, z2 = z.split(n); return d(z1, z2)")
""")

md(r"""
**Step 2: same-class and different-class pairs.** `PairSampler` draws balanced batches:
for each of $n/2$ characters two different drawings $a_i, b_i$ form a same-class pair, and
$a_i$ with the next character's $b_j$ forms a different-class pair, so exactly half the pairs
are "same" and every image serves twice. Half of the batches draw their characters in small
groups from one alphabet, so that their different-class pairs are *within* an alphabet, as in
Lake's runs; and during training every image gets a small random affine distortion, as Koch
et al. did {cite}`koch2015siamese` (augmentation is off in this picture).
""")

code(r"""
background = D.omniglot_classes("background")
batch = siamese.PairSampler(background, 16, within_alphabet=0.5, seed=4).batch()
order = np.r_[0:4, 8:12]  # four same-class and four different-class pairs
fig = viz.plot_pairs(batch.x1[order], batch.x2[order], batch.same[order],
                     title="Balanced pairs from the background alphabets")
plt.show()
""")

md(r"""
**Step 3: the distance between the two embeddings.** We use the Euclidean distance, written
as

$$
d(a, b) = \sqrt{\textstyle\sum_k (a_k - b_k)^2 + \varepsilon}, \qquad \varepsilon = 10^{-8}.
$$

The $\varepsilon$ matters at exactly one place, $a = b$: there the plain
$\sqrt{\sum_k (a_k-b_k)^2}$ has derivative $\frac{a-b}{\lVert a-b \rVert} = \frac{0}{0}$,
which autograd turns into NaN, and one NaN gradient ruins every weight. With $\varepsilon$
the derivative is $\frac{a-b}{\sqrt{\lVert a-b\rVert^2+\varepsilon}} = 0$ there, and the
distance is off by at most $\sqrt{\varepsilon} = 10^{-4}$, far below any margin we use.
Identical embeddings are not exotic: two inputs that are the same image, or a network whose
ReLUs are all off for both, give them.
""")

code(r"""
z = torch.randn(2, 64, requires_grad=True)
plain = torch.sqrt((z - z.detach()).pow(2).sum(1))           # distance of z to itself
print("plain sqrt(sum sq):    gradient has NaN:",
      bool(torch.isnan(torch.autograd.grad(plain.sum(), z)[0]).any()))
ours = siamese.euclidean_distance(z, z.detach())
print("siamese.euclidean_distance: gradient finite:",
      bool(torch.isfinite(torch.autograd.grad(ours.sum(), z)[0]).all()),
      f"| d = {ours[0].item():.0e}")
""")

md(r"""
**Step 4: pull together, push apart.** `contrastive_loss` implements the source's objective
(`form="source"`: $d$ for a same pair, $\max(0, m-d)$ for a different pair) and Hadsell,
Chopra and LeCun's original {cite}`hadsell2006dimensionality` (`form="hadsell"`:
$\tfrac12 d^2$ and $\tfrac12\max(0, m-d)^2$); section 4.7 compares them. A few Adam steps on
one batch of a fresh network show the mechanism, and one of its subtleties: the loss falls as
the same pairs move together, but the different pairs start far beyond the margin ($d
\approx 6.5$ against $m = 1$), so they feel no push at all and shrink along with everything
else. Only once they come inside $m$ does the second term start to hold them apart. (This
fresh network has the default 64 channels and embeddings of free length; section 4.2 shows
what fixing their length does.)
""")

code(r"""
torch.manual_seed(0)
net = siamese.SiameseNet()  # default: 64 channels, embeddings of free length
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
b = siamese.PairSampler(background, 64, seed=0).batch()
for step in range(6):
    d = net.pair_distances(b.images, b.left, b.right)
    loss = siamese.contrastive_loss(d, b.same, margin=1.0, form="source")
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(f"step {step}: loss {loss.item():.2f}   mean d same {d[b.same == 1].mean().item():.2f}"
          f"   mean d different {d[b.same == 0].mean().item():.2f}")
""")

md(r"""
### BatchNorm: a pair's distance should not depend on its batch

Finn's MAML network (chapter 3) normalises with the statistics of the current batch, even at
test time. For a Siamese network that is wrong in a visible way: the distance between two
images would change with whatever other images share their batch, so the same pair could be
judged "same" in one batch and "different" in another. Our embedding network
(`nets.InductiveConvEmbedding`) therefore keeps running statistics during training and uses
them in `eval()` mode, as Snell et al.'s code does: at test time every image is embedded on
its own. This also means a whole split can be embedded once and reused for every episode
below. (Exercise 4.4 measures the difference.)

## 4.2 Training

The command `python -m mlkit train siamese-omniglot` trains the Siamese network with
Hadsell's loss form at margin $m = 1$ on the background alphabets, each character also under
its three quarter turns as three more classes, with Koch's affine distortions and half the
batches drawn in groups from one alphabet. Each batch holds two drawings of 128 classes, and
the loss covers *every* pair among its 256 images: 128 same-class pairs and 32,512
different-class pairs, each kind averaged on its own so that the two weigh equally. The
images are embedded once per batch either way, so the extra pairs cost almost nothing and
give many more different-class pairs, the within-alphabet ones among them, to learn from.

The recipe differs from a first one that fell far short (the table below) in its width (128
channels instead of 64), its batch (256 images instead of 128) and two choices in the loss:

* **Embeddings on the unit sphere.** Step 4 showed a fresh network's different pairs far
  beyond the margin, where they feel no push; and with embeddings of free length the margin
  only fixes a scale that the network can change at will (section 4.6). Scaled to unit
  length, every distance lies between 0 and 2 and $m = 1$ means an angle of 60°.
* **Only the pairs that still push are averaged.** Of the 32,512 different-class pairs most
  are soon outside the margin and contribute zero; averaged over all of them, the few that
  still push get a tiny gradient. `negatives="active"` averages the different-class term over
  the pairs inside the margin only (`siamese.balanced_pair_loss`).

`python -m mlkit train protonet-omniglot` trains a
prototypical network {cite}`snell2017prototypical` on 30-way 1-shot episodes with 5 queries
per class from the same classes. Both resume a stopped run (`--resume`) and can stop on a time
budget (`--max-minutes`); the manifest records how each checkpoint was made, and which machine
trained which iterations:
""")

code(r"""
if TRAIN:
    from mlkit.__main__ import main
    main(["train", "protonet-omniglot"])
    main(["train", "siamese-omniglot"])
    main(["train", "siamese-omniglot-ensemble"])  # the same recipe from seeds 1 and 2

snet, s_entry = siamese.load_siamese("siamese-omniglot")
pnet, p_entry = protonet.load_protonet("protonet-omniglot")
f = snet.embedding
for entry in (s_entry, p_entry):
    print(entry["command"])
    print(textwrap.indent(describe_training(entry), "    "))
""")

md(r"""
The variants below were trained on borrowed GPUs, each from scratch. The first five (v0–v4)
changed one or two things at a time, and the recipe is v4, the one that scored best on Lake's
runs. **That choice was made on the test runs themselves.** A later round asked how much of
such a difference is luck: it trained v4 again from two other seeds (v5, v11) and five
changes to it (v6–v10, v12), all for the same 10,000 iterations. During training the
command also records 5- and 20-way one-shot accuracy on a third of the evaluation
characters every few hundred iterations; these curves only describe the run (the final
weights are the ones saved).
""")

code(r"""
sc, pc = s_entry["metrics"]["curves"], p_entry["metrics"]["curves"]
print("Siamese recipes tried (benchmarks/siamese_variants.py), accuracy in % ± 95% CI:")
print(f"  {'':4s}{'Lake runs':>13s}{'20-way 1-shot':>16s}{'iterations':>12s}")
for v in s_entry["metrics"]["variants"]:
    print(f"  {v['tag']:<4s}{v['lake_runs'][0]:7.2f} ± {v['lake_runs'][1]:4.2f}"
          f"{v['evaluation_20way1shot'][0]:9.2f} ± {v['evaluation_20way1shot'][1]:4.2f}"
          f"{v['iterations']:>12,d}")
# The descriptions on their own lines, so that the table fits the page's width.
print()
for v in s_entry["metrics"]["variants"]:
    print(textwrap.fill(v["what"], 76, initial_indent=f"  {v['tag']}: ",
                        subsequent_indent=" " * (len(v["tag"]) + 4)))
fig = viz.plot_curve_panels([
    ("Siamese: contrastive loss", {"loss": (sc["iteration"], sc["loss"])}),
    ("Siamese: mean pair distance", {"same class": (sc["iteration"], sc["d_same"]),
                                     "different class": (sc["iteration"], sc["d_diff"]),
                                     "margin m": (sc["iteration"], [1.0] * len(sc["iteration"]))}),
    ("Prototypical net: episode loss", {"loss": (pc["iteration"], pc["loss"])}),
    ("one-shot accuracy, evaluation alphabets (%)", {
        "Siamese 5-way": (sc["eval_iteration"], sc["eval_5way1shot"]),
        "Siamese 20-way": (sc["eval_iteration"], sc["eval_20way1shot"]),
        "protonet 5-way": (pc["eval_iteration"], pc["eval_5way1shot"]),
        "protonet 20-way": (pc["eval_iteration"], pc["eval_20way1shot"])}),
], ncols=2)
plt.show()
""")

md(r"""
Each run measured twice, with its 95% confidence interval: on Lake's 20 runs (400 trials)
and on 600 random 20-way one-shot episodes from the evaluation alphabets (9,000 queries).
The three seeds of the same recipe are drawn in orange; the dashed line is Koch et al.'s
92%.
""")

code(r"""
variants = {v["tag"]: v for v in s_entry["metrics"]["variants"]}
seeds = siamese.recipe_seeds(s_entry["metrics"]["variants"], "v4")
koch = siamese.LAKE_ANCHORS["convolutional Siamese net (Koch et al. 2015)"]
on_lake = "Lake's 20 runs, 400 trials (%)"
on_episodes = "600 random 20-way episodes (%)"
fig = viz.plot_interval_panels(
    {t: {on_lake: tuple(v["lake_runs"]),
         on_episodes: tuple(v["evaluation_20way1shot"])}
     for t, v in variants.items()},
    targets={on_lake: (koch, "Koch et al. 2015")},
    highlight=tuple(seeds),
    highlight_label=f"the recipe (v4) from {len(seeds)} seeds")
plt.show()

for line in siamese.seed_report(s_entry["metrics"]["variants"], recipe="v4"):
    print(textwrap.fill(line, 76, subsequent_indent="    "))
""")

md(r"""
The 20-way episodes separate the recipes: v0's first recipe and v8's wider margin sit
clearly lower, several of the changes slightly lower, and none above the recipe's own
seeds. Lake's runs are much coarser: 400 trials give each run a confidence interval several
points wide. The two changes that cleared 92% there did not beat the recipe's seeds on the
20-way episodes, and together (v10, and v10 again from another seed, v12) they stayed below
92% on Lake's runs too. Choosing the best of a dozen runs by Lake's score would choose
noise, so the book keeps v4 and reports its number, short of Koch et al.'s, in section 4.3,
beside what its three seeds score together.
""")

md(r"""
## 4.3 One-shot classification

A trained embedding classifies by comparison. In an $N$-way $K$-shot episode the Siamese
network gives a query the label of its **nearest support embedding** (Koch et al.'s rule);
the prototypical network the label of the nearest **class mean** (for $K = 1$ the two rules
coincide, and the networks differ only in how they were trained).

**Lake's 20 runs.** Lake et al. {cite}`lake2015human` published 20 fixed runs of 20-way
one-shot classification: in each, 20 characters from one evaluation alphabet, one drawing of
each as the support set, and 20 other drawings, by other people, to classify (400 trials in
all). Koch et al. report the anchors {cite}`koch2015siamese`; we measure our two networks and
our own 1-nearest-neighbour baseline on raw 28×28 pixels on the same runs.
""")

code(r"""
runs = D.load_lake_runs()
ensemble, _ = siamese.load_siamese_ensemble()  # seeds 0, 1, 2 (see below)
single = "Siamese net, contrastive loss (ours)"
three = "Siamese nets of 3 seeds, mean d² (ours)"
lake = {
    single: siamese.lake_runs_accuracy(f, runs),
    three: siamese.lake_runs_accuracy(ensemble, runs),
    "prototypical network (ours)": siamese.lake_runs_accuracy(pnet, runs),
    "1-NN on 28x28 pixels (ours)":
        siamese.lake_runs_accuracy(lambda x: x.flatten(1), runs),
}
print(f"{'Lake et al.’s 20 runs, 20-way 1-shot':<46s} accuracy (%)")
for name, value in siamese.LAKE_ANCHORS.items():
    print(f"  {name:<44s} {value:5.1f}")
for name, (acc, _) in lake.items():
    mean, ci = stats.mean_ci95(acc)
    print(f"  {name:<44s} {mean:5.1f} ± {ci:.1f}")
target = siamese.LAKE_ANCHORS["convolutional Siamese net (Koch et al. 2015)"]
print()
for who, name in (("Our Siamese net", single),
                  ("Our 3 seeds together", three)):
    ours = float(np.mean(lake[name][0]))
    verdict = ("target met" if ours >= target
               else f"target missed by {target - ours:.1f} points")
    print(f"{who} against Koch et al.'s {target:.1f}%: {verdict}")
""")

md(r"""
The ± is the 95% confidence interval over the 20 runs; the last two lines say how our
Siamese network, and the recipe's three seeds together, stand against Koch et al.'s 92%.

**Three seeds together.** Section 4.2 trained the recipe from three seeds to measure how
much one run is luck. The three networks can also be used as one:
`siamese.EnsembleEmbedding` puts each network's embedding on the unit sphere and
concatenates them, scaled so that the squared distance between two images is the mean of
the three networks' squared distances. Nothing else changes: the nearest support embedding
still decides. This was measured after the single network had missed Koch et al.'s 92%, and
it was the only thing tried then. The three members are all the runs of the recipe there
are, not a selection. Lake's 400 trials cannot tell it from one network, but the 600 random
20-way episodes can (recorded by `benchmarks/siamese_variants.py ensemble`; embedding the
evaluation split with two more networks would add about half to this chapter's time):
""")

code(r"""
together = s_entry["metrics"]["ensemble"]
print("600 random 20-way episodes, evaluation alphabets (% ± 95% CI):")
for t in seeds:
    m, c = variants[t]["evaluation_20way1shot"]
    label = f"{t}: seed {variants[t]['seed']}, one network"
    print(f"  {label:<30s}{m:6.2f} ± {c:.2f}")
m, c = together["evaluation_20way1shot"]
label = "seeds " + ", ".join(map(str, together["seeds"])) + " together"
print(f"  {label:<30s}{m:6.2f} ± {c:.2f}")
""")

md(r"""
The three together beat each of their members on the 20-way episodes by more than the
episodes' intervals: unlike v6 and v7 in section 4.2, this is not a lucky draw on Lake's
runs, although those are too coarse to say by how much it helps there. It costs
three times the training and three times the time to embed. Koch et al.'s 92% is for one
network, and our one network stays short of it. Koch et al. trained a much larger network (four
convolutional layers with up to 256 filters of up to 10×10 and a 4,096-unit layer) on
105×105 images, with a learned weighted L1 distance and a logistic output, on hundreds of
thousands of distorted pairs, for far longer than ours (the training lines in section 4.2
say how long, and where). Ours embeds 28×28 images with four 3×3 convolution blocks of 128
channels (445k parameters, against the prototypical network's 112k with 64 channels): the
prototypical network's episode loss gets as much out of a quarter of the parameters.
Our 1-NN on pixels lands next to
Koch's 21.7% although the images differ (28×28 with the ink averaged over areas, against
105×105 binary drawings): pixels alone are nearly useless for recognising a character drawn
by someone else, against a chance level of 5%.

**Random episodes.** Over 600 random 5-way and 20-way one-shot episodes from the evaluation
alphabets (15 queries per class), with the whole split embedded once:
""")

code(r"""
evaluation = D.omniglot_classes("evaluation")
z_s = siamese.embed_pool(f, evaluation)      # (659 characters, 20 drawings, 128)
z_p = siamese.embed_pool(pnet, evaluation)
rows = []
for name, z, method in (("Siamese net (ours)", z_s, "nearest"),
                        ("prototypical network (ours)", z_p, "prototype")):
    cells = [stats.mean_ci95(siamese.few_shot_accuracy(z, n_way, 1, 600, method=method, seed=1))
             for n_way in (5, 20)]
    rows.append((name, cells))
print(f"{'evaluation alphabets, 600 tasks':<34s} {'5-way 1-shot':>14s} {'20-way 1-shot':>14s}")
for name, cells in rows:
    print(f"  {name:<32s}" + "".join(f"{m:8.1f} ± {c:.1f}" for m, c in cells))
print(f"  {'Snell et al. 2017 (their split)':<32s}{98.8:8.1f}      {96.0:8.1f}")
""")

md(r"""
Snell et al.'s 98.8% and 96.0% {cite}`snell2017prototypical` are on Vinyals et al.'s split
{cite}`vinyals2016matching`, where training and test characters are drawn at random from
all 50 alphabets (with rotations as extra classes), so that every test alphabet has been seen
in training. Lake's split holds whole alphabets out and is harder; and our networks were
trained for minutes (section 4.2), not for hours. The gaps above are the honest price of
both.

## 4.4 Verification

The Siamese network was trained to answer one question: *are these two drawings the same
character?* We answer it with a threshold on the distance, chosen on 1,000 pairs from the
background alphabets (the training side) and then applied unchanged to 1,318 pairs from the
evaluation alphabets, half of whose different-class pairs come from within one alphabet.
""")

code(r"""
pairs_bg = siamese.PairSampler(background, 1000, within_alphabet=0.5, seed=10).batch()
z_bg = siamese.embed_images(f, pairs_bg.images)
d_bg, same_bg = siamese.euclidean_distance(z_bg[pairs_bg.left], z_bg[pairs_bg.right]), pairs_bg.same
pairs_ev = siamese.PairSampler(evaluation, 1318, within_alphabet=0.5, seed=11).batch()
d_ev, same_ev = pairs_ev.distances(z_s), pairs_ev.same   # embeddings of section 4.3
threshold = siamese.best_threshold(d_bg, same_bg)
print(f"threshold chosen on background pairs: d <= {threshold:.3f} means 'same'")
print(f"verification accuracy, background pairs: "
      f"{siamese.verification_accuracy(d_bg, same_bg, threshold):.1f}%")
print(f"verification accuracy, held-out evaluation pairs: "
      f"{siamese.verification_accuracy(d_ev, same_ev, threshold):.1f}%")
fig = viz.plot_distance_histograms(d_ev[same_ev == 1], d_ev[same_ev == 0], 1.0,
                                   threshold=threshold,
                                   title="Held-out pairs (evaluation alphabets)")
plt.show()
""")

md(r"""
(There are only 659 evaluation characters, so one batch of distinct characters holds at
most 1,318 pairs.) Koch et al. report 93.4% verification accuracy with their much larger
network on 105×105 images {cite}`koch2015siamese`; their pairs are not ours, so the numbers
are a rough comparison only.

## 4.5 Inside the embedding

**An embedding map.** t-SNE {cite}`maaten2008visualizing` of the embeddings of eight drawings
each of the first eight characters of six evaluation alphabets, coloured by alphabet. The
network never saw these alphabets. Drawings of one character still form small clumps, and
some alphabets (Gurmukhi, Tengwar, ULOG) gather in regions of their own while others
(Atlantean, Ge'ez) spread across the map: the embedding captures stroke style without having been
told what an alphabet is.
""")

code(r"""
from sklearn.manifold import TSNE

alphabets = ["Atlantean", "Ge_ez", "Gurmukhi", "Mongolian", "Tengwar", "ULOG"]
names = np.array([evaluation.alphabet(c) for c in range(len(evaluation))])
chars = np.concatenate([np.flatnonzero(names == a)[:8] for a in alphabets])
points = z_s[chars][:, :8].reshape(-1, z_s.shape[-1]).numpy()
groups = np.repeat(names[chars], 8)
xy = TSNE(n_components=2, init="pca", perplexity=30, random_state=0).fit_transform(points)
fig = viz.plot_points_2d(xy, groups, title="Siamese embedding of unseen characters (t-SNE)")
plt.show()
""")

md(r"""
**Nearest neighbours.** For six drawings from the evaluation alphabets, the six nearest of
all 13,180 evaluation drawings in the Siamese embedding. A green frame is the same
character; a red one another character (its alphabet named when it differs from the query's).
""")

code(r"""
flat = z_s.reshape(-1, z_s.shape[-1])
queries = np.array([5, 1500, 4100, 7300, 9900, 12500])
found = siamese.nearest_neighbours(flat, queries, k=6)
img = lambda i: evaluation.images[i // 20, i % 20]  # noqa: E731
rows, colours, titles = [], [], []
for q, nb in zip(queries, found):
    rows.append([img(q)] + [img(i) for i in nb])
    colours.append([None] + ["tab:green" if i // 20 == q // 20 else "tab:red" for i in nb])
    titles.append(["query"] + ["" if i // 20 == q // 20 else
                              ("" if names[i // 20] == names[q // 20] else names[i // 20][:10])
                              for i in nb])
hits = np.mean([[i // 20 == q // 20 for i in nb] for q, nb in zip(queries, found)])
fig = viz.plot_image_rows(rows, colours=colours, titles=titles,
                          title="Query and its six nearest drawings (green: same character)")
plt.show()
print(f"share of these 36 neighbours that are the query's character: {100 * hits:.0f}%")
""")

md(r"""
**Where the one-shot runs go wrong.** Every error the Siamese network makes on Lake's runs,
counted per run, and the first error of each of eight runs shown: the query (top), the
support drawing it was matched to (red) and the one it should have been matched to (green).
""")

code(r"""
acc_s, preds_s = lake["Siamese net, contrastive loss (ours)"]
errors = [(r, i) for r, (run, p) in enumerate(zip(runs, preds_s))
          for i in np.flatnonzero(p != run.query_y.numpy())]
print("errors per run:", " ".join(str(int(round((100 - a) / 5))) for a in acc_s),
      f"(total {len(errors)} of 400)")
rows, colours, titles = [], [], []
first = [next(e for e in errors if e[0] == r) for r in sorted({r for r, _ in errors})]
for r, i in first[:8]:
    run = runs[r]
    rows.append([run.query_x[i], run.support_x[preds_s[r][i]],
                 run.support_x[run.query_y[i]]])
    colours.append([None, "tab:red", "tab:green"])
    titles.append([f"run {r + 1}: query", "chosen", "correct"])
fig = viz.plot_image_rows([list(c) for c in zip(*rows)], colours=[list(c) for c in zip(*colours)],
                          titles=[list(c) for c in zip(*titles)], size=1.1,
                          title="Siamese errors on Lake's runs (rows: query, chosen, correct)")
plt.show()
""")

md(r"""
The errors are spread thinly over most runs (the counts are printed above the figure). Most
confusions in the figure are understandable: the chosen drawing shares the query's gross
shape (a loop, a hook, a cross, a flag) while the detail that tells the two characters apart
takes a pixel or two at 28×28. A few look unrelated to a human eye (run 6 in the figure):
plain failures of the embedding. The network
has never been told which details matter in a new alphabet, and in Lake's runs all 20
candidates come from the query's alphabet, which is why they are harder than random 20-way
episodes.

## 4.6 The margin $m$

The margin says how far apart different-class pairs must be before they stop pushing. The
explorer below does two things for each $m$ and loss form:

* **left**, for the trained Siamese network and the fixed 1,318 evaluation pairs of
  section 4.4: the mean contrastive loss at that $m$, the share of different-class pairs
  still *inside* the margin (they are the only ones that produce a push), and the
  histograms with $m$ drawn on them. The network is not retrained: this is the loss it
  would feel if training continued at this $m$.
* **right**, a small 2-D embedding, trained live in a fraction of a second for this $m$: a
  linear map of the frozen 128-d embeddings of 12 drawings of five evaluation characters to
  the plane, fitted with the contrastive loss (`siamese.fit_2d_embedding`). Circles of
  radius $m/2$ around each class mean: when they do not overlap, the classes are at least
  $m$ apart.
""")

code(r"""
margin_chars = np.flatnonzero(names == "Tengwar")[:5]
feats = z_s[margin_chars][:, :12].reshape(-1, z_s.shape[-1])
labels = np.repeat(np.arange(5), 12)
d_same_ev, d_diff_ev = d_ev[same_ev == 1], d_ev[same_ev == 0]


def margin_frame(margin: float, form: str):
    report = siamese.margin_report(d_ev, same_ev, margin, form=form)
    note = (f"{form} loss at m = {margin:g}: {report['loss']:.3f}\n"
            f"different pairs inside m: {100 * report['inside_margin']:.0f}%")
    points = siamese.fit_2d_embedding(feats, labels, margin, form=form, steps=150, seed=0)
    return viz.plot_margin_frame(d_same_ev, d_diff_ev, margin, note, points, labels,
                                 title=f"margin m = {margin:g}, {form} loss")


explorer(margin_frame,
         [Slider("margin", values=[0.25, 0.5, 1.0, 1.5, 2.0, 4.0], value=1.0, label="margin m",
                 fmt="{:g}"),
          Slider("form", values=["source", "hadsell"], value="source", label="loss form")],
         title="What the margin does")
""", tags=["nbval-ignore-output"])

md(r"""
The same numbers, printed (the explorer's output is not compared by the book's tests, this
table is):
""")

code(r"""
print(f"{'m':>5s} {'share of different pairs inside m':>35s} {'source loss':>12s} {'Hadsell loss':>13s}")
for m in (0.25, 0.5, 1.0, 1.5, 2.0, 4.0):
    src = siamese.margin_report(d_ev, same_ev, m, form="source")
    had = siamese.margin_report(d_ev, same_ev, m, form="hadsell")
    print(f"{m:5g} {100 * src['inside_margin']:34.1f}% {src['loss']:12.3f} {had['loss']:13.3f}")
""")

md(r"""
Three things to see. First, at the margin it was trained with ($m = 1$), many of the
held-out different-class pairs are still *inside* the margin (the table's row $m = 1$),
although on the training batches the mean different-class distance settles just above $m$
(section 4.2's curve): characters of unseen alphabets are packed closer together than the
ones the network was trained on, and they are the pairs that would still push. Second, the
trained network's embeddings have unit length, so no distance exceeds 2 and from $m = 1.5$
on every different pair is inside the margin: the margin is an angle here and the network
cannot rescale its way out of it. The 2-D embedding on the right has no such constraint:
nothing stops it from multiplying its outputs by two, which doubles every distance, and the
one trained at $m = 4$ is very nearly the one trained at $m = 1$, scaled up (watch the axes;
exercise 4.1 measures the factor). Third, at a small margin ($m = 0.25$) hardly any of the
different pairs are inside it (the table's first row): the second term of the loss would
hardly push at all, and only the same-class pull would keep shaping the embedding.

## 4.7 The source's loss against Hadsell's

Both forms pull same pairs and push different pairs, but with different forces. The
derivative of the per-pair loss with respect to the distance is

| | same pair | different pair, $d < m$ |
|---|---|---|
| source | $1$ | $-1$ |
| Hadsell | $d$ | $-(m - d)$ |

The source's form pulls every same pair with unit force however close it already is, so
same pairs are pulled toward a single point (and the gradient with respect to the
embeddings, $\frac{\partial d}{\partial z} = \frac{z_1 - z_2}{d}$, is a unit vector that
changes direction abruptly as $d \to 0$: this is where the $\varepsilon$ of step 3 earns
its keep). Hadsell's form eases off as a pair closes in and pushes a different pair less the
closer it is to the margin: a spring rather than a constant force.
""")

code(r"""
grid = np.linspace(0.0, 2.0, 201)
fig = viz.plot_loss_gradients(grid, siamese.loss_gradient_curves(grid, margin=1.0), margin=1.0)
plt.show()
""")

md(r"""
**Trained side by side.** Two small Siamese networks (16 channels instead of 128, so that
this cell runs in seconds) from the same initialisation, on the same pairs, for the same
number of steps, differing only in the loss form; measured on Lake's runs and on 600
20-way one-shot episodes from a third of the evaluation characters. With `TRAIN = True` the
two are trained ten times longer.
""")

code(r"""
steps = 2500 if TRAIN else 250
small = {"hidden": 16, "n_pairs": 64, "eval_every": 0, "rotations": False, "augment": False,
         "within_alphabet": 0.5, "lr_halvings": 0}
subset = siamese.eval_subset(3)
print(f"{steps} steps each; accuracy in %, ± 95% CI")
print(f"{'loss form':<10s} {'Lake runs':>14s} {'20-way 1-shot':>16s} {'final loss':>11s}")
for form in siamese.LOSS_FORMS:
    small_net, hist = siamese.train_siamese(steps, config={**small, "form": form}, seed=0,
                                            progress=False)
    lake_acc, _ = siamese.lake_runs_accuracy(small_net.embedding, runs)
    acc20 = siamese.few_shot_accuracy(siamese.embed_pool(small_net.embedding, subset), 20, 1,
                                      600, seed=1)
    (m1, c1), (m2, c2) = stats.mean_ci95(lake_acc), stats.mean_ci95(acc20)
    print(f"{form:<10s} {m1:8.1f} ± {c1:4.1f} {m2:10.1f} ± {c2:4.1f} "
          f"{np.mean(hist['loss'][-50:]):11.3f}")
""")

md(r"""
The final losses are not comparable across forms (they measure different things); the
accuracies are. Read the difference against the confidence intervals: Lake's 20 runs give
wide intervals, which overlap here, while the 600 random episodes separate the two forms more
sharply; with this little training the result can still change with the seed (exercise
4.3). Both small networks are far below the full one of section 4.2: 250 steps of a
16-channel network are a demonstration, not a result. The full network uses Hadsell's form.

## Summary

* A Siamese network is one embedding network applied twice; the weight sharing is simply
  the reuse of one module.
* The contrastive loss pulls same-class pairs together and pushes different-class pairs out
  to a margin $m$; the source's form uses constant forces, Hadsell's springs.
* A distance that stays differentiable at zero, and an embedding that does not depend on the
  batch, are two small details that decide whether training and testing behave.
* Trained on the background alphabets only, the embedding recognises characters of unseen
  alphabets from a single example. Putting the embeddings on the unit sphere, averaging
  only the different-class pairs that still push, and widening the network lifted our
  Siamese network by about ten points on Lake's runs (section 4.2's table), to just short of
  Koch et al.'s 92% (section 4.3 prints by how much) with a far smaller network on 28×28
  images; the recipe's three seeds used together pass it. A prototypical network, trained on
  episodes that look like the test, does better than one Siamese network with a quarter of
  the parameters.

## Exercises

```{exercise} Margin and scale
:label: ex-ch4-1

Train `siamese.fit_2d_embedding` on the features of section 4.6 with margins 1 and 4 (source
form). Compare the spread of the points: is the second picture just the first one scaled up?
What would make the margin matter in a way that a scaling cannot undo?
```

```{solution-start} ex-ch4-1
:class: dropdown
```

The pictures are nearly the same up to a factor close to 4: a linear (or any homogeneous)
embedding can absorb the margin into its scale. The margin starts to matter when the scale
is fixed, for example by normalising the embeddings to unit length, as the book's Siamese
network does (then $m$ is bounded by 2 and measures an angle), or by a weight penalty.
""")

code(r"""
p1 = siamese.fit_2d_embedding(feats, labels, 1.0, seed=0)
p4 = siamese.fit_2d_embedding(feats, labels, 4.0, seed=0)
print(f"spread at m = 1: {p1.std():.2f}, at m = 4: {p4.std():.2f}, ratio {p4.std() / p1.std():.2f}")
""", tags=["solution"])

md(r"""
```{solution-end}
```

```{exercise} Harder negatives
:label: ex-ch4-2

Measure verification accuracy on evaluation pairs whose different-class members always come
from the same alphabet (`within_alphabet=1.0`) and on pairs whose negatives are random
(`within_alphabet=0.0`), with the threshold of section 4.4. Which is harder, and why does it
matter for Lake's runs?
```

```{solution-start} ex-ch4-2
:class: dropdown
```

Pairs from within one alphabet are harder: their characters share strokes and style. Lake's
runs draw all 20 candidates from one alphabet, so they test exactly this case, which is why
the network was trained with half its negatives from within an alphabet.
""")

code(r"""
for within in (0.0, 1.0):
    pairs = siamese.PairSampler(evaluation, 1318, within_alphabet=within, seed=12).batch()
    d = pairs.distances(z_s)
    print(f"within_alphabet={within}: verification accuracy "
          f"{siamese.verification_accuracy(d, pairs.same, threshold):.1f}%")
""", tags=["solution"])

md(r"""
```{solution-end}
```

```{exercise} Nearest example or class mean?
:label: ex-ch4-3

With five examples per class, the nearest-example rule and the class-mean rule differ.
Compare them for both networks on 600 5-way 5-shot episodes (`siamese.few_shot_accuracy`
with `method="nearest"` and `method="prototype"`). Then rerun the side-by-side comparison of
section 4.7 with another seed: does the winner change?
```

```{solution-start} ex-ch4-3
:class: dropdown
```

The class mean averages out the quirks of individual drawings, which is what the prototypical
network was trained for; but at 5-way 5-shot both networks are close to the ceiling, and
the two rules come out within a few tenths of a point of each other, less than 600 tasks
can resolve. The winner of the small side-by-side comparison can change with the seed when
the intervals overlap.
""")

code(r"""
for name, z in (("Siamese", z_s), ("protonet", z_p)):
    for method in ("nearest", "prototype"):
        acc = siamese.few_shot_accuracy(z, 5, 5, 600, method=method, seed=2)
        print(f"{name:<9s} {method:<9s} 5-way 5-shot: {acc.mean():.1f}%")
""", tags=["solution"])

md(r"""
```{solution-end}
```

```{exercise} Transductive BatchNorm
:label: ex-ch4-4

Put a copy of the Siamese embedding network in training mode (so that BatchNorm uses the
batch's statistics), embed one drawing inside a batch of its own character's drawings and
inside a batch of other characters, and compare the two embeddings with the distances the
network puts between drawings of one character. What would this do to a verification pair?
```

```{solution-start} ex-ch4-4
:class: dropdown
```

In training mode the embeddings differ, because each is normalised with its batch's mean
and variance (a batch of a single image cannot even be normalised: PyTorch refuses it).
The distance of a pair would then depend on what else was in the batch. With running
statistics (`eval()`), the embedding is a function of the image alone.
""")

code(r"""
import copy

x = torch.tensor(evaluation.images[:64, 0]).reshape(64, 1, 28, 28)       # 64 characters
own = torch.tensor(evaluation.images[0]).reshape(20, 1, 28, 28)          # character 0
g = copy.deepcopy(f).train()  # a copy: training mode would also update f's running statistics
with torch.no_grad():
    in_own, in_random = g(own)[:1], g(x)[:1]  # the same drawing in two batches
inductive = siamese.embed_images(f, x[:1])
dist = lambda a, b: siamese.euclidean_distance(a, b).item()  # noqa: E731
print(f"batch statistics: own-character batch vs random batch: {dist(in_own, in_random):.2f}")
print(f"running statistics: alone vs inside the random batch:   "
      f"{dist(inductive, siamese.embed_images(f, x)[:1]):.2f}")
print(f"typical distance between two drawings of one character: {d_same_ev.median().item():.2f}")
""", tags=["solution"])

md(r"""
```{solution-end}
```
""")


if __name__ == "__main__":
    nb.write(OUT)
