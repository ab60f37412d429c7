"""Benchmark shape b: see _shapes.py."""

from _build import build

dag = build("b")
