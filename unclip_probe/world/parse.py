"""Reading a prompt into constraints the oracle can check (docs/design.md §3, §7).

`parse_caption` inverts the caption grammar: it returns a `SceneSpec`, the
objects (with whichever attributes the text names), the relations between them,
the note's word and the background. `SceneSpec.score(scene)` then grades any
scene, typically `detect(generated_image)`, attribute by attribute. The parser
is strict on purpose: an unknown colour or a malformed relation is an error
naming the word, never a silently ignored constraint.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
import re

from ..errors import bad_input
from .scenes import relations as scene_relations
from .spec import BACKGROUNDS, COLORS, POSITIONS, SHAPES, Scene

SIZE_WORDS = {"small": "small", "tiny": "small", "little": "small", "large": "large", "big": "large"}
_POSITION_WORDS = {p: p for p in POSITIONS} | {"middle": "center"}
_RELATION_WORDS = [  # longest first, so "to the left of" wins over "left of"
    ("to the left of", "left of"), ("to the right of", "right of"), ("on top of", "above"),
    ("left of", "left of"), ("right of", "right of"), ("above", "above"), ("below", "below"),
    ("under", "below"), ("beneath", "below"),
]
_NUMBERS = {"one": 1, "two": 2, "three": 3, "1": 1, "2": 2, "3": 3}
_PREFIXES = ("a picture of ", "a photo of ", "an image of ", "there is ", "there are ")
_NOTE_RE = re.compile(r'(?:,\s*|\s+)(?:and\s+|with\s+)*a note (?:that says|saying|reading|with the word)\s+"([^"]*)"')
_BACKGROUND_RE = re.compile(r"\s+on an? ([a-z]+) background")
_COUNT_RE = re.compile(r"^(one|two|three|\d+) (?:objects?|shapes?)\s*:\s*")


@dataclass(frozen=True)
class ObjSpec:
    """One object a prompt asks for; None means 'not said, anything goes'."""

    shape: str | None
    color: str | None
    size: str | None = None
    position: str | None = None


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple[ObjSpec, ...]
    relations: tuple[tuple[int, str, int], ...] = ()
    note: str | None = None
    background: str | None = None

    def score(self, scene: Scene) -> dict[str, bool]:
        """Per-attribute agreement of `scene` with this spec, under the best matching of objects.

        Keys: count, shape, color, size, position, relations, note, objects (every said
        attribute of every object), exact (all of them). Attributes not said count as right.
        """
        count = len(scene.objects) == len(self.objects)
        best: dict[str, bool] | None = None
        objs = scene.objects
        for perm in permutations(range(len(objs)), min(len(objs), len(self.objects))):
            s = {k: True for k in ("shape", "color", "size", "position", "relations")}
            for spec_i, scene_i in enumerate(perm):
                want, got = self.objects[spec_i], objs[scene_i]
                for attr in ("shape", "color", "size", "position"):
                    if getattr(want, attr) is not None and getattr(want, attr) != getattr(got, attr):
                        s[attr] = False
            if len(perm) < len(self.objects):
                s = {k: False for k in s}
            true_rels = set(scene_relations(scene))
            s["relations"] = s["relations"] and all(
                i < len(perm) and j < len(perm) and (perm[i], rel, perm[j]) in true_rels for i, rel, j in self.relations)
            if best is None or sum(s.values()) > sum(best.values()):
                best = s
        best = best or {k: False for k in ("shape", "color", "size", "position", "relations")}
        best["count"] = count
        best["note"] = (scene.note is None) if self.note is None else (scene.note is not None and scene.note.word == self.note)
        best["background"] = self.background is None or scene.background == self.background
        best["objects"] = count and all(best[k] for k in ("shape", "color", "size", "position"))
        best["exact"] = best["objects"] and best["relations"] and best["note"] and best["background"]
        return best

    @classmethod
    def from_scene(cls, scene: Scene) -> "SceneSpec":
        """The full description of a scene: grading another scene against it compares every attribute."""
        objs = tuple(ObjSpec(o.shape, o.color, o.size, o.position) for o in scene.objects)
        return cls(objs, (), scene.note.word if scene.note else None, scene.background)

    def matches(self, scene: Scene) -> bool:
        return self.score(scene)["exact"]


def _error(problem: str, text: str):
    return bad_input("prompt", f"{problem} in {text!r}")


class _Reader:
    """A cursor over the words of the object part of a prompt."""

    def __init__(self, words: list[str], text: str):
        self.w, self.i, self.text = words, 0, text

    def peek(self, k: int = 0) -> str | None:
        return self.w[self.i + k] if self.i + k < len(self.w) else None

    def take_phrase(self, options: list[tuple[str, str]]) -> str | None:
        for said, meaning in options:
            n = len(said.split())
            if self.w[self.i:self.i + n] == said.split():
                self.i += n
                return meaning
        return None

    def object(self) -> ObjSpec:
        if self.peek() not in ("a", "an", "one"):
            raise _error(f"expected an object such as 'a red circle' at {self.peek()!r}", self.text)
        self.i += 1
        color = size = None
        while True:
            word = self.peek()
            if word is None:
                raise _error("an object has no shape", self.text)
            self.i += 1
            if word in SHAPES:
                return ObjSpec(word, color, size, self.position())
            if word in COLORS:
                color = word
            elif word in SIZE_WORDS:
                size = SIZE_WORDS[word]
            elif self.peek() in SHAPES or self.peek() in COLORS:
                raise _error(f"unknown colour {word!r} (colours: {', '.join(COLORS)}; white is reserved for notes)", self.text)
            else:
                raise _error(f"unknown shape {word!r} (shapes: {', '.join(SHAPES)})", self.text)

    def position(self) -> str | None:
        if self.peek() in ("in", "at", "on") and self.peek(1) == "the":
            for n in (2, 1):
                said = " ".join(self.w[self.i + 2:self.i + 2 + n])
                if said in _POSITION_WORDS and len(said.split()) == n:
                    self.i += 2 + n
                    return _POSITION_WORDS[said]
        return None


def parse_caption(text: str) -> SceneSpec:
    """The constraints a prompt states: objects, relations, note word, background.

    Accepts every sentence `caption` writes and the same grammar typed by hand.
    """
    if not isinstance(text, str) or not text.strip():
        raise bad_input("prompt", f"expected a non-empty string, got {text!r}")
    s = " ".join(text.lower().strip().rstrip(".").split())
    note = None
    m = _NOTE_RE.search(s)
    if m:
        note = m.group(1).strip()
        if not note:
            raise _error("the note says nothing", text)
        s = s[:m.start()] + s[m.end():]
    elif "note" in s.split():
        raise _error('cannot read the note; write it as: a note that says "word"', text)
    background = None
    m = _BACKGROUND_RE.search(s)
    if m:
        background = m.group(1)
        if background not in BACKGROUNDS:
            raise _error(f"unknown background {background!r} (backgrounds: {', '.join(BACKGROUNDS)})", text)
        s = s[:m.start()] + s[m.end():]
    count = None
    m = _COUNT_RE.match(s)
    if m:
        if m.group(1) not in _NUMBERS:
            raise _error(f"a scene holds 1 to 3 objects, not {m.group(1)}", text)
        count, s = _NUMBERS[m.group(1)], s[m.end():]
    for prefix in _PREFIXES:
        if s.startswith(prefix):
            s = s[len(prefix):]
            break
    reader = _Reader(s.replace(",", " , ").split(), text)
    objects: list[ObjSpec] = [reader.object()]
    rels: list[tuple[int, str, int]] = []
    while reader.peek() is not None:
        rel = reader.take_phrase(_RELATION_WORDS)
        if rel is not None:
            if reader.peek() not in ("a", "an", "one"):
                raise _error(f"malformed relation '{rel}': it must be followed by an object such as 'a blue square'", text)
            rels.append((len(objects) - 1, rel, len(objects)))
            objects.append(reader.object())
            continue
        if reader.peek() in ("left", "right", "to") or (reader.peek() == "on" and reader.peek(1) == "top"):
            raise _error(f"malformed relation near {' '.join(reader.w[reader.i:reader.i + 4])!r}; "
                         "use 'to the left of', 'to the right of', 'above' or 'below'", text)
        if reader.peek() not in (",", "and"):
            raise _error(f"cannot read {reader.peek()!r}", text)
        while reader.peek() in (",", "and"):
            reader.i += 1
        objects.append(reader.object())
    if count is not None and count != len(objects):
        raise _error(f"it says {count} objects but describes {len(objects)}", text)
    if len(objects) > 3:
        raise _error(f"a world scene holds at most 3 objects, not {len(objects)}", text)
    return SceneSpec(tuple(objects), tuple(rels), note, background)
