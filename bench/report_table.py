"""The evaluation report of a finished train.py classify run, as markdown tables for bench/RESULTS.md.

    python train.py --config configs/fashion_mnist_mlp.py --workdir runs/mlp
    python bench/report_table.py runs/mlp

Prints the test metrics, per-class precision/recall/F1/support and the
confusion matrix (rows true, columns predicted) that the run wrote into
results.json; confusion_matrix.png and errors.png are beside it.
"""
import argparse
import json
import os


def tables(results: dict) -> str:
    names = list(results["per_class"])
    lines = [f"test accuracy {results['test_accuracy']:.4f}, test loss {results['test_loss']:.4f}, "
             f"{results['test_examples']} test examples", "",
             "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |"
              for name, s in results["per_class"].items()]
    macro = results["macro_avg"]
    lines += [f"| macro avg | {macro['precision']:.3f} | {macro['recall']:.3f} | {macro['f1']:.3f} | |", "",
              "| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(map(str, row)) + " |"
              for name, row in zip(names, results["confusion_matrix"])]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", help="a finished train.py classify run")
    args = parser.parse_args()
    with open(os.path.join(args.workdir, "results.json")) as f:
        results = json.load(f)
    if "per_class" not in results:
        parser.error(f"{args.workdir}/results.json has no per-class report: not a classify run of this jaxnn")
    print(tables(results))


if __name__ == "__main__":
    main()
