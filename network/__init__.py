"""Backbones, the affinity network and the A2GNN layers."""
