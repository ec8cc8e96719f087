"""Every error vsearch raises on purpose, in one tree.

A message is the one line a person sees; the class is what a caller acts on. Front ends map
classes, never message text, to what they do: the CLI to an exit code, the web page to an HTTP
status (see each class). Anything else that escapes is a bug.
"""

from __future__ import annotations


class VsearchError(Exception):
    """Base of vsearch's own errors; str(error) is the one line to show."""


class IndexMissing(VsearchError):
    """There is no index at this home yet, or it holds no video: run `vsearch index` first.
    CLI: exit 1. Web: 503 (the page works once an index run has stored something)."""


class IndexBusy(VsearchError):
    """Another `vsearch index` holds the index's writer lock. CLI: exit 1. Web: 503."""


class IndexUnusable(VsearchError):
    """The index cannot be read as one (a damaged file, or written by a newer vsearch); it was
    left untouched. CLI: exit 1. Web: 500."""


class BadInput(VsearchError):
    """Something the caller gave that can be fixed: an empty query, a time out of range, a file
    that is not a video. CLI: exit 1 (2 where it is a malformed argument). Web: 400."""


class BadArgument(BadInput):
    """An argument that is malformed or names nothing: a path that does not exist, a time that does
    not parse, options that exclude each other. CLI: exit 2, as for any usage error."""


class NotIndexed(BadInput):
    """A video the index does not hold (or no longer the file it indexed). Web: 404."""


class ModelMismatch(BadInput):
    """A model other than the one the index was built with: their vectors cannot mix."""


class DecodeError(BadInput):
    """A file that cannot be read as a video; the message is the reason stored for it."""


class ModelError(VsearchError):
    """The model cannot be loaded or used (missing, offline, not a model of the right kind).
    CLI: exit 1. Web: 500."""


class RuntimeUnavailable(ModelError):
    """A runtime or precision that this machine or device cannot run (OpenVINO not installed,
    int8 on a GPU, ...)."""


class MediaError(VsearchError):
    """A moment cannot be cut or transcoded from this file. Web: 404."""


class MediaBusy(MediaError):
    """Every transcoding slot is taken; ask again shortly. Web: 503."""


class ThumbError(MediaError):
    """No thumbnail can be made for this window (file gone or changed). Web: 404."""


class SidecarError(VsearchError):
    """A sidecar (an XMP file, a subtitle file) that cannot be read, parsed or written, or that vsearch
    may not replace; it was left untouched."""


class LiveError(VsearchError):
    """Live recognition cannot go on (source unreadable, stalled past its reconnects ...)."""


class ResolutionChanged(LiveError):
    """The stream's frame size changed mid-way; reconnecting would not help."""


class TrainError(VsearchError):
    """The training data or settings cannot make a model."""


class RayIndexError(VsearchError):
    """The Ray run cannot start or go on; what was stored is kept."""


class WorkerError(VsearchError):
    """Worker processes cannot start, were stopped from outside, or fail whatever file they are
    given (out of memory, a broken install): the run stops, what it stored is kept, and no file is
    recorded as failed. CLI: exit 1. Web: 500."""
