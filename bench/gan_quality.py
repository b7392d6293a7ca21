"""How a trained Fashion-MNIST classifier labels a GAN's samples: class histogram and mean confidence.

    python train.py --config configs/fashion_mnist_cnn.py --workdir runs/cnn
    python train.py --config configs/fashion_mnist_gan.py --workdir runs/gan
    python bench/gan_quality.py --gan-workdir runs/gan --classifier-workdir runs/cnn [--num-samples 1000]

Both runs are read back from their workdirs (config.json and checkpoints/final).
The generator draws `--num-samples` images from fresh latent vectors; the
classifier's argmax gives each a class and its top probability the confidence.
A diverse generator spreads its samples over the classes: the target is at least
8 of the 10 classes with at least 5% each. Prints the table and writes it as
JSON to `--out` (default: <gan-workdir>/quality.json).
"""
from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import ml_collections
import numpy as np

from jaxnn.checkpoint import load_tree
from jaxnn.config import build
from jaxnn.tasks import load_gan
from jaxnn.tasks.classify import build_trainer

MIN_SHARE, MIN_CLASSES = 0.05, 8


def load_classifier(workdir: str):
    """(Trainer, TrainState) of a finished `train.py` classification run, from its final checkpoint."""
    with open(os.path.join(workdir, "config.json")) as f:
        experiment = build(ml_collections.ConfigDict(json.load(f)))
    info = experiment.data_spec
    trainer = build_trainer(experiment, total_steps=1)  # for predictions only: no schedule runs
    state = trainer.init(jax.random.key(0), info.input_shape)
    restored = load_tree(os.path.join(workdir, "checkpoints", "final"),
                         like={"params": state.params, "model_state": state.model_state})
    return trainer, state.replace(**restored), info.class_names


def label_samples(probs: np.ndarray, class_names) -> dict:
    """Share of samples per predicted class, mean top probability per class and overall, classes >= 5%."""
    predicted, confidence = probs.argmax(-1), probs.max(-1)
    per_class = {}
    for i, name in enumerate(class_names):
        mine = predicted == i
        per_class[name] = {"share": float(mine.mean()),
                           "mean_confidence": float(confidence[mine].mean()) if mine.any() else None}
    covered = sum(c["share"] >= MIN_SHARE for c in per_class.values())
    return {"num_samples": int(len(probs)), "classes": per_class, "mean_confidence": float(confidence.mean()),
            "classes_at_least_5_percent": int(covered), "target_met": bool(covered >= MIN_CLASSES)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gan-workdir", required=True)
    parser.add_argument("--classifier-workdir", required=True)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1234, help="seed of the latent vectors")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    experiment, generator = load_gan(args.gan_workdir)
    trainer, state, class_names = load_classifier(args.classifier_workdir)
    images = experiment.gan.generate(generator, experiment.gan.latent(jax.random.key(args.seed), args.num_samples))
    report = label_samples(trainer.predict(state, images, batch_size=500), class_names)

    print(f"{report['num_samples']} generated samples labelled by {args.classifier_workdir}:")
    print(f"  {'class':<14}{'share':>8}{'confidence':>12}")
    for name, c in report["classes"].items():
        conf = "-" if c["mean_confidence"] is None else f"{c['mean_confidence']:.3f}"
        print(f"  {name:<14}{c['share']:>8.1%}{conf:>12}")
    print(f"mean confidence {report['mean_confidence']:.3f}; {report['classes_at_least_5_percent']} of "
          f"{len(class_names)} classes with >= 5% (target >= {MIN_CLASSES}: "
          f"{'met' if report['target_met'] else 'NOT met'})")
    out = args.out or os.path.join(args.gan_workdir, "quality.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
