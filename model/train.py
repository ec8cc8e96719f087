"""Fine-tune a VideoMAE classifier on folder-per-label videos: `vsearch train`.

Windows come through the indexer's own decoding (decode workers, window planning, resize) and its
own normalisation, so a trained model sees at index time exactly what it saw in training. Light
augmentation: a random temporal offset (the train decode samples twice as densely and picks one
of the two interleaved frame sets: one starts on the window's first frame, the other ends on its
last, and the index's sampling, which takes both, lies between them), a random crop along the long side, and an optional
horizontal flip (off by default: it turns "moving left" into "moving right").
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vsearch.core.errors import TrainError
from vsearch.model.checkpoint import DEFAULT_MODEL, load_videomae, read_model_json
from vsearch.model.encoder import VideoEncoder
from vsearch.video.decode import FrameSpec, Sampling
from vsearch.video.files import find_videos
from vsearch.video.workers import Chunk, DecodePool, DecodeSettings, Failed


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 5
    lr: float = 5e-5
    batch_size: int = 8
    val_fraction: float = 0.2
    seed: int = 0
    hflip: bool = False
    weight_decay: float = 0.05
    device: str | None = None
    precision: str | None = None  # default: bf16 autocast on CUDA, fp32 on the CPU
    sampling: Sampling = field(default_factory=Sampling)
    workers: int = 1


@dataclass
class EpochReport:
    epoch: int
    loss: float
    val_accuracy: float
    seconds: float


@dataclass
class TrainReport:
    labels: list[str]
    train_videos: int
    val_videos: int
    best_epoch: int = 0
    best_accuracy: float = 0.0
    epochs: list[EpochReport] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def scan_dataset(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Labels (folder names, `_` read as a space) and (path, label index) for every video."""
    if not root.is_dir():
        raise TrainError(f"{root} is not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    labels, items = [], []
    for folder in folders:
        videos = [f.path for f in find_videos([folder])]
        if videos:
            label = folder.name.replace("_", " ")
            if label in labels:
                raise TrainError(f"two folders give the label {label!r} (with `_` read as a space); rename one")
            labels.append(label)
            items += [(v, len(labels) - 1) for v in videos]
    if len(labels) < 2:
        raise TrainError(f"{root} needs at least two label folders with videos in them "
                         f"(found {len(labels)}); lay it out as {root}/<label>/<video>.mp4")
    return labels, items


def check_out(out: Path, data: Path) -> Path:
    """The output folder, made absolute; refuses to overwrite anything but an earlier model."""
    out = out.expanduser().resolve()
    data = data.expanduser().resolve()
    if out == data or data in out.parents or out in data.parents:
        raise TrainError(f"--out {out} overlaps the training data {data}; pick a separate folder")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "vsearch_train.json").exists())):
        raise TrainError(f"--out {out} exists and is not a model vsearch trained; "
                         "pick a new folder (vsearch replaces only its own earlier models)")
    return out


def split(items: list[tuple[str, int]], n_labels: int, fraction: float, seed: int) -> tuple[list, list]:
    """A seeded, per-label held-out split; every label keeps at least one video on each side."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in range(n_labels):
        mine = [it for it in items if it[1] == label]
        if len(mine) < 2:
            raise TrainError("every label needs at least 2 videos (one to train on, one to validate)")
        order = rng.permutation(len(mine))
        n_val = min(len(mine) - 1, max(1, round(fraction * len(mine))))
        val += [mine[i] for i in order[:n_val]]
        train += [mine[i] for i in order[n_val:]]
    return train, val


def decode_windows(
    items: list[tuple[str, int]], spec: FrameSpec, sampling: Sampling, workers: int
) -> tuple[list[np.ndarray], list[int], list[tuple[str, str]]]:
    """All windows of all videos through the decode workers; (windows, labels, skipped)."""
    settings = DecodeSettings(spec=spec, sampling=sampling, workers=min(workers, max(1, len(items))))
    windows, labels, skipped = [], [], []
    with DecodePool(settings) as pool:
        for event in pool.run((i, path) for i, (path, _) in enumerate(items)):
            if isinstance(event, Chunk):
                windows += list(event.frames)
                labels += [items[event.key][1]] * len(event.frames)
            elif isinstance(event, Failed):
                skipped.append((items[event.key][0], event.reason))
    return windows, labels, skipped


def train(
    data: Path,
    out: Path,
    base: str | None = None,
    settings: TrainSettings | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainReport:
    import torch

    s = settings or TrainSettings()
    out = check_out(Path(out), Path(data))
    labels, items = scan_dataset(data)
    train_items, val_items = split(items, len(labels), s.val_fraction, s.seed)
    base = base or DEFAULT_MODEL
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)

    from transformers.utils import logging as hf_logging

    # The classification head is replaced by one for our labels: transformers reports the mismatch
    # of the old head and the label count, which is the point here, not a problem to show.
    was = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = load_videomae(base, num_labels=len(labels), id2label=dict(enumerate(labels)),
                              label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True)
    finally:
        hf_logging.set_verbosity(was)
    # The encoder brings the indexer's normalisation, forward and device to the new model.
    encoder = VideoEncoder(base, device=s.device, precision="fp32", runtime="torch", module=model)
    device = encoder.device
    spec = encoder.frame_spec
    # Train windows: twice the frames (for the temporal offset), full width (for the random crop).
    train_spec = FrameSpec(spec.num_frames * 2, spec.resize, None)
    train_windows, train_labels, skipped = decode_windows(train_items, train_spec, s.sampling, s.workers)
    val_windows, val_labels, skipped_val = decode_windows(val_items, spec, s.sampling, s.workers)
    report = TrainReport(labels, len(train_items) - len(skipped), len(val_items) - len(skipped_val),
                         skipped=skipped + skipped_val)
    if not train_windows or not val_windows:
        raise TrainError("no readable videos left to train or validate on; see the skipped files")
    if len(set(train_labels)) < 2:
        raise TrainError("after skipping unreadable videos fewer than two labels are left")

    use_bf16 = (s.precision or ("bf16" if device.startswith("cuda") else "fp32")) == "bf16"
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    steps_per_epoch = math.ceil(len(train_windows) / s.batch_size)
    total = steps_per_epoch * s.epochs
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )
    y_train = np.array(train_labels)
    step = 0
    staging = out.with_name(out.name + ".best-tmp")
    for epoch in range(1, s.epochs + 1):
        started = time.perf_counter()
        model.train()
        losses = []
        for batch in np.array_split(rng.permutation(len(train_windows)), steps_per_epoch):
            frames = np.stack([augment(train_windows[i], spec, rng, s.hflip) for i in batch])
            x = encoder.pixel_values(frames)
            y = torch.as_tensor(y_train[batch], device=device)
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=use_bf16):
                logits, _ = encoder.forward(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(loss.item())
            if on_step:
                on_step(step, total, losses[-1])
        accuracy = evaluate(encoder, val_windows, val_labels, s.batch_size)
        result = EpochReport(epoch, float(np.mean(losses)), accuracy, time.perf_counter() - started)
        report.epochs.append(result)
        if on_epoch:
            on_epoch(result)
        if accuracy > report.best_accuracy or report.best_epoch == 0:
            report.best_epoch, report.best_accuracy = epoch, accuracy
            save(model, base, staging, report)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    save_report(out, report)
    return report


def augment(window: np.ndarray, spec: FrameSpec, rng: np.random.Generator, hflip: bool) -> np.ndarray:
    """(2T, H, W', 3) dense window -> (T, crop_h, crop_w, 3): temporal offset, random crop, flip."""
    frames = window[rng.integers(0, 2) :: 2][: spec.num_frames]
    if spec.crop is not None:
        ch, cw = spec.crop
        h, w = frames.shape[1:3]
        if h < ch or w < cw:
            from vsearch.video.decode import center_crop

            frames = center_crop(frames, spec.crop)
        else:
            top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            frames = frames[:, top : top + ch, left : left + cw]
    if hflip and rng.random() < 0.5:
        frames = frames[:, :, ::-1]
    return np.ascontiguousarray(frames)


def evaluate(encoder: VideoEncoder, windows: list[np.ndarray], labels: list[int], batch_size: int) -> float:
    """Accuracy per window with the exact inference path `vsearch index` uses."""
    encoder.module.eval()
    correct = 0
    for start in range(0, len(windows), batch_size):
        probs, _ = encoder.encode(np.stack(windows[start : start + batch_size]))
        correct += int((probs.argmax(1) == np.array(labels[start : start + batch_size])).sum())
    return correct / len(windows)


def save(model: Any, base: str, out: Path, report: TrainReport) -> None:
    """A standard Hugging Face folder: config with the new id2label, safetensors, preprocessor."""

    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, safe_serialization=True)
    processor = read_model_json(base, "preprocessor_config.json")
    if processor is None:  # a base without one used VideoMAE's defaults: write them down
        size = int(model.config.image_size)
        processor = {"image_processor_type": "VideoMAEImageProcessor", "do_resize": True,
                     "size": {"shortest_edge": size}, "do_center_crop": True,
                     "crop_size": {"height": size, "width": size}, "do_rescale": True,
                     "rescale_factor": 1 / 255, "do_normalize": True,
                     "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 2}
    (out / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))


def save_report(out: Path, report: TrainReport) -> None:
    (out / "vsearch_train.json").write_text(json.dumps({
        "labels": report.labels, "train_videos": report.train_videos, "val_videos": report.val_videos,
        "best_epoch": report.best_epoch, "val_accuracy": report.best_accuracy,
        "epochs": [e.__dict__ for e in report.epochs], "skipped": report.skipped,
    }, indent=2))
