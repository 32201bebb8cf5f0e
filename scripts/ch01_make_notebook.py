"""Write chapters/01_background.ipynb (unexecuted) from the cells below.

Run from the repository root, then execute it in place:

    .venv/bin/python scripts/ch01_make_notebook.py
    MLKIT_DATA=/work/shared/data .venv/bin/jupyter execute --inplace --timeout=900 \
        chapters/01_background.ipynb
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nb import Notebook  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "chapters" / "01_background.ipynb"
nb = Notebook()
md, code = nb.md, nb.code

md(r"""
# 1 Background

A child who has seen one giraffe recognises the next one. A deep network trained from scratch
needs thousands of labelled giraffes. Lake et al. {cite}`lake2015human` made the gap precise
on handwritten characters: people learn a new character from a single example, and so should
a machine. This chapter explains why *meta-learning* is the leading answer to that challenge
(section 1.1) and why, once a machine learns how to learn, we need to be able to ask it what
it learned (section 1.2).
""")

code(r"""
import numpy as np
import torch
import matplotlib.pyplot as plt

from mlkit import data as D, demos, interpret, maml, nets, stats, viz

# Single-threaded reductions, so that the printed numbers are reproducible.
torch.set_num_threads(1)
""")

md(r"""
## 1.1 The rise of meta-learning

Ordinary supervised learning fits one model to one task from that task's data alone. When
the data are few, the model has nothing to go on but its architecture and its random
initial weights. **Meta-learning**, or *learning to learn*, changes the unit of experience
from the example to the task: the learner sees many related tasks and extracts from them what
they share, so that a new task of the same kind can be learned from a handful of examples
and a few steps of computation {cite}`hospedales2021meta`. Three uses made it prominent:

* **Few-shot learning.** Classify images of classes never seen before from one or five
  examples each: Omniglot characters {cite}`lake2015human`, or new object categories.
  Metric-based meta-learners learn an embedding in which a new class can be recognised by
  comparison {cite}`koch2015siamese,vinyals2016matching,snell2017prototypical`;
  gradient-based ones such as MAML learn an initialisation from which a few gradient steps
  suffice {cite}`finn2017maml`.
* **Fast adaptation.** Fit a new function, user or environment from a few measurements:
  the sinusoid regression below is the textbook case {cite}`finn2017maml`.
* **Reinforcement learning.** Adapt a policy to a new goal or new dynamics after a few
  episodes of experience instead of millions; Finn et al. meta-train simulated robots to run
  in a new direction or at a new speed after one policy-gradient step {cite}`finn2017maml`.

### A demonstration: a new sinusoid from five points

Each task is a sinusoid $y = A \sin(x - \varphi)$ with an amplitude $A \in [0.1, 5]$ and a
phase $\varphi \in [0, \pi]$ of its own {cite}`finn2017maml`. We are given five points of a
new one and must predict it everywhere on $[-5, 5]$.
""")

code(r"""
task = D.sample_sinusoid_tasks(1, k_shot=5, n_query=100, seed=2021)
support_x, support_y = task.support_x[0], task.support_y[0]
grid = torch.linspace(-5, 5, 200)[:, None]
truth = task.curve(grid[:, 0])[0]
print(f"amplitude {task.amplitude.item():.2f}, phase {task.phase.item():.2f}")
""")

md(r"""
**Without meta-learning**, the best we can do is to fit a network (Finn et al.'s
$1 \to 40 \to 40 \to 1$ ReLU network) to the five points from random weights.
`demos.fit_from_scratch` runs 300 Adam steps on the mean squared error.

**With meta-learning**, we first learn from many *other* sinusoids. MAML
{cite}`finn2017maml` (chapter 3) looks for initial weights $\theta$ from which one gradient
step on a task's five points gives a good fit for that task; `maml.train_sinusoid` runs 2,000
meta-training iterations of 25 tasks each, a few seconds on a CPU (chapter 3 trains the full
70,000). Then, for the new sinusoid, we take 1 or 10 gradient steps from $\theta$ on its five
points with the inner rate $\alpha = 0.01$ (`maml.adapt`).
""")

code(r"""
scratch = demos.fit_from_scratch(support_x, support_y, steps=300, lr=1e-2, seed=0)
meta_model, history = maml.train_sinusoid(2000, k_shot=5, inner_steps=1, alpha=0.01,
                                          seed=0, progress=False)
print(f"meta-training loss: first iteration {history[0]['meta_loss']:.2f}, "
      f"last {history[-1]['meta_loss']:.2f}")
fast = {steps: maml.adapt(meta_model, support_x, support_y, loss_fn=maml.mse_loss,
                          inner_steps=steps, alpha=0.01)
        for steps in (1, 10)}
with torch.no_grad():
    curves = {
        "from scratch, 300 steps": scratch(grid),
        "meta-learned start, before adapting": meta_model(grid),
        "meta-learned, 1 step": maml.predict(meta_model, fast[1], grid),
        "meta-learned, 10 steps": maml.predict(meta_model, fast[10], grid),
    }
viz.plot_sinusoid_fits(grid, curves, support_x, support_y, truth=truth,
                       title="Learning a new sinusoid from 5 points")
plt.show()
""")

md(r"""
The network trained from scratch passes through the five points and is wrong elsewhere: five
points do not determine a function, and nothing tells it that the function is a sinusoid.
The meta-learned network starts from a generic wave and, after a step or ten on the same
five points, bends into the right one: what it learned from the other tasks is the *shape of
the family*, and the five points only have to pick a member.

One task proves little, so we repeat the comparison on 30 new tasks and measure the mean
squared error on 100 held-out points of each (mean and 95% confidence interval over tasks).
""")

code(r"""
tasks = D.sample_sinusoid_tasks(30, k_shot=5, n_query=100, seed=7)
errors = {"from scratch, 300 steps": demos.scratch_errors(tasks, steps=300, lr=1e-2)}
for steps in (0, 1, 10):
    errors[f"meta-learned, {steps} step{'s' if steps != 1 else ''}"] = maml.evaluate(
        meta_model, [tasks], loss_fn=maml.mse_loss, inner_steps=steps, alpha=0.01,
        metric=maml.mse_loss)
for name, e in errors.items():
    mean, half = stats.mean_ci95(e)
    print(f"{name:25s} query MSE {mean:5.2f} ± {half:.2f}")
""")

md(r"""
Learning from many related tasks wins clearly; without an adaptation step the meta-learned
start is only an average guess, so the adaptation matters as much as the start. Chapter 3
derives the algorithm, trains it properly and reproduces Finn et al.'s figure.

## 1.2 Why interpretability matters

A meta-learner is a model that produces models. When it fails, or succeeds, the usual
summary, one accuracy or one error averaged over test tasks, does not say *why*. Three
practical needs call for opening the box.

### Debugging: finding why a meta-learner fails on some tasks

We test the meta-learned sinusoid model on 200 tasks whose amplitudes run from 0.1 to 10, twice
the largest amplitude of its training tasks, and first report what a benchmark table would:
one average.
""")

code(r"""
rng = np.random.default_rng(11)
amplitudes = rng.uniform(0.1, 10.0, size=200)
wide = demos.sinusoid_tasks_with_amplitudes(amplitudes, k_shot=5, n_query=100, seed=12)
wide_errors = {steps: maml.evaluate(meta_model, [wide], loss_fn=maml.mse_loss,
                                    inner_steps=steps, alpha=0.01, metric=maml.mse_loss)
               for steps in (1, 10)}
mean, half = stats.mean_ci95(wide_errors[10])
print(f"query MSE after 10 steps, all 200 tasks: {mean:.2f} ± {half:.2f}")
""")

md(r"""
That number hides everything. A raw MSE grows with $A^2$ anyway, so we look per task at the
*relative* error, the MSE divided by the signal's variance $A^2/2$: 0 is perfect, 1 is no
better than predicting zero.
""")

code(r"""
relative = {f"{steps} step{'s' if steps != 1 else ''}": e / (amplitudes ** 2 / 2)
            for steps, e in wide_errors.items()}
inside = amplitudes <= D.SINUSOID_AMPLITUDE[1]
for name, r in relative.items():
    worse_in, worse_out = int((r[inside] > 1).sum()), int((r[~inside] > 1).sum())
    print(f"{name:8s}: median relative error {np.median(r[inside]):.2f} inside the "
          f"training range, {np.median(r[~inside]):.2f} outside; worse than predicting "
          f"zero on {worse_in} tasks inside and {worse_out} outside")
small = amplitudes < 1.0
worse_small = int((relative["10 steps"][small] > 1).sum())
print(f"tasks with amplitude below 1: {int(small.sum())}, of which {worse_small} "
      f"worse than predicting zero after 10 steps")
viz.plot_task_errors(amplitudes, relative, xlabel="amplitude A of the task",
                     ylabel="relative query error (MSE / (A²/2))",
                     shade=D.SINUSOID_AMPLITUDE,
                     shade_label="amplitudes seen in meta-training")
plt.axhline(1.0, color="k", lw=0.8, ls=":")
plt.show()
""")

md(r"""
The per-task view shows two different failures that the average mixed together. Past the
training range the relative error rises (compare the medians printed above): the model has
learned sinusoids *of a certain size*, which an average over a mixed test set could not tell
us. And inside the range, the tasks
with the smallest amplitudes are the worst of all in relative terms, most of them worse than
predicting zero: the meta-learned start
is a wave of moderate size, and a few small gradient steps on five nearly flat points do not
shrink it enough. Each failure has its own remedy (a wider task distribution for the first,
more or larger inner steps, or a start that adapts its scale, for the second); a single
number would have suggested neither. Chapter 6 returns to this with attribution and
activation tools.

### Improvement: understanding what to change

Knowing *how* a meta-learner succeeds tells us what to keep and what to drop. Raghu et al.
{cite}`raghu2020rapid` compared MAML's internal representations before and after adaptation
with a similarity measure for neural representations {cite}`kornblith2019similarity` and
found that on few-shot image benchmarks the inner loop hardly changes the convolutional
layers: the learned features are *reused*, and nearly all the adaptation happens in the final
layer. That explanation led directly to an improvement: ANIL, which adapts the head only, is
about as accurate and much cheaper. Without looking inside, one would have kept paying for
gradients through every layer.

Does the same hold for our sinusoid model? We ask it in two ways on the 30 test tasks of
section 1.1: how far 10 inner steps move each parameter tensor, relative to its size
(`interpret.weight_change`), and how the error changes if, at test time, only the head or only
the body is allowed to adapt (Raghu et al.'s freezing test).
""")

code(r"""
changes = demos.sinusoid_weight_changes(meta_model, tasks, inner_steps=10, alpha=0.01)
for name, change in changes.items():
    print(f"{name:13s} moves by {100 * change.mean():4.1f}% of its norm")
head = nets.head_parameter_names(meta_model)
body = [n for n, _ in meta_model.named_parameters() if n not in head]
for label, names in (("all layers", None), ("head only", head), ("body only", body)):
    e = maml.evaluate(meta_model, [tasks], loss_fn=maml.mse_loss, inner_steps=10,
                      alpha=0.01, metric=maml.mse_loss, adapt_names=names)
    mean, half = stats.mean_ci95(e)
    print(f"adapting {label:10s}: query MSE {mean:.2f} ± {half:.2f}")
viz.plot_weight_change(changes, ylabel="relative change after 10 steps",
                       title="Where adaptation moves the weights (head in orange)")
plt.show()
""")

md(r"""
Here the answer differs from Raghu et al.'s on images: the first layer's weights move at least
as much as the head's, and adapting the head alone leaves the error far higher than adapting everything, while
adapting the body alone comes close. For this model ANIL's shortcut would cost accuracy; the
measurement, not the analogy with image benchmarks, says which simplification is safe.
Chapter 6 makes the same measurement, with representations, on our MAML checkpoint for
Omniglot.

### Trust: knowing why before acting on a decision

In high-stakes settings a correct answer for the wrong reason is a liability. Ribeiro et al.
{cite}`ribeiro2016why` trained a classifier to tell wolves from huskies that was accurate on
its test images; their local explanations revealed that it looked at the snow in the
background, not at the animal. Few-shot learning makes such shortcuts easier to acquire and
harder to notice. Suppose a hospital adapts a meta-learned model to a rare condition from a
handful of scans per class, and the positive scans all come from one scanner that stamps a
mark in the corner. The adapted model can separate the classes by the mark, and a query set
from the same source will confirm it.

We stage this with the small prototypical network of chapter 2 (trained here in a few
seconds): in 100 5-way 1-shot episodes from unseen alphabets, the one support drawing of
class 0 carries a small ink square in its top-left corner, a "stamp" unrelated to the
character (`demos.marker_shortcut`). We measure the query accuracy without any stamp, with
the stamp on class 0's queries too (a test set from the same source), and with the stamp on
the *other* classes' queries instead (a new source).
""")

code(r"""
net, _ = demos.train_tiny_protonet(300, n_way=5, k_shot=1, q_queries=5, hidden=32,
                                   seed=0)
shortcut = demos.marker_shortcut(net, 100, n_way=5, seed=1000)
for name, values in shortcut.items():
    mean, half = stats.mean_ci95(values)
    what = ("share of other-class queries" if name == "sent to marked class"
            else "query accuracy")
    print(f"{name:21s} {what} {100 * mean:5.1f}% ± {100 * half:.1f}")
""")

md(r"""
Tested on data from the same source the stamped model looks at least as good as the clean
one, and nothing in that number warns us. On a new source its accuracy falls sharply, because a
large share of the other classes' stamped queries are sent to class 0. An explanation of a
single decision shows why. We take one episode, find a query of another class that the
stamped model classifies correctly without the stamp and as class 0 with it, and fit LIME
(section 2.2) to the score of class 0 over $7 \times 7$ patches.
""")

code(r"""
evaluation = D.omniglot_classes("evaluation")
ep = D.sample_episode(evaluation, n_way=5, k_shot=1, q_queries=5, seed=5)
support = ep.support_x.clone()
support[0] = demos.add_marker(support[0])
stamped_model = demos.PrototypeClassifier(net, support, ep.support_y)
stamped_queries = demos.add_marker(ep.query_x)
with torch.no_grad():
    clean_pred = stamped_model(ep.query_x).argmax(1)
    stamped_pred = stamped_model(stamped_queries).argmax(1)
misled = (ep.query_y != 0) & (clean_pred == ep.query_y) & (stamped_pred == 0)
i = int(misled.nonzero()[0])
print(f"query {i}: true class {int(ep.query_y[i])}, predicted {int(clean_pred[i])} "
      f"without the stamp and {int(stamped_pred[i])} with it")
patches = interpret.patch_mask((28, 28), 7)
lime = interpret.lime_surrogate(stamped_model, stamped_queries[i:i + 1], target=0,
                                feature_mask=patches, n_samples=400, seed=0)
rank = int((lime.coefficients > lime.coefficients[0]).sum()) + 1
print(f"LIME coefficient of the corner patch (it holds only the stamp): "
      f"{lime.coefficients[0]:.2f}, rank {rank} of {len(lime.coefficients)}; "
      f"surrogate fidelity R² {lime.fidelity:.2f}")
true = int(ep.query_y[i])
lime_clean = interpret.lime_surrogate(stamped_model, ep.query_x[i:i + 1], target=true,
                                      feature_mask=patches, n_samples=400, seed=0)
viz.plot_image_maps(torch.cat([stamped_queries[i:i + 1], ep.query_x[i:i + 1]]),
                    torch.stack([lime.attribution[0], lime_clean.attribution[0]]),
                    titles=["stamped: score of class 0",
                            f"no stamp: score of class {true}"],
                    map_label="LIME coefficient",
                    suptitle="Why is this query called class 0?")
plt.show()
""")

md(r"""
The corner patch, which contains nothing but the stamp, is among the strongest reasons the
surrogate gives for "class 0" (its rank is printed above); without the stamp, the same query's
score for its true class rests on the character's strokes (right). The explanation exposes
the shortcut that the same-source accuracy hid. Only an explanation of *which parts of the input
drove the decision* reveals such a problem before someone relies on the model.

These three needs frame the three questions the book answers (section 2.3): what general
strategy a meta-learner learns, how it applies it to a new task, and which factors drive its
decisions.

## Exercises

```{exercise} How many inner steps?
:label: ex-ch1-1

For the demonstration task of section 1.1, compute the query error of the meta-learned model
after 0, 1, 2, 5, 10 and 20 inner steps with $\alpha = 0.01$ (`maml.evaluate` on `[task]`), and
keep them in a dict `query_mse` keyed by the number of steps. Does the error keep falling?
```

```{solution} ex-ch1-1
:class: dropdown

The error falls fastest over the first steps, which is what MAML's objective optimises; later
steps still help on this task but by less each time.
The numbers come from the hidden solution cell below.
```
""")

code(r"""
query_mse = {}
for steps in (0, 1, 2, 5, 10, 20):
    query_mse[steps] = float(maml.evaluate(meta_model, [task], loss_fn=maml.mse_loss,
                                           inner_steps=steps, alpha=0.01,
                                           metric=maml.mse_loss)[0])
    print(f"{steps:2d} steps: query MSE {query_mse[steps]:.3f}")
""", tags=["solution", "hide-cell"])

md(r"""
Check your answer (a dict from the number of steps to the query MSE):
""")

code(r"""
from mlkit.exercises import check

check("ex-ch1-1", query_mse, meta_model, task)
""")

md(r"""
```{exercise} Can learning from scratch be rescued?
:label: ex-ch1-2

Give `demos.fit_from_scratch` more steps, fewer steps (early stopping), or a smaller network
(`hidden=(10,)`). Can any of these match the meta-learned model on the 30 test tasks? What
knowledge would the learner need that five points cannot give?
```

```{solution} ex-ch1-2
:class: dropdown

None of them closes the gap. More steps fit the five points more exactly and the curve in
between no better; fewer steps or a smaller network give smoother but still arbitrary
curves. What is missing is the prior that the function is a sinusoid with an amplitude and a
phase in certain ranges: a learner can only get that from other tasks of the family (or from
a person who writes it into the model).
```

```{exercise} Debugging with the per-task view
:label: ex-ch1-3

Repeat the debugging experiment of section 1.2 with the inner rate $\alpha = 0.001$ and
$\alpha = 0.05$. Which of the two failures (small amplitudes, amplitudes beyond the training
range) does each change, and why does a larger amplitude make a gradient step larger?
```

```{solution} ex-ch1-3
:class: dropdown

The gradient of the squared error is proportional to the residual, which grows with the
amplitude, so a fixed $\alpha$ takes larger steps on large-amplitude tasks and tiny ones on
small-amplitude tasks. With $\alpha = 0.001$ the small-amplitude tasks get worse (the start
barely moves in ten steps). With $\alpha = 0.05$ they improve, but the inner loop diverges on
many of the other tasks, more often the larger the amplitude: their errors overflow to `nan`,
which turns any average over tasks into `nan` as well (count the `nan`s and use
`np.nanmedian`: a failure the per-task view makes visible at once). Between $\alpha = 0.001$
and $\alpha = 0.01$ the median error beyond the training range hardly moves: extrapolation
needs training tasks there, not a different step size.
```

```{exercise} Interpretability in your field
:label: ex-ch1-4

Describe one few-shot or fast-adaptation setting from your own field in which a meta-learned
model could be right for the wrong reason. Which of the three needs of section 1.2
(debugging, improvement, trust) would an explanation serve there, and what would the
explanation have to show?
```
""")


if __name__ == "__main__":
    nb.write(OUT)
