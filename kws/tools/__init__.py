"""Tools around the pipeline: profile, bench, sweep."""
