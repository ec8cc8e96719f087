"""Programs that some tests need and pip cannot install: ExifTool and Exiv2, the readers gallery apps
use for XMP sidecars, Debian's Chromium for the browser tests, espeak-ng (real speech) and FFmpeg's
command line (subtitle streams) for the speech tests.

Outside CI a missing one skips the tests that need it, saying how to install it. In CI (`CI` set, as
CI services and `.ci/run` set it) it fails them: a reader that silently did not run would let a
wrong sidecar pass as green."""

from __future__ import annotations

import os
import shutil

import pytest

PACKAGES = {"exiftool": "libimage-exiftool-perl", "exiv2": "exiv2", "chromium": "chromium", "espeak-ng": "espeak-ng",
            "ffmpeg": "ffmpeg"}
INSTALL_ALL = "apt-get install " + " ".join(PACKAGES.values())


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(tool: str) -> str:
    """The path of `tool` on PATH; without it the calling test fails in CI and skips elsewhere."""
    path = shutil.which(tool)
    if path is not None:
        return path
    message = f"{tool} is not installed: apt-get install {PACKAGES[tool]} (all the tests use: {INSTALL_ALL})"
    if in_ci():
        pytest.fail(f"{message}; CI must have it", pytrace=False)
    pytest.skip(message)
