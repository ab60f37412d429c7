"""The house-price scenario: batch training, stream scoring, data checks and enrichment (issue 5)."""
