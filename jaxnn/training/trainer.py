"""`Trainer`: a model, loss, optimizer and metrics bound into jitted pure steps, plus fit/evaluate/predict.

    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="rmsprop")
    state = trainer.init(jax.random.key(0), input_shape=(28, 28, 1))
    state, history = trainer.fit(state, x_train, y_train, epochs=5, validation_split=0.2)
    trainer.evaluate(state, x_test, y_test)        # {"loss": ..., "accuracy": ...}

The Trainer holds no arrays: everything that changes is in the `TrainState`
that goes in and comes out. Small datasets are put on the device once and
batches are cut inside the compiled step, so a step moves no data from the host.

`mesh` (default: one device) says where everything lives: every state leaf has
its `NamedSharding` from `init` on (FSDP over the `fsdp` axis above
`min_shard_bytes`, or `sharding_rules` on parameter paths; see
`jaxnn.distributed.state_shardings`), each device holds a full copy of the
split and gathers only its rows of each global batch (split over `data` and
`fsdp`), and metrics come back as global values.

Options: `policy` (mixed precision: "float32", "mixed_bfloat16",
"mixed_float16"), `accumulate_steps` (gradients of k micro-batches summed in
one step), `check_finite` (NaN/inf in the loss or a gradient stops the run
at that step, naming the first bad parameter, with the last good parameters)
and `per_example` (`PerExample` or its fields as a dict: per-example gradients
clipped and noised for DP-SGD, and/or their norm quantiles in the History).
Pass `ModelCheckpoint(dir)` to `fit` for checkpoints and exact resume; a
SIGTERM during `fit` saves a checkpoint and raises `TrainingInterrupted`.
The compiled programs (one set per state layout) are built in `training.programs`;
`fit(steps_per_dispatch=K)` runs K steps per compiled call (`training.dispatch`);
`init` with several keys makes an ensemble trained in one step (`training.members`);
`fit(state, source)` streams batches from disk (`training.feeding`).
Layers built with `trainable=False` get zero updates (an `optax.multi_transform`
over the optimizer). A loss given as a function gets targets shaped (batch,)
against outputs (batch, 1) as (batch, 1), as the built-in losses align them.
"""
from __future__ import annotations

import dataclasses
import functools
import weakref
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jaxnn import distributed, losses, metrics as metrics_lib, optimizers, validation
from jaxnn.data.splits import split_sizes
from jaxnn.layers.base import Layer
from jaxnn.layers.shapes import ShapeError, as_shape, is_shape
from jaxnn.models.children import has_frozen, trainable_mask
from jaxnn.multi_output import MultiOutputLoss
from jaxnn.training import feeding, programs
from jaxnn.training.callbacks import ProgressLogger
from jaxnn.training.dispatch import AUTO, ChunkSizes, check_steps_per_dispatch
from jaxnn.training.guard import fresh_guard
from jaxnn.training.history import History
from jaxnn.training.inputs import as_data, check_inputs, check_labels
from jaxnn.training.loop import Callback, Run, StepsInFlight, fit_loop
from jaxnn.training.members import (as_member_keys, broadcast, each_member, member_count, member_spec,
                                    members_spec, set_hyperparams, stack)
from jaxnn.training.per_example import (HISTOGRAM_KEY, PerExample, as_per_example, refuse_model_state,
                                        zero_histogram)
from jaxnn.training.precision import LossScale, get_policy
from jaxnn.training.state import TrainState
from jaxnn.training.steps import make_eval_step, make_train_step, results

# Default steps between fetches of the running metrics (progress, TensorBoard, NaN checks).
LOG_EVERY_STEPS = 50


def _num_examples(tree) -> int:
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in jax.tree_util.tree_leaves(tree)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"inputs and targets must share their first (example) dimension, got sizes {sorted(map(str, sizes))}")
    n = sizes.pop()
    if n == 0:
        raise ValueError("the inputs hold no examples (their first dimension is 0)")
    return n



def _as_key(key):
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def _aligned(loss: Callable) -> Callable:
    """`loss` called with targets (batch,) as (batch, 1) when the outputs are (batch, 1), as built-in losses do,
    so that a custom loss never broadcasts them to (batch, batch)."""
    @functools.wraps(loss)
    def aligned(targets, preds):
        if (hasattr(targets, "ndim") and hasattr(preds, "ndim") and targets.ndim == preds.ndim - 1
                and preds.shape[-1] == 1):
            targets = targets[..., None]
        return loss(targets, preds)

    return aligned


def _check_live(state) -> None:
    """Refuse a state whose arrays were donated to an earlier `fit` or `train_step` (and so deleted)."""
    if any(isinstance(a, jax.Array) and a.is_deleted() for a in jax.tree_util.tree_leaves(state)):
        raise ValueError("this TrainState was donated to an earlier fit (or train_step) and its arrays are deleted: "
                         "fit returns the new state, so write `state, history = trainer.fit(state, ...)`")


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """Binds `model`, `loss`, `optimizer` and `metrics` (names or objects) into compiled steps."""

    model: Layer
    loss: str | Callable = "sparse_categorical_crossentropy"
    optimizer: str | optax.GradientTransformation = "rmsprop"
    metrics: Sequence | None = None  # None: ("accuracy",) under a built-in cross-entropy loss, else none (Keras: none)
    policy: str = "float32"
    accumulate_steps: int = 1
    check_finite: bool = False
    per_example: PerExample | dict | None = None
    mesh: Mesh | None = None  # None: the first device alone
    sharding_rules: Any = ()  # {path regex: PartitionSpec entries}, e.g. {"dense_1/kernel": (None, "fsdp")}
    min_shard_bytes: int = distributed.MIN_SHARD_BYTES

    def __post_init__(self):
        if not isinstance(self.model, Layer):
            raise ValueError(f"model must be a jaxnn layer, got {type(self.model).__name__}")
        if self.mesh is None:
            object.__setattr__(self, "mesh", distributed.make_mesh(distributed.MESH_DEFAULTS))
        validation.require("mesh", self.mesh, isinstance(self.mesh, Mesh),
                           "a jax.sharding.Mesh (distributed.make_mesh)")
        validation.integer("min_shard_bytes", self.min_shard_bytes, 0)
        if self.metrics is None:
            object.__setattr__(self, "metrics", ("accuracy",) if losses.is_cross_entropy(losses.get(self.loss)) else ())
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "policy", get_policy(self.policy))
        validation.positive_int("accumulate_steps", self.accumulate_steps)
        object.__setattr__(self, "per_example", as_per_example(self.per_example))
        self.loss_fn, self.tx, self.metric_objects  # resolve names now: a bad one fails here

    @functools.cached_property
    def loss_fn(self) -> Callable:
        fn = losses.get(self.loss)
        return fn if isinstance(self.loss, str) or hasattr(fn, "output_metrics") else _aligned(fn)

    @functools.cached_property
    def tx(self) -> optax.GradientTransformation:
        tx = optimizers.get(self.optimizer)
        if not has_frozen(self.model):
            return tx
        labels = lambda params: jax.tree_util.tree_map(lambda keep: "trainable" if keep else "frozen",
                                                       trainable_mask(self.model, params))
        return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)

    @functools.cached_property
    def metric_objects(self) -> tuple:
        """The loss's own metrics (each output's loss, for a multi-output loss), then `metrics`."""
        own = getattr(self.loss_fn, "output_metrics", tuple)()
        by_name = [m for m in self.metrics if isinstance(m, str)]
        if own and by_name:  # a registry metric reads one array, not a dict or tuple of outputs
            raise ValueError(f"metric {by_name[0]!r} does not say which output it measures: with a multi-output "
                             f"loss give OutputMetric(output, {by_name[0]!r})")
        objects = (*own, *(metrics_lib.get(m) for m in self.metrics))
        names = [m.name for m in objects]
        repeated = sorted({n for n in names if n == "loss" or names.count(n) > 1})
        if repeated:
            raise ValueError(f"two metrics would be logged as {repeated[0]!r}; give one of them another name")
        return objects

    # -- pure steps ---------------------------------------------------------------
    def _make_train_step(self):
        return make_train_step(self.model, self.loss_fn, self.tx, self.metric_objects, policy=self.policy,
                               accumulate_steps=self.accumulate_steps, check_finite=self.check_finite,
                               per_example=self.per_example)

    def _make_eval_step(self):
        return make_eval_step(self.model, self.loss_fn, self.metric_objects, policy=self.policy)

    @functools.cached_property
    def train_step(self) -> Callable:
        """Jitted `(state, batch) -> (state, stats)`; the input state is donated."""
        return jax.jit(self._make_train_step(), donate_argnums=0)

    @functools.cached_property
    def eval_step(self) -> Callable:
        """Jitted `(params, model_state, batch) -> stats`, inference mode."""
        return jax.jit(self._make_eval_step())

    # -- placement ----------------------------------------------------------------
    @functools.cached_property
    def batch_sharding(self):
        """Batches: the leading axis split over every mesh axis (data and fsdp)."""
        return distributed.batch_sharding(self.mesh)

    @functools.cached_property
    def _replicated(self):
        return distributed.replicated(self.mesh)

    def state_shardings(self, state):
        """A NamedSharding for every leaf of `state` (a TrainState, or its `jax.eval_shape`) on this mesh."""
        return distributed.state_shardings(state, self.mesh, self.sharding_rules, self.min_shard_bytes)

    def lower_train_step(self, state, batch) -> jax.stages.Lowered:
        """The train step lowered for `state` (e.g. `abstract_state`) and a global `batch` of
        ShapeDtypeStructs, laid out as `fit` lays them out: for `.compile()`, its memory and cost analyses.
        An ensemble's state (a member axis) takes a batch per member (`batch` with a leading member axis),
        as each member reads its own rows in fit."""
        shardings = self.state_shardings(state)
        step, batch_sharding = self._make_train_step(), self.batch_sharding
        if member_count(state) is not None:  # on one device (an ensemble's mesh)
            step, batch_sharding = jax.vmap(step), self._replicated
        batch = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=batch_sharding),
                                       batch)
        step = jax.jit(step, donate_argnums=0, in_shardings=(shardings, batch_sharding),
                       out_shardings=(shardings, self._replicated))
        return step.lower(state, batch)

    def _on_mesh(self, tree):
        """Host arrays as global arrays with a full copy on every device (every process gives its full copy).
        Arrays already placed so (e.g. by an earlier call) are used as they are: no copy."""
        def place(a):
            if isinstance(a, jax.Array) and a.sharding.is_equivalent_to(self._replicated, a.ndim):
                return a
            a = np.asarray(a)
            return jax.make_array_from_process_local_data(
                self._replicated, a.astype(jax.dtypes.canonicalize_dtype(a.dtype), copy=False))

        return jax.tree_util.tree_map(place, tree)

    @functools.cached_property
    def _compiled_cache(self) -> dict:
        return {}

    def _layout_key(self, state, shardings=None) -> tuple:
        """What a compiled program depends on besides shapes: the members and every leaf's sharding."""
        shardings = self.state_shardings(state) if shardings is None else shardings
        return (member_count(state), jax.tree_util.tree_structure(shardings), *jax.tree_util.tree_leaves(shardings))

    def _chunk_sizes(self, steps_per_dispatch, state, batch_size: int, steps_per_epoch: int) -> ChunkSizes:
        """`ChunkSizes` for a fit; "auto"'s choice is kept for later fits of the same layout and batches."""
        if steps_per_dispatch != AUTO:
            return ChunkSizes(steps_per_dispatch, steps_per_epoch)
        key = ("auto", batch_size, steps_per_epoch, *self._layout_key(state))
        return self._compiled_cache.setdefault(key, ChunkSizes(AUTO, steps_per_epoch))

    def _compiled(self, kind: str, state, build: Callable | None = None) -> Callable:
        """The jitted `kind` ("fit", "eval", "predict") function for states laid out like `state` (one per
        layout; vmapped over the members of an ensemble); its last argument, the batch size, is static. Another
        `kind` is made by `build(shardings)`."""
        shardings, count = self.state_shardings(state), member_count(state)
        key = (kind, *self._layout_key(state, shardings))
        if key not in self._compiled_cache:
            self._compiled_cache[key] = build(shardings) if build else programs.BUILDERS[kind](self, shardings, count)
        return self._compiled_cache[key]

    def _rows(self, batch):
        """`batch` constrained to the batch sharding: each device computes only its rows."""
        return jax.lax.with_sharding_constraint(batch, self.batch_sharding)

    # -- set-up and checks --------------------------------------------------------
    def _init_fn(self, input_shape) -> Callable:
        full_shape = jax.tree_util.tree_map(lambda s: (None, *as_shape(s)), input_shape, is_leaf=is_shape)

        def init(key):
            init_key, state_key = jax.random.split(key)
            _, params, model_state = self.model.init(init_key, full_shape)
            return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                              opt_state=self.tx.init(params), key=state_key,
                              loss_scale=LossScale.create() if self.policy.loss_scaling else None)

        return init

    def abstract_state(self, input_shape, members: int | None = None) -> TrainState:
        """The TrainState `init` would make (with `members`: an ensemble's, as from that many keys), as
        `jax.ShapeDtypeStruct`s carrying their shardings; nothing computed."""
        _, abstract = self._compiled_init(input_shape)
        if members is not None:
            abstract = members_spec(abstract, members)
        return jax.tree_util.tree_map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                      abstract, self.state_shardings(abstract))

    def init(self, key, input_shape, *, hyperparams: dict | None = None) -> TrainState:
        """A fresh TrainState for inputs of `input_shape` (without the batch dimension), each leaf placed
        on the mesh by `state_shardings` as it is made.

        With M keys (a sequence of ints or a key array of shape (M,)), an ensemble: every leaf gets a
        leading member axis (`training.members`), and `hyperparams` ({name: M values}, e.g.
        `{"learning_rate": [1e-3, 3e-3]}`) sets the optimizer's injected hyperparameters per member.
        """
        keys = as_member_keys(key)
        if keys is None and hyperparams:
            raise ValueError("hyperparams are set per member: give init one key per member (a sequence of keys)")
        if keys is not None and self.mesh.size > 1:
            raise ValueError(f"an ensemble (init with {len(keys)} keys) trains on one device; this Trainer's "
                             f"mesh has {self.mesh.size}")
        one_init, abstract = self._compiled_init(input_shape)
        if self.per_example is not None:
            refuse_model_state(abstract.model_state)
        if keys is None:
            return one_init(_as_key(key))
        # Members one by one with the one-model program (the values vmap would give; its compile is shared),
        # then stacked: an ensemble's init compiles only the small stacking program.
        stacked = stack([one_init(k) for k in keys])
        shardings = self.state_shardings(members_spec(abstract, len(keys)))
        state = jax.device_put(stacked, shardings)
        if hyperparams:
            state = state.replace(opt_state=set_hyperparams(state.opt_state, hyperparams, len(keys)))
        return state

    def _compiled_init(self, input_shape) -> tuple[Callable, TrainState]:
        """The jitted one-model init for `input_shape` and its abstract state (traced once per Trainer and shape;
        the program compiles at its first call)."""
        shape_key = ("init", str(jax.tree_util.tree_map(lambda s: tuple(as_shape(s)), input_shape, is_leaf=is_shape)))
        if shape_key not in self._compiled_cache:
            init = self._init_fn(input_shape)
            abstract = jax.eval_shape(init, jax.random.key(0))
            self._compiled_cache[shape_key] = (jax.jit(init, out_shardings=self.state_shardings(abstract)), abstract)
        return self._compiled_cache[shape_key]

    def output_spec(self, state: TrainState, x) -> jax.ShapeDtypeStruct:
        """Shape of the model's output for inputs like `x`; a mismatch raises naming the layer."""
        if member_count(state) is not None:
            state = member_spec(state)
        spec = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((1, *np.shape(a)[1:]), jnp.float32), x)
        try:
            return jax.eval_shape(lambda p, s, xb: self.model.apply(p, xb, state=s)[0],
                                  state.params, state.model_state, spec)
        except ShapeError as e:
            shapes = jax.tree_util.tree_map(lambda a: tuple(np.shape(a)[1:]), x)
            raise ShapeError(f"inputs of shape {shapes} (per example) do not fit the model: {e}") from None

    def check_data(self, state: TrainState, x, y) -> int:
        """Validate inputs and targets against the model before any step; returns the example count.

        Device arrays (`jax.Array`s, immutable) that passed once for parameters shaped like `state`'s pass
        again without a look: a fit on placed data repeats no full pass over the split.
        """
        leaves = jax.tree_util.tree_leaves((x, y))
        known = all(isinstance(a, jax.Array) for a in leaves)
        if known:
            key = ("checked", tuple(map(id, leaves)), jax.tree_util.tree_structure((x, y)),
                   jax.tree_util.tree_structure(state.params),
                   *((a.shape, a.dtype) for a in jax.tree_util.tree_leaves(state.params)))
            refs, n = self._compiled_cache.get(key, ((), None))
            if len(refs) == len(leaves) and all(ref() is a for ref, a in zip(refs, leaves)):
                return n
        n = self._check_data(state, x, y)
        if known:
            cache = self._compiled_cache
            for old in [k for k, v in cache.items() if k[0] == "checked" and any(r() is None for r in v[0])]:
                del cache[old]  # arrays since freed
            cache[key] = (tuple(weakref.ref(a) for a in leaves), n)
        return n

    def _check_data(self, state: TrainState, x, y) -> int:
        n = _num_examples((x, y))
        check_inputs(self.model, x)
        out = self.output_spec(state, x)
        if not isinstance(out, jax.ShapeDtypeStruct):  # several outputs: the loss checks targets per output
            if not isinstance(self.loss_fn, MultiOutputLoss):
                raise ValueError(f"the model has {len(jax.tree_util.tree_leaves(out))} outputs, and loss "
                                 f"{getattr(self.loss_fn, '__name__', self.loss)!r} takes one: give "
                                 "loss=MultiOutputLoss(...) with one loss per output (jaxnn.multi_output)")
            spec = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((1, *np.shape(a)[1:]), np.asarray(a).dtype), y)
            try:
                jax.eval_shape(self.loss_fn, spec, out)
            except (ValueError, TypeError) as e:
                raise ValueError(f"targets do not fit the model's outputs under this loss: {e}") from None
            for k, loss_fn in self.loss_fn.losses.items():
                if loss_fn is not None:
                    self._check_labels(np.asarray(y[k]), out[k], loss_fn)
            return n
        y = np.asarray(y)
        target_spec = jax.ShapeDtypeStruct((out.shape[0], *y.shape[1:]), y.dtype)
        try:
            per_example = jax.eval_shape(self.loss_fn, target_spec, out)
        except (ValueError, TypeError) as e:
            raise ValueError(f"targets of shape {y.shape[1:]} (per example) do not fit the model's "
                             f"output {out.shape[1:]} under this loss: {e}") from None
        if not per_example.shape or per_example.shape[0] != out.shape[0]:
            raise ValueError(f"the loss must return one value per example, shape (batch,), got {per_example.shape} "
                             f"for a batch of {out.shape[0]}")
        self._check_labels(y, out, self.loss_fn)
        return n

    @staticmethod
    def _check_labels(y: np.ndarray, out: jax.ShapeDtypeStruct, loss_fn) -> None:
        """Targets `y` of one output `out`: whole class ids in range for a sparse loss (the built-in one, with
        labels shaped (batch,) or (batch, 1), or any loss given one label per prediction of several classes)."""
        sparse = losses.is_sparse_categorical(loss_fn) or (out.shape[-1] > 1 and y.ndim == len(out.shape) - 1)
        check_labels(y, sparse=sparse, num_classes=out.shape[-1])

    # -- loops --------------------------------------------------------------------
    def _zero_stats(self, state, data, batch_size, train=False):
        """An epoch's starting statistics (zeros, on the devices); made once per layout, data and batch shape
        (they are never donated, so one copy serves every epoch and fit)."""
        spec = lambda a: (np.shape(a)[1:], str(np.asarray(a).dtype) if not hasattr(a, "dtype") else str(a.dtype))
        key = ("zeros", train, batch_size, str(jax.tree_util.tree_map(spec, data)), *self._layout_key(state))
        if key not in self._compiled_cache:
            self._compiled_cache[key] = self._make_zero_stats(state, data, batch_size, train)
        return self._compiled_cache[key]

    def _make_zero_stats(self, state, data, batch_size, train):
        eval_step = self._make_eval_step()
        params, model_state = state.params, state.model_state
        if member_count(state) is not None:
            params, model_state = member_spec((params, model_state))
        shapes = jax.eval_shape(lambda p, s, d: eval_step(p, s, programs.slice_batch(d, 0, batch_size)),
                                params, model_state, data)
        zeros = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)  # host: no program per shape
        if train and self.per_example is not None and self.per_example.quantiles:
            zeros[HISTOGRAM_KEY] = zero_histogram()
        if (count := member_count(state)) is not None:
            zeros = broadcast(zeros, count)
        # Placed like the step's outputs, so that the first step and the later ones compile to one program.
        return jax.device_put(zeros, self._replicated)

    def _padded(self, x, y, batch_size):
        """Host arrays padded to whole batches, with weights 1 for real examples and 0 for padding."""
        n = _num_examples((x, y) if y is not None else x)
        pad = -n % batch_size
        grow = lambda a: np.concatenate([np.asarray(a), np.zeros((pad, *np.shape(a)[1:]), np.asarray(a).dtype)])
        data = {"inputs": jax.tree_util.tree_map(grow, x)}
        if y is not None:
            data["targets"] = jax.tree_util.tree_map(grow, y)
            data["weights"] = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
        return self._on_mesh(data), n, (n + pad) // batch_size

    def _evaluate_padded(self, state, data, num_batches, batch_size) -> dict[str, float] | list[dict]:
        totals = self._zero_stats(state, data, batch_size)
        eval_chunk, in_flight = self._compiled("eval", state), StepsInFlight()
        for start in range(0, num_batches, programs.EVAL_BATCHES_PER_DISPATCH):
            batches = min(programs.EVAL_BATCHES_PER_DISPATCH, num_batches - start)
            totals = eval_chunk(state.params, state.model_state, totals, data, start, batches, batch_size)
            in_flight.push(totals)
        totals = jax.device_get(totals)
        if (count := member_count(state)) is not None:
            return each_member(functools.partial(results, self.metric_objects), totals, count)
        return results(self.metric_objects, totals)

    def _batch_size(self, batch_size, field: str = "batch_size") -> int:
        batch_size = validation.positive_int(field, batch_size)
        distributed.check_global_batch(self.mesh, batch_size, field)
        return batch_size

    def evaluate(self, state: TrainState, x, y=None, *, batch_size: int = 32) -> dict[str, float] | list[dict]:
        """Loss and metrics over all of (x, y), or of a streaming source `x` (`jaxnn.training.feeding`), each
        example counted exactly once (padding weighs 0); for an ensemble, one dict per member."""
        batch_size = self._batch_size(batch_size)
        _check_live(state)
        x, y = as_data(x), as_data(y)
        if feeding.is_source(x):
            return feeding.evaluate(self, state, x, y, batch_size)
        self.check_data(state, x, y)
        data, _, num_batches = self._padded(x, y, batch_size)
        return self._evaluate_padded(state, data, num_batches, batch_size)

    def predict(self, state: TrainState, x, *, batch_size: int = 32) -> np.ndarray:
        """Model outputs for every example of `x` (probabilities if the model ends in softmax); for an
        ensemble, with a leading member axis (their mean over it is the ensemble's prediction)."""
        batch_size = self._batch_size(batch_size)
        _check_live(state)
        x = as_data(x)
        check_inputs(self.model, x)
        self.output_spec(state, x)
        data, n, num_batches = self._padded(x, None, batch_size)
        predict_chunk, in_flight, outs = self._compiled("predict", state), StepsInFlight(), []
        for i in range(num_batches):
            outs.append(predict_chunk(state.params, state.model_state, data["inputs"], i, batch_size))
            in_flight.push(outs[-1])
        axis = 0 if member_count(state) is None else 1
        return jax.tree_util.tree_map(
            lambda *chunks: np.asarray(jax.lax.slice_in_dim(jnp.concatenate(chunks, axis), 0, n, axis=axis)), *outs)

    def predict_classes(self, state: TrainState, x, *, batch_size: int = 32) -> np.ndarray:
        """Predicted class ids: argmax over classes, or p > 0.5 for a single sigmoid output (an ensemble:
        of the mean of its members' outputs)."""
        probs = self.predict(state, x, batch_size=batch_size)
        if member_count(state) is not None:
            probs = probs.mean(axis=0)  # the ensemble's
        if probs.shape[-1] == 1:
            return (probs[..., 0] > 0.5).astype(np.int32)
        return probs.argmax(axis=-1).astype(np.int32)

    def fit(self, state: TrainState, x, y=None, *, epochs: int = 1, batch_size: int = 32,
            validation_data: tuple | None = None, validation_split: float = 0.0, shuffle: bool = True,
            callbacks: Sequence[Callback] = (), verbose: int = 1, initial_epoch: int = 0,
            log_every_steps: int = LOG_EVERY_STEPS, class_weight: dict | None = None, sample_weight=None,
            watchdog_s: float | None = None, steps_per_dispatch: int | str = AUTO):
        """Train for `epochs`; returns `(state, History)` with Keras's keys per epoch (and `lr`).

        Each epoch is shuffled from the state's key and the epoch number, so the
        same seed gives the same History. The last partial batch of an epoch is
        dropped (one compiled step shape); validation counts every example.
        The running metrics are fetched from the device every `log_every_steps`
        steps when a callback (the progress bar, TensorBoard) has `on_log`, never in between. With `watchdog_s`, a
        process whose steps stop finishing for that long (its peers stopped)
        ends with one line (`distributed.StepWatchdog`).
        `sample_weight` (one weight per example) and `class_weight` ({class: weight})
        weight the training examples, multiplied together: the loss and the
        metrics of each batch are weighted means (sum(w l) / sum(w)).
        `x` and `y` may be arrays already on the devices (`jax.device_put`), used without a copy,
        or `x` a streaming source (`fit(state, source)`, see `jaxnn.training.feeding`): batches
        are read and placed on the devices in the background.
        `steps_per_dispatch` train steps run as one compiled call (see `training.dispatch`;
        "auto": measured), the same History as one step per call; callbacks, logs and the
        SIGTERM check come between calls.
        The input `state` is donated: use the returned one.
        """
        _check_live(state)
        if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
            raise ValueError(f"callbacks must be a list of callbacks, got {type(callbacks).__name__}: write "
                             f"callbacks=[{type(callbacks).__name__}(...)]")
        epochs = validation.positive_int("epochs", epochs)
        batch_size = self._batch_size(batch_size)
        log_every_steps = validation.positive_int("log_every_steps", log_every_steps)
        steps_per_dispatch = check_steps_per_dispatch(steps_per_dispatch)
        if batch_size % self.accumulate_steps:
            raise ValueError(f"batch_size {batch_size} must be a multiple of accumulate_steps {self.accumulate_steps}")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
        if validation_split and validation_data is not None:
            raise ValueError("give validation_data or validation_split, not both")
        loop_options = dict(epochs=epochs, shuffle=shuffle, callbacks=callbacks, verbose=verbose,
                            initial_epoch=initial_epoch, log_every_steps=log_every_steps, watchdog_s=watchdog_s,
                            steps_per_dispatch=steps_per_dispatch)
        if feeding.is_source(x):
            return feeding.fit(self, state, x, y, batch_size=batch_size, validation_data=validation_data,
                               validation_split=validation_split, class_weight=class_weight,
                               sample_weight=sample_weight, **loop_options)
        x, y = as_data(x), as_data(y)
        n = self.check_data(state, x, y)
        weights = _example_weights(y, n, sample_weight, class_weight)
        if validation_split:
            cut, _ = split_sizes(n, validation_split)
            take = lambda lo, hi: jax.tree_util.tree_map(lambda a: a[lo:hi], (x, y))
            (x, y), validation_data = take(0, cut), take(cut, n)
            weights = None if weights is None else weights[:cut]
            n = cut
        if n < batch_size:
            raise ValueError(f"batch_size {batch_size} is larger than the {n} training examples")
        if validation_data is not None:
            validation_data = tuple(as_data(a) for a in validation_data)
            self.check_data(state, *validation_data)
            val_data, _, val_batches = self._padded(*validation_data, batch_size)

        data = {"inputs": x, "targets": y}
        data = self._on_mesh(data if weights is None else {**data, "weights": weights})
        fit_step = self._compiled("fit", state)

        def step(state, totals, guard, perm, index, steps, active):
            return fit_step(state, totals, guard, data, perm, active, index, steps, batch_size)

        def validate(state):
            return self._evaluate_padded(state, val_data, val_batches, batch_size)

        loop_options["steps_per_dispatch"] = self._chunk_sizes(steps_per_dispatch, state, batch_size, n // batch_size)
        return self._fit_run(state, step, lambda state: self._zero_stats(state, data, batch_size, True),
                             validate if validation_data is not None else None, n // batch_size, num_examples=n,
                             **loop_options)

    def _fit_run(self, state, step, zero_totals, validate, steps_per_epoch, *, num_examples, epochs, shuffle,
                 callbacks, verbose, initial_epoch, log_every_steps, watchdog_s, steps_per_dispatch):
        """`fit_loop` over `step(state, totals, guard, perm, index, count, active)` with the callbacks, from
        `state`; returns (state, History). `active` is None, or an ensemble's mask of members still training."""
        bad = [cb for cb in callbacks if not isinstance(cb, Callback)]
        if bad:
            raise ValueError(f"callbacks must subclass jaxnn.callbacks.Callback (as Keras's subclass "
                             f"keras.callbacks.Callback), got {type(bad[0]).__name__}")
        callbacks = sorted(([ProgressLogger()] if verbose else []) + list(callbacks), key=lambda cb: cb.order)
        count = member_count(state)
        guard = {}
        if self.check_finite:
            guard = fresh_guard(state.params if count is None else member_spec(state.params))
            guard = jax.device_put(guard if count is None else broadcast(guard, count), self._replicated)
        run = Run(state=state, history=History(members=None if count is None else [History() for _ in range(count)]),
                  epochs=epochs, steps_per_epoch=steps_per_epoch, epoch=initial_epoch,
                  step=int(np.max(state.step)), totals=zero_totals(state), guard=guard, callbacks=callbacks,
                  log_keys=self._log_keys(state, validate is not None),
                  members=count, active=None if count is None else np.ones(count, bool))

        placed = {}  # the members' mask on the device, per value: it changes at epoch ends at most

        def loop_step(state, totals, guard, perm, index, steps):  # with the members still training
            if count is None or run.active.all():  # no mask: a masked update selects over every array
                return step(state, totals, guard, perm, index, steps, None)
            mask = run.active.tobytes()
            if mask not in placed:
                placed.clear()
                placed[mask] = jnp.asarray(run.active)
            return step(state, totals, guard, perm, index, steps, placed[mask])

        fit_loop(run, loop_step, zero_totals, metrics=self.metric_objects, validate=validate, num_examples=num_examples,
                 shuffle=shuffle, log_every_steps=log_every_steps, watchdog_s=watchdog_s,
                 steps_per_dispatch=steps_per_dispatch)
        return run.state, run.history

    def _log_keys(self, state, validation: bool) -> tuple[str, ...]:
        keys = ("loss", *(m.name for m in self.metric_objects))
        lr = ("lr",) if optimizers.learning_rate(state.opt_state) is not None else ()
        norms = self.per_example.log_keys if self.per_example is not None else ()
        return keys + (tuple(f"val_{k}" for k in keys) if validation else ()) + norms + lr


def _example_weights(y, n: int, sample_weight, class_weight) -> np.ndarray | None:
    """Per-example training weights (n,) from `sample_weight` and `class_weight`, or None without either."""
    if sample_weight is None and class_weight is None:
        return None
    weights = np.ones(n, np.float32)
    if sample_weight is not None:
        given = np.asarray(sample_weight, np.float32)
        if given.shape != (n,) or not np.all(np.isfinite(given)) or np.any(given < 0):
            raise ValueError(f"sample_weight must hold one finite weight >= 0 per example, shape ({n},), got "
                             f"{'shape ' + str(given.shape) if given.shape != (n,) else 'a negative or non-finite one'}")
        weights *= given
    if class_weight is not None:
        if not isinstance(class_weight, dict) or isinstance(y, (dict, tuple, list)):
            raise ValueError(f"class_weight must be a dict {{class id: weight}} for one array of targets, got "
                             f"{type(class_weight).__name__} for targets of type {type(y).__name__} (with several "
                             f"outputs, give sample_weight)")
        weights *= np.asarray(losses.class_weights(np.asarray(y), class_weight))
    if not weights.sum() > 0:
        raise ValueError("sample_weight and class_weight give every example weight 0: nothing would be learned")
    return weights
