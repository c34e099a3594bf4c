"""WorldTokenizer: ids, round trip, and bad input naming ``texts``."""
import json

import pytest
import torch

from unclip_probe.errors import ProbeInputError
from unclip_probe.clip.tokenizer import PUNCTUATION, WorldTokenizer

pytestmark = pytest.mark.unit

WORDS = ("a", "red", "blue", "circle", "square", "note", "that", "says", "and", "left", "of")


@pytest.fixture
def tok() -> WorldTokenizer:
    return WorldTokenizer(WORDS, context_length=16)


def test_ids_layout_and_eot_is_highest(tok):
    assert tok.vocab_size == 1 + len(WORDS) + len(PUNCTUATION) + 2
    assert tok.pad_id == 0 and tok.eot_id == tok.vocab_size - 1 and tok.sot_id == tok.vocab_size - 2
    ids = tok(["a red circle", "Blue square."])
    assert ids.dtype == torch.long and ids.shape == (2, 16)
    assert ids.max().item() == tok.eot_id
    # open_clip pools at argmax: that must be the eot position of each row
    assert ids.argmax(-1).tolist() == [4, 4]
    assert ids[0, :5].tolist() == [tok.sot_id, 1, 2, 4, tok.eot_id] and ids[0, 5:].eq(0).all()


def test_round_trip_and_punctuation(tok):
    text = 'a red circle, and a note that says "blue".'
    ids = tok(text)[0]
    assert tok.decode(ids) == 'a red circle, and a note that says " blue ".'
    assert tok.split('says "blue".') == ["says", '"', "blue", '"', "."]
    assert tok(tok.decode(ids)).equal(ids[None])  # decode -> encode gives the same ids
    assert tok("A RED Circle").equal(tok("a red circle"))  # lower-cases


def test_dict_round_trip(tok):
    again = WorldTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.vocab_size == tok.vocab_size and again("a red circle").equal(tok("a red circle"))


def test_unknown_word_names_texts_and_close_matches(tok):
    with pytest.raises(ProbeInputError, match=r"^texts: .*'circel'.*close matches: circle"):
        tok("a red circel")


def test_text_longer_than_context_is_an_error(tok):
    with pytest.raises(ProbeInputError, match=r"^texts: .* is 18 tokens .* context length is 16"):
        tok("a red circle and a blue square and a red circle left of a blue square")


def test_bad_vocabulary():
    with pytest.raises(ProbeInputError, match="^words: .*more than once"):
        WorldTokenizer(["red", "red"], 8)
    with pytest.raises(ProbeInputError, match="^words: "):
        WorldTokenizer(["Red"], 8)
    with pytest.raises(ProbeInputError, match="^context_length: "):
        WorldTokenizer(["red"], 2)
