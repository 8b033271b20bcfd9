"""Adapters that let gemvec drop into other frameworks (each behind its own optional extra)."""
