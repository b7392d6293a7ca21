"""Text to arrays, as the seed notes' Keras recipes do it, in plain numpy.

    vocab = build_vocabulary(train_texts, num_words=10_000)    # from the training split only
    seqs = texts_to_sequences(texts, vocab)                     # ragged int32 ids
    x = multi_hot(seqs, 10_000)                                 # (N, 10000) float32, for Dense
    x = pad_sequences(seqs, maxlen=200)                         # (N, 200) int32, for Embedding

Ids follow Keras's `Tokenizer(num_words, oov_token=...)`: 0 is padding, 1 stands
for any word outside the vocabulary, and the `num_words - 2` most frequent
training words get 2, 3, ... in order of decreasing count (ties broken
alphabetically, so the vocabulary does not depend on the order of the examples).

Tokenization is Keras's default: lowercase, every character of `KERAS_FILTERS`
becomes a space, split on whitespace (apostrophes stay: "don't" is one word).
IMDB's HTML line breaks (`<br />`) are removed first, so "br" never becomes a word.
"""
from __future__ import annotations

import collections
import re
from typing import Iterable, Sequence

import numpy as np

from jaxnn import validation
from jaxnn.data.specs import TextEncoding

PADDING_ID, OOV_ID = 0, 1
RESERVED_IDS = 2
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TO_SPACE = str.maketrans(KERAS_FILTERS, " " * len(KERAS_FILTERS))


def tokenize(text: str) -> list[str]:
    """Words of `text`: `tokenize("Great film!<br />Loved it.") == ["great", "film", "loved", "it"]`."""
    return _HTML_BREAK.sub(" ", text).lower().translate(_TO_SPACE).split()


def _check_num_words(num_words) -> None:
    validation.integer("num_words", num_words, RESERVED_IDS + 1,
                       f"an integer > {RESERVED_IDS} (ids 0 and 1 are reserved)")


def build_vocabulary(texts: Iterable[str], num_words: int) -> dict[str, int]:
    """Word -> id for the `num_words - 2` most frequent words of `texts`, ids from 2 (most frequent first)."""
    _check_num_words(num_words)
    counts = collections.Counter(word for text in texts for word in tokenize(text))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: num_words - RESERVED_IDS]
    return {word: RESERVED_IDS + rank for rank, (word, _) in enumerate(ranked)}


def texts_to_sequences(texts: Iterable[str], vocab: dict[str, int]) -> list[np.ndarray]:
    """Each text as an int32 array of word ids, words outside `vocab` as 1 (OOV)."""
    return [np.array([vocab.get(word, OOV_ID) for word in tokenize(text)], np.int32) for text in texts]


def multi_hot(sequences: Sequence[Sequence[int]], num_words: int) -> np.ndarray:
    """(N, num_words) float32 with 1 where an id occurs in the sequence (the seed's `vectorize_sequences`).

    Repeats count once and the padding id 0 is never set, so padded and
    unpadded sequences give the same row.
    """
    _check_num_words(num_words)
    lengths = [len(seq) for seq in sequences]
    ids = np.concatenate([np.asarray(seq, np.int64).reshape(-1) for seq in sequences] + [np.zeros(0, np.int64)])
    if ids.size and (ids.min() < 0 or ids.max() >= num_words):
        raise ValueError(f"ids must be in [0, {num_words}) for num_words={num_words}, "
                         f"found {int(ids.min())}..{int(ids.max())}")
    rows = np.repeat(np.arange(len(lengths)), lengths)
    out = np.zeros((len(lengths), num_words), np.float32)
    out[rows, ids] = 1.0
    out[:, PADDING_ID] = 0.0
    return out


def pad_sequences(sequences: Sequence[Sequence[int]], maxlen: int, *, padding: str = "pre",
                  truncating: str = "pre") -> np.ndarray:
    """(N, maxlen) int32: longer sequences cut, shorter ones filled with 0, at the start ("pre") or end ("post").

    Keras's defaults: both "pre", so a long review keeps its last `maxlen`
    words and the real words sit next to the end, where a recurrent layer's
    final state reads them last.
    """
    validation.positive_int("maxlen", maxlen)
    for field, value in (("padding", padding), ("truncating", truncating)):
        if value not in ("pre", "post"):
            raise ValueError(f"{field} must be 'pre' or 'post', got {value!r}")
    out = np.full((len(sequences), maxlen), PADDING_ID, np.int32)
    for i, seq in enumerate(sequences):
        seq = np.asarray(seq, np.int32)
        seq = seq[-maxlen:] if truncating == "pre" else seq[:maxlen]
        start = maxlen - seq.size if padding == "pre" else 0
        out[i, start:start + seq.size] = seq
    return out


def vectorize(texts: Iterable[str], vocab: dict[str, int], encoding: TextEncoding) -> np.ndarray:
    """Texts as model inputs: multi-hot (N, num_words) float32 or padded ids (N, maxlen) int32, per `encoding`."""
    sequences = texts_to_sequences(texts, vocab)
    if encoding.encoding == "multi_hot":
        return multi_hot(sequences, encoding.num_words)
    return pad_sequences(sequences, encoding.maxlen)
