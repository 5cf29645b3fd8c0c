"""The Examples sections of the public docstrings run and give what they print."""
import doctest

import numpy as np
import pytest

import fastxent
from fastxent import _threads, functional, losses
from fastxent import dask as fx_dask
from fastxent import sklearn as fx_sklearn


@pytest.mark.parametrize("module", [functional, losses, _threads, fx_sklearn, fx_dask],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"np": np, "fx": fastxent},
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_every_public_name_has_an_example():
    for name in fastxent.__all__:
        doc = getattr(fastxent, name).__doc__ or ""
        assert "Examples" in doc, name


def test_every_dask_function_has_an_example_and_the_numpy_options():
    import inspect
    for name in fx_dask.__all__:
        doc = getattr(fx_dask, name).__doc__ or ""
        assert "Examples" in doc, name
        numpy_options = set(inspect.signature(getattr(fastxent, name)).parameters)
        assert numpy_options <= set(inspect.signature(getattr(fx_dask, name)).parameters), name
