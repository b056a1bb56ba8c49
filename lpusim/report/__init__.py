"""Reports: tables, traces and plots of results (matplotlib is imported only here, lazily)."""
