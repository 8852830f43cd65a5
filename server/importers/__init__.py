"""Importers: readers and catalogue from the files schools already have."""
