"""Per-stage training recipes for the shared trainer (DESIGN.md §5)."""
