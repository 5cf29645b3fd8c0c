"""The Examples sections of the public docstrings run and give what they print."""
import doctest

import numpy as np
import pytest

import fastxent
from fastxent import _threads, functional, losses
from fastxent import sklearn as fx_sklearn


@pytest.mark.parametrize("module", [functional, losses, _threads, fx_sklearn],
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
