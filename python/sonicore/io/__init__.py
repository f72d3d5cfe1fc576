"""Audio reading/writing and checkpoint readers."""
