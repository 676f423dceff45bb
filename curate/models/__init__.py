"""Models: sentence embeddings (cached in the store) and LLM backends behind one chat interface."""
