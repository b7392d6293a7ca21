"""train.py's contract (docs/errors.md): each mistake is one `error:` line on stderr, no traceback, a documented
exit status, and for a mistake found before training the workdir's tree is byte-identical afterwards.

Most cases run in this process through `train.main` (a fresh flag set per call); a few run `train.py` as a
subprocess, to check the real exit status and that nothing else reaches stderr.
"""
import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from jaxnn import cli
from jaxnn.checkpoint import CheckpointLockedError, CheckpointWriteError

ROOT = pathlib.Path(__file__).resolve().parents[1]
MLP = str(ROOT / "configs" / "fashion_mnist_mlp.py")
GAN = str(ROOT / "configs" / "fashion_mnist_gan.py")
USAGE, FAILURE = 2, 1


@pytest.fixture(scope="module")
def train_module():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def derived_config(tmp_path, name: str, body: str) -> str:
    """A config file that edits the default MLP config: `body` runs on `c` inside get_config."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(f"""\
        import runpy
        import ml_collections

        def get_config():
            c = runpy.run_path({MLP!r})["get_config"]()
            with c.unlocked():
        """) + textwrap.indent(textwrap.dedent(body), " " * 8) + "    return c\n")
    return str(path)


CONFIG_FILES = {  # name -> file text (no get_config edits of the default)
    "syntax_error": "def get_config(:\n    pass\n",
    "no_get_config": "import ml_collections\nCONFIG = ml_collections.ConfigDict()\n",
    "returns_dict": "def get_config():\n    return {'seed': 0}\n",
    "raises": "def get_config():\n    return undefined_name\n",
}
DERIVED = {  # name -> edit of the default config
    "lacks_model": "del c['model']\n",
    "learning_rate_fast": "c.optimizer = dict(name='adam', learning_rate='fast')\n",
    "type_clash": "c.optimizer.learning_rate = 'fast'\n",  # ml_collections refuses it inside get_config
    "unknown_section": "c.trian = dict(epochs=3)\n",
    "five_outputs": ("c.model = dict(name='sequential', layers=[dict(type='Flatten'), "
                     "dict(type='Dense', units=5, activation='softmax')])\n"),
    "section_not_dict": "del c['loss']\nc.loss = 'mse'\n",
}


def tree(path: pathlib.Path) -> dict:
    """Every file and directory under `path` with its bytes (None for a directory)."""
    if not path.exists():
        return {}
    out = {".": None if path.is_dir() else path.read_bytes()}
    for p in sorted(path.rglob("*")):
        out[str(p.relative_to(path))] = None if p.is_dir() else p.read_bytes()
    return out


# (id, extra argv, expected status, a piece of the error line). `{tmp}` is the test's tmp_path, `{file:NAME}` a
# config file of CONFIG_FILES or DERIVED; the workdir is `{tmp}/run` unless the argv gives one.
CASES = [
    ("epochs_word", ["--config.train.epochs=three"], USAGE, "--config.train.epochs must be an integer, got 'three'"),
    ("epochs_fraction", ["--config.train.epochs=2.5"], USAGE, "--config.train.epochs must be an integer, got '2.5'"),
    ("seed_word", ["--config.seed=abc"], USAGE, "--config.seed must be an integer, got 'abc'"),
    ("seed_fraction", ["--config.seed=1.5"], USAGE, "--config.seed must be an integer"),
    ("unknown_flag", ["--epochs=3"], USAGE, "unknown flag --epochs; did you mean --config.train.epochs=3?"),
    ("unknown_flag_no_field", ["--epohcs=3"], USAGE, "unknown flag --epohcs; known flags: --config"),
    ("override_typo", ["--config.train.epocs=3"], USAGE, "unknown field train.epocs; allowed: epochs, batch_size, "),
    ("override_nested_section", ["--config.train.per_example.clip_norm=1"], USAGE,
     "names no config field: per_example; the config file leaves out train.per_example: give it whole, e.g. "
     "--config.train.per_example=\"{'field': value}\""),
    ("override_section_typo", ["--config.trian.epochs=3"], USAGE, "names no config field"),
    ("lr_word", ["--config.optimizer.learning_rate=fast"], USAGE, "--config.optimizer.learning_rate must be a number"),
    ("lr_negative", ["--config.optimizer.learning_rate=-1"], USAGE, "adam learning_rate must be a positive finite"),
    ("lr_zero", ["--config.optimizer.learning_rate=0"], USAGE, "learning_rate must be a positive finite number"),
    ("lr_inf", ["--config.optimizer.learning_rate=inf"], USAGE, "learning_rate must be a positive finite number"),
    ("lr_nan", ["--config.optimizer.learning_rate=nan"], USAGE, "learning_rate must be a positive finite number"),
    ("optimizer_name", ["--config.optimizer.name=adamax2"], USAGE, "unknown optimizer 'adamax2'"),
    ("schedule_name", ["--config.optimizer.schedule.name=cosine"], USAGE, "unknown schedule 'cosine'"),
    ("clipnorm", ["--config.optimizer.global_clipnorm=-1"], USAGE, "global_clipnorm must be positive"),
    ("batch_zero", ["--config.train.batch_size=0"], USAGE, "train.batch_size must be a positive integer, got 0"),
    ("batch_negative", ["--config.train.batch_size=-5"], USAGE, "train.batch_size must be a positive integer"),
    ("epochs_zero", ["--config.train.epochs=0"], USAGE, "train.epochs must be a positive integer, got 0"),
    ("batch_larger_than_split", ["--config.train.batch_size=100000"], USAGE,
     "train.batch_size 100000 is larger than the 54000 training examples left after train.validation_split"),
    ("batch_larger_than_slice", ["--config.dataset.train_split=train[:100]"], USAGE,
     "train.batch_size 128 is larger than the 90 training examples"),
    ("validation_split_high", ["--config.train.validation_split=1.5"], USAGE, "validation_split must be in [0, 1)"),
    ("validation_split_negative", ["--config.train.validation_split=-0.1"], USAGE, "validation_split must be in"),
    ("validation_holds_none", ["--config.dataset.train_split=train[:200]", "--config.train.validation_split=0.001",
                               "--config.train.batch_size=10"], USAGE, "holds out none"),
    ("precision", ["--config.train.precision=float8"], USAGE, "train.precision must be one of"),
    ("accumulate", ["--config.train.accumulate_steps=3"], USAGE, "must be a multiple of train.accumulate_steps 3"),
    ("log_every_zero", ["--config.train.log_every_steps=0"], USAGE, "train.log_every_steps must be a positive"),
    ("histogram_negative", ["--config.train.histogram_freq=-1"], USAGE, "train.histogram_freq must be a non-negative"),
    ("shuffle_word", ["--config.train.shuffle=maybe"], USAGE, "--config.train.shuffle"),
    ("metric_typo", ["--config.train.metrics=accurcy"], USAGE, "unknown metric 'accurcy'"),
    ("keep_zero", ["--config.checkpoint.keep=0"], USAGE, "checkpoint.keep must be a positive integer, got 0"),
    ("every_steps_negative", ["--config.checkpoint.every_steps=-1"], USAGE, "checkpoint.every_steps must be"),
    ("monitor_never_logged", ["--config.checkpoint.monitor=val_acc"], USAGE,
     "checkpoint.monitor 'val_acc' is never logged by this run"),
    ("monitor_val_without_validation", ["--config.train.validation_split=0.0", "--config.checkpoint.monitor=val_loss"],
     USAGE, "(val_ names need train.validation_split > 0)"),
    ("early_stopping_monitor", ["--config.train.early_stopping.enabled=true",
                                "--config.train.early_stopping.monitor=accuracy_val"], USAGE,
     "train.early_stopping.monitor 'accuracy_val' is never logged"),
    ("patience_negative", ["--config.train.reduce_lr_on_plateau.patience=-1"], USAGE,
     "train.reduce_lr_on_plateau.patience must be a non-negative integer"),
    ("eval_batch_zero", ["--config.eval.batch_size=0"], USAGE, "eval.batch_size must be a positive integer"),
    ("dataset_name", ["--config.dataset.name=cifar10"], USAGE, "dataset.name must be one of"),
    ("split_unknown", ["--config.dataset.train_split=validation"], USAGE,
     "dataset.train_split 'validation' names no split of fashion_mnist"),
    ("split_syntax", ["--config.dataset.train_split=train[:abc]"], USAGE, "names no split of fashion_mnist"),
    ("split_empty", ["--config.dataset.test_split=test[:0]"], USAGE, "dataset.test_split 'test[:0]' holds no examples"),
    ("data_dir_missing", ["--config.dataset.data_dir=/nonexistent/tfds"], USAGE,
     "dataset.data_dir /nonexistent/tfds does not exist: create it"),
    ("data_dir_file", ["--config.dataset.data_dir={tmp}/a_file"], USAGE, "is a file"),
    ("activation", ["--config.model.activation=relx"], USAGE, "unknown activation 'relx'"),
    ("output_activation", ["--config.model.output_activation=softmx"], USAGE, "unknown activation 'softmx'"),
    ("model_name", ["--config.model.name=resnet"], USAGE, "unknown model 'resnet'"),
    ("dropout_high", ["--config.model.dropout=1.5"], USAGE, "Dropout rate must be in [0, 1), got 1.5"),
    ("loss_name", ["--config.loss.name=mse2"], USAGE, "unknown loss 'mse2'"),
    ("task_name", ["--config.task=regress"], USAGE, "unknown task 'regress'; known: classify, gan"),
    ("config_missing", ["--config={tmp}/nowhere.py"], USAGE, "config file {tmp}/nowhere.py does not exist"),
    ("config_directory", ["--config={tmp}"], USAGE, "is a directory"),
    ("config_syntax", ["--config={file:syntax_error}"], USAGE, "has a syntax error at line 1"),
    ("config_no_get_config", ["--config={file:no_get_config}"], USAGE, "defines no get_config()"),
    ("config_returns_dict", ["--config={file:returns_dict}"], USAGE,
     "must return an ml_collections.ConfigDict, got dict"),
    ("config_raises", ["--config={file:raises}"], USAGE, "line 2: NameError: name 'undefined_name' is not defined"),
    ("config_lacks_section", ["--config={file:lacks_model}"], USAGE, "config section 'model' is missing"),
    ("config_learning_rate_fast", ["--config={file:learning_rate_fast}"], USAGE,
     "adam learning_rate must be a positive finite number, got 'fast'"),
    ("config_type_clash", ["--config={file:type_clash}"], USAGE,
     "type_clash.py: get_config() raised TypeError: Could not override field 'learning_rate'"),
    ("config_unknown_section", ["--config={file:unknown_section}"], USAGE, "unknown config section 'trian'"),
    ("config_five_outputs", ["--config={file:five_outputs}"], USAGE,
     "the model's output layer has 5 units but fashion_mnist has 10 classes: give the last layer 10 units"),
    ("config_section_not_dict", ["--config={file:section_not_dict}"], USAGE, "config section 'loss' must be a dict"),
    ("positional_argument", ["extra"], USAGE, "unexpected arguments: extra"),
    ("workdir_missing", ["--workdir="], USAGE, "--workdir is required"),
    ("workdir_is_file", ["--workdir={tmp}/a_file"], USAGE, "is a file, not a directory"),
    ("workdir_under_file", ["--workdir={tmp}/a_file/run"], USAGE, "cannot be made: {tmp}/a_file is a file"),
    ("checkpoints_is_file", ["--workdir={tmp}/ckfile"], USAGE, "checkpoints is a file where the run writes"),
    ("model_is_file", ["--workdir={tmp}/modelfile"], USAGE, "modelfile/model is a file where the run writes"),
    ("history_is_dir", ["--workdir={tmp}/histdir"], USAGE,
     "histdir/history.json is a directory where the run writes a file"),
    ("gan_epochs", ["--config=" + GAN, "--config.train.epochs=0"], USAGE, "train.epochs must be a positive integer"),
    ("gan_lr", ["--config=" + GAN, "--config.optimizer.generator.learning_rate=-2"], USAGE,
     "optimizer.generator: adam learning_rate must be a positive finite number"),
]


def expand(arg: str, tmp: pathlib.Path) -> str:
    for name, text in CONFIG_FILES.items():
        if f"{{file:{name}}}" in arg:
            path = tmp / f"{name}.py"
            path.write_text(text)
            arg = arg.replace(f"{{file:{name}}}", str(path))
    for name, body in DERIVED.items():
        if f"{{file:{name}}}" in arg:
            arg = arg.replace(f"{{file:{name}}}", derived_config(tmp, name, body))
    return arg.replace("{tmp}", str(tmp))


@pytest.fixture
def stage(tmp_path):
    """A tmp tree with a run's workdir holding a file, a plain file, and a workdir whose `checkpoints` is a file."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "ckfile").mkdir()
    (tmp_path / "ckfile" / "checkpoints").write_text("not a directory")
    (tmp_path / "modelfile").mkdir()
    (tmp_path / "modelfile" / "model").write_text("not a directory")
    (tmp_path / "histdir" / "history.json").mkdir(parents=True)
    return tmp_path


def run_in_process(train_module, capsys, tmp, argv):
    if not any(a.startswith("--workdir") for a in argv):
        argv.append(f"--workdir={tmp / 'run'}")
    if not any(a.startswith("--config=") for a in argv):
        argv.insert(0, f"--config={MLP}")
    status = train_module.main(["train.py", *argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("argv,status,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_mistake_is_one_line_before_anything_is_read_or_written(train_module, capsys, stage, argv, status,
                                                                      message):
    argv = [expand(a, stage) for a in argv]
    before = tree(stage)
    code, out, err = run_in_process(train_module, capsys, stage, argv)
    lines = err.splitlines()
    assert code == status, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expand(message, stage) in lines[0]
    assert "Traceback" not in err + out
    assert tree(stage) == before  # nothing made, nothing changed (the config files were written before)


def test_the_table_has_enough_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 60


def test_stop_signals_outside_training_are_one_line_with_the_shells_status(capsys):
    for signum, status in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        assert cli.main(lambda: os.kill(os.getpid(), signum)) == status
        err = capsys.readouterr().err
        assert err.splitlines() == [f"stopped by {signal.Signals(signum).name} outside training; checkpoints are "
                                    "written during training and kept: run the same command again to resume"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


@pytest.mark.parametrize("exc,status,line", [
    (OSError(28, "No space left on device", "/w/checkpoints/step_5/arrays"), FAILURE,
     "error: no space left on the device (/w/checkpoints/step_5/arrays): free some space and run the same "
     "command again (it resumes from the last checkpoint)"),
    (CheckpointWriteError("saving step 28 in /w/checkpoints failed: ValueError: RESOURCE_EXHAUSTED: Failed to "
                          "write 264448 bytes to file 16: No space left on device [os_error_code='28']"), FAILURE,
     "error: no space left on the device: free some space and run the same command again (it resumes from the "
     "last checkpoint); saving step 28 in /w/checkpoints failed: ValueError: RESOURCE_EXHAUSTED: Failed to write "
     "264448 bytes to file 16: No space left on device [os_error_code='28']"),
    (ValueError("RESOURCE_EXHAUSTED: Error writing \"a1/0.0\" in OCDBT database at /w/.tmp-model/x: No space "
                "left on device [os_error_code='28']"), FAILURE,  # orbax's own report: a failure, not a usage error
     "error: no space left on the device: free some space and run the same command again (it resumes from the "
     "last checkpoint); RESOURCE_EXHAUSTED: Error writing \"a1/0.0\" in OCDBT database at /w/.tmp-model/x: No "
     "space left on device [os_error_code='28']"),
    (CheckpointLockedError("/w/checkpoints is in use by another run (pid 7 on host h)"), FAILURE,
     "error: /w/checkpoints is in use by another run (pid 7 on host h)"),
    (PermissionError(13, "Permission denied", "/w/history.csv"), FAILURE,
     "error: cannot write (/w/history.csv): Permission denied; give a --workdir you can write to"),
    (RuntimeError("boom\nsecond line"), FAILURE,
     "error: unexpected RuntimeError: boom; second line (--debug shows the traceback)"),
    (KeyboardInterrupt(), 130, "stopped by SIGINT; run the same command again to resume"),
])
def test_run_failures_map_to_one_line_and_status(exc, status, line):
    assert cli.describe(exc) == (line, status)


def test_debug_adds_the_traceback(capsys):
    def body():
        raise ValueError("train.epochs must be a positive integer, got 0")

    assert cli.main(body, debug=True) == USAGE
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "error: train.epochs must be a positive integer, got 0"


def test_a_compile_cache_of_another_user_is_not_used(tmp_path, monkeypatch):
    import jax

    lines = []
    before = jax.config.jax_compilation_cache_dir
    (tmp_path / "xla").mkdir()
    monkeypatch.setattr(os, "getuid", lambda: os.stat(tmp_path).st_uid + 1)
    assert not cli.enable_compilation_cache(str(tmp_path / "xla"), lines.append)
    assert len(lines) == 1 and lines[0].startswith(f"warning: not using the compile cache {tmp_path / 'xla'}")
    assert jax.config.jax_compilation_cache_dir == before


# -- the same contract through the real script ------------------------------------------------------------------

def script(*args, env=None):
    env = {**os.environ, "JAXNN_COMPILATION_CACHE": "/tmp/jaxnn-test-xla", **(env or {})}
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args,status,message", [
    (["--config.train.epochs=three"], USAGE, "error: --config.train.epochs must be an integer, got 'three'"),
    (["--epochs=3"], USAGE, "error: unknown flag --epochs; did you mean --config.train.epochs=3?"),
    (["--config=nowhere.py"], USAGE, "error: config file nowhere.py does not exist"),
    (["--config.checkpoint.monitor=val_acc"], USAGE, "error: checkpoint.monitor 'val_acc' is never logged"),
])
def test_the_script_prints_one_line_and_exits_with_the_status(tmp_path, args, status, message):
    proc = script(f"--workdir={tmp_path / 'run'}", *args)
    assert proc.returncode == status
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(message), proc.stderr
    assert not (tmp_path / "run").exists()


def test_missing_dataset_files_are_one_line_with_the_install_hint(tmp_path):
    """No prepared copy, no Debian files, no network: TFDS's failure is one line (status 1), no workdir made."""
    (tmp_path / "tfds").mkdir()
    proc = script(f"--workdir={tmp_path / 'run'}", f"--config.dataset.data_dir={tmp_path / 'tfds'}",
                  env={"JAXNN_FASHION_MNIST_DIR": str(tmp_path / "none"), "HTTPS_PROXY": "http://127.0.0.1:9",
                       "HTTP_PROXY": "http://127.0.0.1:9"})
    assert proc.returncode == FAILURE, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("WARNING:absl:")]  # TFDS's own
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].startswith("error: fashion_mnist is not prepared in") and "apt-get install" in errors[0]
    assert not (tmp_path / "run").exists()


def test_debug_through_the_script_shows_the_traceback(tmp_path):
    proc = script(f"--workdir={tmp_path / 'run'}", "--config.train.batch_size=0", "--debug")
    assert proc.returncode == USAGE
    assert "Traceback" in proc.stderr
    assert proc.stderr.splitlines()[-1] == "error: train.batch_size must be a positive integer, got 0"


def start_training(workdir, *args):
    """train.py on a 2,000-image subset for many epochs; returns the process once its first epoch has ended."""
    env = {**os.environ, "JAXNN_COMPILATION_CACHE": "/tmp/jaxnn-test-xla"}
    proc = subprocess.Popen([sys.executable, "train.py", f"--workdir={workdir}", "--config.train.epochs=500",
                             "--config.dataset.train_split=train[:2000]", "--config.dataset.test_split=test[:500]",
                             "--config.model.hidden_units=(32,)", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stdout:
        if line.startswith("Epoch 2/"):
            return proc
    raise AssertionError(proc.stderr.read())


@pytest.mark.slow
@pytest.mark.parametrize("signals,status,name", [
    ((signal.SIGINT,), 130, "Ctrl-C (SIGINT)"),
    ((signal.SIGTERM, signal.SIGTERM), 143, "SIGTERM"),   # the second, 0.05 s later, must not cut the save short
])
def test_a_stop_during_training_saves_then_exits_with_the_shells_status(tmp_path, signals, status, name):
    proc = start_training(tmp_path / "run")
    for i, signum in enumerate(signals):
        time.sleep(0.05 * bool(i))
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Stopped by {name} at step "), err
    saved = lines[0].split("checkpoint saved to ")[1].split(";")[0]
    assert os.path.isdir(saved) and saved.endswith(lines[0].split("at step ")[1].split(" ")[0].zfill(9))


def test_a_workdir_you_cannot_write_is_refused_before_anything(train_module, capsys, stage, monkeypatch):
    """(Root may write anywhere, so `os.access` stands in for a directory of another user.)"""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: real_access(p, mode) and str(p) != str(stage / "run"))
    before = tree(stage)
    code, _, err = run_in_process(train_module, capsys, stage, [f"--workdir={stage / 'run' / 'sub'}"])
    assert code == USAGE and err.splitlines() == [
        f"error: workdir {stage / 'run' / 'sub'} is not writable: {stage / 'run'} is not writable by you; give a "
        "--workdir you can write to"]
    assert tree(stage) == before


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_older_checkpoints_stay(tmp_path):
    """A 600 kB tmpfs fills up at the second checkpoint (each is about 380 kB) (needs root's mount; skipped elsewhere)."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(small)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        proc = script(f"--workdir={small / 'run'}", "--config.train.epochs=5", "--quiet",
                      "--config.dataset.train_split=train[:2000]", "--config.dataset.test_split=test[:500]",
                      "--config.model.hidden_units=(32,)")
        lines = proc.stderr.splitlines()  # nothing else: no tracebacks of orbax's threads or late callbacks
        assert proc.returncode == FAILURE
        assert len(lines) == 1 and lines[0].startswith("error: no space left on the device: free some space"), \
            proc.stderr[-3000:]
        kept = sorted(name for name in os.listdir(small / "run" / "checkpoints") if not name.startswith(".tmp"))
        assert kept == ["LOCK", "step_000000014"]  # the older checkpoint stays whole (and the run's lock file)
    finally:
        subprocess.run(["umount", str(small)])
