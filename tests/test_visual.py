"""The visual model: parity with transformers' own classes, a trained tiny CLIP finding generated
pictures by description, and the errors a user can meet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.visual_fixtures import (
    COLOURS,
    HELD_OUT,
    Picture,
    picture_video,
    render_picture,
    save_word_tokenizer,
)
from vsearch import ModelError
from vsearch.model.visual import VISUAL_MIN_SCORE, VisualModel, load_visual_model
from vsearch.video.decode import FrameSpec, Sampling, read_windows

DATA = Path(__file__).resolve().parents[1] / "data"
TEXTS = ["a red circle on a blue background", "yellow square", "", "an unknown word"]


# --- parity with transformers, on small random checkpoints of each supported type -------------

def _tiny_towers(vocab: int) -> tuple[dict[str, Any], dict[str, Any]]:
    text = {"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 16}
    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2}
    return text, vision


def _save(out: Path, model_type: str) -> tuple[Any, Any]:
    """A random checkpoint of `model_type` with a word tokenizer and its own image processor (the
    PIL one: torchvision is not installed), saved as a user would find it. Returns (model, processor)."""
    import transformers
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil
    from transformers.models.videomae.image_processing_pil_videomae import VideoMAEImageProcessorPil

    torch.manual_seed(0)
    vocab = save_word_tokenizer(out, max_length=16)
    text, vision = _tiny_towers(len(vocab))
    text.update(pad_token_id=vocab["[PAD]"], bos_token_id=vocab["[BOS]"], eos_token_id=vocab["[EOS]"])
    square = {"height": 32, "width": 32}
    if model_type == "clip":
        config: Any = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)
        processor: Any = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size=square)
    elif model_type == "siglip":
        config = transformers.SiglipConfig(text_config=text, vision_config=vision)
        processor = SiglipImageProcessorPil(size=square, image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.3, 0.4])
    elif model_type == "siglip2":  # NaFlex: 20 patches, of which a 32 px square fills 16
        vision.pop("image_size")
        config = transformers.Siglip2Config(text_config=text, vision_config={**vision, "num_patches": 16})
        processor = Siglip2ImageProcessorPil(patch_size=8, max_num_patches=20)
    else:
        mit = {"mit_hidden_size": 24, "mit_intermediate_size": 48, "mit_num_hidden_layers": 1, "mit_num_attention_heads": 2}
        config = transformers.XCLIPConfig(text_config=text, vision_config={**vision, **mit, "num_frames": 4}, projection_dim=24,
                                          prompt_layers=1)
        processor = VideoMAEImageProcessorPil(size={"shortest_edge": 32}, crop_size=square)
    model = getattr(transformers, config.__class__.__name__.replace("Config", "Model"))(config).eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return model, processor


def _reference_windows(model: Any, processor: Any, model_type: str, frames: np.ndarray) -> torch.Tensor:
    """What transformers' own processor and model give, pooled as documented."""
    norm = torch.nn.functional.normalize
    with torch.inference_mode():
        if model_type == "xclip":
            pixels = processor([list(w) for w in frames], return_tensors="pt")["pixel_values"]
            return norm(model.get_video_features(pixel_values=pixels).pooler_output, dim=-1)
        inputs = processor([f for w in frames for f in w], return_tensors="pt")
        per_frame = norm(model.get_image_features(**inputs).pooler_output, dim=-1)
    return norm(per_frame.view(len(frames), frames.shape[1], -1).mean(1), dim=-1)


def _reference_texts(model: Any, tokenizer: Any, model_type: str) -> torch.Tensor:
    siglip = model_type.startswith("siglip")
    tokens = tokenizer(TEXTS, padding="max_length" if siglip else True, max_length=16, truncation=True, return_tensors="pt")
    inputs = {"input_ids": tokens["input_ids"]} if siglip else dict(tokens)  # SigLIP: no mask, as trained
    with torch.inference_mode():
        return torch.nn.functional.normalize(model.get_text_features(**inputs).pooler_output, dim=-1)


@pytest.mark.parametrize("model_type", ["clip", "siglip", "siglip2", "xclip"])
def test_embeddings_match_transformers(tmp_path: Path, model_type: str) -> None:
    from transformers import AutoTokenizer

    model, processor = _save(tmp_path, model_type)
    visual = load_visual_model(str(tmp_path), runtime="torch", precision="fp32")
    assert (visual.model_type, visual.kind) == (model_type, "video" if model_type == "xclip" else "image")
    assert visual.frame_spec.crop == (32, 32)
    frames = np.random.default_rng(1).integers(0, 256, (2, visual.frames_per_window, 32, 32, 3), dtype=np.uint8)
    windows = visual.embed_frames(frames)
    assert windows.shape == (2, visual.dim) and windows.dtype == np.float32
    np.testing.assert_allclose(windows, _reference_windows(model, processor, model_type, frames).numpy(), atol=2e-5)
    texts = visual.embed_text(TEXTS)
    reference = _reference_texts(model, AutoTokenizer.from_pretrained(tmp_path), model_type).numpy()
    np.testing.assert_allclose(texts, reference, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)


def test_frame_specs_follow_each_processor(tmp_path: Path) -> None:
    specs = {}
    for model_type in ("clip", "siglip", "siglip2", "xclip"):
        _save(tmp_path / model_type, model_type)
        specs[model_type] = load_visual_model(str(tmp_path / model_type)).frame_spec
    assert specs["clip"] == FrameSpec(3, ("shortest_edge", 32), (32, 32))
    assert specs["siglip"].resize == ("exact", (32, 32))  # SigLIP squeezes the frame, as it was trained
    assert specs["siglip2"] == FrameSpec(3, ("shortest_edge", 32), (32, 32))  # NaFlex: a square of whole patches
    assert specs["xclip"] == FrameSpec(4, ("shortest_edge", 32), (32, 32))  # its config's num_frames


def test_siglip_scores_with_its_own_bias(tmp_path: Path) -> None:
    model, _ = _save(tmp_path, "siglip")
    visual = load_visual_model(str(tmp_path))
    cos = np.array([-0.5, 0.0, 0.5])
    expected = torch.sigmoid(model.logit_scale.exp() * torch.tensor(cos) + model.logit_bias).detach().numpy()
    np.testing.assert_allclose(visual.score(cos), expected, rtol=1e-5)


def test_bf16_stays_close_to_fp32(tmp_path: Path) -> None:
    _save(tmp_path, "clip")
    frames = np.random.default_rng(2).integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8)
    fp32, bf16 = (load_visual_model(str(tmp_path), runtime="torch", precision=p) for p in ("fp32", "bf16"))
    assert np.abs(fp32.embed_frames(frames) - bf16.embed_frames(frames)).max() < 0.05
    assert np.abs(fp32.embed_text(TEXTS) - bf16.embed_text(TEXTS)).max() < 0.05


@pytest.mark.parametrize("model_type", ["clip", "xclip"])
def test_the_vision_tower_runs_in_openvino_and_the_calibration_measures_it(tmp_path: Path, model_type: str) -> None:
    """The visual model goes through the same runtimes and measured choice as the video model: OpenVINO
    gives torch fp32's vectors, and tune() picks a runtime and batch for it with the same rules."""
    pytest.importorskip("openvino")
    from vsearch.model.calibrate import tune

    _save(tmp_path / "m", model_type)
    frames = np.random.default_rng(3).integers(0, 256, (4, 3 if model_type == "clip" else 4, 32, 32, 3), dtype=np.uint8)
    torch32 = load_visual_model(str(tmp_path / "m"), runtime="torch", precision="fp32")
    ov = load_visual_model(str(tmp_path / "m"), runtime="openvino", precision="fp32", home=tmp_path / "home")
    assert ov.choice.label == "openvino fp32" and list((tmp_path / "home" / "openvino").glob("*/model.xml"))
    assert float((torch32.embed_frames(frames) * ov.embed_frames(frames)).sum(1).min()) > 0.999
    auto = load_visual_model(str(tmp_path / "m"), home=tmp_path / "home")
    calibration = tune(auto, tmp_path / "home")
    assert calibration.how == "calibrated" and "fp32@1" in calibration.timings and auto.choice == calibration.choice
    assert float((torch32.embed_frames(frames) * auto.embed_frames(frames)).sum(1).min()) > 0.98


# --- a tiny CLIP trained on generated pictures -------------------------------------------------

@pytest.fixture(scope="module")
def trained(visual_model_dir: Path) -> VisualModel:
    """Trained once per session (conftest), loaded as a user's folder."""
    return load_visual_model(str(visual_model_dir), runtime="torch", precision="fp32")


HELD_OUT_PICTURES = [Picture(c, s, b) for c, s in sorted(HELD_OUT) for b in COLOURS if b != c]


def _held_out_windows(model: VisualModel) -> np.ndarray:
    rng = np.random.default_rng(11)
    return model.embed_frames(np.stack([render_picture(s, rng, model.frames_per_window) for s in HELD_OUT_PICTURES]))


@pytest.mark.slow
def test_tiny_model_loads_through_the_users_path(trained: VisualModel) -> None:
    assert (trained.kind, trained.dim, trained.frames_per_window) == ("image", 32, 3)
    assert trained.frame_spec == FrameSpec(3, ("shortest_edge", 32), (32, 32))
    assert trained.model_id.startswith(f"{trained.name}|scene=clip|frames=3|dim=32|weights=")
    assert trained.min_score == pytest.approx(VISUAL_MIN_SCORE)


@pytest.mark.slow
def test_load_scene_is_load_visual_by_its_older_name(visual_model_dir: Path, tmp_path: Path) -> None:
    import vsearch

    with pytest.warns(DeprecationWarning, match="load_visual"):
        model = vsearch.load_scene(str(visual_model_dir), runtime="torch", precision="fp32", home=tmp_path)
    assert isinstance(model, VisualModel) and model.dim == 32


@pytest.mark.slow
def test_right_caption_of_unseen_combinations_scores_highest(trained: VisualModel) -> None:
    """Colour-shape pairs the model never saw, on every background: composition, not memory."""
    cos = _held_out_windows(trained) @ trained.embed_text([s.caption for s in HELD_OUT_PICTURES]).T
    assert (cos.argmax(1) == np.arange(len(HELD_OUT_PICTURES))).mean() >= 0.9


@pytest.mark.slow
def test_floor_separates_what_is_shown_from_what_is_not(trained: VisualModel) -> None:
    windows = _held_out_windows(trained)
    present = trained.score(np.sum(windows * trained.embed_text([s.caption for s in HELD_OUT_PICTURES]), axis=1))
    # absent: every held-out caption whose colour and shape both differ from the window's
    scores = trained.score(windows @ trained.embed_text([s.caption for s in HELD_OUT_PICTURES]).T)
    absent = np.array([[a.colour != b.colour and a.shape != b.shape for b in HELD_OUT_PICTURES] for a in HELD_OUT_PICTURES])
    assert (present > trained.min_score).mean() >= 0.9
    assert (scores[absent] < trained.min_score).mean() >= 0.95


@pytest.mark.slow
def test_descriptions_find_their_moment_in_a_video(trained: VisualModel, tmp_path: Path) -> None:
    """A video whose picture changes mid-way, decoded as the indexer decodes: each window's own
    picture is its best caption, descriptions in other words pass the floor there and nowhere else,
    and what the video never shows stays below it."""
    pictures = [Picture("red", "circle", "blue"), Picture("yellow", "square", "green")]
    path = picture_video(tmp_path / "pictures.mp4", pictures, seconds_each=2.0)
    chunks = read_windows(str(path), trained.frame_spec, Sampling(window_seconds=2.0))
    windows = trained.embed_frames(np.concatenate([frames for _, _, frames in chunks]))
    assert len(windows) == 2
    captions = trained.embed_text([s.caption for s in pictures])
    assert list((windows @ captions.T).argmax(1)) == [0, 1]
    described = {0: ["red circle", "a circle that is red on blue", "the red circle over blue"],
                 1: ["yellow square", "a square that is yellow on green", "a green background with a yellow square"]}
    for i, queries in described.items():
        scores = trained.score(windows @ trained.embed_text(queries).T)
        assert (scores[i] > trained.min_score).all(), (queries, scores)
        assert (scores[1 - i] < trained.min_score).all(), (queries, scores)
    absent = ["a white triangle", "a black triangle on a white background", "white triangle"]
    assert (trained.score(windows @ trained.embed_text(absent).T) < trained.min_score).all()


# --- what users can get wrong -----------------------------------------------------------------

def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such folder") as err:
        load_visual_model(str(tmp_path / "nope"))
    assert "\n" not in str(err.value)


def test_a_video_classifier_is_not_a_visual_model() -> None:
    with pytest.raises(ModelError, match="is a videomae model") as err:
        load_visual_model(str(DATA / "motion-model"))
    assert "\n" not in str(err.value)


def test_offline_without_the_model_in_the_cache() -> None:
    # conftest sets HF_HUB_OFFLINE; nothing is downloaded and the answer comes at once
    with pytest.raises(ModelError, match="not in the Hugging Face cache") as err:
        load_visual_model("google/siglip2-base-patch16-224")
    assert "\n" not in str(err.value)


def test_folder_without_preprocessor_config(tmp_path: Path) -> None:
    _save(tmp_path, "clip")
    (tmp_path / "preprocessor_config.json").unlink()
    with pytest.raises(ModelError, match="no preprocessor_config.json"):
        load_visual_model(str(tmp_path))


def test_import_does_not_load_torch() -> None:
    code = "import sys, vsearch.model.visual; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
