"""Orchestration: DAG authoring, the DAG-run kernel, the scheduler and DAG discovery."""
