"""Arrays with the same values in different memory layouts."""
import numpy as np

LAYOUTS = ("C", "F", "strided", "permuted", "reversed")


def with_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """A view holding `a`'s values with the given layout (never sharing memory with `a`)."""
    a = np.asarray(a)
    if layout == "C" or a.ndim == 0:
        return a.copy()
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros([2 * n + 1 for n in a.shape], a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "permuted":
        # memory order: the axes rotated by one (for 2-D this is Fortran order)
        perm = tuple(range(1, a.ndim)) + (0,)
        inverse = np.argsort(perm)
        return np.ascontiguousarray(a.transpose(perm)).transpose(inverse)
    if layout == "reversed":
        return np.ascontiguousarray(a[::-1])[::-1]
    raise ValueError(layout)
