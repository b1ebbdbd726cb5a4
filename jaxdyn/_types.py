"""jaxtyping aliases shared by all subpackages."""

from typing import Any, TypeAlias

from jaxtyping import Array, ArrayLike, Float, Int, PyTree

Scalar: TypeAlias = Float[Array, ""]
ScalarLike: TypeAlias = float | int | Float[ArrayLike, ""]
Vector: TypeAlias = Float[Array, " n"]
Matrix: TypeAlias = Float[Array, "n m"]
Batch: TypeAlias = Float[Array, "batch n"]
Args: TypeAlias = PyTree[Any]
Key: TypeAlias = Any

__all__ = ["Args", "Array", "ArrayLike", "Batch", "Float", "Int", "Key", "Matrix", "PyTree",
           "Scalar", "ScalarLike", "Vector"]
