"""Benchmark shape a: see _shapes.py."""

from _build import build

dag = build("a")
