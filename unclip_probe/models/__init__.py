"""Networks only (docs/design.md §2): no sampling loops here; samplers live in unclip_probe.diffusion."""
