"""Word-level tokenizer for the shape world's small vocabulary.

The world CLIP uses this instead of open_clip's 49k-entry BPE so that the
token embedding (and with it the checkpoint) stays tiny. Ids:

    0                 pad
    1 .. n            the given words, in order, then the punctuation marks
    n + 1             sot
    n + 2             eot   (the HIGHEST id)

eot must be the largest id because open_clip's text tower pools the feature at
``tokens.argmax(-1)`` (``text_pool_type='argmax'``).
"""
from __future__ import annotations

import re
from difflib import get_close_matches
from typing import Any, Sequence

import torch

from unclip_probe.errors import bad_input

PUNCTUATION: tuple[str, ...] = ('"', ",", ":", ".")
PAD, SOT, EOT = "<pad>", "<sot>", "<eot>"

# A word is letters/digits, optionally joined by ' or - ("don't", "x-ray");
# each punctuation mark is its own token; anything else is unsupported.
_WORD = r"[a-z0-9]+(?:['\-][a-z0-9]+)*"
_TOKEN_RE = re.compile(rf"{_WORD}|[{re.escape(''.join(PUNCTUATION))}]|\S")
_WORD_RE = re.compile(rf"^{_WORD}$")


class WorldTokenizer:
    """Lower-casing word/punctuation tokenizer with a fixed context length.

    ``tok(texts) -> LongTensor (B, context_length)``: ``[sot, w_1, ..., w_k, eot, 0, ...]``.
    Unknown words and texts longer than the context are errors, never silently
    dropped or truncated (docs/design.md §7).
    """

    def __init__(self, words: Sequence[str], context_length: int) -> None:
        if isinstance(words, str):
            raise bad_input("words", "expected a sequence of words, got one string")
        words = [str(w) for w in words]
        seen: set[str] = set()
        for w in words:
            if w in seen:
                raise bad_input("words", f"the word {w!r} appears more than once")
            if not (_WORD_RE.match(w) or w in PUNCTUATION):
                raise bad_input(
                    "words", f"{w!r} is not a lower-case word the tokenizer could ever produce"
                )
            seen.add(w)
        if not isinstance(context_length, int) or context_length < 3:
            raise bad_input("context_length", f"expected an int >= 3 (sot, a word, eot), got {context_length!r}")
        self.words: tuple[str, ...] = tuple(words)
        self.context_length = context_length
        # Punctuation is always in the vocabulary, after the words (unless listed there).
        vocab = [PAD, *words, *(p for p in PUNCTUATION if p not in seen), SOT, EOT]
        self._id = {t: i for i, t in enumerate(vocab)}
        self._vocab = vocab
        self.pad_id, self.sot_id, self.eot_id = 0, len(vocab) - 2, len(vocab) - 1

    @property
    def vocab_size(self) -> int:
        """Number of ids, pad/sot/eot included (the text tower's ``vocab_size``)."""
        return len(self._vocab)

    def split(self, text: str) -> list[str]:
        """Lower-case and split ``text`` into word and punctuation tokens (no sot/eot)."""
        return _TOKEN_RE.findall(text.lower())

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without sot/eot; an unknown word raises ProbeInputError naming ``texts``."""
        ids = []
        for token in self.split(text):
            if token not in self._id or token in (PAD, SOT, EOT):
                close = get_close_matches(token, self.words, n=3)
                hint = f" (close matches: {', '.join(close)})" if close else ""
                raise bad_input(
                    "texts", f"the word {token!r} in {text!r} is not in the world vocabulary{hint}"
                )
            ids.append(self._id[token])
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Inverse of ``encode`` up to spacing: drops pad/sot, stops at eot."""
        out: list[str] = []
        for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
            if i == self.eot_id:
                break
            if i in (self.pad_id, self.sot_id):
                continue
            token = self._vocab[i]
            if token in PUNCTUATION and token != '"' and out:
                out[-1] += token  # "red, blue." not "red , blue ."
            else:
                out.append(token)
        return " ".join(out)

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Tokenise ``texts`` -> LongTensor (B, context_length), zero-padded."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0 or not all(isinstance(t, str) for t in texts):
            raise bad_input("texts", "expected a string or a non-empty list of strings")
        out = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > self.context_length:
                raise bad_input(
                    "texts",
                    f"{text!r} is {len(ids)} tokens with sot/eot but the context length is "
                    f"{self.context_length}; shorten it",
                )
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; ``from_dict(to_dict())`` gives identical ids."""
        return {"words": list(self.words), "context_length": self.context_length}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WorldTokenizer":
        unknown = set(d) - {"words", "context_length"}
        if unknown:
            raise bad_input("d", f"unknown tokenizer key(s) {sorted(unknown)}; expected 'words', 'context_length'")
        return cls(d["words"], d["context_length"])

    def __repr__(self) -> str:
        return f"WorldTokenizer(vocab_size={self.vocab_size}, context_length={self.context_length})"
