"""What a moment shows: an image-text model's vector of each window (SigLIP 2 by default, or CLIP,
X-CLIP), so that any description ("a red kite over the beach") finds the windows that look like it,
and find-similar can compare what is seen ("visuals"). Called "scenes" before, which read as shot
detection; `--by scene` is still understood (see vsearch.library).

The model is chosen by `vsearch index --text-model` (the option is `text_model`); by default
SigLIP 2 where it can be had (in the cache, or downloadable), and none otherwise, said once. A new
model replaces the old one's vectors and is filled in for every indexed window, without running the
video model again.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from vsearch.core.errors import ModelError
from vsearch.evidence.base import Ask, Setup, WindowKind, WindowPart
from vsearch.model.calibrate import at_its_fastest
from vsearch.model.checkpoint import cache_only, model_name
from vsearch.model.visual import DEFAULT_VISUAL_MODEL, VisualModel, load_visual_model
from vsearch.search.catalog import VISUALS, Catalog
from vsearch.search.hits import Hit
from vsearch.search.visuals import VisualQuery, visual_hits

NO_VISUAL_MODEL = ("this index finds moments by their labels only; to search by any description (\"a red car at "
                   "night\"), index it again with --text-model (e.g. google/siglip2-base-patch16-224)")


class Visuals(WindowKind):
    name = "visuals"
    matches = ("visuals",)
    prefix = "visual"
    option = "text_model"
    space = VISUALS
    similar_by = "visuals"

    def hits(self, ask: Ask) -> list[Hit]:
        if not ask.models:
            ask.used["visuals"] = False
            return []
        model: VisualModel = ask.model(self)
        query = VisualQuery(model.embed_text([ask.text])[0], model.score, model.min_score, model.moment_margin)
        found = visual_hits(ask.catalog, ask.vectors(VISUALS), query, ask.filters, ask.limit)
        for h in found:
            h.why = f"shows “{ask.text}”"
        ask.used["visuals"] = True
        return found

    def absent(self, catalog: Catalog, ask: Ask) -> None:
        ask.used["visuals"] = False if catalog.visual_off else None
        if not catalog.visual_off:
            ask.notes.append(NO_VISUAL_MODEL)

    def query_model(self, catalog: Catalog) -> Any:
        name = catalog.visual_model
        assert name is not None  # asked only of an index with a visual model
        return load_visual_model(name, runtime="torch", precision="fp32", home=catalog.home)

    def clear(self, catalog: Catalog) -> None:
        catalog.db.execute("DELETE FROM visual_vectors")

    def store(self, catalog: Catalog, window_ids: Sequence[int], values: np.ndarray) -> None:
        catalog.add_visual_vectors(window_ids, values)

    def part(self, setup: Setup) -> WindowPart | None:
        """The visual model of this run, per `text_model`: the one named, else the index's own, else
        the default where it can be had; "none" turns it off (and removes its vectors). A model named
        that cannot load is an error; the default that cannot be had offline is a note."""
        o, catalog = setup.options, setup.catalog
        if o.text_model == "none":
            if not catalog.visual_off:
                gone = catalog.count(VISUALS)
                self.turn_off(catalog)
                if gone:
                    setup.log(f"searching by description turned off for this index ({gone} visual vectors removed)")
            return None
        name = model_name(o.text_model or catalog.visual_model or DEFAULT_VISUAL_MODEL)
        if o.text_model is None and (catalog.visual_model is None or catalog.visual_off):
            if catalog.visual_off:
                return None  # turned off on purpose: stays off until a model is named
            try:
                cache_only(name)
            except ModelError:
                setup.notes.append(f"note: searching by description is off: {name} is not in the Hugging Face cache "
                                   "and cannot be downloaded now; index with --text-model NAME|FOLDER to turn it on, "
                                   "or --text-model none to not be told again")
                return None
        load = functools.partial(load_visual_model, name, device=o.device, runtime=o.runtime, precision=o.precision,
                                  home=setup.home)
        if setup.pickles:  # Ray's model actors load it themselves: a picklable loader, no calibration
            return WindowPart(self, name, load)

        @functools.cache
        def fastest() -> VisualModel:
            model = load(window_source=setup.windows)
            at_its_fastest(model, setup.home, True, o.batch_size, "visual model", setup.log)
            return model

        return WindowPart(self, name, fastest)

    def describe(self) -> str:
        return "what each window shows (an image-text model)"


KIND = Visuals()
