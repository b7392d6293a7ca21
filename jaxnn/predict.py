"""Top classes of new inputs for a train.py run:  python -m jaxnn.predict --workdir runs/mlp shoe.png batch.npy

Each input is an image file (PNG, JPEG, ...), converted to the model's
channels (grayscale for Fashion-MNIST), resized to its height and width and
scaled to [0, 1] as the training images were, or a .npy array holding one
example or a batch `(n, *example shape)` (a missing channel axis of 1 is
added; uint8 images are scaled to [0, 1]; read without pickle). For each
input it prints the `--top_k` classes, most probable first, with their
probabilities and the dataset's class names. The model and its parameters
come from the run's config.json and checkpoints/final (`jaxnn.load_run`), or
from a model directory the run wrote. A sweep's run predicts as its ensemble
(the mean of the members' probabilities), or as one member with `--member i`.
A bad argument, input or workdir stops with one line and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

CHUNK = 256  # examples per forward pass, to bound memory on a large .npy batch


def _fit_example(array: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    """`array` as a batch of examples of `shape`: one example or a batch, a missing channel axis of 1 added."""
    if len(shape) >= 1 and shape[-1] == 1 and array.shape[-(len(shape) - 1):] == shape[:-1]:
        array = array[..., None]
    if array.shape == shape:
        array = array[None]
    if array.ndim != len(shape) + 1 or array.shape[1:] != shape:
        raise ValueError(f"{what} holds shape {array.shape}; the model takes examples of shape {shape} "
                         f"(one example, or a batch (n, {', '.join(map(str, shape))}))")
    return array


def read_npy(path: str, shape: tuple, dtype: str) -> np.ndarray:
    """A batch of examples of `shape` from a .npy file; uint8 scaled to [0, 1] for a float model."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path} as a .npy array: {e}") from None
    if array.dtype == np.uint8 and np.dtype(dtype).kind == "f":
        array = array / 255.0
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{path} holds {array.dtype} values; the model takes numbers ({dtype})")
    return _fit_example(array, shape, path).astype(dtype)


def read_image(path: str, shape: tuple, dtype: str) -> np.ndarray:
    """One image file as a batch of one example of `shape` (height, width[, 1 or 3 channels]), scaled to [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3)) or np.dtype(dtype).kind != "f":
        raise ValueError(f"{path}: the model takes {dtype} inputs of shape {shape}, not images; give a .npy array")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if len(shape) == 3 and shape[2] == 3 else "L")
            if image.size != (shape[1], shape[0]):
                image = image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"cannot read {path} as an image: {e}") from None
    return _fit_example(pixels, shape, path).astype(dtype)


def load_inputs(paths, shape: tuple, dtype: str) -> tuple[list[str], np.ndarray]:
    """(a label per example, the batch of all examples) from image files and .npy arrays."""
    labels, arrays = [], []
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"no such file: {path}")
        if path.lower().endswith(".npy"):
            batch = read_npy(path, shape, dtype)
            labels += [f"{path}[{i}]" for i in range(len(batch))] if len(batch) > 1 else [path]
        else:
            batch = read_image(path, shape, dtype)
            labels.append(path)
        arrays.append(batch)
    return labels, np.concatenate(arrays)


def predict_outputs(model, variables, x: np.ndarray) -> np.ndarray:
    """The model's outputs on `x` in inference mode, `CHUNK` examples per jitted call."""
    import jax

    forward = jax.jit(lambda params, state, xb: model.apply(params, xb, state=state)[0])
    outputs = [forward(variables["params"], variables["model_state"], x[i:i + CHUNK]) for i in range(0, len(x), CHUNK)]
    if not all(isinstance(o, jax.Array) for o in outputs):
        raise ValueError("the model has several outputs; jaxnn.predict takes classifiers with one")
    return np.concatenate([np.asarray(o) for o in outputs])


def top_classes(probs: np.ndarray, class_names, k: int) -> list[list[tuple[str, float]]]:
    """The `k` most probable (class name, probability) of each row, most probable first (ties: lower class id)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(class_names[c], float(row[c])) for c in top] for row, top in zip(probs, order)]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m jaxnn.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True,
                        help="a finished train.py run (config.json, checkpoints/final), or a model directory it "
                             "wrote (model/, a sweep's model/member_<i>/)")
    parser.add_argument("--top_k", type=int, default=3, help="classes to print per input (default 3)")
    parser.add_argument("--member", type=int, default=None,
                        help="a sweep's run: predict with this member alone (default: the ensemble, the mean of "
                             "the members' probabilities, as results.json reports it)")
    parser.add_argument("inputs", nargs="+", help="image files or .npy arrays")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top_k must be a positive integer, got {args.top_k}")
    if args.member is not None and args.member < 0:
        parser.error(f"--member must be a member's index (0, 1, ...), got {args.member}")
    return args


def load_models(workdir: str, member: int | None = None):
    """`(config, data spec, [(model, variables), ...])` of a train.py run or of a model directory it wrote:
    one model, or a sweep's members (all of them, or `member` alone)."""
    from jaxnn.config import build
    from jaxnn.saving import CONFIG_FILE, MODEL_FILE, load_experiment, load_model, read_config
    from jaxnn.training.members import member as member_of

    if os.path.isfile(os.path.join(workdir, MODEL_FILE)):  # model/ or model/member_<i>/: its config beside it
        config_file = os.path.join(workdir, CONFIG_FILE)
        if not os.path.isfile(config_file):
            raise ValueError(f"the model in {workdir} has no {CONFIG_FILE} (the run's config, for the class "
                             "names): give the train.py workdir, or use jaxnn.load_model in Python")
        config = read_config(workdir)
        if member is not None:
            raise ValueError(f"--member picks a member of a sweep's workdir; {workdir} is one model")
        return config, build(config).data_spec, [load_model(workdir)]
    config, experiment, variables = load_experiment(workdir, members=True)
    count = len(experiment.members)
    if member is not None and member >= count:
        raise ValueError(f"--member {member}: {workdir} has " +
                         (f"members 0 to {count - 1}" if count else "one model, not a sweep's members"))
    if not count:
        return config, experiment.data_spec, [(experiment.model, variables)]
    chosen = range(count) if member is None else [member]
    return config, experiment.data_spec, [(experiment.model, member_of(variables, m)) for m in chosen]


def run(args, print_fn=print) -> None:
    """Load the run, read the inputs, print each input's top classes (a sweep's: its ensemble's or a member's)."""
    from jaxnn.report import class_probabilities

    config, spec, models = load_models(args.workdir, args.member)
    labels, x = load_inputs(args.inputs, tuple(spec.input_shape), spec.input_dtype)
    from_logits = bool(config.loss.get("from_logits", False))
    probs = np.mean([class_probabilities(predict_outputs(model, variables, x), from_logits=from_logits)
                     for model, variables in models], axis=0)
    for label, top in zip(labels, top_classes(probs, spec.class_names, args.top_k)):
        print_fn(f"{label}: " + ", ".join(f"{name} {p:.4f}" for name, p in top))


def main(argv=None) -> int:
    args = parse_args(argv)
    from jaxnn.checkpoint import CorruptCheckpointError

    try:
        run(args)
    except (ValueError, CorruptCheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
