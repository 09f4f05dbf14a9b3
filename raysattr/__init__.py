"""raysattr: dataset-scale Captum attributions for HuggingFace sequence classifiers on Ray."""

__version__ = "0.1.0"
