"""dtf: video classification with Dynamic Temporal Filtering (Long et al., ECCV 2022)."""

__version__ = "0.1.0"
