"""Audit: what a checkpoint learned from, whether it still holds, and that nothing was rewritten."""
