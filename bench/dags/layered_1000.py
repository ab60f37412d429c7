"""Benchmark shape d: see _shapes.py."""

from _build import build

dag = build("d")
