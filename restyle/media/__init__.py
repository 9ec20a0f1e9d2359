"""Media: probe a video, plan its chunks, decode, encode and assemble. Knows nothing of jobs."""
