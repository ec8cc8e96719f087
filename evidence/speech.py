"""What is said: the words spoken in a video, each with its time, by a Whisper model (faster-whisper:
`--speech-model`, `base` by default), so that "happy birthday" finds the moment it was said.

Each line the model wrote (a sentence or two) is a row with its words' times; SQLite's full-text
index (FTS5: case and accents folded) finds the lines that hold the query's words, and the hit spans
those words, not the whole line: an exact phrase scores 0.95, all its words apart 0.8, the last word
only as a prefix 0.7. A query also finds lines that mean what it says, by the sentence model that
matches labels (all-MiniLM-L6-v2), scored below exact words (0.6 x the cosine, from 0.45 on). The
language the model heard is the video's (`videos.language`): shown, and a search filter.

Transcription runs per video in the guarded worker processes (a bad audio stream that hangs or
crashes costs that video's words, recorded with the reason; the video stays indexed), after the
video models, in the runtime (int8 or not, threads) the per-machine calibration picked. The
subtitles kind (evidence.subtitles) is this kind reading text instead of listening.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vsearch.core.errors import ModelError
from vsearch.core.words import counted
from vsearch.evidence.base import Ask, FileKind, FilePart, Line, Setup
from vsearch.model.speech import (
    DEFAULT_SPEECH_MODEL,
    Segment,
    SpeechOptions,
    Transcript,
    Word,
    calibrate_speech,
    find_speech_model,
    transcribe_file,
)
from vsearch.search.catalog import Catalog, VectorSpace, to_blob
from vsearch.search.hits import Hit
from vsearch.search.keyword import fts_query

PHRASE, ALL_WORDS, PREFIX = 0.95, 0.8, 0.7  # scores of the words found, adjacent / anywhere in the line / as a prefix
MEANING_FLOOR, MEANING_WEIGHT = 0.45, 0.6  # a line that means the query: cosine from 0.45, scored 0.6 x the cosine
CONTEXT = 4  # words quoted on each side of the words found


def _lines_table(table: str) -> Callable[[Any], None]:
    """The migration that makes a kind's table of timed lines and its full-text index."""

    def create(db: Any) -> None:
        db.execute(f"""
            CREATE TABLE {table} (
                id INTEGER PRIMARY KEY,
                video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
                start REAL NOT NULL,
                end REAL NOT NULL,
                text TEXT NOT NULL,
                words TEXT NOT NULL,       -- JSON [[start, end, word], ...]: when each word is said
                language TEXT,
                vector BLOB                -- the sentence model's vector of the line (float16), for meaning
            )""")
        db.execute(f"CREATE INDEX {table}_video ON {table}(video_id, start)")
        db.execute(f"CREATE VIRTUAL TABLE {table}_fts USING fts5(text, content='{table}', content_rowid='id', "
                   "tokenize='unicode61 remove_diacritics 2')")
        db.execute(f"CREATE TRIGGER {table}_ai AFTER INSERT ON {table} BEGIN "
                   f"INSERT INTO {table}_fts (rowid, text) VALUES (new.id, new.text); END")
        db.execute(f"CREATE TRIGGER {table}_ad AFTER DELETE ON {table} BEGIN "
                   f"INSERT INTO {table}_fts ({table}_fts, rowid, text) VALUES ('delete', old.id, old.text); END")

    return create


def _written(db: Any) -> None:
    # The subtitle files `vsearch tag --subtitles` wrote, by path, with the SHA-256 of what it wrote:
    # it replaces only a file that still has it, and the subtitles kind does not read its own back.
    db.execute("CREATE TABLE written_subtitles (path TEXT PRIMARY KEY, digest TEXT NOT NULL, at REAL NOT NULL)")


def words_of(text: str) -> list[str]:
    """Text as the words a search compares: case and accents folded, punctuation dropped, as FTS5's
    unicode61 tokenizer does."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))
    return re.findall(r"\w+", folded)


def found_words(asked: Sequence[str], said: Sequence[str]) -> tuple[int, int, float] | None:
    """Where the asked words are in a line's words: (first, last) index and how well: the phrase
    itself, all its words apart, or the last only as a prefix of a word."""
    n = len(asked)
    for i in range(len(said) - n + 1):
        if list(said[i : i + n]) == list(asked):
            return i, i + n - 1, PHRASE
    exact = [[i for i, w in enumerate(said) if w == a] for a in asked]
    if all(exact):
        spots = [p[0] for p in exact]
        return min(spots), max(spots), ALL_WORDS
    prefix = exact[:-1] + [[i for i, w in enumerate(said) if w.startswith(asked[-1])]]
    if all(prefix):
        spots = [p[0] for p in prefix]
        return min(spots), max(spots), PREFIX
    return None


class Speech(FileKind):
    name = "speech"
    matches = ("speech",)
    prefix = "speech"
    option: str | None = "speech_model"
    table = "speech_lines"
    quote = "says"  # how a hit is told: 'says "..."'
    unit = "line"
    sets_language = True  # the language heard is the video's (subtitles are in whatever they are in)

    space: VectorSpace  # its lines' vectors, by the sentence model

    def __init__(self) -> None:
        self.space = VectorSpace(self.name, f"SELECT l.id AS id, l.video_id AS video_id, l.start AS start, "
                                            f"l.end AS end, l.vector AS vector FROM {self.table} l "
                                            "WHERE l.vector IS NOT NULL", f"{self.prefix}_dim", per_window=False)
        self.tables = [(f"001_{self.table}", _lines_table(self.table)), ("002_written_subtitles", _written)]

    # -- indexing ------------------------------------------------------------------------------

    def part(self, setup: Setup) -> FilePart | None:
        """The speech model of this run, per `speech_model`: the one named, else the index's own, else
        the default where it can be had (in the cache, or downloadable); "none" turns speech off and
        removes what it stored. A model named that cannot be had is an error; the default, a note."""
        o, catalog = setup.options, setup.catalog
        asked = getattr(o, "speech_model", None)
        if asked == "none":
            if not catalog.kind_off(self.prefix or self.name):
                gone = self._count(catalog)
                self.turn_off(catalog)
                if gone:
                    setup.log(f"searching what is said turned off for this index ({counted(gone, 'line')} removed)")
            return None
        own = catalog.kind_model(self.prefix or self.name)
        name = asked or own or DEFAULT_SPEECH_MODEL
        try:
            files = find_speech_model(name)
        except ModelError as exc:
            if asked is not None or own is not None:
                raise
            if not catalog.kind_off(self.prefix or self.name):
                setup.notes.append(f"note: searching what is said is off: {exc}")
            return None
        if asked is None and catalog.kind_off(self.prefix or self.name):
            return None  # turned off on purpose: stays off until a model is named
        calibration = calibrate_speech(str(files.folder), setup.home, on_measure=lambda: setup.log(
            "measuring the speech model's fastest runtime here (once per machine and model)..."))
        setup.log(f"speech model: {files.name}, {calibration.describe()}")
        work = functools.partial(_transcribe, str(files.folder), SpeechOptions(runtime=calibration.runtime))
        return FilePart(self, files.name, work, files.model_id)

    def store(self, catalog: Catalog, video_id: int, found: Any) -> int:
        transcript: Transcript | None = found
        if transcript is None:  # no audio track
            self._drop(catalog, video_id)
            return 0
        self._drop(catalog, video_id)
        rows = [(s.start, s.end, s.text, [[w.start, w.end, w.text] for w in s.words]) for s in transcript.segments]
        if transcript.language:
            catalog.db.execute("UPDATE videos SET language = ? WHERE id = ?", [transcript.language, video_id])
        return self._insert(catalog, video_id, rows, transcript.language)

    def _insert(self, catalog: Catalog, video_id: int, rows: list[tuple[float, float, str, list]],
                language: str | None) -> int:
        """Keep timed lines, with the sentence model's vector of each where it is installed."""
        vectors = _sentence_vectors([text for _, _, text, _ in rows])
        if vectors is not None and len(rows):
            catalog.set_meta(self.space.dim_key, str(vectors.shape[1]))
        catalog.db.conn.executemany(
            f"INSERT INTO {self.table} (video_id, start, end, text, words, language, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(video_id, start, end, text, json.dumps(words), language, to_blob(vectors[i]) if vectors is not None else None)
             for i, (start, end, text, words) in enumerate(rows)])
        if rows:
            catalog.changed()
        return len(rows)

    def _drop(self, catalog: Catalog, video_id: int) -> None:
        """What an earlier run found in this video (its sidecar changed, or a run was cut short)."""
        if catalog.db.execute(f"DELETE FROM {self.table} WHERE video_id = ?", [video_id]).rowcount:
            catalog.changed()

    def clear(self, catalog: Catalog) -> None:
        if catalog.has_part(self.name):
            catalog.db.execute(f"DELETE FROM {self.table}")
            catalog.changed()
        if self.sets_language:
            catalog.db.execute("UPDATE videos SET language = NULL")

    def _count(self, catalog: Catalog) -> int:
        return catalog.db.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0] if catalog.has_part(self.name) else 0

    # -- searching ------------------------------------------------------------------------------

    def hits(self, ask: Ask) -> list[Hit]:
        catalog = ask.catalog
        asked = words_of(ask.text)
        if not asked or not catalog.has_part(self.name):
            return []
        where, args = ask.filters.sql()
        select = (f"SELECT l.id, l.video_id, v.path, l.start, l.end, l.text, l.words, l.language FROM {self.table} l "
                  f"JOIN videos v ON v.id = l.video_id")
        hits: list[Hit] = []
        seen: set[int] = set()
        rows = catalog.db.execute(f"{select} WHERE l.id IN (SELECT rowid FROM {self.table}_fts WHERE {self.table}_fts "
                                  f"MATCH ? ORDER BY rank LIMIT ?) AND {where}",
                                  [fts_query(" ".join(asked)), ask.limit * 5, *args]).fetchall()
        for line_id, vid, path, start, end, text, words_json, language in rows:
            words = json.loads(words_json) or spread(start, end, text)  # a line the model gave no word times
            tokens = [(token, i) for i, (_, _, text) in enumerate(words) for token in words_of(text)]
            where_found = found_words(asked, [token for token, _ in tokens])
            if where_found is None:
                continue
            first, last, score = tokens[where_found[0]][1], tokens[where_found[1]][1], where_found[2]
            seen.add(line_id)
            if score >= ask.filters.min_score:
                hits.append(self._hit(path, vid, words[first][0], words[last][1], score, _quoted(words, first, last),
                                      language))
        if ask.models:
            hits += self._meaning(ask, select, where, args, seen)
        ask.used[self.name] = True
        return hits

    def _meaning(self, ask: Ask, select: str, where: str, args: list, seen: set[int]) -> list[Hit]:
        """Lines that mean what the query says, below the lines that hold its words."""
        from vsearch.search import sentences

        model = sentences.load_sentence_model()
        if model is None or not ask.catalog.dim_of(self.space):
            return []
        index = ask.vectors(self.space)
        if len(index) == 0:
            return []
        cosines, ids = index.search(model.embed([ask.text]), ask.limit * 5)
        close = {int(i): float(c) for i, c in zip(ids[0], cosines[0]) if i >= 0 and c >= MEANING_FLOOR and i not in seen}
        if not close:
            return []
        rows = ask.catalog.db.execute(f"{select} WHERE l.id IN ({','.join('?' * len(close))}) AND {where}",
                                      [*close, *args]).fetchall()
        hits = []
        for line_id, vid, path, start, end, text, words_json, language in rows:
            score = MEANING_WEIGHT * close[line_id]
            if score >= ask.filters.min_score:
                words = json.loads(words_json) or spread(start, end, text)
                hits.append(self._hit(path, vid, start, end, score, _quoted(words, 0, len(words) - 1), language))
        return hits

    def _hit(self, path: str, video_id: int, start: float, end: float, score: float, said: str,
             language: str | None) -> Hit:
        return Hit(path, start, end, score, None, self.matches[0], None, None, video_id, why=f"{self.quote} “{said}”",
                   details={"said": said, "language": language})

    def transcript(self, catalog: Catalog, video_id: int) -> list[Line]:
        if not catalog.has_part(self.name):
            return []
        return [Line(start, end, text, self.matches[0], language) for start, end, text, language in catalog.db.execute(
            f"SELECT start, end, text, language FROM {self.table} WHERE video_id = ? ORDER BY start", [video_id])]

    def segments(self, catalog: Catalog, video_id: int) -> list[Segment]:
        """A video's lines as the speech model gave them, words and times: what subtitles are written from."""
        if not catalog.has_part(self.name):
            return []
        return [Segment(start, end, text, tuple(Word(a, b, w, 1.0) for a, b, w in json.loads(words)))
                for start, end, text, words in catalog.db.execute(
                    f"SELECT start, end, text, words FROM {self.table} WHERE video_id = ? ORDER BY start", [video_id])]

    def checks(self) -> list:
        from vsearch.search.doctor import Finding

        def full_text(catalog: Catalog, repair: bool) -> Finding:
            check = f"{self.name} full-text index"
            if not catalog.has_part(self.name):
                return Finding(check, True, "none yet")
            try:
                catalog.db.execute(f"INSERT INTO {self.table}_fts ({self.table}_fts) VALUES ('integrity-check')")
                return Finding(check, True, f"{counted(self._count(catalog), 'line')}, in step with their table")
            except Exception:  # SQLite says which way it is out of step; rebuilding mends any of them
                if repair:
                    with catalog.transaction():
                        catalog.db.execute(f"INSERT INTO {self.table}_fts ({self.table}_fts) VALUES ('rebuild')")
                return Finding(check, False, "out of step with its table" + ("; rebuilt" if repair else ""),
                               repaired=repair)

        return [*super().checks(), full_text]

    def describe(self) -> str:
        return "what is said (a speech model), word by word"


def _transcribe(folder: str, options: SpeechOptions, path: str, alive: Callable[[], None]) -> Transcript | None:
    """The work of the speech kind in a worker process: one video's transcript."""
    return transcribe_file(path, folder, options, alive)


def spread(start: float, end: float, text: str) -> list[list]:
    """A line's words spread evenly over its time, where nothing says when each was said (a subtitle
    cue): about where each word is."""
    words = text.split()
    step = (end - start) / max(len(words), 1)
    return [[round(start + i * step, 3), round(start + (i + 1) * step, 3), w] for i, w in enumerate(words)]


def _quoted(words: list, first: int, last: int) -> str:
    """The words found, with a few on each side, and an ellipsis where the line goes on."""
    lo, hi = max(0, first - CONTEXT), min(len(words), last + 1 + CONTEXT)
    text = " ".join(w for _, _, w in words[lo:hi])
    return ("…" if lo > 0 else "") + text + ("…" if hi < len(words) else "")


def _sentence_vectors(texts: list[str]) -> np.ndarray | None:
    from vsearch.search import sentences

    model = sentences.load_sentence_model()
    return model.embed(texts) if model is not None and texts else None


KIND = Speech()
