"""What the experiments share besides data: a progress bar over an experiment's stages and the
formatting of a possibly missing number in a summary table."""

import contextlib
import math


@contextlib.contextmanager
def stages(progress: bool, total: int, desc: str, unit: str = "stage"):
    """A tqdm bar over an experiment's `total` stages (`progress=True`), else a no-op; yields
    `step(name)`, called as each stage starts (the bar advances when the next one starts, and to
    the end when the block exits normally)."""
    if not progress:
        yield lambda name: None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
    state = {"started": False}

    def step(name):
        if state["started"]:
            bar.update(1)
        state["started"] = True
        bar.set_postfix_str(name)

    try:
        yield step
        bar.update(1)
    finally:
        bar.close()


def fmt(value, spec: str) -> str:
    """`value` formatted with `spec`, or "-" when it is missing (None, a string, not finite)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return format(value, spec)
    return "-"
