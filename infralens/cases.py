"""A hidden check's inputs: its fixed edge cases, then its random ones, through the ``cases`` fixture.

Hidden checks compare the learner with the reference on a fixed list of edge cases (the same under
every seed, so a grade never depends on the seed) and on random inputs drawn from the seed::

    for model, workload in cases(edges, randoms):
        ...  # one comparison; the case alone decides what it does
        cases.count_valid(same_outcome(...))  # where some inputs are invalid on purpose
    cases.require_valid()  # a function that rejects everything must not pass

:class:`Cases` yields ``edges``, then ``randoms``, and notes how far the check got: :attr:`entered`
once the check starts its loop, :attr:`edges_done` once it asks for the case after the last edge
(every edge case ran without failing). It also counts the valid cases, those that the learner and
the reference both answered, so that code after the loop need not keep a count of its own.

A sweep (:mod:`infralens.sweep`) runs each hidden check against one tree once per seed, and the edge
cases do exactly the same thing under every seed. So it keeps what the first seed showed: a check
that got through its edge cases runs only its random ones under the later seeds (``skip_edges``),
and one that failed on an edge case keeps that verdict for every seed; the valid edge cases it
counted still count under the later seeds. That holds for a check that treats an edge case the
same way whatever the seed (nothing drawn from ``rng`` or ``seed`` for it), loops over every case
(no ``break``) and reads nothing its loop computed once the loop is over, except through
``cases``; a check that does otherwise iterates its inputs itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest


class Cases:
    """``cases(edges, randoms)``: an iterator over ``edges`` then ``randoms``.

    ``valid_edges`` is None to run the edge cases; a number skips them, as a sweep does once an
    earlier seed got through them, and counts that many valid cases for them.
    """

    def __init__(self, valid_edges: int | None = None):
        self.skip_edges = valid_edges is not None
        self.valid = valid_edges or 0
        self.valid_edges = 0  # the valid cases among the edges, known once edges_done
        self.entered = False
        self.edges_done = False

    def __call__(self, edges: Iterable[Any], randoms: Iterable[Any]) -> Iterator[Any]:
        if self.entered:
            raise RuntimeError("cases(edges, randoms) goes with one loop per check: iterate it once")
        self.entered = True
        return self._iterate(edges, randoms)

    def _iterate(self, edges: Iterable[Any], randoms: Iterable[Any]) -> Iterator[Any]:
        if not self.skip_edges:
            yield from edges
        self.edges_done, self.valid_edges = True, self.valid
        yield from randoms

    def count_valid(self, both_answered: bool) -> None:
        """Count one case if the learner and the reference both returned a value (what ``same_outcome`` returns)."""
        self.valid += bool(both_answered)

    def require_valid(self) -> None:
        """Fail unless some case was valid: a check whose every input was rejected has compared nothing."""
        if not self.valid:
            pytest.fail("no valid input was accepted", pytrace=False)
