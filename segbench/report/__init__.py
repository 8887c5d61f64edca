"""Reports from the results database: paper-style tables (markdown, LaTeX, CSV, JSON), HTML, plots, pivots."""
