"""Stage layer: the flags, file reading and per-image jobs that stage scripts share."""
