"""Reference tables for stream enrichment: Kafka Streams' GlobalKTable joined with a stream.

::

    import polars as pl
    from headwater.stream import StreamApp
    from headwater.stream.tables import ReferenceTable

    zips = ReferenceTable("zipcodes", "zips.csv", key="zipcode", schema={"zipcode": pl.Int64, "city": pl.String},
                          changelog="zipcodes.cdc")
    app = StreamApp("pricing")
    app.stream("houses").enrich(zips, on="zipcode", columns=["city"], missing="flag").to("houses.enriched")

The table holds its rows in a Polars frame (a file, frame or list of dicts as the
baseline) and, with ``changelog=``, rebuilds itself from that topic when the app starts
and follows it while the app runs; ``enrich`` left-joins each micro-batch with one version
of it. Formats and guarantees: :mod:`~headwater.stream.tables.changelog`,
:mod:`~headwater.stream.tables.table`, :mod:`~headwater.stream.tables.enrich`.
"""

from __future__ import annotations

from headwater.stream.tables.changelog import Rejection
from headwater.stream.tables.enrich import Enrich, UnknownKeyError
from headwater.stream.tables.table import ReferenceTable, TableError, TableFollowerError, Version

__all__ = ["Enrich", "ReferenceTable", "Rejection", "TableError", "TableFollowerError", "UnknownKeyError", "Version"]
