"""Networks only (DESIGN.md §2): no sampling loops here; samplers live in unclip_probe.diffusion."""
