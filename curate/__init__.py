"""curate: data curation and selection for LLM post-training."""
__version__ = "0.1.0"
