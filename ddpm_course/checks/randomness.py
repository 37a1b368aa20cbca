"""Checks of functions that draw random numbers from a ``torch.Generator`` argument."""

from __future__ import annotations

from collections.abc import Callable

import torch


def keeps_generator_state(fn: Callable) -> Callable:
    """``fn`` run without consuming its ``generator`` argument, so the learner's function, called next with
    the same generator, draws the same random numbers."""

    def wrapped(*args, **kwargs):
        gens = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Generator)]
        states = [g_.get_state() for g_ in gens]
        try:
            return fn(*args, **kwargs)
        finally:
            for g_, state in zip(gens, states, strict=True):
                g_.set_state(state)

    wrapped.__name__ = wrapped.__qualname__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped
