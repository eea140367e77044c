"""Image generation: SD-1.5 pipelines, adapters from cards, masked variant grids."""
from components.generator.apply import active_adapters
from components.generator.generate import Generator
from components.generator.metadata import (format_parameters, make_grid, parse_parameters,
                                           read_png_parameters, save_png)
from components.generator.output import save_result

__all__ = ["Generator", "active_adapters", "format_parameters", "make_grid", "parse_parameters",
           "read_png_parameters", "save_png", "save_result"]
