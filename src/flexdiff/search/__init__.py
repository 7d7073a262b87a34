"""Flexiffusion schedule search: rFID against a cached teacher, a segment-wise genome space, strategies on Optuna."""
