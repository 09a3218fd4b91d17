"""Enrollment: puts learners on session rosters (seats and waitlist) and records their attendance."""
