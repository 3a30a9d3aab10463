"""Transcode benchmark: how many realtime streams a worker sustains, measured with ffmpeg."""
