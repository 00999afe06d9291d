"""Seed 002's photo, video and payment calls, retried with regen (see README.md)."""
