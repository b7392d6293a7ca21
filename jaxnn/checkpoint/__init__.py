"""Checkpoints with orbax: sharded (every process writes its shards), asynchronous, fingerprinted on the devices,
sealed metadata, restored onto the current run's shardings, newest-valid fallback, one writer per directory.

    manager = CheckpointManager(directory, keep=3)      # step_<n>/{arrays/, meta.json} and LOCK
    manager.save(step, tree, meta)                      # returns once the arrays are on the host
    manager.restore(lambda entry: target, validate)     # newest checkpoint that verifies
    save_tree(path, tree); load_tree(path, like)        # one checkpoint at a path
"""
from jaxnn.checkpoint.fingerprint import fingerprint, summarize
from jaxnn.checkpoint.lock import CheckpointLockedError
from jaxnn.checkpoint.manager import CheckpointManager
from jaxnn.checkpoint.single import load_tree, save_tree
from jaxnn.checkpoint.store import (FORMAT_VERSION, META_FILE, CheckpointWriteError, CorruptCheckpointError,
                                    NonFiniteStateError, read_meta, restore, saved_spec, target, targets)
from jaxnn.checkpoint.trees import (CheckpointError, CheckpointMismatchError, check_structure, flatten, is_key,
                                    leaves, path_str, tree_spec, unflatten)
