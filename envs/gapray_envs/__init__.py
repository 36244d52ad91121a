"""Gymnasium/RLlib environments of gapray (the GIL MDP lands with the GIL issue)."""
