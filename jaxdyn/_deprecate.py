"""Renames with one release of grace: an old keyword or public name keeps working, with a
`DeprecationWarning` that names the new one (removed in the release after next)."""

import functools
import warnings
from collections.abc import Callable
from typing import Any

REMOVED_IN = "0.3"


def renamed_kwargs(**renames: str) -> Callable:
    """Decorator: accept each old keyword `old=new` as `new`, warning once per call.

    Passing both spellings is a `TypeError`. Apply it outermost (above `jit` wrappers), so the
    rename happens before tracing:

    ```python
    @renamed_kwargs(steps="n_steps", num_iters="n_steps")
    def run(x, *, n_steps: int = 100): ...
    ```
    """

    def decorate(fn: Callable) -> Callable:
        name = getattr(fn, "__qualname__", "function")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"`{name}` got both `{old}` (deprecated) and `{new}`: "
                                        f"pass `{new}` only.")
                    warnings.warn(f"`{name}({old}=...)` is deprecated: use `{new}=...` (the old "
                                  f"name goes in jaxdyn {REMOVED_IN}).", DeprecationWarning,
                                  stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        wrapper.__deprecated_kwargs__ = dict(renames)
        return wrapper

    return decorate


def deprecated_names(module_name: str, namespace: dict, renames: dict[str, str]) -> Callable:
    """A module `__getattr__` that serves each old public name `old -> new` with a warning.

    In a package `__init__.py`:
    `__getattr__ = deprecated_names(__name__, globals(), {"FTLEField": "FTLEResult"})`.
    """

    def __getattr__(name: str) -> Any:
        if name in renames:
            new = renames[name]
            warnings.warn(f"`{module_name}.{name}` is deprecated: use `{module_name}.{new}` (the "
                          f"old name goes in jaxdyn {REMOVED_IN}).", DeprecationWarning, stacklevel=2)
            return namespace[new]
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__


def strategy(value: Any, *, name: str, base: type, default: Any, old_strings: dict[str, Any],
             where: str, stacklevel: int = 4) -> Any:
    """`value` as a strategy object (an instance of the abstract class `base`).

    `None` gives `default` (an instance, or `None` where "choose automatically" is decided later);
    an instance of `base` is returned as it is; one of the `old_strings` (`name -> class or
    instance`) still works for one release with a `DeprecationWarning` naming the object to pass
    (`where` is the package the user imports it from, e.g. `"jaxdyn.curvature"`). Any other string
    is a `ValueError`, any other type a `TypeError`, both naming the argument `name`.
    """
    if value is None:
        return default
    if isinstance(value, base):
        return value
    choices = ", ".join(f"`{_spelled(obj)}`" for obj in dict.fromkeys(old_strings.values()))
    if isinstance(value, str):
        if value not in old_strings:
            raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")
        obj = old_strings[value]
        obj = obj() if isinstance(obj, type) else obj
        warnings.warn(f"`{name}={value!r}` is deprecated: pass `{name}={_spelled(obj)}` "
                      f"({where}.{type(obj).__name__}; the string goes in jaxdyn {REMOVED_IN}).",
                      DeprecationWarning, stacklevel=stacklevel)
        return obj
    raise TypeError(f"`{name}` must be a {where}.{base.__name__} ({choices}), got "
                    f"{type(value).__name__}.")


def _spelled(obj: Any) -> str:
    """`Hutchinson()` for a class or an instance of a field-less module; the repr otherwise."""
    if isinstance(obj, type):
        return f"{obj.__name__}()"
    text = repr(obj)
    return text if len(text) < 40 else f"{type(obj).__name__}(...)"
