"""Per-stage training recipes for the shared trainer (docs/design.md §5)."""
