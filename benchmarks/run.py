"""Speed of snntorch_nengo against the reference simulator (nengo.Simulator).

Run from the repository root (nengo reads ./nengorc there)::

    PYTHONPATH=. .venv/bin/python benchmarks/run.py --quick --markdown docs/benchmarks.md

Every case runs in this one process, side by side, so the ratios are fair even
on a shared, noisy machine; absolute numbers are not. Build time is never
timed; each timed run follows a warm-up run on the same simulator.

Cases
-----
simulation (integrator, cconv, random, ff_mlp)
    each network as built today and with Nengo's defaults (LIF neurons, the
    default connection synapse, a 0.01 probe filter; `networks.VARIANTS`), and
    ff_mlp with the default synapses but its spiking ReLU neurons; one row each.
    reference: ``nengo.Simulator(net).run_steps(N)`` (batch 1, float64);
    ours batch 1: ``snntorch_nengo.Simulator(net, dtype=...).run_steps(N)``;
    ours batch 64: ``Simulator(net, minibatch_size=64).predict(x, n_steps=N)``
    with 64 different input sequences, counted as 64 * N sample-steps.
spiking_classifier
    a 784-256-256-10 LIF classifier shown 64 samples for 100 steps each:
    the reference runs them one after another (`PresentInput`), ours batch 1
    predicts them one at a time (a subset, scaled), ours batch 64 at once.
autoencoder fit
    one epoch over 12,000 random 784-D samples, minibatch 50, MSE, RMSprop:
    a hand-written torch loop (``Linear -> ReLU -> Linear -> ReLU``) against
    ``sim.fit`` on the seed tutorial's Nengo auto-encoder (n_steps=1).

Ratios are ours / reference (or, for training, torch-loop time / fit time):
above 1 means snntorch_nengo is faster. A timed run whose estimated length
exceeds the case's time budget is shortened (the table says so); a case that
cannot fit at all is skipped with a note.
"""

import argparse
import datetime
import functools
import gc
import logging
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

SIMULATION_CASES = ["integrator", "cconv", "random", "ff_mlp"]
CASES = SIMULATION_CASES + ["spiking_classifier", "autoencoder_fit"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, help="steps per timed run (default 1000)")
    parser.add_argument(
        "--quick", action="store_true", help="200 steps and shorter time budgets"
    )
    parser.add_argument(
        "--only", choices=CASES, action="append", metavar="NAME",
        help=f"run only this case (repeatable): {', '.join(CASES)}",
    )
    parser.add_argument(
        "--variants", choices=["all", "today"], default="all",
        help="simulation networks in every variant (default), or only as built today",
    )
    parser.add_argument("--markdown", metavar="PATH", help="write the results into this file")
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "float64"],
        help="snntorch_nengo's precision (the reference always uses float64)",
    )
    parser.add_argument(
        "--rev", metavar="REV",
        help="benchmark snntorch_nengo as committed at this git revision (exported "
        "with git archive to a temporary folder) instead of the working tree",
    )
    parser.add_argument(
        "--device", default="cpu",
        help="torch device for snntorch_nengo and the torch loop (the reference "
        "always runs on the CPU), e.g. cuda",
    )
    parser.add_argument(
        "--threads", type=int, default=1,
        help="CPU threads for torch and numpy's BLAS, both simulators (default 1)",
    )
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 200 if args.quick else 1000
    return args


ROOT = Path(__file__).resolve().parent.parent


def export_revision(rev):
    """``snntorch_nengo/`` as committed at ``rev``, in a temporary folder.

    The folder is removed when the process exits.
    """
    import atexit
    import shutil
    import tarfile
    import tempfile

    commit = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True,
        text=True, check=True,
    ).stdout.strip()
    folder = tempfile.mkdtemp(prefix=f"snntorch_nengo-{commit}-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    archive = Path(folder) / "src.tar"
    subprocess.run(
        ["git", "archive", "-o", str(archive), commit, "snntorch_nengo"],
        cwd=ROOT, check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    archive.unlink()
    return folder, commit


ARGS = None  # the command line, when run as a script
if __name__ == "__main__":
    ARGS = parse_args()
    # BLAS thread pools are sized when numpy/torch load: set them first
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)
    if ARGS.rev:
        _folder, ARGS.rev_commit = export_revision(ARGS.rev)
        sys.path.insert(0, _folder)

import nengo  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for `benchmarks`; PYTHONPATH/--rev come first

import snntorch_nengo  # noqa: E402
from benchmarks import networks  # noqa: E402

assert list(networks.SIMULATION) == SIMULATION_CASES

BATCH = 64
START = "<!-- benchmark results: start (written by benchmarks/run.py) -->"
END = "<!-- benchmark results: end -->"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def timed(fn):
    """Seconds ``fn()`` takes, with Python's garbage collector off, as `timeit`
    times: a full collection (a built Nengo model holds hundreds of thousands
    of objects) costs about as much as a short run, wherever it happens to fall.
    (No collection before it either: walking those objects evicts the caches
    the warm-up filled, which slowed 200-step runs by up to 1.9x.)"""
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # GPU work is asynchronous
        return time.perf_counter() - start
    finally:
        gc.enable()


class Budget:
    """Chooses how many steps a timed run gets from a warm-up run's speed."""

    def __init__(self, seconds, min_steps=10):
        self.seconds = seconds
        self.min_steps = min_steps

    def steps(self, run, wanted, warmup):
        """Warm up with ``run(warmup)`` twice, then return (steps, note)."""
        run(warmup)  # first call: allocation, caches, lazy initialisation
        seconds_per_step = timed(lambda: run(warmup)) / warmup
        if seconds_per_step * self.min_steps > self.seconds:
            return 0, (
                f"skipped: about {seconds_per_step * wanted:.0f} s for {wanted} "
                f"steps, over the {self.seconds:.0f} s budget"
            )
        fit = int(self.seconds / max(seconds_per_step, 1e-9))
        if fit >= wanted:
            return wanted, ""
        steps = max(self.min_steps, fit)
        return steps, f"{steps} of {wanted} steps (time budget)"


def measure(run, wanted, warmup, budget, samples=1):
    """Time ``run(n)``; return (sample-steps per second, steps, note)."""
    steps, note = budget.steps(run, wanted, warmup)
    if steps == 0:
        return None, 0, note
    return samples * steps / timed(lambda: run(steps)), steps, note


# -- simulation benchmarks ----------------------------------------------------


def input_data(inputs, batch, n_steps, seed=0):
    """``batch`` different constant input vectors per input Node (near its value)."""
    rng = np.random.RandomState(seed)
    data = {}
    for node in inputs:
        base = np.asarray(node.output, dtype=float)
        values = base + rng.uniform(-0.1, 0.1, (batch, 1, node.size_out))
        data[node] = np.broadcast_to(values, (batch, n_steps, node.size_out))
    return data


def bench_simulation(name, builder, args):
    log(f"[{name}] building")
    net, inputs, probe = builder()
    row = {"name": name, "notes": []}
    wanted = args.steps

    with nengo.Simulator(net, progress_bar=False) as sim:
        rate, steps, note = measure(sim.run_steps, wanted, 10, args.ref_budget)
        row["ref"], row["ref_steps"] = rate, steps
        if note:
            row["notes"].append(f"reference {note}")
    log(f"[{name}] reference: {fmt(rate)} steps/s over {steps} steps")
    del sim
    gc.collect()

    with snntorch_nengo.Simulator(
        net, progress_bar=False, dtype=args.dtype, device=args.device
    ) as sim:
        rate, steps, note = measure(sim.run_steps, wanted, 5, args.our_budget)
        row["b1"], row["b1_steps"] = rate, steps
        if note:
            row["notes"].append(f"batch 1 {note}")
    log(f"[{name}] ours batch 1: {fmt(rate)} steps/s over {steps} steps")
    del sim
    gc.collect()

    data = input_data(inputs, BATCH, wanted)
    with snntorch_nengo.Simulator(
        net, progress_bar=False, dtype=args.dtype, minibatch_size=BATCH,
        device=args.device,
    ) as sim:

        def run(n):
            sim.predict({k: v[:, :n] for k, v in data.items()}, n_steps=n)

        rate, steps, note = measure(run, wanted, 5, args.our_budget, samples=BATCH)
        row["b64"], row["b64_steps"] = rate, steps
        if note:
            row["notes"].append(f"batch {BATCH} {note}")
    log(f"[{name}] ours batch {BATCH}: {fmt(rate)} sample-steps/s over {steps} steps")
    return row


def bench_spiking_classifier(args, n_samples=BATCH, n_steps=100):
    name = "spiking_classifier"
    log(f"[{name}] building")
    rng = np.random.RandomState(1)
    images = rng.uniform(0, 1, (n_samples, 784))
    row = {"name": f"{name} (LIF, 100 steps/sample)", "notes": []}

    # reference: the samples one after another, 100 steps each (state carries over)
    present = nengo.processes.PresentInput(images, presentation_time=n_steps * 0.001)
    ref_net, _, _ = networks.spiking_classifier(stim_output=present)
    with nengo.Simulator(ref_net, progress_bar=False) as sim:
        rate, steps, note = measure(sim.run_steps, n_samples * n_steps, 50, args.ref_budget)
        row["ref"], row["ref_steps"] = rate, steps
        if note:
            row["notes"].append(f"reference {note}")
    log(f"[{name}] reference: {fmt(rate)} steps/s over {steps} steps")
    del sim

    net, (stim,), _ = networks.spiking_classifier()
    x = np.broadcast_to(images[:, None, :], (n_samples, n_steps, 784))

    # ours batch 1: predict sample by sample (a subset when slow, scaled)
    with snntorch_nengo.Simulator(
        net, progress_bar=False, dtype=args.dtype, device=args.device
    ) as sim:

        def run_samples(k):
            sim.predict({stim: x[:k]}, n_steps=n_steps)

        run_samples(1)  # warm-up
        per_sample = timed(lambda: run_samples(1))
        k = int(min(n_samples, max(1, args.budget / per_sample)))
        row["b1"] = k * n_steps / timed(lambda: run_samples(k))
        row["b1_steps"] = k * n_steps
        if k < n_samples:
            row["notes"].append(f"batch 1 ran {k} of {n_samples} samples (time budget)")
    log(f"[{name}] ours batch 1: {fmt(row['b1'])} steps/s over {k} samples")

    with snntorch_nengo.Simulator(
        net, progress_bar=False, dtype=args.dtype, minibatch_size=BATCH,
        device=args.device,
    ) as sim:
        sim.predict({stim: x}, n_steps=n_steps)  # warm-up
        row["b64"] = n_samples * n_steps / timed(
            lambda: sim.predict({stim: x}, n_steps=n_steps)
        )
        row["b64_steps"] = n_steps
    log(f"[{name}] ours batch {BATCH}: {fmt(row['b64'])} sample-steps/s")
    return row


# -- training benchmark -----------------------------------------------------------


def bench_autoencoder_fit(args, n_samples=12000, n_in=784, n_hidden=64, batch=50):
    log("[autoencoder fit] preparing")
    rng = np.random.RandomState(0)
    data = rng.uniform(0, 1, (n_samples, n_in)).astype(np.float32)
    dtype = snntorch_nengo.utils.torch_dtype(args.dtype)

    # hand-written torch loop
    model = torch.nn.Sequential(
        torch.nn.Linear(n_in, n_hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(n_hidden, n_in),
        torch.nn.ReLU(),
    ).to(dtype=dtype, device=args.device)
    optimizer = torch.optim.RMSprop(model.parameters(), 1e-3)
    tensor = torch.as_tensor(data, dtype=dtype, device=args.device)

    def torch_epoch(n=n_samples):
        for idx in torch.randperm(n, device=args.device).split(batch):
            x = tensor[idx]
            loss = torch.nn.functional.mse_loss(model(x), x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    torch_epoch(10 * batch)  # warm-up
    torch_time = timed(torch_epoch)
    log(f"[autoencoder fit] torch loop: {torch_time:.2f} s/epoch")
    lightning_time = bare_lightning_epoch(model, tensor, batch)
    log(f"[autoencoder fit] bare Lightning loop: {lightning_time:.2f} s/epoch")

    # sim.fit on the Nengo auto-encoder
    net, _, _ = networks.autoencoder(n_in=n_in, n_hidden=n_hidden)
    xy = data[:, None, :]
    with snntorch_nengo.Simulator(
        net, minibatch_size=batch, progress_bar=False, dtype=args.dtype,
        device=args.device,
    ) as sim:
        sim.compile(
            optimizer=torch.optim.RMSprop(sim.parameters(), 1e-3),
            loss=torch.nn.functional.mse_loss,
        )
        warm = xy[: 10 * batch]
        sim.fit(warm, warm, n_steps=1, epochs=1, verbose=0)  # warm-up
        per_batch = timed(lambda: sim.fit(warm, warm, n_steps=1, epochs=1, verbose=0)) / 10
        n = n_samples
        note = ""
        if per_batch * n_samples / batch > args.budget * 2:
            n = int(max(10, args.budget * 2 / per_batch)) * batch
            n = min(n, n_samples)
            note = f"fit ran {n} of {n_samples} samples, time scaled to the epoch"
        fit_time = timed(lambda: sim.fit(xy[:n], xy[:n], n_steps=1, epochs=1, verbose=0))
        fit_time *= n_samples / n
    log(f"[autoencoder fit] sim.fit: {fit_time:.2f} s/epoch")
    return {"torch": torch_time, "lightning": lightning_time, "fit": fit_time, "note": note}


def bare_lightning_epoch(model, tensor, batch):
    """The torch loop's model and data, trained by a Lightning `Trainer`.

    `sim.fit` runs Lightning's loop (as the project requires), so this is the
    floor for its time: the same `Trainer` flags as `sim.fit` with verbose=0,
    a LightningModule that only computes the loss, and no logging.
    """
    import lightning as L

    class Bare(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, x, _):
            return torch.nn.functional.mse_loss(self.model(x), x)

        def configure_optimizers(self):
            return torch.optim.RMSprop(self.parameters(), 1e-3)

    class Batches:  # shuffled minibatches, indexed whole like sim.fit's loader
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return -(-self.n // batch)

        def __iter__(self):
            for idx in torch.randperm(self.n, device=tensor.device).split(batch):
                yield tensor[idx]

    def epoch(n=len(tensor)):
        trainer = L.Trainer(
            max_epochs=1, accelerator="gpu" if tensor.is_cuda else "cpu", devices=1,
            logger=False, enable_checkpointing=False, enable_model_summary=False,
            enable_progress_bar=False, num_sanity_val_steps=0,
        )
        trainer.fit(Bare(), train_dataloaders=Batches(n))

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        epoch(10 * batch)  # warm-up
        return timed(epoch)


# -- report ---------------------------------------------------------------------


def fmt(value, digits=3):
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def ratio(ours, ref):
    if ours is None or ref is None:
        return "-"
    return f"{ours / ref:.3g}"


def machine():
    try:
        cpu = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False
        ).stdout
        model = re.search(r"Model name:\s*(.+)", cpu).group(1).strip()
    except (OSError, AttributeError):
        model = platform.processor() or "unknown"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": (torch.cuda.get_device_name() if ARGS.device.startswith("cuda")
                   else ARGS.device),
        "torch": torch.__version__,
        "nengo": nengo.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "snntorch_nengo": f"{snntorch_nengo.__version__} ({code_under_test()})",
        "date": datetime.date.today().isoformat(),
        "load": "/".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def code_under_test():
    """Which snntorch_nengo was imported: a commit, and whether it was edited."""
    if getattr(ARGS, "rev", None):
        return f"commit {ARGS.rev_commit}, via --rev {ARGS.rev}"
    package = Path(snntorch_nengo.__file__).resolve().parent
    if package.parent != ROOT:
        return f"from {package}"

    def git(*cmd):
        return subprocess.run(
            ["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--", "snntorch_nengo")
    return f"working tree at {commit}" + (" with uncommitted changes" if dirty else "")


def table(rows, fit, args, info):
    lines = [
        f"| network | reference steps/s (batch 1) | ours batch 1 steps/s | ratio "
        f"| ours batch {BATCH} sample-steps/s | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {fmt(r['ref'])} | {fmt(r['b1'])} | {ratio(r['b1'], r['ref'])} "
            f"| {fmt(r['b64'])} | {ratio(r['b64'], r['ref'])} |"
        )
    out = ["\n".join(lines)]
    simulation = [r for r in rows if r["name"].split(" ")[0] in networks.SIMULATION]
    if simulation:
        short = [r["name"] for r in simulation
                 if r["b1"] is None or r["ref"] is None or r["b1"] < 3 * r["ref"]]
        out.append(
            f"Target (issue 13), batch 1 at least 3x the reference on every network "
            f"in every variant: {len(simulation) - len(short)} of {len(simulation)} "
            f"rows meet it" + (f"; not: {', '.join(short)}." if short else ".")
        )
    notes = [f"- {r['name']}: " + "; ".join(r["notes"]) for r in rows if r["notes"]]
    if fit is not None:
        out.append(
            "| training (1 epoch, 12,000 samples, minibatch 50) | s/epoch | ratio |\n"
            "| --- | ---: | ---: |\n"
            f"| hand-written torch loop | {fit['torch']:.2f} | 1 |\n"
            f"| the same model and data in a bare Lightning loop | "
            f"{fit['lightning']:.2f} | {fit['torch'] / fit['lightning']:.3g} |\n"
            f"| `sim.fit` (n_steps=1) | {fit['fit']:.2f} | "
            f"{fit['torch'] / fit['fit']:.3g} |"
        )
        if fit["note"]:
            notes.append(f"- autoencoder fit: {fit['note']}")
    settings = (
        f"Steps per run: {args.steps}{' (--quick)' if args.quick else ''}; "
        f"ours in {args.dtype}, the reference in float64 (Nengo's default); "
        f"ratio = ours / reference (> 1: ours faster; for training, torch-loop "
        f"time / fit time). snntorch_nengo on {info['device']}; "
        f"{info['cpu']}, {info['cores']} cores "
        f"({info['torch_threads']} thread(s) for torch and BLAS), torch {info['torch']}, "
        f"nengo {info['nengo']}, numpy {info['numpy']}, Python {info['python']}, "
        f"snntorch_nengo {info['snntorch_nengo']}, {info['date']}; load average "
        f"(1/5/15 min) {info['load']} at the start, {info['load_end']} at the end."
    )
    out.append(settings)
    if notes:
        out.append("Notes:\n\n" + "\n".join(notes))
    return "\n\n".join(out)


def write_markdown(path, text, command):
    path = Path(path)
    block = f"{START}\n\nCommand: `{command}`\n\n{text}\n\n{END}"
    if path.exists():
        old = path.read_text()
        if START in old and END in old:
            head, rest = old.split(START, 1)
            tail = rest.split(END, 1)[1]
            path.write_text(head + block + tail)
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Benchmarks\n\n{block}\n")


def main(args, argv):
    torch.set_num_threads(args.threads)
    # seconds one timed run may take: the reference's (~2 min at most) and ours
    args.ref_budget = Budget(60 if args.quick else 120)
    args.budget = 30 if args.quick else 120
    args.our_budget = Budget(args.budget)

    warnings.simplefilter("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.manual_seed(0)
    info = machine()
    log(f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, nengo {info['nengo']}")
    log(f"snntorch_nengo {info['snntorch_nengo']}: {Path(snntorch_nengo.__file__).parent}")

    selected = args.only or CASES
    rows, fit = [], None
    start = time.perf_counter()
    for name in selected:
        if name in networks.SIMULATION:
            variants = networks.VARIANTS[name]
            if args.variants == "today":
                variants = variants[:1]
            for suffix, keywords in variants:
                label = f"{name} ({suffix})" if suffix else name
                builder = functools.partial(networks.SIMULATION[name], **keywords)
                rows.append(bench_simulation(label, builder, args))
                gc.collect()
        elif name == "spiking_classifier":
            rows.append(bench_spiking_classifier(args))
        elif name == "autoencoder_fit":
            fit = bench_autoencoder_fit(args)
        gc.collect()
    log(f"total {time.perf_counter() - start:.0f} s")
    info["load_end"] = "/".join(f"{x:.1f}" for x in os.getloadavg())

    text = table(rows, fit, args, info)
    print(text)
    if args.markdown:
        command = "PYTHONPATH=. .venv/bin/python benchmarks/run.py " + " ".join(argv)
        write_markdown(args.markdown, text, command.strip())
        log(f"wrote {args.markdown}")


if __name__ == "__main__":
    main(ARGS, sys.argv[1:])
