"""tristore asv suite: one module per area, helpers in common.py."""
