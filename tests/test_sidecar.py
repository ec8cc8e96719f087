"""XMP sidecars: vsearch's tags merged into a user's sidecar without losing anything, checked with
the readers gallery apps use (ExifTool for Immich and PhotoPrism, Exiv2 for digiKam). Each reader
has tests of its own, so a machine without one still runs the other's (tests/tools.py: a missing
reader skips its tests, and fails them in CI)."""

from __future__ import annotations

import difflib
import json
import os
import select
import signal
import stat
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest
from lxml import etree

from tests.tools import require
from vsearch.tag import sidecar
from vsearch.tag.sidecar import (
    Marker,
    SidecarError,
    Tags,
    frame_rate_fraction,
    merge,
    read_markers,
    sidecar_path,
    write_sidecar,
)

TAGS = Tags(
    keywords=("eating spaghetti", "cake", "AC/DC", "rock & roll <live>", "a|b"),
    markers=(Marker("eating spaghetti", 2.0, 1.5, "score 0.91"), Marker("cake", 10.0, 0.48, "score 0.42")),
    frame_rate=25,
)
# How the hierarchical trees write those labels: one level each ("/" and "|" become lookalikes).
TREE_LEAVES = ["eating spaghetti", "cake", "AC\u2215DC", "rock & roll <live>", "a\u2223b"]

# A user-defined namespace for ExifTool, as another app would have written into the sidecar.
MYAPP_CONFIG = """\
%Image::ExifTool::UserDefined = (
    'Image::ExifTool::XMP::Main' => {
        myapp => { SubDirectory => { TagTable => 'Image::ExifTool::UserDefined::myapp' } },
    },
);
%Image::ExifTool::UserDefined::myapp = (
    GROUPS => { 0 => 'XMP', 1 => 'XMP-myapp', 2 => 'Image' },
    NAMESPACE => { 'myapp' => 'http://example.com/ns/myapp/1.0/' },
    WRITABLE => 'string',
    Mood => { },
);
1;
"""

# digiKam's style (through Exiv2): one Description, simple values as attributes, every namespace
# declared up front, a face region, an escaped attribute value and a comment.
DIGIKAM_XMP = """\
<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:acdsee="http://ns.acdsee.com/iptc/1.0/"
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
   xmp:Rating="3"
   digiKam:ColorLabel="2"
   acdsee:categories="&lt;Categories&gt;&lt;Category Assigned=&quot;1&quot;&gt;Family&lt;/Category&gt;&lt;/Categories&gt;">
   <!-- written by hand after digiKam: must survive -->
   <digiKam:TagsList>
    <rdf:Seq>
     <rdf:li>Family/Anna</rdf:li>
     <rdf:li>Places/Home</rdf:li>
    </rdf:Seq>
   </digiKam:TagsList>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>Family|Anna</rdf:li>
     <rdf:li>Places|Home</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>Anna</rdf:li>
     <rdf:li>Home</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions
     stDim:w="1920"
     stDim:h="1080"
     stDim:unit="pixel"/>
    <mwg-rs:RegionList>
     <rdf:Bag>
      <rdf:li>
       <rdf:Description
        mwg-rs:Name="Anna"
        mwg-rs:Type="Face">
       <mwg-rs:Area
        stArea:x="0.5"
        stArea:y="0.4"
        stArea:w="0.1"
        stArea:h="0.2"
        stArea:unit="normalized"/>
       </rdf:Description>
      </rdf:li>
     </rdf:Bag>
    </mwg-rs:RegionList>
   </mwg-rs:Regions>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
""".encode()


# --- helpers --------------------------------------------------------------------------------------


def exiftool(*paths: Path) -> list[dict]:
    """ExifTool's view of sidecars (one process for all: it starts in ~0.2 s), as Immich reads them."""
    out = subprocess.run([require("exiftool"), "-j", "-G1", "-struct", "-XMP:all", *map(str, paths)],
                         capture_output=True, check=True, text=True, timeout=60).stdout
    return json.loads(out)


def exiv2(path: Path) -> dict[str, str]:
    """Exiv2's view of a sidecar (digiKam's library): key -> printed value (lists joined by ", ")."""
    out = subprocess.run([require("exiv2"), "-PXkv", str(path)], capture_output=True, check=True, text=True, timeout=60).stdout
    keys: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        keys[key] = value.strip()
    return keys


def as_list(value: object) -> list[str]:
    """ExifTool prints a one-item list as a scalar and number-like strings as numbers."""
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def only_insertions(old: bytes, new: bytes) -> bool:
    """Every line of `old` is still in `new`, in order and unchanged: vsearch only added lines."""
    ops = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False).get_opcodes()
    return all(op in ("equal", "insert") for op, *_ in ops)


def user_view(record: dict) -> dict:
    """What ExifTool shows of a sidecar that vsearch does not own."""
    mine = ("XMP-dc:Subject", "XMP-digiKam:TagsList", "XMP-lr:HierarchicalSubject", "XMP-xmpDM:Tracks", "SourceFile")
    return {k: v for k, v in record.items() if k not in mine and not k.startswith("XMP-vsearch:")}


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def old_mtime(path: Path) -> None:
    """Set a file's mtime in the past, so that a rewrite would show even on a coarse clock."""
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))


@pytest.fixture(scope="module")
def exiftool_sidecar(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A sidecar first written by ExifTool: keywords, rating, title, a hierarchical tree, a face region, an unknown namespace."""
    folder = tmp_path_factory.mktemp("exiftool")
    (folder / "myapp.config").write_text(MYAPP_CONFIG)
    out = folder / "user.xmp"
    subprocess.run([
        require("exiftool"), "-config", str(folder / "myapp.config"), "-q", "-o", str(out),
        "-XMP-dc:Subject=cake", "-XMP-dc:Subject=Tom & Jerry", "-XMP:Rating=4", "-XMP-dc:Title=Kids <party>",
        "-XMP-lr:HierarchicalSubject=Family|Kids", "-XMP-lr:HierarchicalSubject=Family|Kids|Anna",
        "-XMP-myapp:Mood=happy",
        "-XMP-mwg-rs:RegionInfo={AppliedToDimensions={W=1920,H=1080,Unit=pixel},"
        "RegionList=[{Area={X=0.5,Y=0.4,W=0.1,H=0.2,Unit=normalized},Name=Anna,Type=Face}]}",
    ], check=True, timeout=60)
    return out.read_bytes()


# --- names ----------------------------------------------------------------------------------------


def test_sidecar_path_both_namings() -> None:
    video = Path("/v/kids & \"cake\" <1> é.mp4")
    assert sidecar_path(video) == Path("/v/kids & \"cake\" <1> é.mp4.xmp")
    assert sidecar_path(video, "clip.xmp") == Path("/v/kids & \"cake\" <1> é.xmp")
    assert sidecar_path(Path("/v/a.b.MOV"), "clip.xmp") == Path("/v/a.b.xmp")
    with pytest.raises(ValueError):
        sidecar_path(video, "clip.XMP")
    with pytest.raises(ValueError):
        sidecar_path(Path("/v/a.xmp"))


# --- new sidecars, read by the real readers -------------------------------------------------------


def new_sidecars(tmp_path: Path) -> list[Path]:
    """vsearch's sidecars of one video in both namings, each a whole XMP packet; the video untouched."""
    video = tmp_path / "kids & \"cake\" <1> é.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    before = snapshot(video)
    paths = []
    for naming in sidecar.NAMINGS:
        path = sidecar_path(video, naming)
        change = write_sidecar(path, TAGS)
        assert change.action == "created" and change.added == TAGS.keywords and change.markers == (0, 2)
        paths.append(path)
    assert snapshot(video) == before
    assert [p.name for p in paths] == ["kids & \"cake\" <1> é.mp4.xmp", "kids & \"cake\" <1> é.xmp"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b'<?xpacket begin="\xef\xbb\xbf"') and data.rstrip().endswith(b'<?xpacket end="w"?>')
        root = etree.fromstring(data)
        assert root.tag == "{adobe:ns:meta/}xmpmeta" and root[0].tag == f"{{{sidecar.RDF_NS}}}RDF"
    return paths


def test_new_sidecar_is_read_by_exiftool(tmp_path: Path) -> None:
    for record in exiftool(*new_sidecars(tmp_path)):
        assert as_list(record["XMP-dc:Subject"]) == list(TAGS.keywords)
        assert record["XMP-digiKam:TagsList"] == [f"vsearch/{leaf}" for leaf in TREE_LEAVES]
        assert record["XMP-lr:HierarchicalSubject"] == [f"vsearch|{leaf}" for leaf in TREE_LEAVES]
        (track,) = record["XMP-xmpDM:Tracks"]
        assert track["TrackName"] == "vsearch" and track["FrameRate"] == "f25"
        # times are whole frames at the track's rate: 2.0 s at 25 fps is frame 50
        assert [(m["Name"], m["StartTime"], m["Duration"], m["Comment"]) for m in track["Markers"]] == [
            ("eating spaghetti", 50, 38, "score 0.91"), ("cake", 250, 12, "score 0.42")]


def test_new_sidecar_is_read_by_exiv2(tmp_path: Path) -> None:
    for path in new_sidecars(tmp_path):
        keys = exiv2(path)
        assert keys["Xmp.dc.subject"] == ", ".join(TAGS.keywords)
        assert keys["Xmp.digiKam.TagsList"] == ", ".join(f"vsearch/{leaf}" for leaf in TREE_LEAVES)
        assert keys["Xmp.lr.hierarchicalSubject"] == ", ".join(f"vsearch|{leaf}" for leaf in TREE_LEAVES)
        track = "Xmp.xmpDM.Tracks[1]/xmpDM:"
        assert keys[track + "trackName"] == "vsearch" and keys[track + "frameRate"] == "f25"
        assert [keys[f"{track}markers[{i}]/xmpDM:{f}"] for i in (1, 2) for f in ("name", "startTime", "duration")] == [
            "eating spaghetti", "50", "38", "cake", "250", "12"]


def test_no_tags_and_no_sidecar_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4.xmp"
    assert write_sidecar(path, Tags(())).action == "unchanged"
    assert not path.exists()


# --- the user's sidecar: everything kept, only vsearch's parts change -----------------------------


def tagged_twice(path: Path, original: bytes) -> bytes:
    """The user's sidecar tagged by vsearch, then tagged again with the same tags: the second run
    writes nothing. Every line of the user's file is still there."""
    path.write_bytes(original)
    old_mtime(path)
    assert write_sidecar(path, TAGS).action == "updated"
    once = path.read_bytes()
    assert only_insertions(original, once)  # the user's lines, quoting and blank lines as they were
    old_mtime(path)
    before = snapshot(path)
    change = write_sidecar(path, TAGS)
    assert change.action == "unchanged" and snapshot(path) == before  # no byte changed, no write
    return once


def test_exiftool_sidecar_keeps_everything_twice(tmp_path: Path, exiftool_sidecar: bytes) -> None:
    path = tmp_path / "clip.mp4.xmp"
    tagged_twice(path, exiftool_sidecar)
    original = tmp_path / "original.xmp"
    original.write_bytes(exiftool_sidecar)
    was, now = exiftool(original, path)
    assert user_view(now) == user_view(was)  # title, rating, face region, unknown namespace: same values
    assert now["XMP-myapp:Mood"] == "happy" and now["XMP-mwg-rs:RegionInfo"]["RegionList"][0]["Name"] == "Anna"
    # "cake" was the user's before vsearch wanted it: one entry, and it stays the user's
    assert as_list(now["XMP-dc:Subject"]) == ["cake", "Tom & Jerry", *[k for k in TAGS.keywords if k != "cake"]]
    assert now["XMP-lr:HierarchicalSubject"] == ["Family|Kids", "Family|Kids|Anna", *[f"vsearch|{leaf}" for leaf in TREE_LEAVES]]
    # digiKam and Immich read only the first of TagsList, hierarchicalSubject: the new TagsList
    # carries the user's tree too, or they would stop showing it
    assert now["XMP-digiKam:TagsList"] == ["Family/Kids", "Family/Kids/Anna", *[f"vsearch/{leaf}" for leaf in TREE_LEAVES]]
    assert as_list(now["XMP-vsearch:AddedSubject"]) == [k for k in TAGS.keywords if k != "cake"]

    # new tags: only vsearch's parts change; no tags at all: the user's file exactly as it was
    write_sidecar(path, Tags(("cake", "running")))
    data = path.read_bytes()
    assert b"eating spaghetti" not in data and b"xmpDM:Tracks" not in data and b"vsearch|running" in data
    assert write_sidecar(path, Tags(())).action == "updated"
    remaining = exiftool(path)[0]
    assert user_view(remaining) == user_view(was)
    assert as_list(remaining["XMP-dc:Subject"]) == ["cake", "Tom & Jerry"]
    assert "XMP-vsearch:AddedSubject" not in remaining and "XMP-xmpDM:Tracks" not in remaining
    assert remaining["XMP-digiKam:TagsList"] == ["Family/Kids", "Family/Kids/Anna"]  # the copy is the user's now


def test_exiftool_sidecar_tagged_is_read_by_exiv2(tmp_path: Path, exiftool_sidecar: bytes) -> None:
    path = tmp_path / "clip.mp4.xmp"
    tagged_twice(path, exiftool_sidecar)
    keys = exiv2(path)
    assert keys["Xmp.dc.title"] == 'lang="x-default" Kids <party>' and keys["Xmp.xmp.Rating"] == "4"
    assert keys["Xmp.mwg-rs.Regions/mwg-rs:RegionList[1]/mwg-rs:Name"] == "Anna"
    assert keys["Xmp.digiKam.TagsList"].startswith("Family/Kids, Family/Kids/Anna, vsearch/eating spaghetti")


def test_digikam_sidecar_with_face_region(tmp_path: Path) -> None:
    once = tagged_twice(tmp_path / "clip.mp4.xmp", DIGIKAM_XMP)
    assert b"<!-- written by hand after digiKam: must survive -->" in once
    assert b'acdsee:categories="&lt;Categories&gt;&lt;Category Assigned=&quot;1&quot;&gt;' in once
    assert merge(once, TAGS) == once
    # the lists were extended where they are; dc, digiKam and lr are declared there, so no new
    # declarations: only vsearch's record and the track go into a Description of their own
    assert once.count(b"<rdf:Description") == 3  # digiKam's, the face region's, vsearch's
    assert once.count(b"xmlns:dc=") == 1 and once.count(b"xmlns:digiKam=") == 1
    assert merge(once, Tags(())) == DIGIKAM_XMP


def test_digikam_sidecar_tagged_is_read_by_exiftool(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4.xmp"
    tagged_twice(path, DIGIKAM_XMP)
    original = tmp_path / "original.xmp"
    original.write_bytes(DIGIKAM_XMP)
    was, now = exiftool(original, path)
    assert user_view(now) == user_view(was)
    assert now["XMP-mwg-rs:RegionInfo"]["RegionList"][0]["Area"]["X"] == 0.5
    assert now["XMP-digiKam:TagsList"] == ["Family/Anna", "Places/Home", *[f"vsearch/{leaf}" for leaf in TREE_LEAVES]]


def test_digikam_sidecar_tagged_is_read_by_exiv2(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4.xmp"
    tagged_twice(path, DIGIKAM_XMP)
    keys = exiv2(path)
    assert keys["Xmp.dc.subject"] == ", ".join(["Anna", "Home", *TAGS.keywords])
    assert keys["Xmp.digiKam.ColorLabel"] == "2" and keys["Xmp.xmp.Rating"] == "3"
    assert keys["Xmp.mwg-rs.Regions/mwg-rs:RegionList[1]/mwg-rs:Area/stArea:x"] == "0.5"


def test_exiv2_rewriting_the_sidecar(tmp_path: Path) -> None:
    """digiKam (Exiv2) rewrites the whole file: vsearch's record survives, and a reformatted track
    with the same tags is not rewritten."""
    path = tmp_path / "clip.mp4.xmp"
    write_sidecar(path, TAGS)
    subprocess.run([require("exiv2"), "-M", "set Xmp.xmp.Rating 5", str(path)], check=True, timeout=60)
    exiv2_style = path.read_bytes()
    assert b"XMP Core" in exiv2_style and b'xmpDM:trackName="vsearch"' in exiv2_style  # fields as attributes now
    assert merge(exiv2_style, TAGS) == exiv2_style
    assert read_markers(exiv2_style) == read_markers(merge(None, TAGS))
    # an app that merges metadata duplicated vsearch's track: one is kept
    start = exiv2_style.index(b"<rdf:li>\n      <rdf:Description\n       xmpDM:trackName")
    end = exiv2_style.index(b"</rdf:li>", exiv2_style.index(b"</xmpDM:markers>", start)) + len(b"</rdf:li>")
    twice = exiv2_style[:end] + b"\n     " + exiv2_style[start:end] + exiv2_style[end:]
    assert len(etree.fromstring(twice).xpath("//rdf:li[rdf:Description/@xmpDM:trackName='vsearch']",
                                             namespaces={**NS, "xmpDM": sidecar.XMPDM_NS})) == 2
    assert merge(twice, TAGS) == exiv2_style


def test_exiftool_rewriting_the_sidecar(tmp_path: Path) -> None:
    """ExifTool rewrites the whole file: vsearch still knows its own entries from the user's."""
    path = tmp_path / "clip.mp4.xmp"
    write_sidecar(path, TAGS)
    subprocess.run([require("exiftool"), "-q", "-overwrite_original", "-XMP:Rating=5", "-XMP-dc:Subject+=mine",
                    str(path)], check=True, timeout=60)
    assert b"vsearch|cake" in path.read_bytes() and b"mine" in path.read_bytes()
    write_sidecar(path, Tags(("cake",)))
    now = exiftool(path)[0]
    assert as_list(now["XMP-dc:Subject"]) == ["cake", "mine"] and now["XMP-xmp:Rating"] == 5
    assert now["XMP-digiKam:TagsList"] == ["vsearch/cake"] and "XMP-xmpDM:Tracks" not in now


def test_users_keyword_is_never_removed() -> None:
    # a sidecar with the user's own "cake" and "party" in all three lists (no vsearch record)
    user_file = _forget_record(merge(None, Tags(("cake", "party"), prefix="")))
    tagged = merge(user_file, Tags(("cake", "eating spaghetti"), prefix=""))
    assert _values(tagged, "dc", "subject") == ["cake", "party", "eating spaghetti"]
    assert _values(tagged, "vsearch", "addedSubject") == ["eating spaghetti"]
    untagged = merge(tagged, Tags((), prefix=""))
    # with prefix "" the rule is the same: only what vsearch added goes
    assert _values(untagged, "dc", "subject") == ["cake", "party"]
    assert _values(untagged, "digiKam", "TagsList") == ["cake", "party"]
    assert _values(untagged, "lr", "hierarchicalSubject") == ["cake", "party"]
    assert untagged == user_file


def test_rerun_with_new_tags_replaces_only_vsearchs_entries(tmp_path: Path) -> None:
    path = tmp_path / "clip.xmp"
    path.write_bytes(DIGIKAM_XMP)
    write_sidecar(path, Tags(("running", "cake", "AC/DC"), (Marker("running", 1, 1),)))
    change = write_sidecar(path, Tags(("cake", "swimming")))
    assert (change.action, change.added, change.removed, change.markers) == (
        "updated", ("swimming",), ("running", "AC/DC"), (1, 0))
    second = path.read_bytes()
    assert _values(second, "digiKam", "TagsList") == ["Family/Anna", "Places/Home", "vsearch/cake", "vsearch/swimming"]
    assert _values(second, "dc", "subject") == ["Anna", "Home", "cake", "swimming"]
    assert b"<xmpDM:Tracks" not in second
    # the tree under the prefix is vsearch's even without its record (another app may drop it)
    no_record = _forget_record(second)
    assert _values(merge(no_record, Tags(())), "lr", "hierarchicalSubject") == ["Family|Anna", "Places|Home"]
    # a new prefix moves vsearch's tree
    moved = merge(second, Tags(("cake",), prefix="auto/vsearch"))
    assert _values(moved, "lr", "hierarchicalSubject") == ["Family|Anna", "Places|Home", "auto|vsearch|cake"]
    assert merge(moved, Tags(())) == DIGIKAM_XMP


def test_separators_inside_labels_make_no_fake_level() -> None:
    data = merge(None, Tags(("AC/DC", "a|b", "x/y|z")))
    tags_list = _values(data, "digiKam", "TagsList")
    hier = _values(data, "lr", "hierarchicalSubject")
    assert [t.split("/") for t in tags_list] == [["vsearch", "AC∕DC"], ["vsearch", "a∣b"], ["vsearch", "x∕y∣z"]]
    assert [h.split("|") for h in hier] == [["vsearch", "AC∕DC"], ["vsearch", "a∣b"], ["vsearch", "x∕y∣z"]]
    assert _values(data, "dc", "subject") == ["AC/DC", "a|b", "x/y|z"]  # flat keywords: the label itself
    # two labels that sanitize alike make one entry; a re-run is stable
    twice = merge(None, Tags(("a/b", "a\u2215b")))
    assert _values(twice, "digiKam", "TagsList") == ["vsearch/a∕b"]
    assert merge(twice, Tags(("a/b", "a\u2215b"))) == twice


def test_mirror_from_flat_keywords() -> None:
    user = _forget_record(merge(None, Tags(("Tom & Jerry", "AC/DC"), prefix="")))
    user = _drop(user, "digiKam", "TagsList")
    user = _drop(user, "lr", "hierarchicalSubject")
    tagged = merge(user, Tags(("cake",)))
    assert only_insertions(user, tagged)
    assert _values(tagged, "digiKam", "TagsList") == ["Tom & Jerry", "AC∕DC", "vsearch/cake"]
    assert _values(tagged, "vsearch", "addedTagsList") == ["vsearch/cake"]


# --- time values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("fps", "rate", "text"), [
    (25, Fraction(25), "f25"),
    (29.97, Fraction(30000, 1001), "f30000s1001"),
    (30000 / 1001, Fraction(30000, 1001), "f30000s1001"),
    (23.976, Fraction(24000, 1001), "f24000s1001"),
    (Fraction(24000, 1001), Fraction(24000, 1001), "f24000s1001"),
    (59.94, Fraction(60000, 1001), "f60000s1001"),
    (12.5, Fraction(25, 2), "f25s2"),
    (None, Fraction(1000), "f1000"),
])
def test_marker_times_round_trip(fps: float | None, rate: Fraction, text: str) -> None:
    if fps is not None:
        assert frame_rate_fraction(fps) == rate
    assert sidecar.format_frame_rate(rate) == text and sidecar.parse_frame_rate(text) == rate
    # times on frames (as vsearch's, which come from frame timestamps) come back exactly
    frames = [0, 1, 299, 100_000]
    markers = tuple(Marker(f"m{k}", float(k / rate), float(Fraction(k + 7) / rate)) for k in frames)
    data = merge(None, Tags(("m",), markers, frame_rate=fps))
    assert read_markers(data) == markers
    root = etree.fromstring(data)
    ns = {"xmpDM": sidecar.XMPDM_NS}
    assert root.findtext(".//xmpDM:frameRate", namespaces=ns) == text
    assert [int(t) for t in root.xpath(".//xmpDM:startTime/text()", namespaces=ns)] == frames
    # a time between frames goes to the nearest frame
    (off,) = read_markers(merge(None, Tags(("m",), (Marker("m", 0.3 / float(rate), 0),), frame_rate=fps)))
    assert off.start == 0.0


def test_invalid_tags() -> None:
    with pytest.raises(ValueError):
        Marker("x", -1, 1)
    with pytest.raises(ValueError):
        Marker("x", 0, float("nan"))
    with pytest.raises(ValueError):
        Tags(("",))
    with pytest.raises(ValueError):
        Tags(("bell\x07",))
    with pytest.raises(ValueError):
        Tags(("a",), prefix="a|b")
    with pytest.raises(ValueError):
        Tags(("a",), frame_rate=0)


# --- RDF forms real writers produce ---------------------------------------------------------------

RDF_FORMS = {
    "bare rdf:RDF, no wrapper, CRLF": (
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\r\n'
        b' <rdf:Description rdf:about="uuid:1" xmlns:dc="http://purl.org/dc/elements/1.1/"\r\n'
        b'   xmlns:digiKam="http://www.digikam.org/ns/1.0/" xmlns:lr="http://ns.adobe.com/lightroom/1.0/">\r\n'
        b'  <dc:subject><rdf:Bag><rdf:li>a</rdf:li></rdf:Bag></dc:subject>\r\n'
        b'  <digiKam:TagsList><rdf:Seq><rdf:li>a</rdf:li></rdf:Seq></digiKam:TagsList>\r\n'
        b'  <lr:hierarchicalSubject><rdf:Bag><rdf:li>a</rdf:li></rdf:Bag></lr:hierarchicalSubject>\r\n'
        b' </rdf:Description>\r\n</rdf:RDF>\r\n'),
    "empty elements": (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="1"/>'
        b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag/></dc:subject>'
        b'</rdf:Description></rdf:RDF></x:xmpmeta>'),
    "namespaces on the root, one line": (
        b"<?xml version='1.0' encoding='UTF-8'?>\n<x:xmpmeta xmlns:x='adobe:ns:meta/' "
        b"xmlns:lr='http://ns.adobe.com/lightroom/1.0/' xmlns:xmpDM='http://ns.adobe.com/xmp/1.0/DynamicMedia/'>"
        b"<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'><rdf:Description rdf:about=''>"
        b"<xmpDM:Tracks><rdf:Bag><rdf:li rdf:parseType='Resource'><xmpDM:trackName>Premiere</xmpDM:trackName>"
        b"</rdf:li></rdf:Bag></xmpDM:Tracks></rdf:Description></rdf:RDF></x:xmpmeta>"),
    "BOM, comment, padding": (
        "\ufeff<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?><!-- a -->\n<x:xmpmeta xmlns:x='adobe:ns:meta/'>\n"
        "\t<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>\n"
        "\t</rdf:RDF>\n</x:xmpmeta>\n" + " " * 2000 + "\n<?xpacket end='w'?>").encode(),
}


@pytest.mark.parametrize("name", list(RDF_FORMS))
def test_rdf_forms(name: str) -> None:
    original = RDF_FORMS[name]
    tagged = merge(original, TAGS)
    assert merge(tagged, TAGS) == tagged
    untagged = merge(tagged, Tags(()))
    if name == "empty elements":
        # a list vsearch filled is removed when vsearch empties it, even the user's empty one
        assert untagged == original.replace(
            b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag/></dc:subject>'
            b'</rdf:Description>', b"")
    else:
        assert untagged == original
    assert _values(tagged, "dc", "subject")[-len(TAGS.keywords):] == list(TAGS.keywords)
    assert [m.name for m in read_markers(tagged)] == ["eating spaghetti", "cake"]
    abouts = {d.get(f"{{{sidecar.RDF_NS}}}about") for d in etree.fromstring(tagged).iter(f"{{{sidecar.RDF_NS}}}Description")}
    assert len(abouts) == 1  # XMP wants one subject: a new Description copies rdf:about
    if name.endswith("CRLF"):
        assert tagged.count(b"\n") == tagged.count(b"\r\n")
    if name == "namespaces on the root, one line":
        assert b"<xmpDM:trackName>Premiere</xmpDM:trackName>" in tagged and b"xmlns:xmpDM" not in tagged.split(b"<rdf:RDF")[1]


# --- what cannot be edited ------------------------------------------------------------------------

BAD = {
    "malformed XML": b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF>",
    "not XMP": b"<html><body>hello</body></html>",
    "empty": b"",
    "XML bomb": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">&b;</rdf:RDF>',
    "UTF-16": "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'/>".encode("utf-16"),
    "subject not a list": b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
                          b'rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" dc:subject="cake"/></rdf:RDF>',
    "binary": bytes(range(256)),
}


@pytest.mark.parametrize("name", list(BAD))
def test_unreadable_sidecar_is_left_alone(tmp_path: Path, name: str) -> None:
    path = tmp_path / "clip.mp4.xmp"
    path.write_bytes(BAD[name])
    old_mtime(path)
    before = snapshot(path)
    for dry_run in (True, False):
        with pytest.raises(SidecarError) as error:
            write_sidecar(path, TAGS, dry_run=dry_run)
        message = str(error.value)
        assert "\n" not in message and message.startswith(str(path)) and len(message) < 300
    assert snapshot(path) == before
    assert os.listdir(tmp_path) == ["clip.mp4.xmp"]


def test_read_only_file_and_folder(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4.xmp"
    path.write_bytes(merge(None, Tags(("a",))))
    path.chmod(0o444)
    old_mtime(path)
    before = snapshot(path)
    with pytest.raises(SidecarError, match="read-only"):
        write_sidecar(path, TAGS)
    assert snapshot(path) == before
    assert write_sidecar(path, Tags(("a",))).action == "unchanged"  # nothing to write: no complaint
    path.chmod(0o644)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(SidecarError, match="folder is read-only"):
            write_sidecar(path, TAGS)
        with pytest.raises(SidecarError, match="folder is read-only"):
            write_sidecar(tmp_path / "new.mp4.xmp", TAGS)
    finally:
        tmp_path.chmod(0o755)
    assert snapshot(path) == before and sorted(os.listdir(tmp_path)) == ["clip.mp4.xmp"]


# --- writing --------------------------------------------------------------------------------------


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4.xmp"
    change = write_sidecar(path, TAGS, dry_run=True)
    assert (change.action, change.added) == ("created", TAGS.keywords) and not path.exists()
    write_sidecar(path, TAGS)
    old_mtime(path)
    before = snapshot(path)
    change = write_sidecar(path, Tags(("cake", "new")), dry_run=True)
    assert (change.action, change.added, change.removed, change.markers) == (
        "updated", ("new",), ("eating spaghetti", "AC/DC", "rock & roll <live>", "a|b"), (2, 0))
    assert snapshot(path) == before and os.listdir(tmp_path) == ["clip.mp4.xmp"]


def test_permissions_and_links_kept(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4.xmp"
    umask = os.umask(0o022)
    try:
        write_sidecar(path, Tags(("a",)))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o640)
    write_sidecar(path, Tags(("b",)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    link = tmp_path / "link.mp4.xmp"
    link.symlink_to(path.name)
    write_sidecar(link, Tags(("c",)))
    assert link.is_symlink() and _values(path.read_bytes(), "dc", "subject") == ["c"]


# Paths opened for writing while a test listens. An audit hook sees every open, by builtins.open,
# io, os.open or tempfile alike (a spy on one function would miss the others); it cannot be removed,
# so it is installed once and records only while a list is set here.
_opened_for_writing: list[str] | None = None
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _opened_for_writing is not None and isinstance(args[2], int) and args[2] & _WRITE_FLAGS:
        _opened_for_writing.append(os.fsdecode(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else "")


sys.addaudithook(_audit)


def test_video_is_never_opened_for_writing(tmp_path: Path) -> None:
    global _opened_for_writing
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"video")
    os.utime(video, ns=(1_000_000_000, 1_000_000_000))
    _opened_for_writing = written = []
    try:
        for naming in sidecar.NAMINGS:
            write_sidecar(sidecar_path(video, naming), TAGS)
            write_sidecar(sidecar_path(video, naming), Tags(("x",)))
    finally:
        _opened_for_writing = None
    assert written and all(Path(w).name.startswith((".clip.mp4.xmp.", ".clip.xmp.")) for w in written), written
    assert video.read_bytes() == b"video" and video.stat().st_mtime_ns == 1_000_000_000


def test_another_writer_meanwhile_is_not_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "clip.mp4.xmp"
    path.write_bytes(DIGIKAM_XMP)
    theirs = DIGIKAM_XMP.replace(b'xmp:Rating="3"', b'xmp:Rating="5"')
    real = sidecar._write_all

    def racing(fd: int, data: bytes) -> None:
        path.write_bytes(theirs)  # digiKam saves while vsearch is writing
        real(fd, data)

    monkeypatch.setattr(sidecar, "_write_all", racing)
    with pytest.raises(SidecarError, match="changed by another program"):
        write_sidecar(path, TAGS)
    assert path.read_bytes() == theirs and os.listdir(tmp_path) == ["clip.mp4.xmp"]


KILLED_WRITER = """\
import os, sys, time
from pathlib import Path
from vsearch.tag import sidecar
where, path = sys.argv[1], Path(sys.argv[2])
real_write, real_replace = sidecar._write_all, os.replace

def pause():
    print("paused", flush=True)
    time.sleep(60)

def write(fd, data):
    real_write(fd, data[: len(data) // 2])
    if where == "mid-write":
        pause()
    real_write(fd, data[len(data) // 2 :])

def replace(src, dst):
    if where == "before-rename":
        pause()
    real_replace(src, dst)
    if where == "after-rename":
        pause()

sidecar._write_all = write
sidecar.os.replace = replace
sidecar.write_sidecar(path, sidecar.Tags(tuple(f"label {i}" for i in range(2000))))
"""


@pytest.mark.parametrize(("where", "result"), [("mid-write", "old"), ("before-rename", "old"), ("after-rename", "new")])
def test_killed_writer_leaves_old_or_new_file(tmp_path: Path, where: str, result: str) -> None:
    path = tmp_path / "clip.mp4.xmp"
    path.write_bytes(DIGIKAM_XMP)
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(KILLED_WRITER))
    child = subprocess.Popen([sys.executable, str(script), where, str(path)], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 30)
        assert ready and child.stdout.readline() == b"paused\n"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    data = path.read_bytes()
    etree.fromstring(data)  # whole, either way
    expected = DIGIKAM_XMP if result == "old" else merge(DIGIKAM_XMP, Tags(tuple(f"label {i}" for i in range(2000))))
    assert data == expected
    assert len(data) > 100_000 or result == "old"


# --- small helpers on sidecar bytes ---------------------------------------------------------------

NS = {"dc": sidecar.DC_NS, "digiKam": sidecar.DIGIKAM_NS, "lr": sidecar.LR_NS, "vsearch": sidecar.VSEARCH_NS,
      "rdf": sidecar.RDF_NS}


def _values(data: bytes, prefix: str, name: str) -> list[str]:
    return [str(v) for v in etree.fromstring(data).xpath(f"//{prefix}:{name}/*/rdf:li/text()", namespaces=NS)]


def _drop(data: bytes, prefix: str, name: str) -> bytes:
    root = etree.fromstring(data)
    for element in root.xpath(f"//{prefix}:{name}", namespaces=NS):
        element.getparent().remove(element)
    return etree.tostring(root)


def _forget_record(data: bytes) -> bytes:
    """The same sidecar as if the user had written vsearch's entries: without vsearch's record."""
    for name in ("addedSubject", "addedTagsList", "addedHierarchicalSubject"):
        data = _drop(data, "vsearch", name)
    return data


def test_helpers_sanity() -> None:
    assert only_insertions(b"a\nb\n", b"a\nx\nb\n") and not only_insertions(b"a\nb\n", b"a\nc\n")
