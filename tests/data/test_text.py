"""Text vectorization against hand-computed examples; text dataset specs; TFDS loading on mock data."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxnn import data
from jaxnn.data import specs, text

TRAIN = ["The film was great, great fun!", "Bad film.<br /><br />Bad acting", "great acting"]
TEST = ["Great plot", "the worst film"]
# Counts: great 3; acting, bad, film 2; fun, the, was 1. Ranked by count, ties alphabetically:
VOCAB_6 = {"great": 2, "acting": 3, "bad": 4, "film": 5}  # num_words=6: ids 0, 1 reserved, 4 words


@pytest.mark.parametrize("raw, words", [
    ("Great film!<br />Loved it.", ["great", "film", "loved", "it"]),
    ("one<BR>two<br/>three", ["one", "two", "three"]),
    ("Don't  STOP -- (ever)", ["don't", "stop", "ever"]),
    ("a,b;c:d\te\nf", ["a", "b", "c", "d", "e", "f"]),
    ("Café naïve", ["café", "naïve"]),
    ("", []),
])
def test_tokenize(raw, words):
    assert text.tokenize(raw) == words


def test_vocabulary_is_most_frequent_with_reserved_ids():
    assert text.build_vocabulary(TRAIN, num_words=6) == VOCAB_6
    full = text.build_vocabulary(TRAIN, num_words=100)
    assert full == {**VOCAB_6, "fun": 6, "the": 7, "was": 8}


def test_vocabulary_does_not_depend_on_example_order():
    assert text.build_vocabulary(TRAIN[::-1], num_words=6) == text.build_vocabulary(TRAIN, num_words=6)


def test_sequences_map_unknown_words_to_oov():
    seqs = text.texts_to_sequences(TRAIN + TEST, VOCAB_6)
    expected = [[1, 5, 1, 2, 2, 1], [4, 5, 4, 3], [2, 3], [2, 1], [1, 1, 5]]
    assert [s.tolist() for s in seqs] == expected
    assert all(s.dtype == np.int32 for s in seqs)


def seed_vectorize_sequences(seqs, dim):
    """The seed notes' loop (seed 004), as the reference."""
    results = np.zeros((len(seqs), dim))
    for i, seq in enumerate(seqs):
        results[i, seq] = 1.0
    return results


def test_multi_hot_hand_computed_and_seed_reference():
    seqs = [[1, 5, 1, 2, 2, 1], [4, 5, 4, 3], [], [0, 0, 3]]
    expected = np.array([[0, 1, 1, 0, 0, 1], [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]], np.float32)
    out = text.multi_hot(seqs, 6)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    rng = np.random.default_rng(0)
    many = [rng.integers(1, 50, rng.integers(0, 30)) for _ in range(40)]
    np.testing.assert_array_equal(text.multi_hot(many, 50), seed_vectorize_sequences(many, 50))


def test_multi_hot_ignores_padding():
    np.testing.assert_array_equal(text.multi_hot(text.pad_sequences([[3, 4]], maxlen=5), 6),
                                  text.multi_hot([[3, 4]], 6))


@pytest.mark.parametrize("padding, truncating, expected", [
    ("pre", "pre", [[0, 0, 1, 2], [3, 4, 5, 6], [5, 6, 7, 8], [0, 0, 0, 0]]),
    ("post", "pre", [[1, 2, 0, 0], [3, 4, 5, 6], [5, 6, 7, 8], [0, 0, 0, 0]]),
    ("pre", "post", [[0, 0, 1, 2], [3, 4, 5, 6], [4, 5, 6, 7], [0, 0, 0, 0]]),
    ("post", "post", [[1, 2, 0, 0], [3, 4, 5, 6], [4, 5, 6, 7], [0, 0, 0, 0]]),
])
def test_pad_sequences(padding, truncating, expected):
    out = text.pad_sequences([[1, 2], [3, 4, 5, 6], [4, 5, 6, 7, 8], []], 4, padding=padding, truncating=truncating)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("call, match", [
    (lambda: text.build_vocabulary(TRAIN, num_words=2), r"num_words must be an integer > 2 .*got 2"),
    (lambda: text.multi_hot([[1, 6]], 6), r"ids must be in \[0, 6\) for num_words=6, found 1..6"),
    (lambda: text.pad_sequences([[1]], 0), "maxlen must be a positive integer, got 0"),
    (lambda: text.pad_sequences([[1]], 3, padding="middle"), "padding must be 'pre' or 'post', got 'middle'"),
    (lambda: text.pad_sequences([[1]], 3, truncating="end"), "truncating must be 'pre' or 'post', got 'end'"),
])
def test_encoding_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("name, options, shape, dtype, target_shape, target_dtype", [
    ("imdb_reviews", {}, (10_000,), "float32", (), "int32"),
    ("imdb_reviews", {"num_words": 500}, (500,), "float32", (), "int32"),
    ("imdb_reviews", {"encoding": "sequence", "maxlen": 200}, (200,), "int32", (), "int32"),
    ("ag_news_subset", {"label_encoding": "one_hot"}, (10_000,), "float32", (4,), "float32"),
    ("ag_news_subset", {"encoding": "sequence", "maxlen": 30}, (30,), "int32", (), "int32"),
])
def test_text_dataset_info_follows_the_encoding(name, options, shape, dtype, target_shape, target_dtype):
    spec = data.dataset_info(name, **options)
    assert (spec.input_shape, spec.input_dtype, spec.target_shape, spec.target_dtype) == (
        shape, dtype, target_shape, target_dtype)


@pytest.mark.parametrize("name, options, match", [
    ("imdb_reviews", {"encoding": "tfidf"}, "dataset.encoding must be one of multi_hot, sequence, got 'tfidf'"),
    ("imdb_reviews", {"num_words": 2}, r"dataset.num_words must be an integer > 2 .*got 2"),
    ("imdb_reviews", {"encoding": "sequence"}, "dataset.maxlen must be a positive integer for .*'sequence', got None"),
    ("imdb_reviews", {"maxlen": 100}, "dataset.maxlen applies to encoding 'sequence' only"),
    ("ag_news_subset", {"label_encoding": "onehot"}, "dataset.label_encoding must be one of integer, one_hot, got"),
    ("ag_news_subset", {"maxln": 3}, "unknown field dataset.maxln for a text dataset; allowed: encoding, num_words"),
    ("mnist", {"num_words": 10}, "unknown field dataset.num_words: mnist takes no encoding options"),
])
def test_bad_encoding_fields_are_named(name, options, match):
    with pytest.raises(ValueError, match=match):
        data.dataset_info(name, **options)


def test_dataset_options_are_the_non_location_fields():
    section = dict(name="imdb_reviews", data_dir=None, train_split="train", test_split="test", num_words=5)
    assert data.dataset_options(section) == {"num_words": 5}


@pytest.mark.parametrize("name", list(specs.TEXT_SOURCES))
def test_text_sources_match_tfds_builder(name, tmp_path):
    info = tfds.builder(name, data_dir=str(tmp_path)).info
    source = specs.TEXT_SOURCES[name]
    assert source.class_names == tuple(info.features["label"].names)
    assert all(info.features[f].dtype == tf.string for f in source.text_features)


def fake_tfds(examples: dict):
    """An `as_dataset_fn` for tfds.testing.mock_data serving hand-written examples per split name."""
    def as_dataset(self, split, **kwargs):
        columns = examples[str(split).split("[")[0]]
        return tf.data.Dataset.from_tensor_slices({k: np.asarray(v) for k, v in columns.items()})
    return as_dataset


IMDB_FAKE = {"train": {"text": TRAIN, "label": [1, 0, 1]}, "test": {"text": TEST, "label": [1, 0]}}


@pytest.mark.parametrize("options, x_train, x_test", [
    (dict(num_words=6), text.multi_hot([[1, 5, 1, 2, 2, 1], [4, 5, 4, 3], [2, 3]], 6),
     [[0, 1, 1, 0, 0, 0], [0, 1, 0, 0, 0, 1]]),
    (dict(num_words=6, encoding="sequence", maxlen=3), [[2, 2, 1], [5, 4, 3], [0, 2, 3]], [[0, 2, 1], [1, 1, 5]]),
])
def test_load_splits_vocabulary_from_training_split(options, x_train, x_test):
    with tfds.testing.mock_data(as_dataset_fn=fake_tfds(IMDB_FAKE)):
        (xa, ya), (xb, yb) = data.load_splits("imdb_reviews", ["train[:3]", "test"], **options)
    np.testing.assert_array_equal(xa, x_train)
    np.testing.assert_array_equal(xb, x_test)  # "plot" and "worst" are test-only words: OOV
    assert ya.tolist() == [1, 0, 1] and yb.tolist() == [1, 0] and ya.dtype == np.int32


def test_load_joins_title_and_description_and_one_hot_labels():
    fake = {"train": {"title": ["Stocks fall", "Team wins"], "description": ["Markets drop.", "Big match win"],
                      "label": [2, 1]}}
    with tfds.testing.mock_data(as_dataset_fn=fake_tfds(fake)):
        texts, labels = data.read_texts("ag_news_subset", "train")
        x, y = data.load_arrays("ag_news_subset", "train", num_words=20, encoding="sequence", maxlen=5,
                                label_encoding="one_hot")
    assert texts == ["Stocks fall Markets drop.", "Team wins Big match win"] and labels.tolist() == [2, 1]
    vocab = text.build_vocabulary(texts, 20)
    np.testing.assert_array_equal(x, text.pad_sequences(text.texts_to_sequences(texts, vocab), 5))
    np.testing.assert_array_equal(y, [[0, 0, 1, 0], [0, 1, 0, 0]])
    assert y.dtype == np.float32


@pytest.mark.parametrize("name, label_encoding", [("imdb_reviews", "integer"), ("ag_news_subset", "one_hot")])
def test_tfds_mock_data_through_load_splits(name, label_encoding, tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        (x, y), (x_test, y_test) = data.load_splits(name, ["train", "test"], data_dir=str(tmp_path), num_words=30,
                                                    label_encoding=label_encoding)
    spec = data.dataset_info(name, num_words=30, label_encoding=label_encoding)
    assert x.shape == (12, *spec.input_shape) and x.dtype == spec.input_dtype
    assert y.shape == (12, *spec.target_shape) and y.dtype == spec.target_dtype
    assert set(np.unique(x)) <= {0.0, 1.0} and x[:, 1:].sum() > 0  # mock words fill the vocabulary
    if label_encoding == "one_hot":
        np.testing.assert_array_equal(y.sum(axis=1), 1.0)
    else:
        assert set(np.unique(y)) <= set(range(spec.num_classes))
    assert x_test.shape == x.shape


def test_load_splits_needs_a_split():
    with pytest.raises(ValueError, match="splits must name at least one split of imdb_reviews"):
        data.load_splits("imdb_reviews", [])
