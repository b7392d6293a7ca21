"""The configs of configs/ for tests: load one by name, set a field by its dotted path."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str):
    """`configs/<name>.py`'s `get_config()`."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def set_field(config, path: str, value):
    """`config` with the field at dotted `path` (e.g. "train.epochs") set to `value`."""
    *parents, leaf = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    with config.unlocked():
        node[leaf] = value
    return config
