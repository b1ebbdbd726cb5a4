"""`python -m jaxdyn.launch -n N [--devices-per-process D] [--timeout S] -- COMMAND ...`

Runs COMMAND as N local processes of one multi-process JAX job (see `jaxdyn.distributed`)."""

from ._launch import launch as launch, main as main

if __name__ == "__main__":
    raise SystemExit(main())
