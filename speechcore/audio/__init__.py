"""Audio values and encodings; numpy and codec libraries only."""
