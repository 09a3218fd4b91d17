"""Scheduling: plans sessions and books instructors, venues, virtual rooms and equipment without double-booking."""
