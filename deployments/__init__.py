"""Serve deployment classes: thin wrappers around the core service and the engines. They carry no
`@serve.deployment` decorator; serve_app.py wraps them with their options."""
