"""Machine learning: features defined once for batch and stream, training, the model registry.

Imports nothing heavy at package import; scikit-learn, LightGBM and Polars load in the
modules that need them.
"""
