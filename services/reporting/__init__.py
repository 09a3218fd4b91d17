"""Reporting: read models over every public event (session occupancy and budgets), rebuildable from the topics."""
