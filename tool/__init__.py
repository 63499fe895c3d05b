"""Losses, graph building, label merging, CRF and I/O shared by the stage scripts."""
