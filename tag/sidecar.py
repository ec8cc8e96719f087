"""XMP sidecars: vsearch's labels and moments merged into the `.xmp` file next to a video.

Gallery apps (digiKam, Immich, PhotoPrism, darktable, Lightroom) read tags from a sidecar. vsearch
writes into the one the user may already have, so the rule is: everything vsearch does not own
stays byte for byte as it was (prefixes, quoting, comments, order, the `<?xpacket?>` wrapper);
vsearch's own parts are edited with the smallest splices it can make.

What vsearch writes:

- flat keywords in `dc:subject` (the label, verbatim);
- hierarchical tags in `digiKam:TagsList` ("vsearch/eating spaghetti") and `lr:hierarchicalSubject`
  ("vsearch|eating spaghetti"). A `/` or `|` inside a label would make a fake level in one of the
  two trees, so in both trees they are written as lookalikes: `/` as U+2215 (∕) and `|` as U+2223
  (∣); `dc:subject` keeps the label as it is;
- one marker track, `xmpDM:Tracks` -> trackName "vsearch": its `frameRate` is the video's
  ("f25", "f30000s1001"), and marker `startTime`/`duration` are whole frames at that rate, as the
  XMP spec's Time values are (without a known frame rate: "f1000", milliseconds);
- its own record, in a private namespace (`vsearch:addedSubject`, `vsearch:addedTagsList`,
  `vsearch:addedHierarchicalSubject`): the entries vsearch itself added to each list.

What vsearch owns, and so may replace on a later run: the entries in its record, hierarchical
entries under its prefix ("vsearch/...", "vsearch|..."), and the track named "vsearch". A keyword
the user had before vsearch wanted it is never recorded, so never removed. A list, track list or
`rdf:Description` that vsearch's removals leave empty is removed too, so untagging gives back the
file as it was before vsearch.

digiKam and Immich read the first non-empty of TagsList, hierarchicalSubject, keywords. So when
vsearch creates a hierarchical list the file lacked, it first copies the user's own tags into it
(from the other tree, or from `dc:subject`), or the apps would stop showing them. Those copies are
the user's: not recorded, never removed.

The XML is parsed by lxml (the model: what is where) and by expat from the standard library (where
each element starts, in bytes); new parts are built and serialized by lxml in the namespace
context of the element they go into, then spliced into the original bytes.
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
import xml.parsers.expat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

from lxml import etree

from vsearch.core.errors import SidecarError

X_NS = "adobe:ns:meta/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC_NS = "http://purl.org/dc/elements/1.1/"
DIGIKAM_NS = "http://www.digikam.org/ns/1.0/"
LR_NS = "http://ns.adobe.com/lightroom/1.0/"
XMPDM_NS = "http://ns.adobe.com/xmp/1.0/DynamicMedia/"
# vsearch's private record. `.invalid` is reserved (RFC 2606): the URI can never be someone else's.
VSEARCH_NS = "http://ns.vsearch.invalid/xmp/1.0/"

PREFERRED_PREFIX = {DC_NS: "dc", DIGIKAM_NS: "digiKam", LR_NS: "lr", XMPDM_NS: "xmpDM", VSEARCH_NS: "vsearch"}
TRACK_NAME = "vsearch"
NAMINGS = ("clip.mp4.xmp", "clip.xmp")
# Lookalikes for the two hierarchy separators inside one level (see the module docstring).
SLASH_LOOKALIKE = "\u2215"
BAR_LOOKALIKE = "\u2223"
# Without the video's frame rate, marker times are counted in milliseconds.
DEFAULT_TIMESCALE = Fraction(1000)

_RDF = f"{{{RDF_NS}}}"
_ARRAYS = (_RDF + "Bag", _RDF + "Seq", _RDF + "Alt")
_WS = b" \t\r\n"


@dataclass(frozen=True)
class Marker:
    """One moment: the label, where it starts and how long it lasts (seconds), and a comment (the score)."""

    name: str
    start: float
    duration: float
    comment: str = ""

    def __post_init__(self) -> None:
        _check_text(self.name, "marker name", allow_empty=False)
        _check_text(self.comment, "marker comment")
        for what, value in (("start", self.start), ("duration", self.duration)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"marker {what} must be a finite number >= 0, not {value!r}")


@dataclass(frozen=True)
class Tags:
    """What vsearch says about one video."""

    keywords: tuple[str, ...]  # label names, best first
    markers: tuple[Marker, ...] = ()
    prefix: str = "vsearch"  # hierarchical root, levels split by "/"; "" = labels at the top of the trees
    frame_rate: float | Fraction | None = None  # the video's fps, for the marker track

    def __post_init__(self) -> None:
        for keyword in self.keywords:
            _check_text(keyword, "keyword", allow_empty=False)
        _check_text(self.prefix, "prefix")
        if "|" in self.prefix or (self.prefix and "" in self.prefix.split("/")):
            raise ValueError(f"prefix {self.prefix!r}: levels are split by '/', none empty, no '|'")
        if self.frame_rate is not None and not (math.isfinite(self.frame_rate) and self.frame_rate > 0):
            raise ValueError(f"frame_rate must be > 0, not {self.frame_rate!r}")


@dataclass(frozen=True)
class SidecarChange:
    """What write_sidecar did (or, for a dry run, would do) to one sidecar."""

    path: Path
    action: str  # "created" | "updated" | "unchanged"
    added: tuple[str, ...] = ()  # labels that gained an entry
    removed: tuple[str, ...] = ()  # labels vsearch no longer tags the video with
    markers: tuple[int, int] = (0, 0)  # vsearch's markers before and after


def _check_text(value: str, what: str, allow_empty: bool = True) -> None:
    if not allow_empty and not value.strip():
        raise ValueError(f"{what} must not be empty")
    # XML 1.0 cannot hold most control characters; catch them here rather than deep in lxml.
    bad = [c for c in value if (ord(c) < 0x20 and c not in "\t\n\r") or 0xD800 <= ord(c) <= 0xDFFF or ord(c) in (0xFFFE, 0xFFFF)]
    if bad:
        raise ValueError(f"{what} {value!r} holds a character XML cannot store: {bad[0]!r}")


def sidecar_path(video: Path, naming: str = "clip.mp4.xmp") -> Path:
    """The sidecar of a video: "clip.mp4.xmp" (digiKam, darktable, Immich) or "clip.xmp" (Lightroom, Capture One)."""
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {NAMINGS}, not {naming!r}")
    if video.suffix.lower() == ".xmp":
        raise ValueError(f"{video} is a sidecar, not a video")
    return video.with_name(video.name + ".xmp") if naming == "clip.mp4.xmp" else video.with_suffix(".xmp")


# --- time values ----------------------------------------------------------------------------------


def frame_rate_fraction(fps: float | Fraction) -> Fraction:
    """The exact rate behind a float fps: NTSC rates (29.97...) become N*1000/1001, others the nearest simple fraction."""
    fps = Fraction(fps)
    ntsc = fps * Fraction(1001, 1000)
    if round(ntsc) and abs(ntsc - round(ntsc)) < Fraction(1, 10_000) * ntsc and abs(fps - round(fps)) > Fraction(1, 1000):
        return Fraction(round(ntsc) * 1000, 1001)
    return fps.limit_denominator(1001)


def format_frame_rate(rate: Fraction) -> str:
    """XMP FrameRate: "f25", or "f30000s1001" (rate 30000 per 1001 seconds)."""
    return f"f{rate.numerator}" if rate.denominator == 1 else f"f{rate.numerator}s{rate.denominator}"


def parse_frame_rate(text: str) -> Fraction:
    """The inverse of format_frame_rate."""
    body = text.strip()
    if not body.startswith("f"):
        raise ValueError(f"not an XMP frame rate: {text!r}")
    count, _, basis = body[1:].partition("s")
    rate = Fraction(int(count), int(basis) if basis else 1)
    if rate <= 0:
        raise ValueError(f"not an XMP frame rate: {text!r}")
    return rate


def _frames(seconds: float, rate: Fraction) -> int:
    # Whole frames: the nearest frame to the time asked for (half a frame off at most).
    return round(Fraction(seconds) * rate)


def read_markers(data: bytes) -> tuple[Marker, ...]:
    """vsearch's markers in a sidecar, their times converted back from frames with the track's frame rate."""
    tracks = _Doc(data).vsearch_tracks()
    if not tracks:
        return ()
    fields, markers = _track_content(tracks[0])
    try:
        # no frame rate: the XMP spec's default, 1 (the values are seconds)
        rate = parse_frame_rate(fields.get(XMPDM_NS + "frameRate", "f1"))
        return tuple(Marker(
            name=f.get(XMPDM_NS + "name", ""),
            start=float(Fraction(f.get(XMPDM_NS + "startTime", "0")) / rate),
            duration=float(Fraction(f.get(XMPDM_NS + "duration", "0")) / rate),
            comment=f.get(XMPDM_NS + "comment", ""),
        ) for f in markers)
    except (ValueError, ZeroDivisionError) as e:
        raise SidecarError(f"vsearch's marker track has a value that is not a time: {e}") from None


# --- the document: lxml's tree plus where each element lies in the bytes --------------------------


@dataclass
class _Span:
    start: int  # the "<" of the start tag
    open_end: int  # just after the start tag's ">"
    close_start: int  # the "<" of the end tag (open_end for an empty-element tag)
    end: int  # just after the element
    empty: bool  # written as <tag/>


def _tag_end(data: bytes, start: int) -> int:
    """Just after the ">" of the tag starting at `start` (attribute values may hold ">")."""
    quote = 0
    for i in range(start + 1, len(data)):
        c = data[i]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):  # " or '
            quote = c
        elif c == 0x3E:  # >
            return i + 1
    raise SidecarError("unterminated tag")


def _clark(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _find_child(parent: etree._Element, tag: str) -> etree._Element | None:
    for child in parent:
        if child.tag == tag:
            return child
    return None


def _short(tag: str) -> str:
    """A Clark name as a person reads it: dc:subject."""
    qname = etree.QName(tag)
    return f"{PREFERRED_PREFIX.get(qname.namespace or '', qname.namespace)}:{qname.localname}"


def _array(prop: etree._Element) -> etree._Element:
    """The rdf:Bag/Seq/Alt of a list property."""
    kids = [c for c in prop if isinstance(c.tag, str)]
    if len(kids) != 1 or kids[0].tag not in _ARRAYS or prop.get(_RDF + "parseType") is not None:
        raise SidecarError(f"{_short(prop.tag)} is not an XMP list")
    return kids[0]


def _items(prop: etree._Element) -> list[etree._Element]:
    return [c for c in _array(prop) if c.tag == _RDF + "li"]


def _li_value(li: etree._Element) -> str | None:
    """The text of a simple list item; None for a structure or anything else."""
    if len(li) or li.get(_RDF + "parseType") is not None or li.get(_RDF + "resource") is not None:
        return None
    return li.text or ""


def _struct_node(node: etree._Element) -> etree._Element:
    """The element that holds a structure's fields: the item itself, or the rdf:Description inside it."""
    if node.get(_RDF + "parseType") == "Resource":
        return node
    desc = _find_child(node, _RDF + "Description")
    return node if desc is None else desc


def _struct_fields(node: etree._Element) -> dict[str, str]:
    """The simple fields of an RDF structure, whatever its form: namespace URI + local name -> text."""
    holder = _struct_node(node)
    out: dict[str, str] = {}
    for key, value in holder.attrib.items():
        name = str(key)
        if name.startswith("{") and not name.startswith(_RDF):
            out[name[1:].replace("}", "", 1)] = str(value)
    for child in holder:
        if isinstance(child.tag, str) and child.tag.startswith("{") and not len(child):
            out[child.tag[1:].replace("}", "", 1)] = child.text or ""
    return out


class _Doc:
    """A parsed XMP packet: lxml's tree, each element's byte span, the style to write in."""

    def __init__(self, data: bytes) -> None:
        if not data.strip():
            raise SidecarError("the file is empty (another program may be writing it)")
        if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
            raise SidecarError("the file is UTF-16 or UTF-32; vsearch edits UTF-8 sidecars only")
        parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False, load_dtd=False)
        try:
            root = etree.fromstring(data, parser)
        except etree.XMLSyntaxError as e:
            raise SidecarError(f"not well-formed XML: {e.msg} (line {e.lineno})") from None
        encoding = (root.getroottree().docinfo.encoding or "UTF-8").upper()
        if encoding not in ("UTF-8", "US-ASCII", "ASCII"):
            raise SidecarError(f"the file is in {encoding}; vsearch edits UTF-8 sidecars only")
        self.encoding = "UTF-8" if encoding == "UTF-8" else "US-ASCII"
        self.data = data
        self.root = root
        self.rdf = self._find_rdf(root)
        self.spans = self._spans(data, root)
        self.newline = b"\r\n" if b"\r\n" in data[: data.find(b"\n") + 1 or None] else b"\n"
        self.unit = self._indent_unit()

    @staticmethod
    def _find_rdf(root: etree._Element) -> etree._Element:
        if root.tag == _RDF + "RDF":
            return root
        if root.tag in (_clark(X_NS, "xmpmeta"), _clark(X_NS, "xapmeta")):
            rdf = _find_child(root, _RDF + "RDF")
            if rdf is not None:
                return rdf
        raise SidecarError(f"not an XMP packet: the root element is {etree.QName(root).localname!r}, not x:xmpmeta/rdf:RDF")

    @staticmethod
    def _spans(data: bytes, root: etree._Element) -> dict[etree._Element, _Span]:
        starts: list[int] = []
        closes: list[tuple[int, int]] = []  # (element number, close index)
        stack: list[int] = []
        parser = xml.parsers.expat.ParserCreate()

        def on_start(_name: str, _attrs: object) -> None:
            stack.append(len(starts))
            starts.append(parser.CurrentByteIndex)

        def on_end(_name: str) -> None:
            closes.append((stack.pop(), parser.CurrentByteIndex))

        def on_doctype(*_args: object) -> None:
            # entity definitions are the XML bombs; XMP has no DTD
            raise SidecarError("the file has a DOCTYPE, which XMP does not allow")

        parser.StartElementHandler = on_start
        parser.EndElementHandler = on_end
        parser.StartDoctypeDeclHandler = on_doctype
        try:
            parser.Parse(data, True)
        except xml.parsers.expat.ExpatError as e:
            raise SidecarError(f"not well-formed XML: {xml.parsers.expat.ErrorString(e.code)} (line {e.lineno})") from None
        elements = list(root.iter(tag=etree.Element))
        if len(elements) != len(starts):
            raise SidecarError("the two XML parsers disagree about this file")
        spans: dict[etree._Element, _Span] = {}
        close_at = dict(closes)
        for number, (element, start) in enumerate(zip(elements, starts)):
            open_end = _tag_end(data, start)
            if data[open_end - 2 : open_end] == b"/>":
                spans[element] = _Span(start, open_end, open_end, open_end, True)
            else:
                close = close_at[number]
                spans[element] = _Span(start, open_end, close, _tag_end(data, close), False)
        return spans

    def indent(self, element: etree._Element) -> bytes | None:
        """The whitespace before an element on its own line; None when it shares the line with something."""
        start = self.spans[element].start
        line = self.data.rfind(b"\n", 0, start) + 1
        head = self.data[line:start]
        return head if line and not head.strip(_WS) else None

    def lead(self, element: etree._Element) -> int:
        """Where the whitespace before an element begins (removed along with it)."""
        i = self.spans[element].start
        while i > 0 and self.data[i - 1] in _WS:
            i -= 1
        return i

    def _indent_unit(self) -> bytes:
        # The step between a parent's indentation and its children's, as this file was written.
        for parent in self.root.iter(tag=etree.Element):
            kids = [c for c in parent if isinstance(c.tag, str)]
            outer = self.indent(parent)
            inner = self.indent(kids[0]) if kids else None
            if outer is not None and inner is not None and len(inner) > len(outer) and inner.startswith(outer):
                return inner[len(outer):]
        return b" "

    def child_indent(self, parent: etree._Element) -> bytes | None:
        kids = [c for c in parent if isinstance(c.tag, str)]
        if kids:
            return self.indent(kids[-1])
        outer = self.indent(parent)
        return None if outer is None else outer + self.unit

    def descriptions(self) -> list[etree._Element]:
        return [d for d in self.rdf if d.tag == _RDF + "Description"]

    def find_property(self, tag: str) -> etree._Element | None:
        for desc in self.descriptions():
            if tag in desc.attrib:
                raise SidecarError(f"{_short(tag)} is a simple value here, not the list XMP defines")
            prop = _find_child(desc, tag)
            if prop is not None:
                return prop
        return None

    def list_values(self, tag: str) -> list[str]:
        prop = self.find_property(tag)
        if prop is None:
            return []
        return [v for v in (_li_value(li) for li in _items(prop)) if v is not None]

    def vsearch_tracks(self) -> list[etree._Element]:
        """vsearch's marker tracks: one, unless an app that merges metadata duplicated it."""
        tracks = self.find_property(_clark(XMPDM_NS, "Tracks"))
        if tracks is None:
            return []
        return [li for li in _items(tracks) if _struct_fields(li).get(XMPDM_NS + "trackName") == TRACK_NAME]

    def serialize(self, context: etree._Element, build: Callable[[etree._Element], None], level: bytes | None) -> bytes:
        """New elements, serialized by lxml as children of `context` would be (its prefixes in scope, none redeclared).

        `build` adds the elements to a stand-in for `context`; `level` is the indentation of the new
        elements' own lines (None: all on one line)."""
        wrapper = etree.Element(context.tag, nsmap=cast("dict[str, str]", context.nsmap))
        build(wrapper)
        for element in wrapper:
            if level is not None:
                _indent(element, level.decode(), self.unit.decode())
            element.tail = None
        out = etree.tostring(wrapper, encoding=self.encoding, xml_declaration=False)
        assert isinstance(out, bytes)
        body = out[out.index(b">") + 1 : out.rindex(b"</")]
        # lxml writes "\n" in whitespace and escapes "\r" in text, so this only touches line ends
        # (and a "\n" inside a value still reads back as "\n": XML normalizes "\r\n").
        return body.replace(b"\n", self.newline) if self.newline != b"\n" else body


def _indent(element: etree._Element, base: str, unit: str) -> None:
    """Pretty-print an element's children below `base` (leaf text is left alone)."""
    kids = [c for c in element if isinstance(c.tag, str)]
    if not kids:
        return
    element.text = "\n" + base + unit
    for i, kid in enumerate(kids):
        _indent(kid, base + unit, unit)
        kid.tail = "\n" + base + (unit if i < len(kids) - 1 else "")


# --- the edit -------------------------------------------------------------------------------------

_SUBJECT = _clark(DC_NS, "subject")
_TAGSLIST = _clark(DIGIKAM_NS, "TagsList")
_HIER = _clark(LR_NS, "hierarchicalSubject")
_TRACKS = _clark(XMPDM_NS, "Tracks")
# each list vsearch writes -> (its record, the list kind, the hierarchy separator)
_LISTS = {
    _SUBJECT: (_clark(VSEARCH_NS, "addedSubject"), "Bag", ""),
    _TAGSLIST: (_clark(VSEARCH_NS, "addedTagsList"), "Seq", "/"),
    _HIER: (_clark(VSEARCH_NS, "addedHierarchicalSubject"), "Bag", "|"),
}

_Build = Callable[[etree._Element], None]


@dataclass
class _Edit:
    start: int
    end: int
    text: bytes
    order: int = 0  # insertions at one spot keep their planned order


@dataclass
class _Plan:
    data: bytes
    added: tuple[str, ...]
    removed: tuple[str, ...]
    markers: tuple[int, int]


def _empty_packet() -> bytes:
    """An XMP packet with nothing in it, for a new sidecar: the xpacket wrapper, x:xmpmeta, rdf:RDF."""
    meta = etree.Element(_clark(X_NS, "xmpmeta"), nsmap={"x": X_NS})
    meta.set(_clark(X_NS, "xmptk"), "vsearch")
    rdf = etree.SubElement(meta, _RDF + "RDF", nsmap={"rdf": RDF_NS})
    meta.text, rdf.text, rdf.tail = "\n ", "\n ", "\n"
    begin = etree.ProcessingInstruction("xpacket", 'begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"')
    end = etree.ProcessingInstruction("xpacket", 'end="w"')
    return b"\n".join(etree.tostring(node, encoding="UTF-8") for node in (begin, meta, end)) + b"\n"


def _level(label: str) -> str:
    """A label as one level of a hierarchical tag: no "/" or "|" that would split it."""
    return label.replace("/", SLASH_LOOKALIKE).replace("|", BAR_LOOKALIKE)


def _dedupe(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _build_list(tag: str, kind: str, values: Sequence[str]) -> _Build:
    def build(parent: etree._Element) -> None:
        array = etree.SubElement(etree.SubElement(parent, tag), _RDF + kind)
        for value in values:
            etree.SubElement(array, _RDF + "li").text = value
    return build


def _build_li(value: str) -> _Build:
    def build(parent: etree._Element) -> None:
        etree.SubElement(parent, _RDF + "li").text = value
    return build


def _build_track(tags: Tags) -> _Build:
    rate = DEFAULT_TIMESCALE if tags.frame_rate is None else frame_rate_fraction(tags.frame_rate)

    def build(parent: etree._Element) -> None:
        def sub(node: etree._Element, name: str, text: str | None = None) -> etree._Element:
            child = etree.SubElement(node, _clark(XMPDM_NS, name))
            child.text = text
            return child

        track = etree.SubElement(parent, _RDF + "li")
        track.set(_RDF + "parseType", "Resource")
        sub(track, "trackName", TRACK_NAME)
        sub(track, "frameRate", format_frame_rate(rate))
        markers = etree.SubElement(sub(track, "markers"), _RDF + "Seq")
        for marker in tags.markers:
            li = etree.SubElement(markers, _RDF + "li")
            li.set(_RDF + "parseType", "Resource")
            sub(li, "name", marker.name)
            sub(li, "startTime", str(_frames(marker.start, rate)))
            sub(li, "duration", str(_frames(marker.duration, rate)))
            if marker.comment:
                sub(li, "comment", marker.comment)
    return build


def _copy_array(array: etree._Element, extra: Sequence[str]) -> _Build:
    """An empty-element rdf:Bag/Seq (<rdf:Bag/>) again, with its attributes and new items."""
    def build(parent: etree._Element) -> None:
        new = etree.SubElement(parent, array.tag, attrib={str(k): str(v) for k, v in array.attrib.items()})
        for value in extra:
            etree.SubElement(new, _RDF + "li").text = value
    return build


class _Editor:
    """Byte splices on the original file, planned from the lxml tree."""

    def __init__(self, doc: _Doc) -> None:
        self.doc = doc
        self.edits: list[_Edit] = []
        self.dropped: list[etree._Element] = []  # whole properties to remove (or their Description)
        self.new: list[tuple[str, _Build]] = []  # (namespace, builder) of properties to add

    def remove(self, element: etree._Element) -> None:
        """Remove an element and the whitespace before it (what appending it had added)."""
        self.edits.append(_Edit(self.doc.lead(element), self.doc.spans[element].end, b""))

    def replace(self, element: etree._Element, build: _Build) -> None:
        parent = element.getparent()
        assert parent is not None
        span = self.doc.spans[element]
        self.edits.append(_Edit(span.start, span.end, self.doc.serialize(parent, build, self.doc.indent(element))))

    def append(self, parent: etree._Element, builds: Sequence[_Build]) -> None:
        """New children at the end of `parent`, laid out as the file lays out its children."""
        doc = self.doc
        span = doc.spans[parent]
        assert not span.empty
        level = doc.child_indent(parent)
        kids = [c for c in parent if isinstance(c.tag, str)]
        tail = b""
        if kids:
            # the whitespace this file has before its last child goes before each new one
            sep = doc.data[doc.lead(kids[-1]) : doc.spans[kids[-1]].start]
            at = doc.spans[kids[-1]].end
        else:
            sep = b"" if level is None else doc.newline + level
            at = span.open_end
            outer = doc.indent(parent)
            if outer is not None and doc.data[span.open_end : span.close_start].strip(_WS) == b"" and (
                b"\n" not in doc.data[span.open_end : span.close_start]
            ):
                tail = doc.newline + outer  # <a></a> or <a> </a>: the end tag goes back on its own line
        text = b"".join(sep + doc.serialize(parent, build, level) for build in builds)
        self.edits.append(_Edit(at, at, text + tail, order=len(self.edits)))

    def edit_list(self, prop: etree._Element, drop: Sequence[etree._Element], add: Sequence[str]) -> None:
        """Remove some items of a list property and add others, or the whole property when it ends up empty."""
        items = _items(prop)
        if items and len(drop) == len(items) and not add:
            self.dropped.append(prop)
            return
        for li in drop:
            self.remove(li)
        if add:
            array = _array(prop)
            if self.doc.spans[array].empty:
                self.replace(array, _copy_array(array, add))
            else:
                self.append(array, [_build_li(v) for v in add])

    def place_new(self) -> set[etree._Element]:
        """Add the new properties: into a Description that has their namespace in scope, else into a new one."""
        doc = self.doc
        homes: dict[etree._Element | None, list[tuple[str, _Build]]] = {}
        for ns, build in self.new:
            home = next(
                (d for d in doc.descriptions() if not doc.spans[d].empty and ns in d.nsmap.values()),
                None,
            )
            homes.setdefault(home, []).append((ns, build))
        for home, props in homes.items():
            if home is not None:
                self.append(home, [b for _, b in props])
        lonely = homes.get(None)
        if lonely:
            descriptions = doc.descriptions()
            about = descriptions[0].get(_RDF + "about", "") if descriptions else ""
            in_scope = set(doc.rdf.nsmap.values())
            nsmap = {PREFERRED_PREFIX[ns]: ns for ns in _dedupe(ns for ns, _ in lonely) if ns not in in_scope}

            def build(parent: etree._Element) -> None:
                desc = etree.SubElement(parent, _RDF + "Description", nsmap=nsmap)
                desc.set(_RDF + "about", about)
                for _, build_prop in lonely:
                    build_prop(desc)
            self.append(doc.rdf, [build])
        return {home for home in homes if home is not None}

    def drop_properties(self, receiving: set[etree._Element]) -> None:
        """Remove emptied properties; a Description left with nothing at all goes with them."""
        by_desc: dict[etree._Element, list[etree._Element]] = {}
        for prop in self.dropped:
            desc = prop.getparent()
            assert desc is not None
            by_desc.setdefault(desc, []).append(prop)
        for desc, props in by_desc.items():
            others = [c for c in desc if c not in props]  # comments and PIs count: they are someone's
            attrs = [k for k in desc.attrib if k != _RDF + "about"]
            if not others and not attrs and desc not in receiving and (desc.text or "").strip() == "":
                self.remove(desc)
            else:
                for prop in props:
                    self.remove(prop)

    def apply(self) -> bytes:
        out = self.doc.data
        # back to front, so each splice's offsets are still those of the original
        for edit in sorted(self.edits, key=lambda e: (e.start, e.end, e.order), reverse=True):
            out = out[: edit.start] + edit.text + out[edit.end :]
        return out


def _plan(existing: bytes | None, tags: Tags) -> _Plan:
    doc = _Doc(existing if existing is not None else _empty_packet())
    editor = _Editor(doc)
    labels = _dedupe(tags.keywords)
    levels = tags.prefix.split("/") if tags.prefix else []

    # entry -> label, per list (two labels may become one entry once sanitized: the first wins)
    formats: dict[str, Callable[[str], str]] = {
        _SUBJECT: lambda label: label,
        _TAGSLIST: lambda label: "/".join([*levels, _level(label)]),
        _HIER: lambda label: "|".join([*levels, _level(label)]),
    }
    wanted: dict[str, dict[str, str]] = {tag: {} for tag in _LISTS}
    for tag, fmt in formats.items():
        for label in labels:
            wanted[tag].setdefault(fmt(label), label)
    current = {tag: doc.list_values(tag) for tag in _LISTS}
    records = {tag: doc.list_values(record) for tag, (record, _, _) in _LISTS.items()}
    owned = {tag: set(records[tag]) for tag in _LISTS}
    for tag, sep in ((_TAGSLIST, "/"), (_HIER, "|")):
        if levels:  # the tree under vsearch's root is vsearch's (the root entry itself only if recorded)
            root = sep.join(levels) + sep
            owned[tag] |= {v for v in current[tag] if v.startswith(root)}
    users = {tag: [v for v in current[tag] if v not in owned[tag]] for tag in _LISTS}

    added: list[str] = []
    removed: dict[str, str] = {}  # the label as one tree level -> the label (dc:subject's comes first: verbatim)
    records_new: list[tuple[str, _Build]] = []  # after vsearch's visible parts, in a new Description
    for tag, (record, kind, sep) in _LISTS.items():
        want = wanted[tag]
        prop = doc.find_property(tag)
        items = _items(prop) if prop is not None else []
        present = set(current[tag])
        drop = [li for li in items if (v := _li_value(li)) is not None and v in owned[tag] and v not in want]
        add = [entry for entry in want if entry not in present]
        added += [want[entry] for entry in add]
        for li in drop:
            leaf = (_li_value(li) or "").rsplit(sep, 1)[-1] if sep else (_li_value(li) or "")
            removed.setdefault(_level(leaf), leaf)
        if prop is not None:
            editor.edit_list(prop, drop, add)
        elif add:
            mirror = _mirror(tag, users) if tag != _SUBJECT else []
            values = _dedupe([*mirror, *add])
            editor.new.append((etree.QName(tag).namespace or "", _build_list(tag, kind, values)))
        # the record: what vsearch added and still wants, in the list's order
        new_record = [entry for entry in want if entry in add or (entry in present and entry in owned[tag])]
        record_prop = doc.find_property(record)
        if new_record == records[tag] and (record_prop is not None or not new_record):
            continue
        if record_prop is not None and not new_record:
            editor.dropped.append(record_prop)
        elif record_prop is not None:
            editor.replace(record_prop, _build_list(record, "Bag", new_record))
        else:
            records_new.append((VSEARCH_NS, _build_list(record, "Bag", new_record)))

    markers_before = _plan_track(doc, editor, tags)
    editor.new += records_new
    receiving = editor.place_new()
    editor.drop_properties(receiving)
    data = editor.apply()
    _Doc(data)  # what vsearch writes must parse: a bug here must not reach the user's file
    still = {_level(label) for label in labels}
    gone = tuple(label for key, label in removed.items() if key not in still)
    return _Plan(data, tuple(_dedupe(added)), gone, (markers_before, len(tags.markers)))


def _mirror(tag: str, users: dict[str, list[str]]) -> list[str]:
    """The user's own tags, as the apps read them before vsearch, written for a new hierarchical list."""
    if tag == _TAGSLIST and users[_HIER]:
        return ["/".join(_level(level) for level in v.split("|")) for v in users[_HIER]]
    if tag == _HIER and users[_TAGSLIST]:
        return ["|".join(_level(level) for level in v.split("/")) for v in users[_TAGSLIST]]
    return [_level(v) for v in users[_SUBJECT]]


def _plan_track(doc: _Doc, editor: _Editor, tags: Tags) -> int:
    """Replace, add or remove vsearch's marker track; returns how many markers it had."""
    tracks = doc.find_property(_TRACKS)
    ours = doc.vsearch_tracks()
    before = len(_track_content(ours[0])[1]) if ours else 0
    build = _build_track(tags)
    if tags.markers:
        if ours:
            if _track_content(ours[0]) != _track_content(_built(build)):
                editor.replace(ours[0], build)  # its own, so rewritten whole; unless another app only reformatted it
            for extra in ours[1:]:
                editor.remove(extra)
        elif tracks is not None:
            _append_track(editor, tracks, build)
        else:
            def build_tracks(parent: etree._Element) -> None:
                build(etree.SubElement(etree.SubElement(parent, _TRACKS), _RDF + "Bag"))
            editor.new.append((XMPDM_NS, build_tracks))
    elif ours and tracks is not None:
        if len(_items(tracks)) == len(ours):
            editor.dropped.append(tracks)
        else:
            for track in ours:
                editor.remove(track)
    return before


def _built(build: _Build) -> etree._Element:
    holder = etree.Element("holder")
    build(holder)
    return holder[0]


def _track_content(track: etree._Element) -> tuple[dict[str, str], list[dict[str, str]]]:
    """A track's fields and its markers' fields, whatever RDF form they are written in."""
    markers = _find_child(_struct_node(track), _clark(XMPDM_NS, "markers"))
    return _struct_fields(track), [_struct_fields(li) for li in (_items(markers) if markers is not None else [])]


def _append_track(editor: _Editor, tracks: etree._Element, build: _Build) -> None:
    array = _array(tracks)
    if editor.doc.spans[array].empty:
        def rebuild(parent: etree._Element) -> None:
            build(etree.SubElement(parent, array.tag, attrib={str(k): str(v) for k, v in array.attrib.items()}))
        editor.replace(array, rebuild)
    else:
        editor.append(array, [build])


def merge(existing: bytes | None, tags: Tags) -> bytes:
    """The sidecar's new bytes: `existing` (None: no sidecar yet) with vsearch's parts set to `tags`.

    Pure. Raises SidecarError when `existing` is not an XMP packet vsearch can edit."""
    return _plan(existing, tags).data


# --- the file -------------------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_only(path: Path) -> bool:
    # Mode bits first: as root, access() says yes to everything, and a user's chmod a-w means "leave it".
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    return not mode & 0o222 or not os.access(path, os.W_OK)


def write_sidecar(path: Path, tags: Tags, dry_run: bool = False) -> SidecarChange:
    """Merge `tags` into the sidecar at `path`, atomically; with dry_run, only say what would change.

    Only `path` (and a temporary file beside it) is ever written. Raises SidecarError, leaving the
    file as it was, when it cannot be read, parsed or written."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))  # write through the link, keep the link
    try:
        existing: bytes | None = path.read_bytes()
    except FileNotFoundError:
        existing = None
    except IsADirectoryError:
        raise SidecarError(f"{path}: is a folder") from None
    except OSError as e:
        raise SidecarError(f"{path}: cannot read: {e.strerror}") from None
    try:
        plan = _plan(existing, tags)
    except SidecarError as e:
        raise SidecarError(f"{path}: {e}") from None
    nothing = existing is None and not tags.keywords and not tags.markers
    if plan.data == existing or nothing:
        return SidecarChange(path, "unchanged", markers=plan.markers)
    action = "created" if existing is None else "updated"
    change = SidecarChange(path, action, plan.added, plan.removed, plan.markers)
    folder = path.parent
    if _read_only(path):
        raise SidecarError(f"{path}: the file is read-only")
    if not folder.exists():
        raise SidecarError(f"{path}: the folder does not exist")
    if not folder.stat().st_mode & 0o222 or not os.access(folder, os.W_OK | os.X_OK):
        raise SidecarError(f"{path}: the folder is read-only")
    if not dry_run:
        _replace_atomically(path, plan.data, existing)
    return change


def _replace_atomically(path: Path, data: bytes, existing: bytes | None) -> None:
    """Temporary file beside the sidecar, fsync, rename over it: a reader sees the old file or the new one."""
    old = path.stat() if existing is not None else None
    try:
        # a hidden name that no gallery app takes for a sidecar if a crash leaves it behind
        # (cut short: with mkstemp's 8 characters it must still fit the 255 bytes a name may have)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:120]}.", suffix=".vsearch-tmp", dir=path.parent)
    except OSError as e:
        raise SidecarError(f"{path}: cannot write in the folder: {e.strerror}") from None
    try:
        try:
            if old is not None:
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
                try:
                    os.fchown(fd, old.st_uid, old.st_gid)
                except PermissionError:
                    pass  # only root may give a file away; the mode is what matters
            else:
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(fd, 0o666 & ~umask)  # as open() would have made it, not mkstemp's 0600
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        # another program may have written the sidecar since vsearch read it: never write over that
        try:
            now: bytes | None = path.read_bytes()
        except FileNotFoundError:
            now = None
        if now != existing:
            raise SidecarError(f"{path}: changed by another program while vsearch was writing it; run again")
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise SidecarError(f"{path}: cannot write: {e.strerror}") from None
    except BaseException:
        os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    except OSError:
        pass
    finally:
        os.close(dir_fd)
