"""ipywidgets front ends for the probes and the pipeline (docs/design.md §2): thin, no science here."""
from .binding import BindingExplorer
from .live import Live
from .manipulations import ManipulationsExplorer
from .pca import PCAExplorer
from .sae import SAEExplorer
from .typographic import TypographicExplorer

__all__ = ["BindingExplorer", "Live", "ManipulationsExplorer", "PCAExplorer", "SAEExplorer", "TypographicExplorer"]
