"""Helper package of the sample project (imported from main.py with `from .utils...`)."""
