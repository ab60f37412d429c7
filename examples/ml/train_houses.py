import polars as pl
from lightgbm import LGBMRegressor

from headwater.ml import BetterThanChampion, Feature, FeatureSet, Impute, OneHot, open_registry, ratio, train
from headwater.settings import Settings

features = FeatureSet(
    "houses",
    {"sqft_living": pl.Int64, "sqft_lot": pl.Int64, "bathrooms": pl.Float64, "zipcode": pl.Int64},
    [
        Feature("living_per_lot", ratio("sqft_living", "sqft_lot")),
        Feature("log_sqft", pl.col("sqft_living").cast(pl.Float64).log1p()),
        Impute("bathrooms", "median"),        # the training median, frozen
        OneHot("zipcode", max_categories=20),  # the training vocabulary, unseen -> "other"
    ],
)

frame = pl.read_csv("houses.csv")
result = train(frame, target="price", features=features, estimator=LGBMRegressor(n_estimators=100, verbose=-1))
print(result.metrics["test"])                     # rmse, mae, r2, mape on the held-out 10 %

registry = open_registry(Settings.from_env())
version = result.register(registry, "houses", author="me")
decision = registry.evaluate_policy("houses", version.version, BetterThanChampion("rmse", by=0.02), promote=True)
print(version.ref, decision.reason)
