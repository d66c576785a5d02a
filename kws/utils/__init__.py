"""Small helpers every layer may use: threads, seeds, timing, C source text, stderr capture.
Nothing here imports another part of kws."""
