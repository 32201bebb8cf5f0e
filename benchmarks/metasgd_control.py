"""Control for Meta-SGD: the same 600 meta-iterations from maml-omniglot-5w1s.

Same schedule, seed and task stream as the recipe metasgd-omniglot-5w1s, with
MAML's one scalar rate instead of learned rates; then the control and Meta-SGD
are scored on the same Finn's-split test tasks (seed 1) under both protocols,
with paired differences. Measured once for benchmarks/RESULTS.md ("Meta-SGD");
about 11 minutes of CPU. Run: python benchmarks/metasgd_control.py
"""

import dataclasses, time, numpy as np, torch

torch.set_num_threads(1)
from mlkit import maml, checkpoints
from mlkit.stats import mean_ci95

cfg = maml.recipe_config("metasgd-omniglot-5w1s")
cfg = dataclasses.replace(cfg, order="second")
torch.manual_seed(0)
model = maml.build_model(cfg)
weights, _ = checkpoints.load_checkpoint("maml-omniglot-5w1s")
model.load_state_dict(weights)
inner, outer = maml._losses(cfg)
t0 = time.time()
hist = maml.meta_train(
    model,
    maml._sampler(cfg),
    loss_fn=outer,
    inner_loss_fn=inner,
    iterations=cfg.iterations,
    inner_steps=1,
    alpha=cfg.alpha,
    meta_lr=cfg.meta_lr,
    metric=maml.accuracy,
    rng=np.random.default_rng(0),
    anneal_from=cfg.anneal_from,
    batched=True,
    progress=True,
)
print("trained", time.time() - t0, "s", flush=True)
import os

os.makedirs("runs", exist_ok=True)
torch.save(model.state_dict(), "runs/metasgd-control.pt")
ms, mc, _ = maml.load_model("metasgd-omniglot-5w1s")
rates = {n: r.detach() for n, r in maml.inner_rates(ms).items()}
for protocol, q in (("book", 15), ("paper", 1)):
    sample = maml._sampler(
        cfg, "finn-test", k_shot=1, n_tasks=50, n_way=5, q_queries=q
    )
    out = {}
    for label, net, alpha, steps in (
        ("control 1 step", model, cfg.alpha, 1),
        ("control 3 steps", model, cfg.alpha, 3),
        ("metasgd", ms, rates, 1),
    ):
        rng = np.random.default_rng(1)
        out[label] = (
            maml.evaluate(
                net,
                (sample(rng) for _ in range(12)),
                loss_fn=outer,
                inner_loss_fn=inner,
                inner_steps=steps,
                alpha=alpha,
                metric=maml.accuracy,
            )
            * 100
        )
        print(
            protocol, label, "%.2f ± %.2f" % mean_ci95(out[label]), flush=True
        )
    for label in ("control 1 step", "control 3 steps"):
        d = out["metasgd"] - out[label]
        print(
            protocol,
            "metasgd -",
            label,
            "paired: %.2f ± %.2f" % mean_ci95(d),
            "better/worse/equal",
            int((d > 0).sum()),
            int((d < 0).sum()),
            int((d == 0).sum()),
            flush=True,
        )
