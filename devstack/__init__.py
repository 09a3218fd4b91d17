"""Local stack for development, tests and the demo: the embedded broker and the four services as processes."""
