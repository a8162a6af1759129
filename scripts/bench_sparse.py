"""Sparse inference speed on this machine: Narang et al.'s speed table (section 6) and end-to-end real-time factor.

1. Matrix products y = W x at batch B, W random with a random sparsity pattern: RNN layers (H x H) of 1760, 2560
   and 3072 units and GRU layers (3H x H, three gates) of 2560 and 3568 units, sparsity 0, 0.8, 0.9, 0.95, batch
   1, 2, 4, 8, 16. Columns: dense (torch F.linear), torch CSR (torch.sparse.mm), the project's sparse kernel
   (deploy.kernels.spmm: the native C++ kernel, or the torch fallback when it cannot be built), the runtime (the
   path deploy's Planner picks by measuring: sparse kernel on all threads or on one, or dense), speed-ups over
   dense, the byte-ratio bound (dense fp32 bytes / CSR bytes with fp32 values, int16 indices, int32 row
   pointers), and the sparse kernel with fp16 values (the same nonzeros rounded to fp16: fewer bytes to read).
2. Recurrences over --steps steps (the deploy runtime's whole-sequence kernels against torch's dense DS2
   recurrence models.rnn.ClippedRecurrence and nn.GRU with a 1-wide input), per step.
3. With --checkpoints: real-time factor (model time / audio time, batch 1, one utterance at a time) of each
   checkpoint's masked dense model and of its fp32 export on the test split; --prune S first hard-prunes the
   sparse matrices to S (smallest |w| per matrix, no retraining: accuracy drops, the CER is printed). With
   --paper-models: the same for paper-size configs with random weights pruned to --prune (default 0.9) on one
   random utterance of --seconds.

Timings are interleaved (every method once per round, best of --rounds rounds) so that other processes on a
shared machine disturb all methods alike; ``--threads 1 --clock cpu`` counts the CPU time of the one thread
instead of wall time, which other processes barely affect. Writes <out>/{layers,recurrence,e2e}.{md,csv,json}
and layers.png.

    python scripts/bench_sparse.py --out results/bench_sparse
    python scripts/bench_sparse.py --threads 1 --clock cpu --out results/bench_sparse_1thread
    python scripts/bench_sparse.py --quick --out /tmp/bench                  # seconds-fast smoke run
    python scripts/bench_sparse.py --skip-layers --skip-recurrence --checkpoints outputs/demo_gradual/<run> --prune 0.9
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from tqdm import tqdm

from data.atomic import write_csv_atomic, write_text_atomic
from data.manifest import read_manifest
from deploy import kernels
from deploy.export import export_model
from deploy.format import is_sparse_name, save_bundle
from deploy.native import native_kernels
from deploy.planner import Planner, time_calls
from deploy.runtime import build_runtime_model, load_deployed
from deploy.sparse import SparseMatrix
from models.config import build_model
from models.rnn import ClippedRecurrence
from pruning.criterion import magnitude_scores, smallest_masks
from training.compose import compose_config
from training.inference import load_model
from training.pipeline import manifest_paths, validated
from training.scoring import greedy_decode, score

log = logging.getLogger("bench_sparse")
LAYERS = [("rnn", 1760), ("rnn", 2560), ("rnn", 3072), ("gru", 2560), ("gru", 3568)]
CPU = torch.device("cpu")


def random_sparse(rows: int, cols: int, sparsity: float, seed: int) -> torch.Tensor:
    """(rows, cols) N(0, 1/cols) weights with exactly round(sparsity * numel) zeros at random positions."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, cols, generator=generator) / cols ** 0.5
    zeros = torch.randperm(rows * cols, generator=generator)[: round(sparsity * rows * cols)]
    weight.view(-1)[zeros] = 0.0
    return weight


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
Clock = Callable[[], float]


def interleaved(methods: dict[str, Callable[[], object]], rounds: int, clock: Clock) -> dict[str, float]:
    """Best seconds per call of each method, the methods alternating within every round."""
    return time_calls(methods, CPU, min_seconds=0.005, repeats=rounds, clock=clock)


def csr_bytes(rows: int, cols: int, nnz: int) -> int:
    """fp32 values, int16 column indices (int32 beyond 65536 columns), int32 row pointers."""
    return nnz * (4 + (2 if cols <= 1 << 16 else 4)) + (rows + 1) * 4


def product_methods(weight: torch.Tensor, batch: int) -> dict[str, Callable[[], object]]:
    """y = W x at ``batch`` columns: dense F.linear, torch CSR and the project's sparse kernel (fp32 and fp16
    values)."""
    matrix, matrix_fp16 = SparseMatrix.from_dense(weight), SparseMatrix.from_dense(weight, value_dtype="fp16")
    csr = matrix.torch_csr  # the same nonzeros as torch CSR (int64 indices)
    x = torch.randn(batch, weight.shape[1])
    x_t = x.t().contiguous()  # the sparse kernels' feature-major layout (cols, batch)
    methods = {"dense": lambda: F.linear(x, weight), "torch_csr": lambda: torch.sparse.mm(csr, x_t),
               "kernel": lambda: kernels.spmm(matrix, x_t), "kernel_fp16": lambda: kernels.spmm(matrix_fp16, x_t)}
    if torch.get_num_threads() > 1:  # the runtime's other candidate (deploy/planner.py)
        methods["kernel_1_thread"] = lambda: kernels.spmm(matrix, x_t, threads=1)
    return methods


def layer_rows(sizes: list[tuple[str, int]], sparsities: list[float], batches: list[int], rounds: int,
               clock: Clock) -> list[dict]:
    """The speed table: one row per layer, sparsity and batch."""
    rows = []
    grid = [(kind, size, s, b) for kind, size in sizes for s in sparsities for b in batches]
    for kind, size, sparsity, batch in tqdm(grid, desc="matrix products"):
        shape = (3 * size if kind == "gru" else size, size)
        weight = random_sparse(*shape, sparsity, seed=size)
        methods = product_methods(weight, batch)
        seconds = interleaved(methods, rounds, clock)
        paths = {"sparse": "kernel", "sparse-1-thread": "kernel_1_thread", "dense": "dense"}
        choice = Planner("auto", clock).choose(
            "bench", {path: methods[method] for path, method in paths.items() if method in methods}, CPU)
        runtime = seconds[paths[choice]]
        rows.append({
            "layer": f"{kind.upper()} {size}", "shape": f"{shape[0]}x{shape[1]}", "sparsity": sparsity,
            "batch": batch, "dense_us": 1e6 * seconds["dense"], "torch_csr_us": 1e6 * seconds["torch_csr"],
            "kernel_us": 1e6 * seconds["kernel"], "kernel_fp16_us": 1e6 * seconds["kernel_fp16"],
            "kernel_1_thread_us": 1e6 * seconds.get("kernel_1_thread", float("nan")),
            "runtime_us": 1e6 * runtime, "runtime_path": choice,
            "speedup_torch_csr": seconds["dense"] / seconds["torch_csr"],
            "speedup_kernel": seconds["dense"] / seconds["kernel"], "speedup_runtime": seconds["dense"] / runtime,
            "speedup_fp16": seconds["dense"] / seconds["kernel_fp16"],
            "byte_ratio": shape[0] * shape[1] * 4 / csr_bytes(*shape, int(torch.count_nonzero(weight))),
        })
    return rows


def recurrence_methods(kind: str, weight: torch.Tensor, batch: int, steps: int) -> dict[str, Callable[[], object]]:
    """A whole unidirectional recurrence: torch dense (models.rnn.ClippedRecurrence; nn.GRU with a 1-wide input,
    so its input product is negligible) against the runtime's sparse kernel."""
    size = weight.shape[1]
    matrix = SparseMatrix.from_dense(weight)
    if kind == "rnn":
        inputs = torch.rand(steps, 1, batch, size)  # (T, D, B, H)
        weight_t = weight.t()[None].contiguous()
        flat = inputs[:, 0].transpose(1, 2).contiguous()  # (T, H, B)
        return {"dense": lambda: ClippedRecurrence.apply(inputs, weight_t, 20.0),
                "kernel": lambda: kernels.ds2_recurrence(matrix, flat, 20.0)}
    gru = torch.nn.GRU(1, size).requires_grad_(False)
    gru.weight_hh_l0.copy_(weight)
    x, gi, bias = torch.randn(steps, batch, 1), torch.randn(steps, 3 * size, batch), gru.bias_hh_l0.clone()
    return {"dense": lambda: gru(x), "kernel": lambda: kernels.gru_recurrence(matrix, gi, bias, 1)}


def recurrence_rows(sizes: list[tuple[str, int]], sparsities: list[float], batches: list[int], steps: int,
                    rounds: int, clock: Clock) -> list[dict]:
    """Per-step time of a whole unidirectional recurrence: dense torch against the runtime's sparse kernel."""
    rows = []
    grid = [(kind, size, s, b) for kind, size in sizes for s in sparsities for b in batches]
    for kind, size, sparsity, batch in tqdm(grid, desc="recurrences"):
        weight = random_sparse(3 * size if kind == "gru" else size, size, sparsity, seed=size)
        seconds = interleaved(recurrence_methods(kind, weight, batch, steps), rounds, clock)
        rows.append({"layer": f"{kind.upper()} {size}", "sparsity": sparsity, "batch": batch, "steps": steps,
                     "dense_us_per_step": 1e6 * seconds["dense"] / steps,
                     "kernel_us_per_step": 1e6 * seconds["kernel"] / steps,
                     "speedup": seconds["dense"] / seconds["kernel"]})
    return rows


@torch.no_grad()
def hard_prune(model: torch.nn.Module, sparsity: float) -> None:
    """Zero the smallest |w| of every sparse-stored matrix to exactly ``sparsity`` (no retraining)."""
    for name, param in model.named_parameters():
        if is_sparse_name(name):
            param.mul_(smallest_masks([magnitude_scores(param)], sparsity)[0])


@torch.no_grad()
def rtf_row(checkpoint: str, prune: float | None, limit: int | None, rounds: int, clock: Clock) -> dict:
    """Real-time factor of the masked dense model and of its fp32 export, batch 1, over the test split."""
    loaded = load_model(checkpoint)
    if prune is not None:
        hard_prune(loaded.model, prune)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.sds2"
        save_bundle(path, export_model(loaded, "fp32"))
        deployed = load_deployed(path)
        deployed.planner.clock = clock
    manifest = manifest_paths(loaded.data_cfg, progress=False)["test"]
    kept = validated(read_manifest(manifest), loaded.frontend, loaded.model.output_lengths, float("inf"),
                     str(manifest)).kept[:limit]
    dataset = loaded.frontend.dataset(kept, loaded.data_cfg, train=False)
    models = {"dense": loaded.model, "sparse": deployed.model}
    totals, texts = {name: 0.0 for name in models}, {name: [] for name in models}
    for index in tqdm(range(len(dataset)), desc=f"real-time factor {loaded.name}"):
        features = dataset[index][0][None]  # (1, F, T)
        lengths = torch.tensor([features.shape[-1]])
        runs = {name: functools.partial(model, features, lengths) for name, model in models.items()}
        for name, seconds in interleaved(runs, rounds, clock).items():
            totals[name] += seconds
            log_probs, out_lengths = runs[name]()
            texts[name] += greedy_decode(log_probs, out_lengths, loaded.frontend.tokenizer)
    audio = sum(utt.duration for utt in kept)
    references = [utt.text for utt in kept]
    total, nonzero = loaded.num_parameters()
    return {"checkpoint": loaded.checkpoint["path"], "name": loaded.name, "pruned_to": prune,
            "params": total, "nonzero_params": nonzero, "utterances": len(kept), "audio_seconds": audio,
            "rtf_dense": totals["dense"] / audio, "rtf_sparse": totals["sparse"] / audio,
            "speedup": totals["dense"] / totals["sparse"], "cer_dense": score(references, texts["dense"]).cer,
            "cer_sparse": score(references, texts["sparse"]).cer,
            "kernel_choices": [{**d, "key": list(d["key"])} for d in deployed.planner.report()]}


@torch.no_grad()
def synthetic_rtf_row(model: str, prune: float, seconds: float, rounds: int, clock: Clock) -> dict:
    """Real-time factor of a paper-size config (e.g. ds2_rnn_paper) with random weights hard-pruned to ``prune``,
    masked dense against the fp32 sparse runtime, on one random utterance of ``seconds`` (100 frames a second,
    161 bins, 29 classes): the speed of the paper's deployment without a trained model."""
    cfg = compose_config([f"model={model}"])
    dense = build_model(cfg.model, 161, 29).eval()
    hard_prune(dense, prune)
    state = dense.state_dict()
    sparse = {name: SparseMatrix.from_dense(t) for name, t in state.items() if is_sparse_name(name)}
    runtime = build_runtime_model(cfg.model, 161, 29, {n: t for n, t in state.items() if n not in sparse}, sparse,
                                  Planner("auto", clock), CPU)
    features, lengths = torch.randn(1, 161, int(100 * seconds)), torch.tensor([int(100 * seconds)])
    times = interleaved({"dense": lambda: dense(features, lengths), "sparse": lambda: runtime(features, lengths)},
                        rounds, clock)
    total = sum(p.numel() for p in dense.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in dense.parameters())
    return {"checkpoint": None, "name": f"{model} (random weights)", "pruned_to": prune, "params": total,
            "nonzero_params": nonzero, "utterances": 1, "audio_seconds": seconds,
            "rtf_dense": times["dense"] / seconds, "rtf_sparse": times["sparse"] / seconds,
            "speedup": times["dense"] / times["sparse"], "cer_dense": float("nan"), "cer_sparse": float("nan")}


def markdown(rows: list[dict], columns: dict[str, str]) -> str:
    """A markdown table of ``rows`` with ``columns`` = {key: format spec}."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format(row[key], spec) for key, spec in columns.items()) + " |")
    return "\n".join(lines)


def write_outputs(out: Path, name: str, rows: list[dict], table: str) -> None:
    """<out>/<name>.md, .csv (flat columns only) and .json."""
    write_text_atomic(out / f"{name}.md", table + "\n")
    write_text_atomic(out / f"{name}.json", json.dumps(rows, indent=2) + "\n")
    flat = [{k: v for k, v in row.items() if not isinstance(v, (list, dict))} for row in rows]
    write_csv_atomic(out / f"{name}.csv", flat)


def plot_layers(rows: list[dict], path: Path) -> None:
    """Speed-up over dense against batch at the sparsities benchmarked, one panel per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(r["layer"] for r in rows))
    figure, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3.2), squeeze=False, sharey=True)
    for axis, layer in zip(axes[0], layers):
        for sparsity in sorted({r["sparsity"] for r in rows if r["sparsity"] > 0}):
            sel = [r for r in rows if r["layer"] == layer and r["sparsity"] == sparsity]
            batches = [r["batch"] for r in sel]
            line = axis.plot(batches, [r["speedup_runtime"] for r in sel], marker="o", label=f"runtime {sparsity:.0%}")
            axis.plot(batches, [r["speedup_torch_csr"] for r in sel], ls="--", color=line[0].get_color(),
                      label=f"torch CSR {sparsity:.0%}")
        axis.axhline(1.0, color="grey", lw=0.8)
        axis.set(title=layer, xscale="log", yscale="log", xlabel="batch")
        axis.set_xticks(batches, [str(b) for b in batches])
    axes[0][0].set_ylabel("speed-up over dense")
    axes[0][-1].legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


LAYER_COLUMNS = {"layer": "", "sparsity": ".2f", "batch": "d", "dense_us": ".0f", "torch_csr_us": ".0f",
                 "kernel_us": ".0f", "runtime_us": ".0f", "runtime_path": "", "speedup_torch_csr": ".2f",
                 "speedup_runtime": ".2f", "byte_ratio": ".2f", "kernel_fp16_us": ".0f", "speedup_fp16": ".2f"}
RECURRENCE_COLUMNS = {"layer": "", "sparsity": ".2f", "batch": "d", "dense_us_per_step": ".0f",
                      "kernel_us_per_step": ".0f", "speedup": ".2f"}
RTF_COLUMNS = {"name": "", "pruned_to": "", "nonzero_params": ",d", "utterances": "d", "audio_seconds": ".1f",
               "rtf_dense": ".4f", "rtf_sparse": ".4f", "speedup": ".2f", "cer_dense": ".4f", "cer_sparse": ".4f"}


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/bench_sparse"))
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.8, 0.9, 0.95])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best of them is kept")
    parser.add_argument("--steps", type=int, default=25, help="time steps of the recurrence benchmark")
    parser.add_argument("--threads", type=int, help="torch and kernel threads (default: torch's default)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or the CPU time of the calling thread (needs --threads 1): robust to "
                             "other processes on a busy machine")
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument("--skip-recurrence", action="store_true")
    parser.add_argument("--checkpoints", nargs="+", default=[], help="run folders or .pt files for the RTF table")
    parser.add_argument("--prune", type=float, help="hard-prune the checkpoints' matrices to this sparsity first")
    parser.add_argument("--utterances", type=int, help="first N test utterances only (RTF)")
    parser.add_argument("--paper-models", nargs="+", default=[],
                        help="model configs (e.g. ds2_rnn_paper ds2_gru_paper) for an RTF row with random weights "
                             "pruned to --prune (default 0.9) on a random --seconds utterance")
    parser.add_argument("--seconds", type=float, default=5.0, help="utterance length of --paper-models")
    parser.add_argument("--mkldnn", choices=["on", "off"], default="on",
                        help="torch.backends.mkldnn for both models (off: torch's own convolution everywhere; "
                             "models.layers.ConvBlock already runs its CPU convolutions in forms oneDNN is fast at: "
                             "scripts/bench_conv.py)")
    parser.add_argument("--quick", action="store_true", help="small layers (64 and 96 units): a smoke run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and torch.get_num_threads() != 1:
        parser.error("--clock cpu measures one thread's CPU time: add --threads 1")
    clock = CLOCKS[args.clock]
    torch.backends.mkldnn.enabled = args.mkldnn == "on"
    sizes = [("rnn", 64), ("gru", 96)] if args.quick else LAYERS
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    kernel = "native C++ kernels" if native_kernels() is not None else "torch fallback kernels (no native build)"
    header = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, {kernel}, {args.clock} clock, "
              f"mkldnn {args.mkldnn}")
    if not args.skip_layers:
        results["layers"] = layer_rows(sizes, args.sparsities, args.batches, args.rounds, clock)
        plot_layers(results["layers"], args.out / "layers.png")
    if not args.skip_recurrence:
        results["recurrence"] = recurrence_rows(sizes, [s for s in args.sparsities if s in (0.0, 0.9)] or
                                                args.sparsities[:1], [b for b in args.batches if b in (1, 4)] or
                                                args.batches[:1], args.steps, args.rounds, clock)
    if args.checkpoints or args.paper_models:
        results["e2e"] = [rtf_row(c, args.prune, args.utterances, args.rounds, clock) for c in args.checkpoints] + [
            synthetic_rtf_row(m, 0.9 if args.prune is None else args.prune, args.seconds, args.rounds, clock)
            for m in args.paper_models]
    columns = {"layers": LAYER_COLUMNS, "recurrence": RECURRENCE_COLUMNS, "e2e": RTF_COLUMNS}
    for name, rows in results.items():
        table = markdown(rows, columns[name])
        write_outputs(args.out, name, rows, f"{header}\n\n{table}")
        print(f"\n## {name} ({header})\n\n{table}")
    return results


if __name__ == "__main__":
    main()
