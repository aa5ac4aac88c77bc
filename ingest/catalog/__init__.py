"""Catalogs: the index of committed files."""
