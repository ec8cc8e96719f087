"""Rebuild the demo data in this folder: `python tests/make_demo.py` (takes about two minutes).

- data/samples/: two generated clips per motion pattern plus one file that is not a video;
- data/motion-model/: a tiny VideoMAE (8 frames, 32 px) trained with `vsearch train` on 200
  generated clips per motion. It lets the quick start run where the default Kinetics model
  cannot be downloaded, and shows the whole train -> index -> search loop.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "data"
sys.path.insert(0, str(HERE.parent))

from tests.conftest import save_tiny_videomae  # noqa: E402
from vsearch.bench.synthetic import motion_dataset  # noqa: E402


def main() -> None:
    samples = HERE / "samples"
    shutil.rmtree(samples, ignore_errors=True)
    # Neutral file names, so that what search finds, the model found.
    made = motion_dataset(samples, per_label=2, seed=2024, folders=False)
    (samples / "labels.txt").write_text("".join(f"{p.name}\t{label}\n" for p, label in sorted(made.items())))
    (samples / "not-a-video.mp4").write_text("a text file with a video's name: vsearch skips it and says why\n")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train"
        motion_dataset(data, per_label=200, seed=1)
        base = save_tiny_videomae(Path(tmp) / "base", ["a", "b"], hidden=64, heads=4)
        out = HERE / "motion-model"
        subprocess.run([sys.executable, "-m", "vsearch.cli.main", "train", str(data), "--out", str(out), "--base", str(base),
                        "--epochs", "40", "--lr", "2e-3", "--batch-size", "16"], check=True, cwd=HERE.parent)


if __name__ == "__main__":
    main()
