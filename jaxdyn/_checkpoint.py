"""One checkpoint for every long run of jaxdyn (the QR engine of `jaxdyn.lyapunov`, `train`, ...).

A checkpoint file is a NumPy `.npz` archive with
- `config`: a string naming the settings of the run that wrote it (a run with other settings
  refuses to resume from it, naming the path);
- `state_0`, `state_1`, ...: the array leaves of the run's state PyTree (PRNG keys stored as their
  key data), put back into the structure of a template state on loading;
- any named NumPy arrays the run keeps beside its state (histories, losses).

Writes are atomic: the state is finished on the device first, written to a temporary file in the
same folder, flushed and synced, then renamed over the old checkpoint, so a crash leaves the old or
the new file, never half of one.
"""

import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_int


def _config_text(config: Any) -> str:
    return repr(sorted(config.items())) if isinstance(config, dict) else str(config)


def _path(path: Any) -> str:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a str or os.PathLike, got {type(path).__name__}.")
    return os.fspath(path)


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


class Checkpoint(eqx.Module):
    """Write a run's state to `path` every `every` blocks (renormalisation blocks for the Lyapunov
    engine, tracking blocks for `train`), and resume from it.

    With `resume=True` (default) an existing file at `path` is loaded and the run continues from
    it, also to extend a finished run to more steps: resumed and uninterrupted runs give the same
    numbers. The settings of the run must match those that wrote the file.

    **Arguments:**

    - `path`: the file (a `str` or `os.PathLike`).
    - `every`: how many blocks between writes (an int >= 1).
    - `resume`: load an existing file at `path` (`False` starts afresh and overwrites it).
    """

    path: str = eqx.field(static=True, converter=_path)
    every: int = eqx.field(static=True, default=10)
    resume: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_int(self.every, "every")
        if not isinstance(self.resume, bool):
            raise TypeError(f"`resume` must be a bool, got {type(self.resume).__name__}.")

    def save(self, state: Any, arrays: dict[str, Any], config: Any) -> None:
        """Write `state` (a PyTree) and the named `arrays` atomically, tagged with `config`."""
        state = jax.block_until_ready(state)
        leaves = jax.tree_util.tree_leaves(eqx.filter(state, eqx.is_array))
        payload = {f"state_{i}": np.asarray(jax.random.key_data(x) if _is_key(x) else x)
                   for i, x in enumerate(leaves)}
        clash = set(arrays) & ({"config"} | set(payload))
        if clash:
            raise ValueError(f"checkpoint array names {sorted(clash)} are reserved.")
        payload.update({name: np.asarray(value) for name, value in arrays.items()})
        tmp = f"{self.path}.{os.getpid()}.tmp.npz"
        with open(tmp, "wb") as f:
            np.savez(f, config=np.asarray(_config_text(config)), **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def load(self, like: Any, config: Any) -> tuple[Any, dict[str, np.ndarray]] | None:
        """`(state, arrays)` from the file (the state in the structure of `like`), or `None` when
        there is nothing to resume (`resume=False` or no file). A `ValueError` naming the path if
        the file was written by a run with other settings."""
        if not (self.resume and os.path.exists(self.path)):
            return None
        with np.load(self.path) as data:
            if str(data["config"]) != _config_text(config):
                raise ValueError(f"`checkpoint`: {self.path} was written by a run with other "
                                 "settings; remove it or pass resume=False.")
            dynamic, static = eqx.partition(like, eqx.is_array)
            leaves, treedef = jax.tree_util.tree_flatten(dynamic)
            loaded = []
            for i, template in enumerate(leaves):
                value = data[f"state_{i}"]
                if _is_key(template):
                    loaded.append(jax.random.wrap_key_data(jnp.asarray(value),
                                                           impl=jax.random.key_impl(template)))
                else:
                    loaded.append(jnp.asarray(value, dtype=template.dtype))
            arrays = {name: np.asarray(data[name]) for name in data.files
                      if name != "config" and not name.startswith("state_")}
        return eqx.combine(jax.tree_util.tree_unflatten(treedef, loaded), static), arrays
