"""docs/nonfinite.md's table: what each function gives for NaN, +inf and -inf.

Each row is computed here from fastxent, checked against PyTorch, and must appear in the
docs as generated. After a deliberate change, regenerate the table with
``python tests/test_nonfinite_table.py`` and paste it into the docs.
"""
import pathlib

import numpy as np
import pytest

import fastxent as fx

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "nonfinite.md"
nan, inf = np.nan, np.inf
BASE = [0.5, 0.0, -0.5]

# (function, logits or input, target, options, PyTorch's loss where it differs, or None)
CASES = [
    ("cross_entropy", [nan, 0.0, -0.5], 0, {}, None),
    ("cross_entropy", [0.5, nan, -0.5], 0, {}, None),
    ("cross_entropy", [inf, 0.0, -0.5], 0, {}, None),
    ("cross_entropy", [0.5, inf, -0.5], 0, {}, None),
    ("cross_entropy", [-inf, 0.0, -0.5], 0, {}, None),
    ("cross_entropy", [0.5, -inf, -0.5], 0, {}, None),
    ("cross_entropy", [0.5, -inf, -0.5], 0, {"label_smoothing": 0.1}, None),
    ("cross_entropy", [-inf, -inf, -inf], 0, {}, None),
    ("cross_entropy", [0.5, nan, -0.5], -100, {}, None),
    ("cross_entropy", [0.5, -inf, -0.5], [0.7, 0.0, 0.3], {}, None),
    ("cross_entropy", [0.5, -inf, -0.5], [0.5, 0.2, 0.3], {}, None),
    ("cross_entropy", BASE, [nan, 0.5, 0.5], {}, None),
    ("cross_entropy", BASE, [inf, 0.0, 0.0], {}, "+inf"),
    ("nll_loss", [nan, 0.0, -0.5], 0, {}, None),
    ("nll_loss", [0.5, nan, -0.5], 0, {}, None),
    ("nll_loss", [-inf, 0.0, -0.5], 0, {}, None),
    ("nll_loss", [inf, 0.0, -0.5], 0, {}, None),
    ("binary_cross_entropy_with_logits", inf, 1.0, {}, None),
    ("binary_cross_entropy_with_logits", inf, 0.0, {}, None),
    ("binary_cross_entropy_with_logits", -inf, 0.0, {}, None),
    ("binary_cross_entropy_with_logits", -inf, 1.0, {}, None),
    ("binary_cross_entropy_with_logits", nan, 1.0, {}, None),
    ("binary_cross_entropy_with_logits", 0.5, nan, {}, None),
    ("binary_cross_entropy_with_logits", 0.5, inf, {}, None),
    ("binary_cross_entropy", 0.0, 1.0, {}, None),
    ("binary_cross_entropy", 1.0, 0.0, {}, None),
    ("binary_cross_entropy", 0.0, 0.0, {}, None),
    ("binary_cross_entropy", nan, 1.0, {}, "RuntimeError"),
    ("binary_cross_entropy", 0.5, nan, {}, "RuntimeError"),
    ("kl_div", -inf, 0.5, {}, None),
    ("kl_div", -inf, 0.0, {}, None),
    ("kl_div", inf, 0.5, {}, None),
    ("kl_div", nan, 0.5, {}, None),
    ("kl_div", 0.5, nan, {}, None),
    ("kl_div", 0.5, inf, {}, None),
    ("kl_div", 0.5, -inf, {"log_target": True}, None),
    ("softmax", [nan, 0.0, -0.5], None, {}, None),
    ("softmax", [inf, 0.0, -0.5], None, {}, None),
    ("softmax", [-inf, 0.0, -0.5], None, {}, None),
    ("softmax", [-inf, -inf, -inf], None, {}, None),
    ("log_softmax", [nan, 0.0, -0.5], None, {}, None),
    ("log_softmax", [inf, 0.0, -0.5], None, {}, None),
    ("log_softmax", [-inf, 0.0, -0.5], None, {}, None),
    ("log_softmax", [-inf, -inf, -inf], None, {}, None),
    ("logsumexp", [nan, 0.0, -0.5], None, {}, None),
    ("logsumexp", [inf, 0.0, -0.5], None, {}, None),
    ("logsumexp", [inf, inf, -0.5], None, {}, None),
    ("logsumexp", [-inf, 0.0, -0.5], None, {}, None),
    ("logsumexp", [-inf, -inf, -inf], None, {}, None),
]
TRANSFORMS = {"softmax", "log_softmax", "logsumexp"}
CLASS_LOSSES = {"cross_entropy", "nll_loss"}


def _arrays(fn, x, t):
    """The case as a one-sample batch: (1, 3) logits for class losses, (1,) otherwise."""
    x = np.array(x, np.float64).reshape(1, -1) if fn in CLASS_LOSSES | TRANSFORMS \
        else np.array([x], np.float64)
    if fn in TRANSFORMS:
        return x[0], None
    if fn in CLASS_LOSSES:
        t = np.array([t]) if np.ndim(t) == 0 else np.array([t], np.float64)
    else:
        t = np.array([t], np.float64)
    return x, t


def _run(module, fn, x, t, options):
    if fn in TRANSFORMS:
        return np.atleast_1d(np.asarray(getattr(module, fn)(x, axis=-1))), None
    loss, grad = getattr(module, fn)(x, t, reduction="none", return_grad=True, **options) \
        if module is fx else getattr(module, fn)(x, t, reduction="none", **options)
    return np.atleast_1d(loss), np.asarray(grad).reshape(-1)


def _fmt(v):
    if np.isnan(v):
        return "NaN"
    if np.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return "0" if v == 0 else f"{v:.4g}"


def _fmt_all(a):
    return ", ".join(_fmt(v) for v in a)


def _show(v):
    if np.ndim(v) == 0:
        return _fmt(float(v))
    return "[" + _fmt_all(np.asarray(v, np.float64)) + "]"


def row(case):
    fn, x, t, options, differs = case
    xa, ta = _arrays(fn, x, t)
    opts = "".join(f", {k}={v}" for k, v in options.items())
    target = "—" if fn in TRANSFORMS else ("ignored" if t == -100 else _show(t))
    try:
        value, grad = _run(fx, fn, xa, ta, options)
        result, gradient = _fmt_all(value), "—" if grad is None else _fmt_all(grad)
    except ValueError as exc:
        result, gradient = f"ValueError ({str(exc).split(';')[0]})", "—"
    torch_note = f" (PyTorch: {differs})" if differs else ""
    return f"| `{fn}{opts}` | {_show(x)} | {target} | {result}{torch_note} | {gradient} |"


def table():
    return "\n".join(["| call | input | target | fastxent | gradient |",
                      "| --- | --- | --- | --- | --- |"] + [row(c) for c in CASES])


@pytest.mark.parametrize("case", CASES, ids=lambda c: row(c).split("|")[1].strip()
                         if isinstance(c, tuple) else None)
def test_row_matches_torch(case):
    import oracle
    fn, x, t, options, differs = case
    xa, ta = _arrays(fn, x, t)
    if differs:                       # the table says what PyTorch gives instead
        try:
            torch_says = _fmt_all(_run(oracle, fn, xa, ta, options)[0])
        except RuntimeError:
            torch_says = "RuntimeError"
        assert torch_says == differs
        return
    got = _run(fx, fn, xa, ta, options)
    expected = _run(oracle, fn, xa, ta, options)
    for g, e in zip(got, expected):
        if g is not None:
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-300, equal_nan=True)


def test_docs_table_is_current():
    assert table() in DOC.read_text(encoding="utf-8"), \
        "docs/nonfinite.md is out of date: run python tests/test_nonfinite_table.py"


if __name__ == "__main__":
    print(table())
