"""Benchmark shape c: see _shapes.py."""

from _build import build

dag = build("c")
