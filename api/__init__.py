"""vsearch: local semantic video search, as a library.

    import vsearch

    idx = vsearch.Index()                       # the default index folder, or Index("path")
    idx.index(["~/Videos"])                     # decode, classify and embed what changed
    for hit in idx.search("eating spaghetti").hits:
        print(hit.path, hit.start, hit.end, hit.label)

`Index` is one index folder and every action on it (index, search, similar, show, labels, stats,
overview, videos, moments, doctor, clip); `load_model` and `classify` need no index. Every front
end (the `vsearch` command, the web page, live recognition, the Ray driver, the benchmarks) is
built on these calls. Errors are `VsearchError` subclasses, each one a thing a caller can act on
(see vsearch.core.errors).

Importing vsearch is cheap: the parts behind these names load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vsearch.core.errors import (
    BadArgument,
    BadInput,
    DecodeError,
    IndexBusy,
    IndexMissing,
    IndexUnusable,
    LiveError,
    MediaBusy,
    MediaError,
    ModelError,
    ModelMismatch,
    NotIndexed,
    RayIndexError,
    RuntimeUnavailable,
    SidecarError,
    ThumbError,
    TrainError,
    VsearchError,
    WorkerError,
)

if TYPE_CHECKING:
    from vsearch.evidence.base import Line
    from vsearch.indexer.one_file import Classification
    from vsearch.indexer.pipeline import IndexReport, Progress
    from vsearch.library import Index, IndexOptions, classify, load_model, load_visual
    from vsearch.library import load_scene as load_scene  # deprecated: load_visual's older name, not in __all__
    from vsearch.model.runtimes import Choice
    from vsearch.search.browse import Moment, Overview, VideoCard, VideoLabels, VideoMoments, VideoPage
    from vsearch.search.copies import CopyGroup, CopyPair, Duplicates
    from vsearch.search.hits import Hit, SearchResult
    from vsearch.tag.tagger import TagReport, TagResult, TagRule

__all__ = [
    "BadArgument", "BadInput", "Choice", "Classification", "CopyGroup", "CopyPair", "Duplicates", "Line",
    "DecodeError", "Hit", "Index", "IndexBusy", "IndexMissing",
    "IndexOptions", "IndexReport", "IndexUnusable", "LiveError", "MediaBusy", "MediaError", "ModelError",
    "ModelMismatch", "Moment", "NotIndexed", "Overview", "Progress", "RayIndexError", "RuntimeUnavailable",
    "SearchResult", "SidecarError", "ThumbError", "TrainError", "VideoCard", "VideoLabels", "VideoMoments", "VideoPage",
    "VsearchError", "WorkerError", "classify", "load_model", "load_visual", "TagRule", "TagReport", "TagResult",
]

# Where each lazily loaded name lives.
_LAZY = {
    "Index": "vsearch.library", "IndexOptions": "vsearch.library", "classify": "vsearch.library",
    "load_model": "vsearch.library", "load_visual": "vsearch.library", "TagRule": "vsearch.tag.tagger",
    "TagReport": "vsearch.tag.tagger", "TagResult": "vsearch.tag.tagger", "Choice": "vsearch.model.runtimes.base",
    "Classification": "vsearch.indexer.one_file", "IndexReport": "vsearch.indexer.pipeline",
    "Progress": "vsearch.indexer.pipeline", "Hit": "vsearch.search.hits",
    "CopyPair": "vsearch.search.copies", "CopyGroup": "vsearch.search.copies",
    "Duplicates": "vsearch.search.copies", "Line": "vsearch.evidence.base", "SearchResult": "vsearch.search.hits",
    "VideoLabels": "vsearch.search.browse", "Moment": "vsearch.search.browse", "Overview": "vsearch.search.browse",
    "VideoCard": "vsearch.search.browse", "VideoMoments": "vsearch.search.browse", "VideoPage": "vsearch.search.browse",
    "load_scene": "vsearch.library",  # deprecated (warns when called): load_visual's older name
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vsearch' has no attribute {name!r}")
