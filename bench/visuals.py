"""`vsearch bench`'s part on searching by description: what the visual model adds to indexing.

Random weights in the published vision configurations of the default visual model (SigLIP 2 base,
patch 16 at 224 px) and a small one (CLIP ViT-B/32): compute does not depend on weight values,
and no weights can be downloaded where this runs. Each is measured as vsearch runs it (its vision
tower in the runtime and precision the calibration picks here), alone per window and end to end
beside VideoMAE-base.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vsearch.bench.indexing import Result, best_seconds, table, vsearch_index
from vsearch.video.decode import Sampling

# Vision towers as published (hidden, layers, heads, mlp, patch, image); text towers kept small:
# only the vision tower runs per window.
VISUAL_MODELS: dict[str, dict[str, Any]] = {
    "SigLIP 2 base/16 at 224 (the default)": {"type": "siglip", "hidden": 768, "layers": 12, "heads": 12, "mlp": 3072,
                                              "patch": 16, "image": 224, "mean": 0.5, "std": 0.5},
    "CLIP ViT-B/32 at 224": {"type": "clip", "hidden": 768, "layers": 12, "heads": 12, "mlp": 3072, "patch": 32,
                             "image": 224, "projection": 512, "mean": 0.48, "std": 0.27},
}
WORDS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "a", "red", "car", "at", "night"]


def make_visual_checkpoint(out: Path, spec: dict[str, Any]) -> Path:
    """A random-weight image-text checkpoint with a word-level tokenizer, loadable by load_visual_model."""
    if (out / "config.json").exists():
        return out
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast, SiglipConfig, SiglipModel

    torch.manual_seed(0)
    vision = {"hidden_size": spec["hidden"], "num_hidden_layers": spec["layers"], "num_attention_heads": spec["heads"],
              "intermediate_size": spec["mlp"], "patch_size": spec["patch"], "image_size": spec["image"]}
    # SigLIP has no projections: its text tower must be as wide as its vision tower
    text_width = spec["hidden"] if spec["type"] == "siglip" else 256
    text = {"vocab_size": len(WORDS), "hidden_size": text_width, "num_hidden_layers": 1, "num_attention_heads": 4,
            "intermediate_size": 512, "max_position_embeddings": 16, "bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0}
    if spec["type"] == "siglip":
        model: Any = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        resize = {"height": spec["image"], "width": spec["image"]}  # SigLIP squeezes to its size
    else:
        model = CLIPModel(CLIPConfig(text_config=text,
                                     vision_config=vision, projection_dim=spec["projection"]))
        resize = {"shortest_edge": spec["image"]}
    model.save_pretrained(out)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                            model_max_length=16).save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps({
        "do_resize": True, "size": resize, "do_center_crop": spec["type"] == "clip",
        "crop_size": {"height": spec["image"], "width": spec["image"]}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [spec["mean"]] * 3,
        "image_std": [spec["std"]] * 3}))
    return out


def _same(model: Any) -> Any:
    return model


def visual_seconds(model: Any, repeats: int = 3) -> float:
    """Best seconds per window of the vision tower at its calibrated batch, frames already decoded."""
    spec = model.frame_spec
    h, w = spec.crop or (224, 224)
    batch = model.batch_size or 8
    frames = np.random.default_rng(0).integers(0, 256, (batch, spec.num_frames, h, w, 3), dtype=np.uint8)
    return best_seconds(lambda: model.embed_frames(frames), repeats) / batch


def visual_cost(work: Path, videos: list[Path], video_model: Path, sampling: Sampling, batch: int, config: str,
                model_seconds: float, log: Callable[[str], None], streams: int = 1) -> list[str]:
    """The table of what each visual model adds to indexing with VideoMAE-base, and its notes."""
    from vsearch.evidence import visuals
    from vsearch.evidence.base import WindowPart
    from vsearch.library import load_visual

    without = vsearch_index(videos, video_model, sampling, batch, config, streams=streams)
    rows: list[list[object]] = [["VideoMAE-base alone", "", "", "", f"{without.seconds:.1f}",
                                 f"{without.windows_per_s * 4:.1f}", ""]]
    for name, spec in VISUAL_MODELS.items():
        log(f"visual model {name}: measuring its fastest runtime, then indexing with it...")
        folder = make_visual_checkpoint(work / ("visual-" + spec["type"]), spec)
        model = load_visual(str(folder), home=work, measure=True)
        alone = visual_seconds(model)
        part = WindowPart(visuals.KIND, model.name, functools.partial(_same, model))
        both: Result = vsearch_index(videos, video_model, sampling, batch, config, parts=[part], streams=streams)
        rows.append([name, model.choice.described, f"{alone:.3f}",
                     f"{alone / model_seconds:.0%}", f"{both.seconds:.1f}", f"{both.windows_per_s * 4:.1f}",
                     f"{both.seconds / without.seconds - 1:+.0%}"])
    return ["### Searching by description: what the visual model adds to indexing (VideoMAE-base in its chosen "
            "configuration, the short clips; random weights in the published vision configurations)",
            table(rows, ["visual model", "runtime, precision", "s/window alone", "vs VideoMAE's s/clip",
                         "end to end s", "hours of video per hour", "added to indexing time"]), ""]
