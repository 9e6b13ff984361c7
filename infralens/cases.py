"""A hidden check's inputs: its fixed edge cases, then its random ones, through the ``cases`` fixture.

Hidden checks compare the learner with the reference on a fixed list of edge cases (the same under
every seed, so a grade never depends on the seed) and on random inputs drawn from the seed::

    for model, workload in cases(edges, randoms):
        ...  # one comparison; the case alone decides what it does

:class:`Cases` yields ``edges``, then ``randoms``, and notes how far the check got: :attr:`entered`
once the check starts its loop, :attr:`edges_done` once it asks for the case after the last edge
(every edge case ran without failing).

A sweep (:mod:`infralens.sweep`) runs each hidden check against one tree once per seed, and the edge
cases do exactly the same thing under every seed. So it keeps what the first seed showed: a check
that got through its edge cases runs only its random ones under the later seeds (``skip_edges``),
and one that failed on an edge case keeps that verdict for every seed. That holds for a check that
treats an edge case the same way whatever the seed (nothing drawn from ``rng`` or ``seed`` for it)
and loops over every case (no ``break``); a check that does otherwise iterates its inputs itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


class Cases:
    """``cases(edges, randoms)``: an iterator over ``edges`` then ``randoms``; without the edges when ``skip_edges``."""

    def __init__(self, skip_edges: bool = False):
        self.skip_edges = skip_edges
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
        self.edges_done = True
        yield from randoms
