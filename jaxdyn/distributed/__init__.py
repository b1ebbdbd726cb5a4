r"""Past one machine: jaxdyn on JAX's multi-process runtime.

A multi-process JAX job runs the same script in every process (one per host, or one per GPU);
[`initialize`][] joins them (from [`launch`][]'s variables, JAX's, or a SLURM allocation), and
[`global_mesh`][] spans every device of every process. Every sharded path of jaxdyn takes that
mesh (`mesh=`) and returns its results gathered on every process (process 0 writes the files):
[`jaxdyn.lyapunov.sweep`][], `ftle_field`, `sgd_stability_diagram`, `gd_endpoints`, the
multi-start root finders of [`jaxdyn.invariant`][] (`equilibria`, `fixed_points`, `cycles`),
and the particle systems of [`jaxdyn.meanfield`][] through `shard_nodes(field, mesh=...)`.
[`map_batches`][] is the kernel behind the sweeps: use it for your own.

```python
import jaxdyn.distributed as jdist
jdist.initialize()                    # first, before any JAX computation
mesh = jdist.global_mesh()
lam = jaxdyn.lyapunov.sweep(fn, rhos, mesh=mesh)   # every process gets the whole array
if jdist.is_main_process():
    np.save("lam.npy", lam)
```

`python -m jaxdyn.launch -n 2 --devices-per-process 2 -- python script.py` runs it as two local
processes with two CPU devices each (a 4-device global mesh), the way the tests do. The page
"Across processes, on a cluster, on GPU" (`docs/distributed.md`) has a SLURM batch script, the GPU
notes, what each path splits, and what happens when a process dies.
"""

from .._launch import launch as launch
from ._mesh import (
    check_mesh as check_mesh,
    gather as gather,
    global_mesh as global_mesh,
    map_batches as map_batches,
    put as put,
    replicate as replicate,
)
from ._runtime import (
    DistributedInfo as DistributedInfo,
    info as info,
    initialize as initialize,
    is_main_process as is_main_process,
    shutdown as shutdown,
)
