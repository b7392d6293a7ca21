"""RandomFlip and RandomTranslation against per-example numpy references built from the same draws."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import RandomFlip, RandomTranslation, Sequential
from jaxnn.layers import from_spec
from jaxnn.layers import ShapeError

IMAGES = jnp.arange(6 * 5 * 4 * 2, dtype=jnp.float32).reshape(6, 5, 4, 2)


def _np_shift(img: np.ndarray, dy: int, dx: int, fill_mode: str, fill_value: float) -> np.ndarray:
    """Output pixel (i, j) is input pixel (i - dy, j - dx), out-of-range handled by `fill_mode`."""
    h, w = img.shape[:2]
    out = np.full_like(img, fill_value)
    pad = {"nearest": "edge", "reflect": "symmetric"}
    for i in range(h):
        for j in range(w):
            si, sj = i - dy, j - dx
            if fill_mode == "constant":
                if 0 <= si < h and 0 <= sj < w:
                    out[i, j] = img[si, sj]
            else:
                padded = np.pad(img, ((h, h), (w, w), (0, 0)), mode=pad[fill_mode])
                out[i, j] = padded[si + h, sj + w]
    return out


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect"])
def test_translation_moves_each_image_by_its_own_whole_pixel_shift(fill_mode):
    layer = RandomTranslation(0.4, 0.5, fill_mode=fill_mode, fill_value=-1.0)
    key = jax.random.key(3)
    out, _ = layer.apply({}, IMAGES, key=key, train=True)
    out = np.asarray(out)
    seen = set()
    for img, got in zip(np.asarray(IMAGES), out):
        # recover the shift: exactly one (dy, dx) in range reproduces the output
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(_np_shift(img, dy, dx, fill_mode, -1.0), got)]
        assert len(matches) == 1, matches
        seen.add(matches[0])
    assert len(seen) > 1  # one draw per example, not one per batch


def test_translation_shift_ranges_follow_the_factors():
    x = jnp.zeros((400, 10, 10, 1)).at[:, 5, 5, 0].set(1.0)  # one bright pixel per image
    out, _ = RandomTranslation((0.0, 0.2), (-0.3, -0.3)).apply({}, x, key=jax.random.key(0), train=True)
    rows, cols = np.nonzero(np.asarray(out)[..., 0])[1:]
    assert set(rows - 5) == {0, 1, 2}  # height: 0 .. +round(0.2 * 10), all reached over 400 draws
    assert set(cols - 5) == {-3}       # width: exactly -round(0.3 * 10)


def test_flip_flips_whole_images_with_probability_one_half():
    x = jax.random.normal(jax.random.key(1), (2000, 3, 4, 1))
    out, _ = RandomFlip("horizontal").apply({}, x, key=jax.random.key(2), train=True)
    out, x = np.asarray(out), np.asarray(x)
    flipped = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)])
    kept = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert np.all(flipped ^ kept)
    assert 0.45 < flipped.mean() < 0.55
    both, _ = RandomFlip().apply({}, x, key=jax.random.key(2), train=True)
    variants = [np.array_equal(o, v) for o, i in zip(np.asarray(both), x)
                for v in (i, i[:, ::-1], i[::-1], i[::-1, ::-1])]
    assert sum(variants) == len(x)


@pytest.mark.parametrize("layer", [RandomFlip(), RandomTranslation(0.2, 0.2)])
def test_augmentation_is_the_identity_at_inference_and_needs_a_key_in_training(layer):
    out, _ = layer.apply({}, IMAGES, train=False)
    assert out is IMAGES
    with pytest.raises(ValueError, match="pass key="):
        layer.apply({}, IMAGES, train=True)


def test_augmentation_in_a_model_from_a_config_spec():
    model = Sequential([from_spec({"type": "RandomFlip", "mode": "horizontal"}),
                        from_spec({"type": "RandomTranslation", "height_factor": 0.1, "width_factor": 0.1})])
    shape, params, state = model.init(jax.random.key(0), (None, 5, 4, 2))
    assert shape == (None, 5, 4, 2) and params == {} and state == {}
    a, _ = model.apply(params, IMAGES, key=jax.random.key(1), train=True)
    b, _ = model.apply(params, IMAGES, key=jax.random.key(1), train=True)
    np.testing.assert_array_equal(a, b)  # the key alone decides the draw
    listed = from_spec({"type": "RandomTranslation", "height_factor": [-0.1, 0.2], "width_factor": 0.1})
    assert listed.height_factor == (-0.1, 0.2) and hash(listed) == hash(RandomTranslation((-0.1, 0.2), 0.1))


def test_bad_augmentation_arguments_are_refused():
    with pytest.raises(ValueError, match="RandomFlip mode must be one of"):
        RandomFlip("sideways")
    with pytest.raises(ValueError, match="height_factor must be"):
        RandomTranslation(1.5, 0.1)
    with pytest.raises(ValueError, match="width_factor must be"):
        RandomTranslation(0.1, (0.3, -0.3))
    with pytest.raises(ValueError, match="height_factor must be a number or a pair of numbers, got"):
        RandomTranslation((0.1, 0.2, 0.3), 0.1)
    with pytest.raises(ValueError, match="width_factor must be a number or a pair of numbers, got"):
        RandomTranslation(0.1, None)
    with pytest.raises(ValueError, match="fill_mode must be one of"):
        RandomTranslation(0.1, 0.1, fill_mode="wrap")
    with pytest.raises(ShapeError, match="expects images"):
        RandomFlip().init(jax.random.key(0), (None, 28, 28))


def test_an_augmentation_without_augment_cannot_be_made():
    import dataclasses

    from jaxnn.layers.augment import _ImageAugmentation

    @dataclasses.dataclass(frozen=True)
    class Unfinished(_ImageAugmentation):
        pass

    with pytest.raises(TypeError, match="abstract method '?_augment"):
        Unfinished()
