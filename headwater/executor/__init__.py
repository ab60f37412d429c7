"""Executors run task tries: in this process, in local worker processes, or (later) on Dask."""
