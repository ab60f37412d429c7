"""The metadata store: DAGs, runs, task instances, tries, results, pools, import errors."""
