import polars as pl

from headwater.stream import Json, StreamApp

app = StreamApp("enrich", max_batch_records=5_000)

(
    app.stream("listings", value=Json())
    .filter(pl.col("sqft_living") > 0)                       # a Polars expression: the whole batch at once
    .map_batch(lambda df: df.with_columns(
        price_per_sqft=(pl.col("price") / pl.col("sqft_living")).round(2)))
    .to("listings.enriched")
)
