"""Generated pictures with known captions, videos whose picture changes mid-way, and a tiny CLIP
trained on such pictures: what the visual model's tests search with.

A picture is a coloured shape on a coloured background ("a red circle on a blue background"),
drifting a little. Captions vary in wording and in what they mention (all three attributes, or
only colour and shape), so that a description query works and not only the training sentence.
Some colour-shape pairs are never shown in training (HELD_OUT): the trained model has to compose
"red" learnt from red squares and "circle" learnt from circles of other colours.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vsearch.bench.synthetic import write_video

if TYPE_CHECKING:
    import torch
    from transformers import CLIPConfig, CLIPModel

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35), "green": (40, 170, 60), "blue": (40, 70, 225),
    "yellow": (240, 215, 40), "white": (240, 240, 240), "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
# Colour-shape pairs no training picture shows, on any background.
HELD_OUT = frozenset({("red", "circle"), ("yellow", "square"), ("blue", "triangle")})
# {c} colour, {s} shape, {b} background colour. The ones without {b} describe the shape alone, and
# so every picture of that shape and colour.
TEMPLATES = (
    "a {c} {s} on a {b} background", "a {c} {s} on {b}", "{c} {s} on a {b} background", "the {c} {s} over {b}",
    "a {s} that is {c} on {b}", "a {b} background with a {c} {s}", "{s}, {c}, on {b}",
    "a {c} {s}", "{c} {s}", "a {s} that is {c}", "the {s} is {c}",
)
ATTRIBUTES = ("{c}", "{s}", "{b}")
IMAGE_SIZE = 32  # what the tiny model sees
SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
LR = 3e-3  # AdamW peak learning rate, one-cycle schedule
POOL = 4096  # training pictures
# ln 100, the temperature OpenAI's CLIP ends its training at (it clamps there); CLIP's starting
# ln(1/0.07) would take more steps than we have to grow, and leave the cosines crowded together.
LOGIT_SCALE_INIT = 4.6


@dataclass(frozen=True)
class Picture:
    colour: str
    shape: str
    background: str

    @property
    def caption(self) -> str:
        return TEMPLATES[0].format(c=self.colour, s=self.shape, b=self.background)


def all_pictures() -> list[Picture]:
    return [Picture(c, s, b) for c, s, b in itertools.product(COLOURS, SHAPES, COLOURS) if c != b]


def render_picture(picture: Picture, rng: np.random.Generator, frames: int = 1, width: int = IMAGE_SIZE,
                   height: int = IMAGE_SIZE) -> np.ndarray:
    """(frames, height, width, 3) uint8: the shape in the centre square of the frame (what a centre
    crop keeps), at a random size and place, drifting a few percent of the square over the frames.
    Drawn at twice the size and averaged down, so edges are soft as in decoded video."""
    side = min(width, height)
    size = rng.uniform(0.2, 0.3) * side  # half the shape's extent
    centre = rng.uniform(0.4, 0.6, 2) * side
    drift = rng.uniform(-0.06, 0.06, 2) * side
    yy, xx = (np.mgrid[0 : 2 * height, 0 : 2 * width] + 0.5) / 2
    xx, yy = xx - (width - side) / 2, yy - (height - side) / 2  # coordinates within the centre square
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    fg, bg = np.array(COLOURS[picture.colour], float), np.array(COLOURS[picture.background], float)
    for i, t in enumerate(np.linspace(0.0, 1.0, frames)):
        cx, cy = centre + t * drift
        inside = _inside(picture.shape, xx - cx, yy - cy, size)
        image = np.where(inside[..., None], fg, bg)
        out[i] = image.reshape(height, 2, width, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    return out


def _inside(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    if shape == "triangle":  # pointing up: as wide as it is tall at the base
        depth = (dy + r) / (2 * r)  # 0 at the apex, 1 at the base
        return (depth >= 0) & (depth <= 1) & (np.abs(dx) <= depth * r)
    raise ValueError(f"unknown shape {shape!r}")


def picture_video(path: str | Path, pictures: list[Picture], seconds_each: float, fps: int = 8,
                  width: int = 96, height: int = 72, seed: int = 0) -> Path:
    """A video showing each picture in turn for `seconds_each` seconds: the picture changes mid-video.
    4:3 frames whose shape sits in the centre square, so a centre crop keeps it."""
    rng = np.random.default_rng(seed)
    count = int(round(seconds_each * fps))
    frames = np.concatenate([render_picture(s, rng, count, width, height) for s in pictures])
    return write_video(path, frames, fps)


def caption_for(picture: Picture, rng: random.Random) -> tuple[str, tuple[bool, bool, bool]]:
    """One random wording of the picture's caption, and whether it names (colour, shape, background)."""
    template = rng.choice(TEMPLATES)
    return template.format(c=picture.colour, s=picture.shape, b=picture.background), _names(template)


def _names(template: str) -> tuple[bool, bool, bool]:
    c, s, b = (f in template for f in ATTRIBUTES)
    return c, s, b


def vocabulary() -> list[str]:
    words = {w for t in TEMPLATES for w in t.replace(",", " , ").split() if "{" not in w}
    return list(SPECIALS) + sorted(words | set(COLOURS) | set(SHAPES))


def save_word_tokenizer(out: Path, max_length: int) -> dict[str, int]:
    """A lower-case word-level tokenizer ([BOS] words [EOS]) saved as a transformers fast tokenizer,
    so that AutoTokenizer loads it from the model folder. Returns its vocabulary."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words, and punctuation as words of its own
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="[BOS]", eos_token="[EOS]", unk_token="[UNK]",
                            pad_token="[PAD]", model_max_length=max_length).save_pretrained(out)
    return vocab


def tiny_clip_config(vocab: dict[str, int], max_length: int) -> CLIPConfig:
    """A CLIPConfig of about 200 thousand parameters: 32 px images in 8 px patches, 64 wide, 2 layers."""
    from transformers import CLIPConfig

    text = {"vocab_size": len(vocab), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "max_position_embeddings": max_length, "pad_token_id": vocab["[PAD]"],
            "bos_token_id": vocab["[BOS]"], "eos_token_id": vocab["[EOS]"]}
    vision = {"image_size": IMAGE_SIZE, "patch_size": 8, "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4}
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=32, logit_scale_init_value=LOGIT_SCALE_INIT)


def train_tiny_visual_model(out: Path, steps: int = 1500, batch: int = 64, seed: int = 0) -> Path:
    """Train a tiny CLIPModel on generated captioned pictures (HELD_OUT pairs left out) and save it
    with its preprocessor_config.json and tokenizer, loadable by load_visual_model(str(out)).

    Seeded and run on one thread: the same machine gives the same weights every time, and a model
    this small trains faster on one thread than on two that wait for each other on a shared machine."""
    import torch
    from transformers import AutoTokenizer, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    out = Path(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        vocab = save_word_tokenizer(out, max_length=16)
        model = CLIPModel(tiny_clip_config(vocab, max_length=16))
        processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                          crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (processor.image_mean, processor.image_std))
        _fit(model, AutoTokenizer.from_pretrained(out), lambda x: (x / 255 - mean) / std, steps, batch, seed)
        with torch.no_grad():  # exactly real CLIP's scale of 100, which a score must not saturate on
            model.logit_scale.fill_(math.log(100.0))
        model.save_pretrained(out)
        processor.save_pretrained(out)
    finally:
        torch.set_num_threads(threads)
    return out


def _fit(model: CLIPModel, tokenizer: Any, normalise: Callable[[torch.Tensor], torch.Tensor], steps: int, batch: int,
         seed: int) -> None:
    """Contrastive training with soft targets: a caption matches every picture in the batch that
    has what it names ("a red circle" matches red circles on any background)."""
    import torch
    from torch.nn.functional import log_softmax, normalize

    rng, pick = np.random.default_rng(seed), random.Random(seed)
    train = [s for s in all_pictures() if (s.colour, s.shape) not in HELD_OUT]
    # A pool drawn once (rendering costs as much as a training step); the grain is new each step
    pool_pictures = [train[i] for i in rng.integers(0, len(train), POOL)]
    pool = np.concatenate([render_picture(s, rng) for s in pool_pictures]).astype(np.int16)
    names = [list(COLOURS), list(SHAPES), list(COLOURS)]
    attributes = np.array([[names[0].index(s.colour), names[1].index(s.shape), names[2].index(s.background)]
                           for s in pool_pictures])
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(steps):
        chosen = rng.integers(0, POOL, batch)
        grain = rng.integers(-6, 7, (batch, *pool.shape[1:]), dtype=np.int16)  # the noise of decoded video
        pictures = np.clip(pool[chosen] + grain, 0, 255).astype(np.float32)
        x = normalise(torch.from_numpy(pictures).permute(0, 3, 1, 2))
        worded = [caption_for(pool_pictures[i], pick) for i in chosen]
        ids = tokenizer([w for w, _ in worded], padding=True, return_tensors="pt")
        images = normalize(model.get_image_features(pixel_values=x).pooler_output, dim=-1)
        texts = normalize(model.get_text_features(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])
                          .pooler_output, dim=-1)
        logits = model.logit_scale.exp() * texts @ images.T
        # target[i, j]: caption i describes picture j (every attribute it names is picture j's)
        a, named = attributes[chosen], np.array([n for _, n in worded])
        target = torch.from_numpy(((a[:, None] == a[None]) | ~named[:, None]).all(-1).astype(np.float32))
        loss = -((target / target.sum(1, keepdim=True)) * log_softmax(logits, 1)).sum(1).mean() \
            - ((target.T / target.T.sum(1, keepdim=True)) * log_softmax(logits.T, 1)).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
