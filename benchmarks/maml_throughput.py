"""Second-order MAML meta-steps per second: mlkit.maml against `higher`.

The workload is issue 3's: Finn et al.'s Omniglot network, a 5-way 1-shot
meta-batch of 32 tasks with 15 queries per class, one inner step (alpha = 0.4
on Finn's summed loss), second-order meta-gradient of the mean query loss,
Adam not included (it costs the same for both). Same network, same tasks,
same process; every variant is warmed up, then the variants are timed in
interleaved rounds (so that load from other processes hits them alike) and
the median is reported. Before timing, the meta-gradients of all variants are
checked equal.

    python benchmarks/maml_throughput.py [--rounds 5] [--threads 1] [--json]

With ``--json`` the last line is
``{"ratio_vs_higher": ..., "seconds_per_step": {...}, ...}``;
``ratio_vs_higher`` is for ``mlkit_concurrent``: the tasks shared among as
many Python threads as torch has threads (``--threads``), each running one
torch thread (``mlkit.maml.meta_gradient(..., workers=N)``). `higher` runs as
its MAML example does, one task after another on all torch threads; running
it from several threads was not tried.
``higher==0.2.1`` is a benchmark dependency only (requirements-bench.txt).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from mlkit import data
from mlkit import maml
from mlkit.checkpoints import machine_description
from mlkit.nets import ConvNet


def higher_meta_gradient(
    model: torch.nn.Module, batch: data.Episode, alpha: float
) -> None:
    """The meta-gradient with `higher`, as its MAML example does: one task at
    a time."""
    import higher

    inner_opt = torch.optim.SGD(model.parameters(), lr=alpha)
    n_tasks = batch.support_x.shape[0]
    for t in range(n_tasks):
        with higher.innerloop_ctx(
            model, inner_opt, copy_initial_weights=False
        ) as (fmodel, diffopt):
            # Finn's inner loss: summed over the support set, divided by k_shot
            # (= 1 here).
            support_loss = F.cross_entropy(
                fmodel(batch.support_x[t]), batch.support_y[t], reduction="sum"
            )
            diffopt.step(support_loss)
            query_loss = F.cross_entropy(
                fmodel(batch.query_x[t]), batch.query_y[t]
            )
            (query_loss / n_tasks).backward()


def mlkit_meta_gradient(
    model: torch.nn.Module,
    batch: data.Episode,
    alpha: float,
    batched: bool | None,
) -> None:
    losses, _ = maml.query_loss(
        model,
        batch,
        loss_fn=maml.cross_entropy,
        inner_loss_fn=maml.summed_cross_entropy(1),
        inner_steps=1,
        alpha=alpha,
        batched=batched,
    )
    losses.mean().backward()


def mlkit_concurrent_meta_gradient(
    model: torch.nn.Module, batch: data.Episode, alpha: float, workers: int
) -> None:
    grads = maml.meta_gradient(
        model,
        batch,
        loss_fn=maml.cross_entropy,
        inner_loss_fn=maml.summed_cross_entropy(1),
        inner_steps=1,
        alpha=alpha,
        batched=False,
        workers=workers,
    )
    for n, p in model.named_parameters():
        p.grad = grads[n]


def grads_of(model: torch.nn.Module, fn) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    fn()
    return [p.grad.detach().clone() for p in model.parameters()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--tasks", type=int, default=32)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ConvNet(5)
    pool = data.omniglot_classes("finn-train")
    batch = data.EpisodeSampler(pool, 5, 1, 15, seed=0).batch(args.tasks)
    alpha = 0.4
    threads = torch.get_num_threads()
    variants = {
        "higher": lambda: higher_meta_gradient(model, batch, alpha),
        "mlkit_loop": lambda: mlkit_meta_gradient(
            model, batch, alpha, batched=False
        ),
        "mlkit_task_batch": lambda: mlkit_meta_gradient(
            model, batch, alpha, batched=True
        ),
        "mlkit_default": lambda: mlkit_meta_gradient(
            model, batch, alpha, batched=None
        ),
        # the tasks shared among as many threads as torch has, one torch
        # thread each
        "mlkit_concurrent": lambda: mlkit_concurrent_meta_gradient(
            model, batch, alpha, workers=threads
        ),
    }
    ref = grads_of(model, variants["higher"])
    worst = {}
    for name, fn in variants.items():
        got = grads_of(model, fn)
        # One relative error over all parameters: the conv biases' true
        # gradient is zero (BatchNorm removes any per-channel constant), so
        # per-tensor ratios would be noise.
        flat_got, flat_ref = (
            torch.cat([g.ravel() for g in got]),
            torch.cat([g.ravel() for g in ref]),
        )
        err = float((flat_got - flat_ref).norm() / flat_ref.norm())
        worst[name] = err
        # float32 sums over 32 tasks in another order: ~1e-4 is rounding
        if err > 1e-3:
            raise SystemExit(
                f"{name}: meta-gradient differs from higher's "
                f"(relative {err:.2e})"
            )
    wall: dict[str, list[float]] = {n: [] for n in variants}
    cpu: dict[str, list[float]] = {n: [] for n in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            model.zero_grad(set_to_none=True)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = {n: statistics.median(v) for n, v in wall.items()}
    med_cpu = {n: statistics.median(v) for n, v in cpu.items()}
    print(
        f"machine: {machine_description()}, "
        f"torch threads: {torch.get_num_threads()}"
    )
    print(
        f"{'variant':<18}{'s/step (wall)':>15}{'s/step (cpu)':>15}"
        f"{'vs higher':>11}"
        f"{'rel. grad diff':>16}"
    )
    for n in variants:
        print(
            f"{n:<18}{med[n]:>15.3f}{med_cpu[n]:>15.3f}"
            f"{med['higher'] / med[n]:>10.2f}x"
            f"{worst[n]:>16.1e}"
        )
    best = min((n for n in variants if n != "higher"), key=med.get)
    result = {
        "ratio_vs_higher": round(med["higher"] / med["mlkit_concurrent"], 3),
        "ratio_default_vs_higher": round(
            med["higher"] / med["mlkit_default"], 3
        ),
        "fastest_mlkit_variant": best,
        "seconds_per_step": {n: round(v, 4) for n, v in med.items()},
        "cpu_seconds_per_step": {n: round(v, 4) for n, v in med_cpu.items()},
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "tasks": args.tasks,
        "machine": machine_description(),
    }
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
