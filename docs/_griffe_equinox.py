"""A griffe extension: the constructor signature of Equinox modules in the API reference.

An `eqx.Module` without its own `__init__` gets a dataclass `__init__` at run time, which static
analysis does not see, so its page would show `Checkpoint()` without arguments. After a package
is loaded, this takes the signature of the run-time class (`inspect.signature`) for every such
class and adds it as `__init__`, which `merge_init_into_class` shows on the class.
"""

import importlib
import inspect

import griffe

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
    inspect.Parameter.VAR_POSITIONAL: griffe.ParameterKind.var_positional,
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


def _runtime(path: str):
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _classes(obj):
    for member in obj.members.values():
        if member.is_alias:
            continue
        if member.is_class:
            yield member
            yield from _classes(member)
        elif member.is_module:
            yield from _classes(member)


def _show(value) -> str:
    """A default as source text: functions by name (their repr holds a memory address)."""
    if callable(value) and hasattr(value, "__name__"):
        return f"{getattr(value, '__module__', None) or ''}.{value.__name__}".lstrip(".")
    return repr(value)


class EquinoxInit(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        try:
            import equinox as eqx
        except ImportError:  # a docs-only environment: the signatures stay as griffe reads them
            return
        for cls in _classes(pkg):
            if "__init__" in cls.members:
                continue
            runtime = _runtime(cls.path)
            if not inspect.isclass(runtime) or not issubclass(runtime, eqx.Module):
                continue
            if inspect.isabstract(runtime):
                continue
            try:
                signature = inspect.signature(runtime)
            except (TypeError, ValueError):
                continue
            self_param = griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
            params = griffe.Parameters(self_param)
            for p in signature.parameters.values():
                default = None if p.default is inspect.Parameter.empty else _show(p.default)
                params.add(griffe.Parameter(p.name, kind=_KINDS[p.kind], default=default))
            init = griffe.Function("__init__", parameters=params, lineno=cls.lineno, endlineno=cls.lineno)
            cls.set_member("__init__", init)
