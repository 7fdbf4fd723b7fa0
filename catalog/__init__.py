"""Garments: the merchant's catalog, its pictures and the maps the analysis produces."""
