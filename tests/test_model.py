from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import save_tiny_videomae
from vsearch import ModelError
from vsearch.model.checkpoint import DEFAULT_MODEL, read_preprocessing
from vsearch.model.encoder import load_encoder
from vsearch.video.decode import FrameSpec


def test_everything_comes_from_the_checkpoint(tiny_model: Path) -> None:
    enc = load_encoder(str(tiny_model), precision="fp32")
    assert enc.frame_spec == FrameSpec(num_frames=8, resize=("shortest_edge", 32), crop=(32, 32))
    assert enc.preprocessing.mean == (0.5, 0.5, 0.5) and enc.preprocessing.std == (0.5, 0.5, 0.5)
    assert enc.labels[:2] == ["moving left", "moving right"]
    assert enc.dim == 48 and enc.name == str(tiny_model.resolve())


def test_exact_size_processor_config(tmp_path: Path) -> None:
    cfg = {"num_frames": 4, "image_size": 64}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"height": 64, "width": 80}, "do_center_crop": False, "image_mean": [0.1, 0.2, 0.3],
         "image_std": [1, 1, 1], "rescale_factor": 0.5}))
    p = read_preprocessing(str(tmp_path), cfg)
    assert p.frame_spec == FrameSpec(4, ("exact", (64, 80)), None)
    assert p.mean == (0.1, 0.2, 0.3) and p.rescale == 0.5


def test_encode_matches_the_plain_transformers_forward(tiny_model: Path) -> None:
    from transformers import VideoMAEForVideoClassification

    enc = load_encoder(str(tiny_model), precision="fp32")
    frames = np.random.default_rng(0).integers(0, 256, (3, 8, 32, 32, 3), dtype=np.uint8)
    probs, emb = enc.encode(frames)
    ref = VideoMAEForVideoClassification.from_pretrained(tiny_model).eval()
    x = (torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        expected = torch.softmax(ref(pixel_values=x).logits, -1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_bf16_agrees_with_fp32(tiny_model: Path) -> None:
    frames = np.random.default_rng(1).integers(0, 256, (16, 8, 32, 32, 3), dtype=np.uint8)
    p32, e32 = load_encoder(str(tiny_model), precision="fp32").encode(frames)
    p16, e16 = load_encoder(str(tiny_model), precision="bf16").encode(frames)
    assert np.abs(p32 - p16).max() < 0.02
    assert (e32 * e16).sum(1).min() > 0.99  # cosine between fp32 and bf16 embeddings


def test_unloadable_models_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot load model"):
        load_encoder(str(tmp_path / "missing-folder-name"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError):
        load_encoder(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="precision"):
        load_encoder(str(save_tiny_videomae(tmp_path / "m", ["a", "b"])), precision="int3")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_path_uses_the_gpu_in_half_precision(tiny_model: Path) -> None:
    enc = load_encoder(str(tiny_model))
    assert enc.device == "cuda" and enc.precision in ("bf16", "fp16")
    assert next(enc.model.parameters()).dtype in (torch.bfloat16, torch.float16)
    frames = np.random.default_rng(0).integers(0, 256, (4, 8, 32, 32, 3), dtype=np.uint8)
    p, e = enc.encode(frames)
    p32, _ = load_encoder(str(tiny_model), device="cpu", precision="fp32").encode(frames)
    assert np.abs(p - p32).max() < 0.03


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_indexing_agrees_with_the_cpu(tmp_path: Path, library: Path, tiny_model: Path) -> None:
    from vsearch.indexer.pipeline import Indexer, IndexSettings
    from vsearch.search import browse
    from vsearch.search.catalog import Catalog

    tops = {}
    for device, precision in (("cuda", None), ("cpu", "fp32")):
        cat = Catalog(tmp_path / device)
        enc = load_encoder(str(tiny_model), device=device, precision=precision)
        Indexer(cat, lambda enc=enc: enc, IndexSettings(batch_size=8)).run([library])
        tops[device] = {p.name: browse.show(cat, str(p)).labels[0][0] for p in library.glob("*.mp4")}
        cat.close()
    agree = np.mean([tops["cuda"][k] == tops["cpu"][k] for k in tops["cpu"]])
    assert agree >= 0.9


@pytest.mark.parametrize("name, error", [
    ("/nope", "no such folder"),
    ("./nope", "no such folder"),
    ("../nope/model", "no such folder"),
    ("~/vsearch-no-such-model", "no such folder"),
    ("models/v1/best", "no such folder"),  # more than one `/`: not a hub id
    ("MCG-NJU/videomae-base", "not in the Hugging Face cache and HF_HUB_OFFLINE is set"),  # a hub id
    ("videomae", "not in the Hugging Face cache and HF_HUB_OFFLINE is set"),
])
def test_first_run_model_mistakes_say_what_is_wrong(name: str, error: str) -> None:
    from vsearch.model.checkpoint import OFFLINE_HINT

    with pytest.raises(ModelError, match="cannot load model") as caught:
        load_encoder(name)  # the tests run with HF_HUB_OFFLINE=1 (conftest)
    assert error in str(caught.value)
    assert (OFFLINE_HINT in str(caught.value)) == ("cache" in error)


def test_a_file_given_as_the_model_is_not_a_folder(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    with pytest.raises(ModelError, match="not a folder"):
        load_encoder(str(weights))


@pytest.mark.parametrize("offline", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["HF_HUB_OFFLINE", "hub-unreachable"])
def test_offline_without_the_model_fails_at_once_before_torch_loads(tmp_path: Path, offline: dict[str, str]) -> None:
    """Without this the hub client retries for about 40 s; here it takes an interpreter start."""
    import subprocess
    import sys
    import time

    from vsearch.model.checkpoint import OFFLINE_HINT

    code = ("import sys\nfrom vsearch.core.errors import ModelError\nfrom vsearch.model.encoder import load_encoder\n"
            "try:\n    load_encoder(None)\nexcept ModelError as exc:\n    print(exc)\n"
            "print('torch imported:', 'torch' in sys.modules)\n")
    cleared = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    env = {k: v for k, v in os.environ.items() if k not in cleared}
    env.update(offline, HF_HOME=str(tmp_path / "empty-hf-cache"))
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert f"cannot load model '{DEFAULT_MODEL}'" in out.stdout and OFFLINE_HINT in out.stdout, out.stderr
    assert ("HF_HUB_OFFLINE is set" if "HF_HUB_OFFLINE" in offline else "cannot be reached") in out.stdout
    assert out.stdout.endswith("torch imported: False\n")
    assert elapsed < 15  # interpreter, numpy and huggingface_hub; it took 18 s to 40 s before
